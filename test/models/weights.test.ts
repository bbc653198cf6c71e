import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { mkdtemp, readFile, rm, truncate, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { initBackend } from '../../src/tensor/backend.js';
import { generateRandomModel, type RandomModelOptions } from '../../src/models/random.js';
import { loadModel } from '../../src/models/registry.js';
import { saveModel } from '../../src/models/save.js';
import { SafetensorsFile, writeSafetensors } from '../../src/models/safetensors.js';
import { ModelWeights, underPrefix } from '../../src/models/weights.js';
import type { CausalLM } from '../../src/models/types.js';

let root: string;
let n = 0;
const tiny: RandomModelOptions = { modelType: 'llama', hiddenSize: 32, numHeads: 4, numKvHeads: 2, intermediateSize: 48, vocabSize: 64, numLayers: 2, seed: 3, std: 0.1 };

beforeAll(async () => {
  await initBackend({ backend: 'wasm' });
  root = await mkdtemp(path.join(tmpdir(), 'ls-weights-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function fresh(options: Partial<RandomModelOptions> = {}): Promise<string> {
  const dir = path.join(root, `m${n++}`);
  await generateRandomModel(dir, { ...tiny, ...options });
  return dir;
}

async function editConfig(dir: string, patch: Record<string, unknown>): Promise<void> {
  const file = path.join(dir, 'config.json');
  await writeFile(file, JSON.stringify({ ...JSON.parse(await readFile(file, 'utf8')), ...patch }));
}

function logits(model: CausalLM): Float32Array {
  return tf.tidy(() => {
    const ids = tf.tensor2d([[0, 0, 5, 9, 33], [1, 2, 3, 4, 63]], undefined, 'int32');
    const mask = tf.tensor2d([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]], undefined, 'int32');
    return (model.call([ids], { attention_mask: mask }) as tf.Tensor).dataSync() as Float32Array;
  });
}

const dispose = (m: CausalLM) => (m as unknown as { dispose(): void }).dispose();

describe('loadModel checks every key and shape', () => {
  it('names the tensor, file and both shapes on a mismatch', async () => {
    const dir = await fresh();
    await editConfig(dir, { intermediate_size: 50 });
    await expect(loadModel(dir)).rejects.toThrow(
      `loadModel: tensor 'model.layers.0.mlp.gate_proj.weight' in ${path.join(dir, 'model.safetensors')} has shape [48, 32], ${path.join(dir, 'config.json')} implies [50, 32]`,
    );
  });
  it('a missing tensor and an unexpected one', async () => {
    const dir = await fresh();
    await editConfig(dir, { num_hidden_layers: 3 });
    await expect(loadModel(dir)).rejects.toThrow(/tensor 'model.layers.2.self_attn.q_proj.weight' is missing from the checkpoint/);
    await editConfig(dir, { num_hidden_layers: 1 });
    await expect(loadModel(dir)).rejects.toThrow(/unexpected tensor 'model.layers.1\..*' in .*model.safetensors: .*config.json implies no such parameter/);
    await editConfig(dir, { num_hidden_layers: 2, tie_word_embeddings: true });
    // a tied config tolerates an lm_head.weight in the file (some exporters write it) ...
    const tied = await loadModel(dir);
    expect([...tied.namedParameters()].map(([k]) => k)).not.toContain('lm_head.weight');
    dispose(tied);
    // ... but an untied one needs it
    const dir2 = await fresh({ tieWordEmbeddings: true });
    await editConfig(dir2, { tie_word_embeddings: false });
    await expect(loadModel(dir2)).rejects.toThrow(/tensor 'lm_head.weight' is missing/);
  });
  it('ignores rotary_emb.inv_freq buffers', async () => {
    const dir = await fresh();
    const file = path.join(dir, 'model.safetensors');
    const st = await SafetensorsFile.open(file);
    const tensors = new Map();
    for (const k of st.keys()) tensors.set(k, { ...(await st.read(k)), data: (await st.read(k)).data });
    tensors.set('model.layers.0.self_attn.rotary_emb.inv_freq', { dtype: 'F32', shape: [4], data: new Float32Array(4) });
    await writeSafetensors(file, tensors);
    dispose(await loadModel(dir));
  });
  it('clear errors for missing weights, a truncated file, and a missing shard', async () => {
    const dir = await fresh();
    const file = path.join(dir, 'model.safetensors');
    await truncate(file, 8 + Number((await readFile(file)).readBigUInt64LE(0)) + 100);
    await expect(loadModel(dir)).rejects.toThrow(/corrupt header.*truncated/);
    await unlink(path.join(dir, 'model.safetensors'));
    await expect(loadModel(dir)).rejects.toThrow(/no model.safetensors or model.safetensors.index.json in/);
    const sharded = await fresh({ shards: 2 });
    await unlink(path.join(sharded, 'model-00002-of-00002.safetensors'));
    await expect(loadModel(sharded)).rejects.toThrow(/shard '.*model-00002-of-00002.safetensors' named in '.*index.json' does not exist/);
  });
});

describe('sharded checkpoints and dtypes', () => {
  it('a 3-shard checkpoint gives the same logits as a single file', async () => {
    const single = await loadModel(await fresh());
    const sharded = await loadModel(await fresh({ shards: 3 }));
    expect([...logits(sharded)]).toEqual([...logits(single)]);
    dispose(single);
    dispose(sharded);
  });
  it('bf16 and f16 checkpoints load, close to float32', async () => {
    const ref = logits(await loadModel(await fresh()));
    for (const dtype of ['bfloat16', 'float16'] as const) {
      const m = await loadModel(await fresh({ dtype }));
      const got = logits(m);
      const err = Math.max(...got.map((v, i) => Math.abs(v - ref[i])));
      expect(err).toBeLessThan(dtype === 'bfloat16' ? 0.05 : 0.005);
      expect(err).toBeGreaterThan(0);
      dispose(m);
    }
  });
});

describe('lazy loading', () => {
  it('loads by module prefix, releases unmodified weights only, and matches eager logits', async () => {
    const dir = await fresh();
    const eager = await loadModel(dir);
    const expected = logits(eager);
    dispose(eager);

    const model = await loadModel(dir, { lazy: true });
    const layer = (i: number, p: string) => model.getSubmodule(`model.layers.${i}.${p}`);
    expect(layer(0, 'self_attn.q_proj').hasParameter('weight')).toBe(false);
    expect(() => logits(model)).toThrow(/parameter 'weight' is not loaded/);

    await model.weights.load('model.layers.0');
    expect(layer(0, 'self_attn.q_proj').hasParameter('weight')).toBe(true);
    expect(layer(1, 'self_attn.q_proj').hasParameter('weight')).toBe(false);
    expect(model.getSubmodule('model.embed_tokens').hasParameter('weight')).toBe(false);

    // a weight replaced after loading (a compression result) survives release
    const down = layer(0, 'mlp.down_proj');
    const replaced = tf.mul(down.param('weight'), 1);
    down.setParameter('weight', replaced);
    expect((model.weights as ModelWeights).isModified('model.layers.0.mlp.down_proj.weight')).toBe(true);
    model.weights.release('model.layers.0');
    expect(layer(0, 'self_attn.q_proj').hasParameter('weight')).toBe(false);
    expect(down.param('weight')).toBe(replaced);

    const before = tf.memory().numTensors;
    await model.weights.load('');
    expect(down.param('weight')).toBe(replaced);
    expect([...logits(model)]).toEqual([...expected]);
    model.weights.release('');
    expect(tf.memory().numTensors).toBe(before);
    dispose(model);
  });
  it('prefixes stop at module boundaries', async () => {
    expect(underPrefix('model.layers.10.mlp.up_proj.weight', 'model.layers.1')).toBe(false);
    expect(underPrefix('model.layers.1.mlp.up_proj.weight', 'model.layers.1')).toBe(true);
    expect(underPrefix('lm_head.weight', '')).toBe(true);
    const model = await loadModel(await fresh(), { lazy: true });
    await expect(model.weights.load('model.layers.7')).rejects.toThrow(/no parameters under 'model.layers.7'/);
  });
});

describe('saveModel', () => {
  it('round-trips an untied model, a tied one (no lm_head.weight) and a lazy one with a modified weight', async () => {
    for (const tie of [false, true]) {
      const model = await loadModel(await fresh({ tieWordEmbeddings: tie }));
      const out = path.join(root, `saved${n++}`);
      await saveModel(model, out);
      const st = await SafetensorsFile.open(path.join(out, 'model.safetensors'));
      expect(st.keys().includes('lm_head.weight')).toBe(!tie);
      const again = await loadModel(out);
      expect(again.config.tie_word_embeddings).toBe(tie);
      expect([...logits(again)]).toEqual([...logits(model)]);
      dispose(model);
      dispose(again);
    }
    const lazy = await loadModel(await fresh(), { lazy: true });
    await lazy.weights.load('model.layers.1.mlp');
    const up = lazy.getSubmodule('model.layers.1.mlp.up_proj');
    up.setParameter('weight', tf.zeros(up.param('weight').shape));
    const out = path.join(root, `saved${n++}`);
    await saveModel(lazy, out, { dtype: 'bfloat16' });
    const reloaded = await loadModel(out);
    expect(reloaded.config.torch_dtype).toBe('bfloat16');
    expect(tf.tidy(() => tf.max(tf.abs(reloaded.getSubmodule('model.layers.1.mlp.up_proj').param('weight'))).dataSync()[0])).toBe(0);
    expect(reloaded.getSubmodule('model.layers.0.mlp.up_proj').hasParameter('weight')).toBe(true);
    dispose(lazy);
    dispose(reloaded);
  });
});

describe('forward', () => {
  it('leaks no tensor, with and without padding, and keeps fully padded rows finite', async () => {
    const model = await loadModel(await fresh({ modelType: 'qwen2', tieWordEmbeddings: true }));
    const ids = tf.tensor2d([[0, 0, 0, 7], [1, 2, 3, 4]], undefined, 'int32');
    const mask = tf.tensor2d([[0, 0, 0, 1], [1, 1, 1, 1]], undefined, 'int32');
    const before = tf.memory().numTensors;
    for (const kwargs of [{}, { attention_mask: mask }]) {
      const out = model.call([ids], kwargs) as tf.Tensor;
      expect(out.shape).toEqual([2, 4, 64]);
      expect((await out.data()).every(Number.isFinite)).toBe(true);
      out.dispose();
    }
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([ids, mask]);
    dispose(model);
  });
  it('left padding does not change the logits of the real tokens (with matching position_ids)', async () => {
    const model = await loadModel(await fresh());
    const [padded, alone] = tf.tidy(() => {
      const a = model.call([tf.tensor2d([[0, 0, 5, 9, 33]], undefined, 'int32')], {
        attention_mask: tf.tensor2d([[0, 0, 1, 1, 1]], undefined, 'int32'),
        position_ids: tf.tensor2d([[0, 0, 0, 1, 2]], undefined, 'int32'),
      }) as tf.Tensor;
      const b = model.call([tf.tensor2d([[5, 9, 33]], undefined, 'int32')]) as tf.Tensor;
      return [tf.slice(a, [0, 2, 0], [1, 3, -1]).arraySync() as number[][][], b.arraySync() as number[][][]];
    });
    padded[0].forEach((row, t) => row.forEach((v, i) => expect(v).toBeCloseTo(alone[0][t][i], 5)));
    dispose(model);
  });
  it('names bad inputs', async () => {
    const model = await loadModel(await fresh());
    const ids = tf.tensor1d([1, 2], 'int32');
    expect(() => model.call([ids])).toThrow(/'input_ids' must be \[B, T\], got tensor\[2\] int32/);
    const layer = model.layers[0];
    const h = tf.zeros([1, 2, 32]);
    expect(() => layer.call([h])).toThrow(/LlamaAttention.forward: 'position_embeddings' must be \[cos, sin\]/);
    const pe = [tf.zeros([1, 2, 8]), tf.zeros([1, 2, 8])];
    const badMask = tf.zeros([1, 1, 3, 3]);
    expect(() => layer.call([h], { attention_mask: badMask, position_embeddings: pe })).toThrow(
      /'attention_mask' must be \[1, 1, 2, 2\] for hidden_states tensor\[1,2,32\] float32, got tensor\[1,1,3,3\]/,
    );
    tf.dispose([...pe, badMask]);
    tf.dispose([ids, h]);
    dispose(model);
  });
});

describe('device budget', () => {
  it('refuses an eager load past the budget and points at lazy loading', async () => {
    const dir = await fresh();
    process.env.LAYERSTREAM_DEVICE_BUDGET = '1000';
    try {
      await expect(loadModel(dir)).rejects.toThrow(/WeightStore.load\(''\): the parameters need .* GiB as float32 .*\{ lazy: true \}/);
      await loadModel(dir, { lazy: true });
    } finally {
      delete process.env.LAYERSTREAM_DEVICE_BUDGET;
    }
  });
});

describe('ModelWeights.offload', () => {
  it('moves modified parameters to the host and uploads them again on load, exactly, still modified', async () => {
    const dir = await fresh();
    const before = tf.memory().numTensors;
    const model = await loadModel(dir, { lazy: true });
    const store = model.weights as ModelWeights;
    await store.load('model.layers.0');
    const q = model.getSubmodule('model.layers.0.self_attn.q_proj');
    const norm = model.getSubmodule('model.layers.0.input_layernorm');
    const qName = 'model.layers.0.self_attn.q_proj.weight';
    const modified = tf.tidy(() => tf.mul(q.param('weight'), 3));
    const want = Float32Array.from(modified.dataSync());
    q.setParameter('weight', modified);
    const loadedTensors = tf.memory().numTensors;

    store.offload('model.layers.0');
    expect(q.hasParameter('weight')).toBe(false);
    expect(norm.hasParameter('weight')).toBe(false);
    expect(tf.memory().numTensors).toBe(loadedTensors - store.names('model.layers.0').length);
    expect(store.isOffloaded(qName)).toBe(true);
    expect(store.isOffloaded('model.layers.0.input_layernorm.weight')).toBe(false);
    expect(store.isModified(qName)).toBe(true);
    expect(await store.readFloat32(qName)).toEqual(want);

    await store.load('model.layers.0');
    expect(q.param('weight').dataSync()).toEqual(want);
    expect(store.isModified(qName)).toBe(true);
    expect(store.isModified('model.layers.0.input_layernorm.weight')).toBe(false);
    // release keeps no copy of its own: the uploaded override's values are still on the host
    store.release('model.layers.0');
    expect(q.hasParameter('weight')).toBe(false);
    expect(await store.readFloat32(qName)).toEqual(want);
    // modifying the uploaded override again replaces it on the next offload
    await store.load(qName);
    q.setParameter('weight', tf.tidy(() => tf.add(q.param('weight'), 1)));
    store.offload('model.layers.0');
    expect((await store.readFloat32(qName))[0]).toBeCloseTo(want[0] + 1, 5);
    // and saving reads the override, not the source
    const saved = path.join(root, `m${n++}`);
    await saveModel(model, saved);
    const st = await SafetensorsFile.open(path.join(saved, 'model.safetensors'));
    expect((await st.readFloat32(qName)).data).toEqual(await store.readFloat32(qName));
    dispose(model);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('matches module boundaries: offloading model.layers.1 leaves model.layers.10 alone', async () => {
    const dir = await fresh({ numLayers: 11 });
    const model = await loadModel(dir, { lazy: true });
    const store = model.weights as ModelWeights;
    await store.load('model.layers.1');
    await store.load('model.layers.10');
    for (const i of [1, 10]) {
      const m = model.getSubmodule(`model.layers.${i}.mlp.up_proj`);
      m.setParameter('weight', tf.tidy(() => tf.neg(m.param('weight'))));
    }
    store.offload('model.layers.1');
    expect(model.getSubmodule('model.layers.1.mlp.up_proj').hasParameter('weight')).toBe(false);
    expect(model.getSubmodule('model.layers.10.mlp.up_proj').hasParameter('weight')).toBe(true);
    expect(store.isOffloaded('model.layers.10.mlp.up_proj.weight')).toBe(false);
    dispose(model);
  });
});
