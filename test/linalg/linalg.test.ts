import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../../src/tensor/backend.js';
import {
  cholesky,
  choleskyBlocked,
  choleskyInverse,
  choleskyInverseBlocked,
  gram,
  inverseUpperCholesky,
  inverseUpperCholeskyReversed,
  lowerTriangularInverse,
  NotPositiveDefiniteError,
  upperCholesky,
} from '../../src/linalg/index.js';
import { choleskyHost, choleskyInverseHost, gramHost, lowerInverseHost, transposeHost } from '../../src/linalg/host.js';
import { maxAbs, maxAbsDiff, randn, spd } from './random.js';

beforeAll(async () => {
  await initBackend({ backend: 'wasm' });
});

const SIZES = [1, 7, 64, 200, 300];
// float32 tolerances relative to the largest entry of the reference; the test matrices have
// condition numbers below ~50, so float32 blocked results agree to about 1e-6 relative.
const REL_TOL = 2e-5;

function relErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  return maxAbsDiff(got, want) / Math.max(maxAbs(want), 1e-30);
}

function upload(a: Float64Array, n: number): tf.Tensor2D {
  return tf.tensor2d(Float32Array.from(a), [n, n]);
}

function take(t: tf.Tensor): Float32Array {
  const d = t.dataSync() as Float32Array;
  t.dispose();
  return d;
}

describe('gram', () => {
  it('matches xᵀx in Float64', () => {
    const x = randn(37 * 19, 1);
    const got = take(gram(tf.tensor2d(x, [37, 19])));
    expect(relErr(got, gramHost(x, 37, 19))).toBeLessThan(1e-6);
  });

  it('rejects a non-matrix with the shape it got', () => {
    const v = tf.zeros([2, 2, 2]);
    expect(() => gram(v as tf.Tensor2D)).toThrow(/matrix \[n, k\], got shape \[2, 2, 2\]/);
    v.dispose();
  });

  it('dispatches to a registered LayerstreamGram kernel', () => {
    interface Wasm {
      makeOutput(shape: number[], dtype: string): tf.TensorInfo;
      typedArrayFromHeap(t: tf.TensorInfo): Float32Array;
    }
    const previous = tf.getKernel('LayerstreamGram', 'wasm');
    if (previous) tf.unregisterKernel('LayerstreamGram', 'wasm');
    tf.registerKernel({
      kernelName: 'LayerstreamGram',
      backendName: 'wasm',
      kernelFunc: ({ backend }) => {
        const out = (backend as unknown as Wasm).makeOutput([1, 1], 'float32');
        (backend as unknown as Wasm).typedArrayFromHeap(out).set([42]);
        return out;
      },
    });
    try {
      const x = tf.ones([3, 2]) as tf.Tensor2D;
      expect(Array.from(take(gram(x)))).toEqual([42]);
      x.dispose();
    } finally {
      tf.unregisterKernel('LayerstreamGram', 'wasm');
      if (previous) tf.registerKernel(previous);
    }
  });
});

