import * as tf from '@tensorflow/tfjs-core';
import { choleskyHost, lowerInverseHost, transposeHost } from './host.js';
import { CHOLESKY_KERNEL, checkSquare, hasKernel, runUnaryKernel } from './kernels.js';

/** Options of the blocked (matMul-based) factorisations. */
export interface BlockOptions {
  /** Panel width of the blocked algorithm (default 128). */
  blockSize?: number;
}

/** Default panel width: small enough for a fast host panel, large enough for efficient matMuls. */
export const DEFAULT_BLOCK = 128;

/**
 * Lower Cholesky factor L of a symmetric positive definite `a` (a = LLᵀ, zeros above the
 * diagonal). Only the lower triangle of `a` is read. Throws {@link NotPositiveDefiniteError}
 * when a pivot is not positive.
 *
 * Without a `LayerstreamCholesky` kernel this is right-looking blocked Cholesky: each diagonal
 * panel is factored on the host in Float64, the column below it is solved as A21·L11⁻ᵀ and the
 * trailing matrix updated by A22 − L21·L21ᵀ, both as rank-2 matMuls (Golub & Van Loan §4.2.9).
 *
 * @example
 * const L = cholesky(tf.tensor2d([[4, 2], [2, 3]])); // [[2, 0], [1, √2]]
 */
export function cholesky(a: tf.Tensor2D, options: BlockOptions = {}): tf.Tensor2D {
  checkSquare(a, 'cholesky');
  if (hasKernel(CHOLESKY_KERNEL)) return runUnaryKernel(CHOLESKY_KERNEL, a);
  return choleskyBlocked(a, options);
}

/** The matMul-based blocked factorisation behind {@link cholesky}, ignoring registered kernels. */
export function choleskyBlocked(a: tf.Tensor2D, options: BlockOptions = {}): tf.Tensor2D {
  const n = checkSquare(a, 'cholesky');
  const nb = checkBlock(options.blockSize, 'cholesky');
  const L = new Float32Array(n * n);
  // The trailing matrix still to factor, [m, m] with m = n − k; owned here.
  let S: tf.Tensor2D = tf.clone(a);
  try {
    for (let k = 0; k < n; k += nb) {
      const m = n - k;
      const b = Math.min(nb, m);
      const A11 = tf.tidy(() => tf.slice(S, [0, 0], [b, b]));
      const a11 = A11.dataSync();
      A11.dispose();
      const L11 = choleskyHost(a11, b, k);
      for (let i = 0; i < b; i++) for (let j = 0; j <= i; j++) L[(k + i) * n + k + j] = L11[i * b + j];
      if (m === b) break;
      const invL11T = Float32Array.from(transposeHost(lowerInverseHost(L11, b), b));
      const [L21, next] = tf.tidy(() => {
        const A21 = tf.slice(S, [b, 0], [m - b, b]);
        const l21 = tf.matMul(A21, tf.tensor2d(invL11T, [b, b]));
        const trailing = tf.sub(tf.slice(S, [b, b], [m - b, m - b]), tf.matMul(l21, tf.transpose(l21)));
        return [l21, trailing] as [tf.Tensor2D, tf.Tensor2D];
      });
      const l21 = L21.dataSync();
      L21.dispose();
      for (let i = 0; i < m - b; i++) L.set(l21.subarray(i * b, i * b + b), (k + b + i) * n + k);
      S.dispose();
      S = next;
    }
  } finally {
    S.dispose();
  }
  return tf.tensor2d(L, [n, n]);
}

/** The upper factor U of a = UᵀU, i.e. transpose(cholesky(a)). */
export function upperCholesky(a: tf.Tensor2D, options: BlockOptions = {}): tf.Tensor2D {
  const L = cholesky(a, options);
  const U = tf.transpose(L);
  L.dispose();
  return U;
}

/** Validates a panel width (default {@link DEFAULT_BLOCK}). */
export function checkBlock(blockSize: number | undefined, op: string): number {
  const nb = blockSize ?? DEFAULT_BLOCK;
  if (!Number.isInteger(nb) || nb < 1) {
    throw new Error(`${op}: blockSize must be a positive integer, got ${blockSize}`);
  }
  return nb;
}
