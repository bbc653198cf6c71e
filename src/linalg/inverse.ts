import * as tf from '@tensorflow/tfjs-core';
import { checkBlock, cholesky, type BlockOptions } from './cholesky.js';
import { lowerInverseHost } from './host.js';
import { CHOLESKY_INVERSE_KERNEL, CHOLESKY_KERNEL, checkSquare, hasKernel, runUnaryKernel } from './kernels.js';

/**
 * Inverse of a lower-triangular matrix, by recursive halving on matMul:
 * [[A, 0], [B, C]]⁻¹ = [[A⁻¹, 0], [−C⁻¹·B·A⁻¹, C⁻¹]], with blocks of at most `blockSize`
 * inverted on the host in Float64.
 */
export function lowerTriangularInverse(l: tf.Tensor2D, options: BlockOptions = {}): tf.Tensor2D {
  const n = checkSquare(l, 'lowerTriangularInverse', 'l');
  return invertLower(l, n, checkBlock(options.blockSize, 'lowerTriangularInverse'));
}

function invertLower(l: tf.Tensor2D, n: number, nb: number): tf.Tensor2D {
  if (n <= nb) {
    const x = lowerInverseHost(l.dataSync(), n);
    return tf.tensor2d(Float32Array.from(x), [n, n]);
  }
  // Split on a block boundary so the host-inverted leaves are full blocks.
  const h = Math.ceil(n / 2 / nb) * nb;
  const [A, B, C] = tf.tidy((): tf.Tensor2D[] => [
    tf.slice(l, [0, 0], [h, h]),
    tf.slice(l, [h, 0], [n - h, h]),
    tf.slice(l, [h, h], [n - h, n - h]),
  ]);
  const Ai = invertLower(A, h, nb);
  const Ci = invertLower(C, n - h, nb);
  const X = tf.tidy((): tf.Tensor2D => {
    const X21 = tf.neg(tf.matMul(tf.matMul(Ci, B), Ai));
    const top = tf.concat([Ai, tf.zeros([h, n - h])], 1);
    return tf.concat([top, tf.concat([X21, Ci], 1)], 0) as tf.Tensor2D;
  });
  tf.dispose([A, B, C, Ai, Ci]);
  return X;
}

/**
 * A⁻¹ from the lower Cholesky factor `l` of A (torch.cholesky_inverse): L⁻ᵀ·L⁻¹. Runs the
 * `LayerstreamCholeskyInverse` kernel when registered.
 */
export function choleskyInverse(l: tf.Tensor2D, options: BlockOptions = {}): tf.Tensor2D {
  checkSquare(l, 'choleskyInverse', 'l');
  if (hasKernel(CHOLESKY_INVERSE_KERNEL)) return runUnaryKernel(CHOLESKY_INVERSE_KERNEL, l);
  return choleskyInverseBlocked(l, options);
}

/** The matMul-based implementation behind {@link choleskyInverse}, ignoring registered kernels. */
export function choleskyInverseBlocked(l: tf.Tensor2D, options: BlockOptions = {}): tf.Tensor2D {
  const X = lowerTriangularInverse(l, options);
  const out = tf.tidy(() => tf.matMul(tf.transpose(X), X) as tf.Tensor2D);
  X.dispose();
  return out;
}

/** Milliseconds spent in each step of {@link inverseUpperCholesky}, accumulated into. */
export interface InverseTimings {
  cholesky: number;
  inverse: number;
}

/**
 * The upper Cholesky factor U of H⁻¹ (H⁻¹ = UᵀU), the matrix GPTQ's column loop reads
 * (GPTQ paper §3, "Cholesky reformulation"). Equal to transpose(cholesky(choleskyInverse(cholesky(H)))).
 *
 * With native kernels registered it runs exactly that chain. Otherwise it uses the identity
 * U = P·L̃⁻¹·P, where P reverses rows and columns and L̃ = cholesky(P·H·P): one factorisation and one
 * triangular inverse instead of two factorisations, an inverse and a product (about 3x fewer flops).
 * Throws {@link NotPositiveDefiniteError} when H does not factor.
 */
export function inverseUpperCholesky(
  H: tf.Tensor2D,
  options: BlockOptions = {},
  timings?: InverseTimings,
): tf.Tensor2D {
  checkSquare(H, 'inverseUpperCholesky', 'H');
  let t = performance.now();
  const lap = (key: keyof InverseTimings) => {
    const now = performance.now();
    if (timings) timings[key] += now - t;
    t = now;
  };
  if (hasKernel(CHOLESKY_KERNEL) && hasKernel(CHOLESKY_INVERSE_KERNEL)) {
    const L = cholesky(H, options);
    lap('cholesky');
    let Hinv: tf.Tensor2D;
    try {
      Hinv = choleskyInverse(L, options);
    } finally {
      L.dispose();
    }
    lap('inverse');
    try {
      const L2 = cholesky(Hinv, options);
      const U = tf.transpose(L2);
      L2.dispose();
      lap('cholesky');
      return U;
    } finally {
      Hinv.dispose();
    }
  }
  return inverseUpperCholeskyReversed(H, options, timings);
}

/**
 * {@link inverseUpperCholesky} through the reversal identity U = P·L̃⁻¹·P, with L̃ = cholesky(P·H·P),
 * whatever kernels are registered (the factorisation still dispatches through {@link cholesky}).
 */
export function inverseUpperCholeskyReversed(
  H: tf.Tensor2D,
  options: BlockOptions = {},
  timings?: InverseTimings,
): tf.Tensor2D {
  checkSquare(H, 'inverseUpperCholesky', 'H');
  const t0 = performance.now();
  const reversed = tf.reverse(H, [0, 1]) as tf.Tensor2D;
  let Lr: tf.Tensor2D;
  try {
    Lr = cholesky(reversed, options);
  } finally {
    reversed.dispose();
  }
  const t1 = performance.now();
  const Xr = lowerTriangularInverse(Lr, options);
  Lr.dispose();
  const U = tf.reverse(Xr, [0, 1]) as tf.Tensor2D;
  Xr.dispose();
  if (timings) {
    timings.cholesky += t1 - t0;
    timings.inverse += performance.now() - t1;
  }
  return U;
}
