import * as tf from '@tensorflow/tfjs-core';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeCompressedCheckpoint } from '../../src/checkpoint/writer.js';
import { generateRandomModel } from '../../src/models/random.js';
import { loadModel } from '../../src/models/registry.js';
import { SafetensorsFile, bf16ToF32, f32ToBf16 } from '../../src/models/safetensors.js';
import type { CausalLM } from '../../src/models/types.js';
import { unpackFromInt32, unpackRowsFromInt32 } from '../../src/quant/pack.js';
import { initBackend } from '../../src/tensor/backend.js';
import {
  INT8_TOKEN, W4A16, W4A16_ACTORDER, W4A16_ASYM, W8A16, configOf, firstMismatch, keysSortedInText, quantizeModel, scheme, tempDir,
} from './helpers.js';

// Shapes: H = 256, I = 196 (down_proj has a partial last group of 68), q [256, 256], k/v [64, 256],
// gate/up [196, 256] (196 rows: zero points packed along rows need padding), down [256, 196].
let root: string;
let modelDir: string;
const LINEARS = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj'];

beforeAll(async () => {
  await initBackend({ backend: 'cpu' });
  root = await tempDir();
  modelDir = path.join(root, 'source');
  await generateRandomModel(modelDir, {
    modelType: 'llama', hiddenSize: 256, intermediateSize: 196, numLayers: 2, numHeads: 4, numKvHeads: 1,
    vocabSize: 128, dtype: 'bfloat16', seed: 3,
  });
  await fsp.writeFile(path.join(modelDir, 'tokenizer.json'), '{"version":"1.0"}');
  await fsp.writeFile(path.join(modelDir, 'generation_config.json'), '{"do_sample":false}');
});
afterAll(async () => {
  await fsp.rm(root, { recursive: true, force: true });
});

async function headerOf(dir: string): Promise<SafetensorsFile> {
  return SafetensorsFile.open(path.join(dir, 'model.safetensors'));
}

async function readInt(st: SafetensorsFile, name: string): Promise<Int32Array> {
  return Int32Array.from((await st.read(name)).data as ArrayLike<number>);
}

