import { createRequire } from 'node:module';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend, tf } from '../../src/tensor/backend.js';
import {
  acceleratorInfo,
  blockSwap,
  CHOLESKY_INVERSE_KERNEL,
  CHOLESKY_KERNEL,
  disableAccelerator,
  enableAccelerator,
  GRAM_KERNEL,
} from '../../src/tensor/accel.js';
import { NotPositiveDefiniteError } from '../../src/linalg/errors.js';
import { cholesky, choleskyInverse, gram } from '../../src/linalg/index.js';

// Taken before anything can replace it: the reference for the restore test.
const stockBatchMatMul = tf.getKernel(tf.BatchMatMul, 'wasm');
const available = enableAccelerator().active;
disableAccelerator();

/** Deterministic values in [-1, 1) from a small LCG, so failures reproduce. */
function values(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

function rand(shape: number[], seed: number): tf.Tensor {
  return tf.tensor(values(tf.util.sizeFromShape(shape), seed), shape);
}

/** A = G·Gᵀ/n + I, comfortably positive definite. */
function spd(n: number, seed: number): tf.Tensor2D {
  return tf.tidy(() => {
    const g = rand([n, n], seed) as tf.Tensor2D;
    return tf.add(tf.div(tf.matMul(g, tf.transpose(g)), n), tf.eye(n)) as tf.Tensor2D;
  });
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** Runs `f` with the accelerator on and then off; returns both results' values and shapes. */
function bothPaths(f: () => tf.Tensor): { accel: Float32Array; stock: Float32Array; shapes: number[][] } {
  enableAccelerator();
  const a = f();
  disableAccelerator();
  const s = f();
  enableAccelerator();
  const out = { accel: a.dataSync() as Float32Array, stock: s.dataSync() as Float32Array, shapes: [a.shape, s.shape] };
  a.dispose();
  s.dispose();
  return out;
}

function runKernel(name: string, x: tf.Tensor): tf.Tensor {
  return tf.engine().runKernel(name, { x }, {}) as tf.Tensor;
}

beforeAll(async () => {
  await initBackend({ backend: 'wasm' });
});

describe('stock path', () => {
  it('restores the stock kernels when disabled, and tf.matMul still works', () => {
    enableAccelerator();
    disableAccelerator();
    expect(acceleratorInfo().active).toBe(false);
    expect(tf.getKernel(tf.BatchMatMul, 'wasm')).toBe(stockBatchMatMul);
    expect(tf.getKernel(GRAM_KERNEL, 'wasm')).toBeUndefined();
    const before = tf.memory().numTensors;
    const c = tf.tidy(() => tf.matMul(tf.tensor2d([[1, 2], [3, 4]]), tf.tensor2d([[5], [6]])));
    expect(Array.from(c.dataSync())).toEqual([17, 39]);
    c.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('initBackend leaves the stock kernels in place with LAYERSTREAM_ACCEL=0', async () => {
    disableAccelerator();
    await initBackend({ backend: 'cpu', warn: () => {} });
    process.env.LAYERSTREAM_ACCEL = '0';
    try {
      const info = await initBackend({ backend: 'wasm' });
      expect(info.acceleratedKernels).toEqual([]);
      expect(acceleratorInfo().reason).toMatch(/LAYERSTREAM_ACCEL=0/);
      expect(tf.getKernel(tf.BatchMatMul, 'wasm')).toBe(stockBatchMatMul);
    } finally {
      delete process.env.LAYERSTREAM_ACCEL;
    }
  });

  it.skipIf(!available)('initBackend on wasm enables the accelerator and reports it', async () => {
    await initBackend({ backend: 'cpu', warn: () => {} });
    const info = await initBackend({ backend: 'wasm' });
    expect(info.acceleratedKernels).toContain(tf.BatchMatMul);
    expect(info.threads).toBe(acceleratorInfo().threads);
    disableAccelerator();
  });

  it('names the variable and the fix for a bad thread count', () => {
    const saved = process.env.LAYERSTREAM_THREADS;
    process.env.LAYERSTREAM_THREADS = 'two';
    try {
      expect(() => enableAccelerator()).toThrow(/LAYERSTREAM_THREADS='two'.*positive integer/);
    } finally {
      if (saved === undefined) delete process.env.LAYERSTREAM_THREADS;
      else process.env.LAYERSTREAM_THREADS = saved;
    }
  });
});

describe('blockSwap', () => {
  it('reduces transposes to [P, A, B, Q] → [P, B, A, Q]', () => {
    expect(blockSwap([3, 5], [1, 0])).toEqual([1, 3, 5, 1]);
    expect(blockSwap([2, 7, 4, 8], [0, 2, 1, 3])).toEqual([2, 7, 4, 8]); // attention heads
    expect(blockSwap([2, 4, 7, 8], [0, 1, 3, 2])).toEqual([8, 7, 8, 1]); // kᵀ per head
    expect(blockSwap([3, 1, 5], [2, 1, 0])).toEqual([1, 3, 5, 1]); // size-1 axes dropped
    expect(blockSwap([2, 3, 4], [1, 2, 0])).toEqual([1, 2, 12, 1]); // merged axes
  });

  it('leaves other permutations and no-ops to the stock kernel', () => {
    expect(blockSwap([2, 3, 4], [2, 1, 0])).toBeUndefined();
    expect(blockSwap([2, 3], [0, 1])).toBeUndefined();
    expect(blockSwap([1, 3], [1, 0])).toBeUndefined();
  });
});

describe.skipIf(!available)('accelerated kernels (addon built)', () => {
  beforeAll(() => {
    enableAccelerator();
  });
  afterAll(() => {
    disableAccelerator();
  });

  it('reports its kernels, BLAS and threads', () => {
    const info = enableAccelerator({ threads: 1 });
    expect(info.threads).toBe(1);
    const again = enableAccelerator();
    expect(again.active).toBe(true);
    expect(again.kernels).toContain(tf.BatchMatMul);
    expect(again.kernels).toContain(GRAM_KERNEL);
    expect(again.kernels).toContain(tf.Transpose);
    expect(again.blas).not.toBe('');
    expect(again.threads).toBeGreaterThanOrEqual(1);
  });

  it('matches stock matMul for every transpose combination', () => {
    const [m, k, n] = [37, 53, 29];
    for (const [tA, tB] of [[false, false], [true, false], [false, true], [true, true]]) {
      const a = rand(tA ? [k, m] : [m, k], 1) as tf.Tensor2D;
      const b = rand(tB ? [n, k] : [k, n], 2) as tf.Tensor2D;
      const r = bothPaths(() => tf.matMul(a, b, tA, tB));
      expect(r.shapes[0]).toEqual([m, n]);
      expect(r.shapes[0]).toEqual(r.shapes[1]);
      expect(maxAbsDiff(r.accel, r.stock)).toBeLessThan(1e-5);
      tf.dispose([a, b]);
    }
  });

  it('matches stock matMul on batched and broadcast operands', () => {
    const cases: [number[], number[], boolean, boolean][] = [
      [[4, 17, 23], [4, 23, 11], false, false],
      [[4, 23, 17], [4, 11, 23], true, true],
      [[4, 17, 23], [23, 11], false, false], // activations @ weight
      [[4, 17, 23], [1, 11, 23], false, true],
      [[1, 17, 23], [4, 23, 11], false, false],
      [[2, 3, 17, 23], [2, 3, 23, 11], false, false],
      [[2, 1, 17, 23], [1, 3, 23, 11], false, false], // falls back to the stock kernel
    ];
    for (const [sa, sb, tA, tB] of cases) {
      const a = rand(sa, 3), b = rand(sb, 4);
      const r = bothPaths(() => tf.matMul(a, b, tA, tB));
      expect(r.shapes[0]).toEqual(r.shapes[1]);
      expect(maxAbsDiff(r.accel, r.stock)).toBeLessThan(1e-5);
      tf.dispose([a, b]);
    }
  });

  it('matches the stock Transpose for every permutation of small tensors', () => {
    const shapes = [[5, 7], [3, 1, 6], [2, 3, 4, 5], [4, 1, 3, 2]];
    const permutations = (n: number): number[][] =>
      n === 1 ? [[0]] : permutations(n - 1).flatMap((p) => Array.from({ length: n }, (_, i) => [...p.slice(0, i), n - 1, ...p.slice(i)]));
    for (const shape of shapes) {
      const x = rand(shape, 16);
      for (const perm of permutations(shape.length)) {
        const r = bothPaths(() => tf.transpose(x, perm));
        expect(r.shapes[0]).toEqual(r.shapes[1]);
        expect(Array.from(r.accel)).toEqual(Array.from(r.stock));
      }
      x.dispose();
    }
  });

  it('keeps tfjs errors for mismatched inner dimensions', () => {
    const a = tf.zeros([3, 4]), b = tf.zeros([5, 6]);
    expect(() => tf.matMul(a, b)).toThrow(/inner shapes/);
    tf.dispose([a, b]);
  });

  it("computes XᵀX with SYRK: symmetric and equal to stock matMul(Xᵀ, X)", () => {
    const x = rand([300, 70], 5) as tf.Tensor2D;
    const h = runKernel(GRAM_KERNEL, x);
    expect(h.shape).toEqual([70, 70]);
    const got = h.dataSync();
    disableAccelerator();
    const want = tf.tidy(() => tf.matMul(tf.transpose(x), x)).dataSync();
    enableAccelerator();
    expect(maxAbsDiff(got, want)).toBeLessThan(1e-4);
    for (let i = 0; i < 70; i++) for (let j = 0; j < i; j++) expect(got[i * 70 + j]).toBe(got[j * 70 + i]);
    tf.dispose([x, h]);
  });

  it('factors an SPD matrix: lower L, zeros above, L·Lᵀ = A', () => {
    const n = 64;
    const a = spd(n, 6);
    const l = runKernel(CHOLESKY_KERNEL, a);
    const lv = l.dataSync();
    for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) expect(lv[i * n + j]).toBe(0);
    const back = tf.tidy(() => tf.matMul(l, tf.transpose(l)));
    expect(maxAbsDiff(back.dataSync(), a.dataSync())).toBeLessThan(1e-5);
    tf.dispose([a, l, back]);
  });

  it('inverts from the factor: symmetric A⁻¹ with A·A⁻¹ = I', () => {
    const n = 64;
    const a = spd(n, 7);
    const l = runKernel(CHOLESKY_KERNEL, a);
    const inv = runKernel(CHOLESKY_INVERSE_KERNEL, l);
    const iv = inv.dataSync();
    for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) expect(iv[i * n + j]).toBe(iv[j * n + i]);
    const eye = tf.tidy(() => tf.matMul(a, inv));
    const identity = tf.tidy(() => tf.eye(n));
    expect(maxAbsDiff(eye.dataSync(), identity.dataSync())).toBeLessThan(1e-4);
    tf.dispose([a, l, inv, eye, identity]);
  });

  it("gives src/linalg's Gram, Cholesky and inverse the same results as its stock fallbacks", () => {
    const n = 150; // more than one block of the blocked fallback
    const x = rand([200, n], 14) as tf.Tensor2D;
    const a = spd(n, 15);
    const h = bothPaths(() => gram(x));
    expect(maxAbsDiff(h.accel, h.stock)).toBeLessThan(1e-4);
    const l = bothPaths(() => cholesky(a));
    expect(maxAbsDiff(l.accel, l.stock)).toBeLessThan(1e-5);
    const lt = tf.tensor2d(l.stock, [n, n]);
    const inv = bothPaths(() => choleskyInverse(lt));
    expect(maxAbsDiff(inv.accel, inv.stock)).toBeLessThan(1e-4);
    tf.dispose([x, a, lt]);
  });

  it('throws NotPositiveDefiniteError with the failing pivot, and leaks nothing', () => {
    const a = tf.tensor2d([[4, 0, 0], [0, 1, 2], [0, 2, 1]]);
    const before = tf.memory().numTensors;
    let error: unknown;
    try {
      runKernel(CHOLESKY_KERNEL, a);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(NotPositiveDefiniteError);
    expect((error as NotPositiveDefiniteError).pivot).toBe(2);
    expect(tf.memory().numTensors).toBe(before);
    a.dispose();
  });

  it('rejects bad input with a message naming the kernel and the fix', () => {
    const x = tf.zeros([2, 3, 4]);
    expect(() => runKernel(GRAM_KERNEL, x)).toThrow(/LayerstreamGram: input 'x' must be a float32 tensor of rank 2, got float32 \[2, 3, 4\]/);
    const y = tf.zeros([3, 4]);
    expect(() => runKernel(CHOLESKY_KERNEL, y)).toThrow(/square float32 matrix/);
    tf.dispose([x, y]);
  });

  it('never writes into its inputs, even when both operands are one tensor', () => {
    const x = rand([40, 30], 8) as tf.Tensor2D;
    const a = spd(30, 9);
    const x0 = x.dataSync().slice(), a0 = a.dataSync().slice();
    const outs = [tf.matMul(x, x, true, false), runKernel(GRAM_KERNEL, x), runKernel(CHOLESKY_KERNEL, a)];
    outs.push(runKernel(CHOLESKY_INVERSE_KERNEL, outs[2]));
    const l0 = outs[2].dataSync().slice();
    outs.push(runKernel(CHOLESKY_INVERSE_KERNEL, outs[2]));
    expect(Array.from(x.dataSync())).toEqual(Array.from(x0));
    expect(Array.from(a.dataSync())).toEqual(Array.from(a0));
    expect(Array.from(outs[2].dataSync())).toEqual(Array.from(l0));
    tf.dispose([x, a, ...outs]);
  });

  it('leaks no tensors', () => {
    const before = tf.memory().numTensors;
    tf.tidy(() => {
      const x = rand([20, 12], 10);
      tf.matMul(x, x, true, false);
      tf.matMul(tf.reshape(x, [2, 10, 12]), x, false, true);
      tf.transpose(tf.reshape(x, [4, 5, 12]), [1, 0, 2]);
      runKernel(CHOLESKY_INVERSE_KERNEL, runKernel(CHOLESKY_KERNEL, spd(12, 11)));
      runKernel(GRAM_KERNEL, x);
    });
    expect(tf.memory().numTensors).toBe(before);
  });

  it('stays correct after the wasm heap grows between calls', () => {
    const wasm = (tf.backend() as unknown as { wasm: { HEAPU8: Uint8Array } }).wasm;
    const a = rand([64, 48], 12) as tf.Tensor2D, b = rand([48, 32], 13) as tf.Tensor2D;
    const first = tf.matMul(a, b);
    const heapBefore = wasm.HEAPU8.buffer;
    // Larger than the whole heap, so the next allocation must grow it and detach old views.
    const big = tf.zeros([heapBefore.byteLength / 4 + 1024]);
    expect(wasm.HEAPU8.buffer).not.toBe(heapBefore);
    expect(heapBefore.byteLength).toBe(0); // the old buffer is detached
    const second = tf.matMul(a, b);
    expect(maxAbsDiff(second.dataSync(), first.dataSync())).toBe(0);
    tf.dispose([a, b, first, big, second]);
  });

  it('makes the addon refuse detached and short arrays', () => {
    const addon = createRequire(import.meta.url)('../../addon/build/Release/layerstream_blas.node') as {
      gram(x: Float32Array, h: Float32Array, rows: number, cols: number): void;
    };
    const buffer = new ArrayBuffer(64);
    const view = new Float32Array(buffer);
    structuredClone(buffer, { transfer: [buffer] });
    expect(() => addon.gram(view, new Float32Array(16), 4, 4)).toThrow(RangeError);
    expect(() => addon.gram(new Float32Array(16), new Float32Array(15), 4, 4)).toThrow(/needs 16/);
  });
});
