import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../../src/tensor/backend.js';
import { registerWasmSplitKernels, unregisterWasmSplitKernels } from '../../src/tensor/wasmKernels.js';

beforeAll(async () => {
  await initBackend({ backend: 'wasm' });
});
afterAll(() => registerWasmSplitKernels());

describe('wasm SplitV / Unpack kernels', () => {
  it('are registered by initBackend on wasm', () => {
    unregisterWasmSplitKernels();
    const stock = tf.getKernel(tf.SplitV, 'wasm');
    registerWasmSplitKernels();
    expect(tf.getKernel(tf.SplitV, 'wasm')).not.toBe(stock);
  });

  it('match the stock kernels on every axis and leak nothing', () => {
    const x = tf.tensor(Array.from({ length: 60 }, (_, i) => i), [3, 4, 5]);
    const sizes = (axis: number) => (axis === 2 ? [2, 3] : [1, x.shape[axis]! - 1]);
    unregisterWasmSplitKernels();
    const expected = [0, 1, 2].map((axis) => ({
      split: tf.tidy(() => tf.split(x, sizes(axis), axis).map((t) => t.arraySync())),
      unstack: tf.tidy(() => tf.unstack(x, axis).map((t) => t.arraySync())),
    }));
    registerWasmSplitKernels();
    registerWasmSplitKernels(); // idempotent
    const before = tf.memory().numTensors;
    for (const axis of [0, 1, 2]) {
      tf.tidy(() => {
        expect(tf.split(x, sizes(axis), axis).map((t) => t.arraySync())).toEqual(expected[axis].split);
        expect(tf.unstack(x, axis).map((t) => t.arraySync())).toEqual(expected[axis].unstack);
      });
    }
    expect(tf.memory().numTensors).toBe(before);
    x.dispose();
  });
});
