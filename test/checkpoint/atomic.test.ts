import * as tf from '@tensorflow/tfjs-core';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { writeCompressedCheckpoint } from '../../src/checkpoint/writer.js';
import { generateRandomModel } from '../../src/models/random.js';
import { loadModel } from '../../src/models/registry.js';
import type { CausalLM, WeightStore } from '../../src/models/types.js';
import type { QuantizedModule } from '../../src/quant/args.js';
import { initBackend } from '../../src/tensor/backend.js';
import { W4A16, configOf, quantizeModel, scheme, tempDir } from './helpers.js';

let root: string;
let modelDir: string;
let parent: string;
let model: CausalLM;
let quantized: Map<string, QuantizedModule>;

beforeAll(async () => {
  await initBackend({ backend: 'cpu' });
  root = await tempDir();
  modelDir = path.join(root, 'source');
  await generateRandomModel(modelDir, { modelType: 'llama', hiddenSize: 128, numLayers: 2, numHeads: 2, vocabSize: 64, seed: 2 });
  model = await loadModel(modelDir, { lazy: true });
  quantized = (await quantizeModel(model, W4A16, { targets: ['re:model\\.layers\\.0\\..*_proj'] })).quantized;
});
afterAll(async () => {
  await fsp.rm(root, { recursive: true, force: true });
});
beforeEach(async () => {
  parent = await fsp.mkdtemp(path.join(root, 'out-'));
});

/** Calls `onLoad(n)` before the n-th parameter load the writer asks for (1-based). */
function withLoadHook(onLoad: (n: number) => void): CausalLM {
  const store = model.weights;
  let n = 0;
  const hooked: WeightStore = {
    load: async (prefix) => {
      onLoad(++n);
      return store.load(prefix);
    },
    release: (prefix) => store.release(prefix),
  };
  return Object.assign(Object.create(model) as CausalLM, { weights: hooked });
}

const write = (m: CausalLM, extra: { signal?: AbortSignal; overwrite?: boolean; maxShardBytes?: number; outputDir?: string } = {}) =>
  writeCompressedCheckpoint({
    model: m, quantized, quantizationConfig: configOf(scheme(W4A16)), outputDir: path.join(parent, 'ckpt'), ...extra,
  });

describe('all or nothing', () => {
  it('an abort mid-write leaves neither the output nor a .tmp- sibling, and no tensors', async () => {
    const controller = new AbortController();
    const before = tf.memory().numTensors;
    const hooked = withLoadHook((n) => n === 6 && controller.abort(new Error('stop requested')));
    await expect(write(hooked, { signal: controller.signal, maxShardBytes: 20_000 })).rejects.toThrow('stop requested');
    expect(await fsp.readdir(parent)).toEqual([]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('an error while reading a tensor (after several shards were closed) cleans up too', async () => {
    const hooked = withLoadHook((n) => {
      if (n === 12) throw new Error('disk read failed');
    });
    await expect(write(hooked, { maxShardBytes: 20_000 })).rejects.toThrow('disk read failed');
    expect(await fsp.readdir(parent)).toEqual([]);
  });

  it('an already-aborted signal creates nothing; the abort reason is rethrown', async () => {
    await expect(write(model, { signal: AbortSignal.abort() })).rejects.toThrow(/aborted/i);
    expect(await fsp.readdir(parent)).toEqual([]);
  });
});

describe('existing output directories', () => {
  it('refuses a non-empty directory and leaves it as it was', async () => {
    const out = path.join(parent, 'ckpt');
    await fsp.mkdir(out);
    await fsp.writeFile(path.join(out, 'keep.txt'), 'mine');
    await expect(write(model)).rejects.toThrow(/output directory '.*ckpt' exists and is not empty.*overwrite: true/);
    expect(await fsp.readdir(out)).toEqual(['keep.txt']);
    expect((await fsp.readdir(parent)).sort()).toEqual(['ckpt']);
  });

  it('fills an empty directory', async () => {
    await fsp.mkdir(path.join(parent, 'ckpt'));
    await write(model);
    expect((await fsp.readdir(path.join(parent, 'ckpt'))).sort()).toEqual(['config.json', 'model.safetensors']);
  });

  it('overwrite: true swaps the directory and removes the old one', async () => {
    const out = path.join(parent, 'ckpt');
    await fsp.mkdir(out);
    await fsp.writeFile(path.join(out, 'stale.safetensors'), 'old');
    await write(model, { overwrite: true });
    expect((await fsp.readdir(out)).sort()).toEqual(['config.json', 'model.safetensors']);
    expect(await fsp.readdir(parent)).toEqual(['ckpt']);
  });

  it('refuses a path that is a file', async () => {
    await fsp.writeFile(path.join(parent, 'ckpt'), 'x');
    await expect(write(model)).rejects.toThrow(/exists and is not a directory/);
  });

  it('creates missing parent directories', async () => {
    await write(model, { outputDir: path.join(parent, 'a', 'b', 'ckpt') });
    expect(await fsp.readdir(path.join(parent, 'a', 'b'))).toEqual(['ckpt']);
  });
});
