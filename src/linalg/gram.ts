import * as tf from '@tensorflow/tfjs-core';
import { GRAM_KERNEL, hasKernel } from './kernels.js';

/**
 * The Gram matrix xᵀx of `x` [n, k] → [k, k] (full, symmetric). Runs the `LayerstreamGram`
 * kernel when the backend has one; otherwise a rank-2 matMul with an explicit transpose, because
 * `transposeA` takes tfjs-wasm's scalar loop (about 200x slower than XNNPACK).
 *
 * @example
 * const H = gram(tf.tensor2d([[1, 2], [3, 4]])); // [[10, 14], [14, 20]]
 */
export function gram(x: tf.Tensor2D): tf.Tensor2D {
  if (x.rank !== 2) throw new Error(`gram: 'x' must be a matrix [n, k], got shape [${x.shape.join(', ')}]`);
  if (hasKernel(GRAM_KERNEL)) return tf.engine().runKernel(GRAM_KERNEL, { x }, {}) as tf.Tensor2D;
  return tf.tidy(() => tf.matMul(tf.transpose(x), x));
}