describe.each(SIZES)('n = %i', (n) => {
  const A = spd(n, 100 + n);
  const Lref = choleskyHost(A, n);

  it.each([128, 16])('blocked cholesky (block %i) matches the Float64 reference', (blockSize) => {
    const a = upload(A, n);
    const L = take(choleskyBlocked(a, { blockSize }));
    a.dispose();
    expect(relErr(L, Lref)).toBeLessThan(REL_TOL);
    for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) expect(L[i * n + j]).toBe(0);
  });

  it('cholesky (registered kernel or blocked) matches the Float64 reference', () => {
    const a = upload(A, n);
    const L = take(cholesky(a));
    a.dispose();
    expect(relErr(L, Lref)).toBeLessThan(REL_TOL);
  });

  it('lowerTriangularInverse and choleskyInverse match the reference', () => {
    const l = upload(Lref, n);
    const X = take(lowerTriangularInverse(l, { blockSize: 16 }));
    const Ainv = take(choleskyInverseBlocked(l, { blockSize: 16 }));
    const Ainv2 = take(choleskyInverse(l));
    l.dispose();
    expect(relErr(X, lowerInverseHost(Lref, n))).toBeLessThan(REL_TOL);
    expect(relErr(Ainv, choleskyInverseHost(Lref, n))).toBeLessThan(REL_TOL);
    expect(relErr(Ainv2, choleskyInverseHost(Lref, n))).toBeLessThan(REL_TOL);
  });

  it('inverseUpperCholesky equals transpose(cholesky(H⁻¹))', () => {
    const Hinv = choleskyInverseHost(Lref, n);
    const Uref = transposeHost(choleskyHost(Hinv, n), n);
    const h = upload(A, n);
    const U = take(inverseUpperCholeskyReversed(h, { blockSize: 16 }));
    const U1 = take(inverseUpperCholesky(h));
    const hinv = upload(Hinv, n);
    const U2 = take(upperCholesky(hinv, { blockSize: 16 }));
    tf.dispose([h, hinv]);
    expect(relErr(U, Uref)).toBeLessThan(REL_TOL);
    expect(relErr(U1, Uref)).toBeLessThan(REL_TOL);
    expect(relErr(U2, Uref)).toBeLessThan(REL_TOL);
    for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) expect(U[i * n + j]).toBe(0);
  });
});

describe('not positive definite', () => {
  it.each([
    ['indefinite', [1, 2, 2, 1], 1],
    ['zero pivot', [0, 0, 0, 1], 0],
    ['NaN', [NaN, 0, 0, 1], 0],
  ])('%s matrix throws NotPositiveDefiniteError', (_label, values, pivot) => {
    const a = tf.tensor2d(values as number[], [2, 2]);
    const before = tf.memory().numTensors;
    let err: unknown;
    try {
      choleskyBlocked(a);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(NotPositiveDefiniteError);
    expect((err as NotPositiveDefiniteError).pivot).toBe(pivot);
    expect(tf.memory().numTensors).toBe(before);
    a.dispose();
  });

  it('is found in a later panel and reported with the global pivot', () => {
    const n = 40;
    const A = spd(n, 7);
    A[33 * n + 33] = -5;
    const a = upload(A, n);
    const before = tf.memory().numTensors;
    expect(() => choleskyBlocked(a, { blockSize: 16 })).toThrow(/pivot 33/);
    expect(() => cholesky(a)).toThrow(NotPositiveDefiniteError);
    expect(() => inverseUpperCholesky(a)).toThrow(NotPositiveDefiniteError);
    expect(() => inverseUpperCholeskyReversed(a, { blockSize: 16 })).toThrow(NotPositiveDefiniteError);
    expect(tf.memory().numTensors).toBe(before);
    a.dispose();
  });

  it('rejects non-square input naming the argument and shape', () => {
    const a = tf.zeros([2, 3]) as tf.Tensor2D;
    expect(() => cholesky(a)).toThrow(/'a' must be a square matrix \[n, n\], got shape \[2, 3\]/);
    a.dispose();
  });
});

describe('no leaks', () => {
  it('every op leaves only its result', () => {
    const n = 70;
    const a = upload(spd(n, 3), n);
    const x = tf.tensor2d(randn(20 * n, 4), [20, n]);
    const before = tf.memory().numTensors;
    const outs = [
      gram(x),
      choleskyBlocked(a, { blockSize: 16 }),
      cholesky(a),
      upperCholesky(a, { blockSize: 16 }),
      inverseUpperCholesky(a),
      inverseUpperCholeskyReversed(a, { blockSize: 16 }),
    ];
    const L = outs[1];
    outs.push(
      lowerTriangularInverse(L, { blockSize: 16 }),
      choleskyInverse(L),
      choleskyInverseBlocked(L, { blockSize: 16 }),
    );
    expect(tf.memory().numTensors).toBe(before + outs.length);
    tf.dispose(outs);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([a, x]);
  });
});
