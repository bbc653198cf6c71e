import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../../src/tensor/backend.js';
import { gatherRowsGrad, matMulGrads } from '../../examples/train/grads.js';
import { crossEntropy, learningRate } from '../../examples/train/train.js';

beforeAll(async () => {
  await initBackend({ backend: 'wasm' });
});

const close = (a: tf.Tensor, b: tf.Tensor, tol = 1e-5) =>
  expect(tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0])).toBeLessThan(tol);

describe('training gradients (wasm-friendly)', () => {
  it('scatter-adds gathered rows back, repeated indices summed', () => {
    tf.tidy(() => {
      const dy = tf.tensor2d([[1, 2], [3, 4], [5, 6]]);
      const dx = gatherRowsGrad(dy, tf.tensor1d([2, 0, 2], 'int32'), [4, 2]);
      expect(Array.from(dx.dataSync())).toEqual([3, 4, 0, 0, 6, 8, 0, 0]);
    });
  });

  it('gives the matMul gradients for every transpose combination', () => {
    tf.tidy(() => {
      const a = tf.randomNormal([3, 4], 0, 1, 'float32', 1) as tf.Tensor2D;
      const b = tf.randomNormal([4, 5], 0, 1, 'float32', 2) as tf.Tensor2D;
      const dy = tf.randomNormal([3, 5], 0, 1, 'float32', 3) as tf.Tensor2D;
      // reference for C = a·b: da = dy·bᵀ, db = aᵀ·dy
      const da = tf.matMul(dy, b, false, true) as tf.Tensor2D;
      const db = tf.matMul(a, dy, true, false) as tf.Tensor2D;
      const T = (x: tf.Tensor2D) => tf.transpose(x) as tf.Tensor2D;
      for (const [tA, tB] of [[false, false], [false, true], [true, false], [true, true]] as const) {
        const g = matMulGrads(dy, tA ? T(a) : a, tB ? T(b) : b, tA, tB);
        close(g.a(), tA ? T(da) : da);
        close(g.b(), tB ? T(db) : db);
      }
    });
  });
});

describe('loss and schedule', () => {
  it('computes cross-entropy as logSoftmax does, with gradient (softmax - onehot)/N', () => {
    tf.tidy(() => {
      const logits = tf.randomNormal([6, 10], 0, 2, 'float32', 7) as tf.Tensor2D;
      const targets = tf.tensor1d([0, 3, 9, 3, 5, 1], 'int32');
      const onehot = tf.cast(tf.oneHot(targets, 10), 'float32');
      const ref = tf.neg(tf.mean(tf.sum(tf.mul(onehot, tf.logSoftmax(logits)), 1)));
      close(crossEntropy(logits, targets), ref);
      const grad = tf.grad((l: tf.Tensor) => crossEntropy(l as tf.Tensor2D, targets))(logits);
      close(grad, tf.div(tf.sub(tf.softmax(logits), onehot), 6));
    });
  });

  it('rejects targets that do not match the logits rows', () => {
    tf.tidy(() => {
      expect(() => crossEntropy(tf.zeros([4, 3]) as tf.Tensor2D, tf.tensor1d([0, 1], 'int32'))).toThrow(
        /logits have 4 rows but targets has 2 entries/,
      );
    });
  });

  it('does not leak tensors', () => {
    const logits = tf.randomNormal([4, 8]) as tf.Tensor2D;
    const targets = tf.tensor1d([1, 2, 3, 4], 'int32');
    const before = tf.memory().numTensors;
    crossEntropy(logits, targets).dispose();
    tf.grad((l: tf.Tensor) => crossEntropy(l as tf.Tensor2D, targets))(logits).dispose();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([logits, targets]);
  });

  it('warms up linearly, then decays by cosine to a tenth of the peak', () => {
    expect(learningRate(0, 1, 10, 100)).toBeCloseTo(0.1);
    expect(learningRate(9, 1, 10, 100)).toBeCloseTo(1);
    expect(learningRate(10, 1, 10, 100)).toBeCloseTo(1);
    expect(learningRate(55, 1, 10, 100)).toBeCloseTo(0.55);
    expect(learningRate(100, 1, 10, 100)).toBeCloseTo(0.1);
  });
});
