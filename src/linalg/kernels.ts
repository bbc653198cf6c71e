/**
 * Kernel names through which a native accelerator (src/tensor/accel.ts) can replace the linear
 * algebra of this folder per backend. Each op looks its kernel up in tfjs' kernel registry for the
 * active backend and falls back to the matMul-based implementation here when none is registered.
 *
 * Kernel contracts (inputs by name, no attributes):
 * - `LayerstreamGram` `{ x: [n, k] }` → xᵀx `[k, k]`, full symmetric.
 * - `LayerstreamCholesky` `{ x: [n, n] }` → lower factor L (zeros above the diagonal); throws
 *   {@link NotPositiveDefiniteError} when the matrix does not factor.
 * - `LayerstreamCholeskyInverse` `{ x: L [n, n] }` → A⁻¹ where A = LLᵀ.
 */
import * as tf from '@tensorflow/tfjs-core';

/** `{x: [n, k]}` → xᵀx. */
export const GRAM_KERNEL = 'LayerstreamGram';
/** `{x: [n, n]}` → lower Cholesky factor. */
export const CHOLESKY_KERNEL = 'LayerstreamCholesky';
/** `{x: L}` → (LLᵀ)⁻¹. */
export const CHOLESKY_INVERSE_KERNEL = 'LayerstreamCholeskyInverse';

/** True when the active backend has a kernel registered under `name`. */
export function hasKernel(name: string): boolean {
  return tf.getKernel(name, tf.getBackend()) !== undefined;
}

/** Runs a registered single-input kernel on `x`. */
export function runUnaryKernel(name: string, x: tf.Tensor2D): tf.Tensor2D {
  return tf.engine().runKernel(name, { x }, {}) as tf.Tensor2D;
}

/** Argument check shared by the square-matrix ops. */
export function checkSquare(a: tf.Tensor, op: string, arg = 'a'): number {
  if (a.rank !== 2 || a.shape[0] !== a.shape[1]) {
    throw new Error(`${op}: '${arg}' must be a square matrix [n, n], got shape [${a.shape.join(', ')}]`);
  }
  if (a.dtype !== 'float32') {
    throw new Error(`${op}: '${arg}' must be float32, got ${a.dtype}; cast it with tf.cast(${arg}, 'float32')`);
  }
  return a.shape[0];
}