describe('W4A16 (group 128, symmetric) → pack-quantized', () => {
  let model: CausalLM;
  let out: string;
  let codes: Map<string, Int8Array>;
  let result: { files: string[]; bytes: number };

  beforeAll(async () => {
    model = await loadModel(modelDir, { lazy: true });
    const q = await quantizeModel(model, W4A16);
    codes = q.codes;
    out = path.join(root, 'w4a16');
    const before = tf.memory().numTensors;
    result = await writeCompressedCheckpoint({
      model, quantized: q.quantized, quantizationConfig: configOf(scheme(W4A16)), outputDir: out,
      sourceDir: modelDir, recipeYaml: 'default_stage:\n  default_modifiers:\n    GPTQModifier: {}\n',
    });
    // the writer loads unquantized parameters one by one and releases them again
    expect(tf.memory().numTensors).toBe(before);
  });

  it('writes weight_packed int32 [rows, cols/8], weight_scale bf16 [rows, groups], weight_shape int64 [2] and nothing else', async () => {
    const st = await headerOf(out);
    for (let l = 0; l < 2; l++) {
      for (const lin of LINEARS) {
        const p = `model.layers.${l}.${lin}`;
        const [rows, cols] = model.getSubmodule(p).param('weight').shape;
        expect(st.info(`${p}.weight_packed`)).toMatchObject({ dtype: 'I32', shape: [rows, Math.ceil(cols / 8)] });
        expect(st.info(`${p}.weight_scale`)).toMatchObject({ dtype: 'BF16', shape: [rows, Math.ceil(cols / 128)] });
        expect(st.info(`${p}.weight_shape`)).toMatchObject({ dtype: 'I64', shape: [2] });
        expect(Array.from((await st.read(`${p}.weight_shape`)).data as BigInt64Array, Number)).toEqual([rows, cols]);
        for (const absent of ['weight', 'weight_zero_point', 'weight_g_idx']) expect(st.tensors.has(`${p}.${absent}`)).toBe(false);
      }
    }
  });

  it('packs exactly the quantizer\'s int4 codes', async () => {
    const st = await headerOf(out);
    for (const [name, expected] of codes) {
      const [rows, cols] = model.getSubmodule(name).param('weight').shape;
      expect(firstMismatch(unpackFromInt32(await readInt(st, `${name}.weight_packed`), rows, cols, 4), expected)).toBe(-1);
    }
  });

  it('keeps every unquantized tensor in bf16, unchanged (untied lm_head included)', async () => {
    const st = await headerOf(out);
    const src = await headerOf(modelDir);
    const unquantized = src.keys().filter((k) => !codes.has(k.replace(/\.weight$/, '')));
    expect(unquantized).toContain('lm_head.weight');
    for (const k of unquantized) {
      expect(st.info(k).dtype).toBe('BF16');
      expect(firstMismatch((await st.read(k)).data as Uint16Array, (await src.read(k)).data as Uint16Array)).toBe(-1);
    }
    const expectedKeys = [...unquantized, ...[...codes.keys()].flatMap((p) => ['weight_packed', 'weight_scale', 'weight_shape'].map((s) => `${p}.${s}`))];
    expect(st.keys().sort()).toEqual(expectedKeys.sort());
  });

  it('writes quantization_config exactly as compressed-tensors 0.12.2 does (§5.3), keys sorted', async () => {
    const text = await fsp.readFile(path.join(out, 'config.json'), 'utf8');
    expect(keysSortedInText(text)).toBe(true);
    expect(text).toContain('\n  "architectures": [\n');
    const config = JSON.parse(text);
    expect(config.quantization_config).toEqual({
      config_groups: {
        group_0: {
          format: 'pack-quantized', input_activations: null, output_activations: null, targets: ['Linear'],
          weights: {
            actorder: 'static', block_structure: null, dynamic: false, group_size: 128, num_bits: 4, observer: 'minmax',
            observer_kwargs: {}, strategy: 'group', symmetric: true, type: 'int',
          },
        },
      },
      format: 'pack-quantized', global_compression_ratio: null, ignore: ['lm_head'], kv_cache_scheme: null,
      quant_method: 'compressed-tensors', quantization_status: 'compressed', sparsity_config: {}, transform_config: {},
      version: '0.12.2',
    });
    const source = JSON.parse(await fsp.readFile(path.join(modelDir, 'config.json'), 'utf8'));
    const { quantization_config: _, ...rest } = config;
    expect(rest).toEqual({ ...source, torch_dtype: 'bfloat16' });
  });

  it('copies tokenizer files, writes recipe.yaml, and reports the files and their size', async () => {
    const names = result.files.map((f) => path.basename(f)).sort();
    expect(names).toEqual(['config.json', 'generation_config.json', 'model.safetensors', 'recipe.yaml', 'tokenizer.json']);
    expect((await fsp.readdir(out)).sort()).toEqual(names);
    expect(await fsp.readFile(path.join(out, 'tokenizer.json'), 'utf8')).toBe('{"version":"1.0"}');
    expect(await fsp.readFile(path.join(out, 'recipe.yaml'), 'utf8')).toContain('GPTQModifier');
    let bytes = 0;
    for (const f of result.files) bytes += (await fsp.stat(f)).size;
    expect(result.bytes).toBe(bytes);
  });
});

