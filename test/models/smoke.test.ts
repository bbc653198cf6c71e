import { beforeAll, describe, expect, expectTypeOf, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { initBackend } from '../../src/tensor/backend.js';
import { generateRandomModel } from '../../src/models/random.js';
import { loadModel } from '../../src/models/registry.js';
import { LlamaForCausalLM } from '../../src/models/llama.js';
import type { CausalLM, WeightStore } from '../../src/models/types.js';

beforeAll(async () => {
  await initBackend({ backend: 'wasm' });
});

describe('llama smoke', () => {
  it('generates, loads and runs a tiny model without leaking', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'ls-smoke-'));
    try {
      await generateRandomModel(dir, { modelType: 'llama', numKvHeads: 2, seed: 1 });
      const model = await loadModel(dir);
      const ids = tf.tensor2d([[1, 5, 7, 9], [3, 4, 5, 6]], undefined, 'int32');
      const mask = tf.tensor2d([[0, 1, 1, 1], [1, 1, 1, 1]], undefined, 'int32');
      const before = tf.memory().numTensors;
      const logits = model.call([ids], { attention_mask: mask }) as tf.Tensor;
      expect(logits.shape).toEqual([2, 4, 256]);
      expect(logits.dtype).toBe('float32');
      const v = await logits.data();
      expect(v.every((x) => Number.isFinite(x))).toBe(true);
      logits.dispose();
      expect(tf.memory().numTensors).toBe(before);
      expect(model.decoderLayerClass).toBe('LlamaDecoderLayer');
      expect(model.layers.length).toBe(2);
      tf.dispose([ids, mask]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('types', () => {
  it('LlamaForCausalLM is a CausalLM; loadModel resolves to one', () => {
    expectTypeOf<LlamaForCausalLM>().toMatchTypeOf<CausalLM>();
    expectTypeOf(loadModel).returns.resolves.toEqualTypeOf<CausalLM>();
    expectTypeOf<CausalLM['weights']>().toEqualTypeOf<WeightStore>();
  });
});
