// On the cpu backend tensors share memory with the typed arrays they were made from or read into;
// quantizeWeight must still leave its inputs untouched and give the same result as on wasm.
import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../../../src/tensor/backend.js';
import { accumulateHessian, quantizeWeight } from '../../../src/modifiers/gptq/gptqQuantize.js';
import { parseQuantizationArgs } from '../../../src/quant/parse.js';
import { randn } from '../../linalg/random.js';

beforeAll(async () => {
  await initBackend({ backend: 'cpu', warn: () => {} });
});

describe('quantizeWeight on the cpu backend', () => {
  it.each([64, 24])('leaves W and H unchanged (block size %i) and is deterministic', (blockSize) => {
    const w = randn(8 * 48, 1);
    w[3] = 0; // a zero so that the dead-column path copies
    const x = tf.tensor3d(randn(2 * 20 * 48, 2), [2, 20, 48]);
    const { H } = accumulateHessian(null, 0, x);
    const W = tf.tensor2d(w, [8, 48]);
    const Hcopy = Float32Array.from(H.dataSync());
    const args = parseQuantizationArgs({ num_bits: 4, group_size: 16, actorder: 'static' });
    const a = quantizeWeight(W, H, args, { blockSize });
    const b = quantizeWeight(W, H, args, { blockSize });
    expect(Array.from(W.dataSync())).toEqual(Array.from(w));
    expect(Array.from(H.dataSync())).toEqual(Array.from(Hcopy));
    expect(Array.from(a.weight.dataSync())).toEqual(Array.from(b.weight.dataSync()));
    expect(a.loss).toBe(b.loss);
    tf.dispose([x, H, W, a.weight, b.weight]);
  });
});