describe('other schemes', () => {
  async function write(args: typeof W4A16, name: string, input: typeof INT8_TOKEN | null = null) {
    const model = await loadModel(modelDir, { lazy: true });
    const q = await quantizeModel(model, args);
    const out = path.join(root, name);
    await writeCompressedCheckpoint({ model, quantized: q.quantized, quantizationConfig: configOf(scheme(args, input)), outputDir: out });
    const st = await headerOf(out);
    const config = JSON.parse(await fsp.readFile(path.join(out, 'config.json'), 'utf8'));
    return { model, q, st, config };
  }

  it('W4A16_ASYM: zero points packed along rows into int32 [ceil(rows/8), groups]', async () => {
    const { model, q, st } = await write(W4A16_ASYM, 'w4a16-asym');
    for (const [name, qm] of q.quantized) {
      const [rows, cols] = model.getSubmodule(name).param('weight').shape;
      const groups = Math.ceil(cols / 128);
      expect(st.info(`${name}.weight_zero_point`)).toMatchObject({ dtype: 'I32', shape: [Math.ceil(rows / 8), groups] });
      const zp = unpackRowsFromInt32(await readInt(st, `${name}.weight_zero_point`), rows, groups, 4);
      expect(Int32Array.from(zp)).toEqual(qm.zeroPoint);
      expect(qm.zeroPoint.some((z) => z !== 0)).toBe(true);
      expect(firstMismatch(unpackFromInt32(await readInt(st, `${name}.weight_packed`), rows, cols, 4), q.codes.get(name)!)).toBe(-1);
    }
  });

  it('W8A16 (channel): int8 codes four to a word, scale [rows, 1], no zero point', async () => {
    const { model, q, st, config } = await write(W8A16, 'w8a16');
    expect(config.quantization_config.format).toBe('pack-quantized');
    for (const [name, expected] of q.codes) {
      const [rows, cols] = model.getSubmodule(name).param('weight').shape;
      expect(st.info(`${name}.weight_packed`)).toMatchObject({ dtype: 'I32', shape: [rows, cols / 4] });
      expect(st.info(`${name}.weight_scale`)).toMatchObject({ dtype: 'BF16', shape: [rows, 1] });
      expect(st.tensors.has(`${name}.weight_zero_point`)).toBe(false);
      // §3.4 allows ±1 for int8 codes re-derived from a bf16 weight; the writer divides the float32
      // weight by the bf16 scale, whose relative error (≤ 2⁻⁹) moves |q| ≤ 128 by at most 0.25: exact
      const got = unpackFromInt32(await readInt(st, `${name}.weight_packed`), rows, cols, 8);
      expect(firstMismatch(got, expected)).toBe(-1);
    }
  });

  it('actorder group: weight_g_idx int32 [cols] holds each column\'s group', async () => {
    const { model, q, st } = await write(W4A16_ACTORDER, 'w4a16-actorder');
    for (const [name, qm] of q.quantized) {
      const [rows, cols] = model.getSubmodule(name).param('weight').shape as [number, number];
      expect(st.info(`${name}.weight_g_idx`)).toMatchObject({ dtype: 'I32', shape: [cols] });
      expect(await readInt(st, `${name}.weight_g_idx`)).toEqual(qm.gIdx);
      expect(firstMismatch(unpackFromInt32(await readInt(st, `${name}.weight_packed`), rows, cols, 4), q.codes.get(name)!)).toBe(-1);
    }
  });

  it('W8A8 (dynamic int8 activations) → int-quantized: int8 weight, scale [rows, 1]', async () => {
    const { model, q, st, config } = await write(W8A16, 'w8a8', INT8_TOKEN);
    expect(config.quantization_config.format).toBe('int-quantized');
    expect(config.quantization_config.config_groups.group_0.input_activations).toEqual(INT8_TOKEN);
    for (const [name] of q.quantized) {
      const [rows, cols] = model.getSubmodule(name).param('weight').shape;
      expect(st.info(`${name}.weight`)).toMatchObject({ dtype: 'I8', shape: [rows, cols] });
      expect(st.info(`${name}.weight_scale`)).toMatchObject({ dtype: 'BF16', shape: [rows, 1] });
      for (const absent of ['weight_packed', 'weight_shape', 'weight_zero_point', 'input_scale']) expect(st.tensors.has(`${name}.${absent}`)).toBe(false);
    }
  });
});

