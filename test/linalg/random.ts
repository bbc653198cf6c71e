/** Deterministic test data: seeded normal samples and a few matrix builders. */
import { gaussian, mulberry32 } from '../../src/models/random.js';

/** Standard normal samples from the project's seeded generator. */
export function randn(count: number, seed: number): Float32Array {
  const next = gaussian(mulberry32(seed));
  return Float32Array.from({ length: count }, next);
}

/** A well-conditioned SPD matrix GᵀG/m + ridge·I as row-major Float64 (n×n). */
export function spd(n: number, seed: number, ridge = 0.1): Float64Array {
  const m = 2 * n + 4;
  const g = randn(m * n, seed);
  const a = new Float64Array(n * n);
  for (let r = 0; r < m; r++) {
    for (let i = 0; i < n; i++) {
      const gi = g[r * n + i];
      for (let j = 0; j < n; j++) a[i * n + j] += (gi * g[r * n + j]) / m;
    }
  }
  for (let i = 0; i < n; i++) a[i * n + i] += ridge;
  return a;
}

export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}
