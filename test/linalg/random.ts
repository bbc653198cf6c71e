/** Deterministic test data: a seeded PRNG and a few matrix builders. */

/** mulberry32: a small seeded uniform [0, 1) generator. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Standard normal samples (Box–Muller). */
export function randn(count: number, seed: number): Float32Array {
  const u = rng(seed);
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    out[i] = Math.sqrt(-2 * Math.log(u() + 1e-12)) * Math.cos(2 * Math.PI * u());
  }
  return out;
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