describe('configs, dtypes, shards', () => {
  it('merges two modifiers\' configs: distinct schemes become group_0 and group_1, format mixed-precision', async () => {
    const model = await loadModel(modelDir, { lazy: true });
    const attn = await quantizeModel(model, W4A16, { targets: ['re:.*self_attn\\..*'] });
    const mlp = await quantizeModel(model, W8A16, { targets: ['re:.*mlp\\..*'] });
    const out = path.join(root, 'mixed');
    await writeCompressedCheckpoint({
      model, outputDir: out, quantized: new Map([...attn.quantized, ...mlp.quantized]),
      quantizationConfig: [configOf(scheme(W4A16, null, ['re:.*self_attn\\..*'])), configOf(scheme(W8A16, null, ['re:.*mlp\\..*']))],
    });
    const q = JSON.parse(await fsp.readFile(path.join(out, 'config.json'), 'utf8')).quantization_config;
    expect(Object.keys(q.config_groups)).toEqual(['group_0', 'group_1']);
    expect(q.config_groups.group_1.weights).toEqual(W8A16);
    expect(q.format).toBe('pack-quantized');
    const st = await headerOf(out);
    expect(st.info('model.layers.0.mlp.up_proj.weight_scale').shape).toEqual([196, 1]);
    expect(st.info('model.layers.0.self_attn.q_proj.weight_scale').shape).toEqual([256, 2]);
  });

  it('two modifiers\' group_0 with equal weight args (W4A16, W4A8): the group whose targets match decides the format', async () => {
    const model = await loadModel(modelDir, { lazy: true });
    const attn = await quantizeModel(model, W4A16, { targets: ['re:.*self_attn\\..*'] });
    const mlp = await quantizeModel(model, W4A16, { targets: ['re:.*mlp\\..*'] });
    const out = path.join(root, 'w4a16-w4a8');
    await writeCompressedCheckpoint({
      model, outputDir: out, quantized: new Map([...attn.quantized, ...mlp.quantized]),
      quantizationConfig: [configOf(scheme(W4A16, null, ['re:.*self_attn\\..*'])), configOf(scheme(W4A16, INT8_TOKEN, ['re:.*mlp\\..*']))],
    });
    const q = JSON.parse(await fsp.readFile(path.join(out, 'config.json'), 'utf8')).quantization_config;
    expect(q.format).toBe('mixed-precision');
    const st = await headerOf(out);
    expect(st.info('model.layers.0.self_attn.q_proj.weight_packed').dtype).toBe('I32');
    expect(st.info('model.layers.0.mlp.up_proj.weight')).toMatchObject({ dtype: 'I8', shape: [196, 256] });
  });

  it('float32 output, with the scale kept in float32', async () => {
    const model = await loadModel(modelDir, { lazy: true });
    const q = await quantizeModel(model, W4A16);
    const out = path.join(root, 'f32');
    await writeCompressedCheckpoint({ model, quantized: q.quantized, quantizationConfig: configOf(scheme(W4A16)), outputDir: out, dtype: 'float32' });
    const st = await headerOf(out);
    expect(st.info('model.norm.weight').dtype).toBe('F32');
    const scale = (await st.read('model.layers.1.mlp.down_proj.weight_scale')).data as Float32Array;
    expect(scale).toEqual(q.quantized.get('model.layers.1.mlp.down_proj')!.scale);
    expect(JSON.parse(await fsp.readFile(path.join(out, 'config.json'), 'utf8')).torch_dtype).toBe('float32');
  });

  it('shards past maxShardBytes, with an index whose total_size is the data size', async () => {
    const model = await loadModel(modelDir, { lazy: true });
    const q = await quantizeModel(model, W4A16);
    const out = path.join(root, 'sharded');
    const { files } = await writeCompressedCheckpoint({
      model, quantized: q.quantized, quantizationConfig: configOf(scheme(W4A16)), outputDir: out, maxShardBytes: 100_000,
    });
    const shards = files.map((f) => path.basename(f)).filter((f) => f.endsWith('.safetensors'));
    expect(shards.length).toBeGreaterThan(2);
    shards.forEach((f, i) => expect(f).toBe(`model-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`));
    const index = JSON.parse(await fsp.readFile(path.join(out, 'model.safetensors.index.json'), 'utf8'));
    let total = 0;
    const seen = new Set<string>();
    for (const f of shards) {
      const st = await SafetensorsFile.open(path.join(out, f));
      const size = st.keys().reduce((a, k) => a + st.info(k).dataOffsets[1] - st.info(k).dataOffsets[0], 0);
      expect(size <= 100_000 || st.keys().length === 1).toBe(true);
      total += size;
      for (const k of st.keys()) {
        expect(index.weight_map[k]).toBe(f);
        seen.add(k);
      }
    }
    expect(index.metadata.total_size).toBe(total);
    expect(Object.keys(index.weight_map).length).toBe(seen.size);
    expect(seen.has('model.layers.1.mlp.down_proj.weight_packed')).toBe(true);
  });

  it('tied embeddings: no lm_head.weight, lm_head still listed in ignore', async () => {
    const dir = path.join(root, 'tied-source');
    await generateRandomModel(dir, { modelType: 'qwen2', hiddenSize: 128, numLayers: 1, numHeads: 2, vocabSize: 64, tieWordEmbeddings: true, seed: 5 });
    const model = await loadModel(dir, { lazy: true });
    const q = await quantizeModel(model, W4A16);
    const out = path.join(root, 'tied');
    await writeCompressedCheckpoint({ model, quantized: q.quantized, quantizationConfig: configOf(scheme(W4A16)), outputDir: out });
    const st = await headerOf(out);
    expect(st.tensors.has('lm_head.weight')).toBe(false);
    expect(st.info('model.layers.0.self_attn.q_proj.bias').dtype).toBe('F32');
    expect(JSON.parse(await fsp.readFile(path.join(out, 'config.json'), 'utf8')).quantization_config.ignore).toEqual(['lm_head']);
    const qm = q.quantized.get('model.layers.0.mlp.up_proj')!;
    await expect(
      writeCompressedCheckpoint({
        model, quantized: new Map([['lm_head', { ...qm, name: 'lm_head' }]]), quantizationConfig: configOf(scheme(W4A16)), outputDir: path.join(root, 'tied-e'),
      }),
    ).rejects.toThrow(/lm_head is tied to the embeddings.*add 'lm_head' to ignore/);
  });
});

