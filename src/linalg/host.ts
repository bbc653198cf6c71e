/**
 * Small dense Float64 kernels on row-major host arrays. They factor and invert the diagonal
 * panels of the blocked algorithms (at most a block of 128), and serve as the naive reference
 * the tests compare against.
 */
import { NotPositiveDefiniteError } from './errors.js';

/**
 * Cholesky–Banachiewicz on a row-major n×n array; returns the lower factor (zeros above).
 * Only the lower triangle of `a` is read. `pivotOffset` shifts the pivot index reported by
 * {@link NotPositiveDefiniteError}, so a panel failure names the pivot of the whole matrix.
 */
export function choleskyHost(a: ArrayLike<number>, n: number, pivotOffset = 0): Float64Array {
  const l = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    const ri = i * n;
    for (let j = 0; j <= i; j++) {
      const rj = j * n;
      let s = a[ri + j];
      for (let k = 0; k < j; k++) s -= l[ri + k] * l[rj + k];
      if (i === j) {
        // NaN fails this test too, so a poisoned matrix is reported instead of propagating.
        if (!(s > 0)) throw new NotPositiveDefiniteError(pivotOffset + i);
        l[ri + i] = Math.sqrt(s);
      } else {
        l[ri + j] = s / l[rj + j];
      }
    }
  }
  return l;
}

/** Inverse of a row-major lower-triangular n×n matrix (forward substitution per column). */
export function lowerInverseHost(l: ArrayLike<number>, n: number): Float64Array {
  const x = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    x[j * n + j] = 1 / l[j * n + j];
    for (let i = j + 1; i < n; i++) {
      let s = 0;
      for (let k = j; k < i; k++) s += l[i * n + k] * x[k * n + j];
      x[i * n + j] = -s / l[i * n + i];
    }
  }
  return x;
}

/** Row-major aᵀa for a [rows, n] array. */
export function gramHost(a: ArrayLike<number>, rows: number, n: number): Float64Array {
  const g = new Float64Array(n * n);
  for (let r = 0; r < rows; r++) {
    const o = r * n;
    for (let i = 0; i < n; i++) {
      const ai = a[o + i];
      if (ai === 0) continue;
      for (let j = 0; j < n; j++) g[i * n + j] += ai * a[o + j];
    }
  }
  return g;
}

/** (L⁻¹)ᵀL⁻¹ = (LLᵀ)⁻¹ from a lower factor. */
export function choleskyInverseHost(l: ArrayLike<number>, n: number): Float64Array {
  return gramHost(lowerInverseHost(l, n), n, n);
}

/** Row-major transpose of an n×n array. */
export function transposeHost(a: ArrayLike<number>, n: number): Float64Array {
  const t = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) t[j * n + i] = a[i * n + j];
  return t;
}
