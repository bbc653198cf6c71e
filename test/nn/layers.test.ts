import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../../src/tensor/backend.js';
import { Embedding, Linear, RMSNorm, TiedLinear } from '../../src/nn/layers.js';
import { mulberry32 } from '../../src/models/random.js';

beforeAll(async () => {
  await initBackend({ backend: 'wasm' });
});

function randn(n: number, seed: number): Float32Array {
  const u = mulberry32(seed);
  return Float32Array.from({ length: n }, () => u() * 2 - 1);
}

describe('Linear', () => {
  it('computes x·Wᵀ + b over the last axis of a 3-D input, as a naive loop does', () => {
    const [B, T, inF, outF] = [2, 3, 5, 4];
    const x = randn(B * T * inF, 1);
    const w = randn(outF * inF, 2);
    const b = randn(outF, 3);
    const lin = new Linear(inF, outF, true);
    lin.setParameter('weight', tf.tensor2d(w, [outF, inF]));
    lin.setParameter('bias', tf.tensor1d(b));
    const xt = tf.tensor3d(x, [B, T, inF]);
    const before = tf.memory().numTensors;
    const y = lin.apply(xt);
    expect(y.shape).toEqual([B, T, outF]);
    const got = y.dataSync();
    for (let r = 0; r < B * T; r++) {
      for (let o = 0; o < outF; o++) {
        let s = b[o];
        for (let i = 0; i < inF; i++) s += x[r * inF + i] * w[o * inF + i];
        expect(got[r * outF + o]).toBeCloseTo(s, 5);
      }
    }
    y.dispose();
    expect(tf.memory().numTensors).toBe(before);
    lin.releaseParameters();
    xt.dispose();
  });

  it('names the feature mismatch and refuses an unloaded weight', () => {
    const lin = new Linear(3, 2);
    const x = tf.zeros([1, 4]);
    expect(() => lin.apply(x)).toThrow(/parameter 'weight' is not loaded/);
    lin.setParameter('weight', tf.zeros([2, 3]));
    expect(() => lin.apply(x)).toThrow(/input has 4 features, weight expects 3/);
    lin.releaseParameters();
    x.dispose();
  });
});

describe('Embedding', () => {
  it('gathers rows by id', () => {
    const emb = new Embedding(4, 2);
    emb.setParameter('weight', tf.tensor2d([[0, 1], [2, 3], [4, 5], [6, 7]]));
    const ids = tf.tensor2d([[3, 0], [1, 1]], undefined, 'int32');
    const y = emb.apply(ids);
    expect(y.arraySync()).toEqual([[[6, 7], [0, 1]], [[2, 3], [2, 3]]]);
    tf.dispose([y, ids]);
    emb.releaseParameters();
  });
});

describe('RMSNorm', () => {
  it('is weight · x / sqrt(mean(x²) + eps), per row', () => {
    const H = 6;
    const x = randn(2 * H, 4);
    const w = randn(H, 5);
    const norm = new RMSNorm(H, 1e-6);
    norm.setParameter('weight', tf.tensor1d(w));
    const xt = tf.tensor2d(x, [2, H]);
    const y = norm.apply(xt).dataSync();
    for (let r = 0; r < 2; r++) {
      let ms = 0;
      for (let i = 0; i < H; i++) ms += x[r * H + i] ** 2 / H;
      for (let i = 0; i < H; i++) expect(y[r * H + i]).toBeCloseTo((w[i] * x[r * H + i]) / Math.sqrt(ms + 1e-6), 5);
    }
    xt.dispose();
    norm.releaseParameters();
  });
});

describe('TiedLinear', () => {
  it('uses the embedding tensor, owns nothing, answers to Linear and refuses a new weight', () => {
    const emb = new Embedding(3, 2);
    emb.setParameter('weight', tf.tensor2d([[1, 0], [0, 1], [1, 1]]));
    const head = new TiedLinear(emb, 'model.embed_tokens.weight', 2, 3);
    expect(head.parameterNames()).toEqual([]);
    expect(head.classNames()).toContain('Linear');
    expect(head.param('weight')).toBe(emb.param('weight'));
    const x = tf.tensor2d([[2, 3]]);
    expect(head.apply(x).arraySync()).toEqual([[2, 3, 5]]);
    expect(() => head.setParameter('weight', tf.zeros([3, 2]))).toThrow(/tie_word_embeddings.*ignore/);
    x.dispose();
    emb.releaseParameters();
    expect(head.hasParameter('weight')).toBe(false);
  });
});