describe('writer errors', () => {
  it('names a QuantizedModule whose group is not in the config', async () => {
    const model = await loadModel(modelDir, { lazy: true });
    const q = await quantizeModel(model, W4A16, { group: 'group_7' });
    await expect(
      writeCompressedCheckpoint({ model, quantized: q.quantized, quantizationConfig: configOf(scheme(W4A16)), outputDir: path.join(root, 'e1') }),
    ).rejects.toThrow(/'model\.layers\.0\.self_attn\.q_proj' belongs to group 'group_7'/);
    await expect(fsp.stat(path.join(root, 'e1'))).rejects.toThrow();
  });

  it('refuses static activations and float weights, naming the group', async () => {
    const model = await loadModel(modelDir, { lazy: true });
    const q = await quantizeModel(model, W8A16);
    const staticInput = { ...INT8_TOKEN, dynamic: false, strategy: 'tensor' as const };
    await expect(
      writeCompressedCheckpoint({ model, quantized: q.quantized, quantizationConfig: configOf(scheme(W8A16, staticInput)), outputDir: path.join(root, 'e2') }),
    ).rejects.toThrow(/group 'group_0' has static input_activations/);
    const fp8 = { ...W8A16, type: 'float' as const };
    await expect(
      writeCompressedCheckpoint({ model, quantized: new Map(), quantizationConfig: configOf(scheme(fp8, fp8)), outputDir: path.join(root, 'e3') }),
    ).rejects.toThrow(/needs format 'float-quantized', which layerstream cannot write/);
  });

  it('refuses a scale of the wrong shape', async () => {
    const model = await loadModel(modelDir, { lazy: true });
    const q = await quantizeModel(model, W4A16, { targets: ['model.layers.0.mlp.down_proj'] });
    const qm = q.quantized.get('model.layers.0.mlp.down_proj')!;
    q.quantized.set(qm.name, { ...qm, scaleShape: [256, 1] });
    await expect(
      writeCompressedCheckpoint({ model, quantized: q.quantized, quantizationConfig: configOf(scheme(W4A16)), outputDir: path.join(root, 'e4') }),
    ).rejects.toThrow(/group strategy with group_size 128 on 196 columns needs a scale of shape \[256, 2\], got \[256, 1\]/);
  });
});
