import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../../../src/tensor/backend.js';
import type { QuantizationArgs } from '../../../src/quant/args.js';
import { accumulateHessian, quantizeWeight, type GPTQResult } from '../../../src/modifiers/gptq/gptqQuantize.js';
import { observeWeight } from '../../../src/quant/observers.js';
import { fakeQuantizeScalar, fakeQuantizeWeight } from '../../../src/quant/fakeQuant.js';
import { parseQuantizationArgs } from '../../../src/quant/parse.js';
import { choleskyHost, choleskyInverseHost, gramHost, transposeHost } from '../../../src/linalg/host.js';
import { maxAbsDiff, randn } from '../../linalg/random.js';

beforeAll(async () => {
  await initBackend({ backend: 'wasm' });
});

// B sequences of T tokens with C correlated features (mixing makes error feedback matter)
const B = 2;
const T = 40;
const C = 64;
const ROWS = 12;

function calibration(seed: number): Float32Array {
  const z = randn(B * T * C, seed);
  const mix = randn(C * C, seed + 1);
  const x = new Float32Array(B * T * C);
  for (let t = 0; t < B * T; t++) {
    for (let j = 0; j < C; j++) {
      let s = z[t * C + j];
      for (let k = 0; k < 8; k++) s += 0.5 * z[t * C + ((j + k) % C)] * mix[j * C + k];
      x[t * C + j] = s;
    }
  }
  return x;
}

const X = calibration(1);
const Wdata = randn(ROWS * C, 2);

const argsOf = (raw: Record<string, unknown>): QuantizationArgs => parseQuantizationArgs({ num_bits: 4, ...raw });
const CASES: [string, QuantizationArgs][] = [
  ['tensor', argsOf({})],
  ['channel', argsOf({ strategy: 'channel' })],
  ['group 16, actorder none', argsOf({ group_size: 16 })],
  ['group 16, actorder static', argsOf({ group_size: 16, actorder: 'static' })],
  ['group 16, actorder group', argsOf({ group_size: 16, actorder: 'group' })],
  ['group 24 asymmetric (partial last group), static', argsOf({ group_size: 24, symmetric: false, actorder: 'static' })],
];

function hessian(x: Float32Array = X): tf.Tensor2D {
  const inp = tf.tensor3d(x, [B, T, C]);
  const { H } = accumulateHessian(null, 0, inp);
  inp.dispose();
  return H;
}

/** ||X·Wᵀ − X·Qᵀ||² on the calibration tokens, in Float64. */
function outputError(q: ArrayLike<number>): number {
  let err = 0;
  for (let t = 0; t < B * T; t++) {
    for (let r = 0; r < ROWS; r++) {
      let d = 0;
      for (let j = 0; j < C; j++) d += X[t * C + j] * (Wdata[r * C + j] - q[r * C + j]);
      err += d * d;
    }
  }
  return err;
}

function rtn(args: QuantizationArgs): Float32Array {
  const W = tf.tensor2d(Wdata, [ROWS, C]);
  const qp = observeWeight(W, args);
  const Q = fakeQuantizeWeight(W, qp.scale, qp.zeroPoint, args);
  const out = Q.dataSync() as Float32Array;
  tf.dispose([W, qp.scale, qp.zeroPoint, Q]);
  return out;
}

function gptq(args: QuantizationArgs, H?: tf.Tensor2D, opts = { blockSize: 16 }): GPTQResult & { q: Float32Array } {
  const W = tf.tensor2d(Wdata, [ROWS, C]);
  const h = H ?? hessian();
  const res = quantizeWeight(W, h, args, opts);
  const q = res.weight.dataSync() as Float32Array;
  res.weight.dispose();
  W.dispose();
  if (!H) h.dispose();
  return { ...res, q };
}

describe('accumulateHessian', () => {
  it('is (2/N)·Σ xxᵀ over all tokens with N counting sequences, across batches', () => {
    const half = (B * T * C) / 2;
    const a = tf.tensor3d(X.subarray(0, half), [1, T, C]);
    const b = tf.tensor3d(X.subarray(half), [1, T, C]);
    const first = accumulateHessian(null, 0, a);
    const second = accumulateHessian(first.H, first.nSamples, b);
    expect(second.nSamples).toBe(2);
    const want = gramHost(X, B * T, C).map((v) => v * (2 / B));
    const got = second.H.dataSync();
    expect(maxAbsDiff(got, want) / Math.max(...want)).toBeLessThan(1e-5);
    tf.dispose([a, b, first.H, second.H]);
  });

  it('counts a 2-D input as one sequence and checks shapes', () => {
    const x = tf.ones([5, 3]);
    const r = accumulateHessian(null, 0, x);
    expect(r.nSamples).toBe(1);
    for (const v of r.H.dataSync()) expect(v).toBeCloseTo(10, 5);
    const y = tf.ones([1, 2, 4]);
    expect(() => accumulateHessian(r.H, 1, y)).toThrow(/'H' is \[3, 3\] but the input has 4 features/);
    tf.dispose([x, y, r.H]);
  });
});

describe.each(CASES)('quantizeWeight, %s', (_label, args) => {
  const res = (() => {
    let r: ReturnType<typeof gptq> | undefined;
    return () => (r ??= gptq(args));
  })();

  it('has a smaller output error than round-to-nearest', () => {
    const g = outputError(res().q);
    const n = outputError(rtn(args));
    expect(res().fellBackToRtn).toBe(false);
    expect(g).toBeLessThan(0.8 * n);
  });

  it('puts every weight on its quantization grid', () => {
    const { q, scale, zeroPoint, scaleShape, gIdx } = res();
    const groups = args.strategy === 'group' ? scaleShape[1] : 1;
    expect(scaleShape).toEqual(args.strategy === 'tensor' ? [1] : args.strategy === 'channel' ? [ROWS, 1] : [ROWS, Math.ceil(C / args.group_size!)]);
    for (let r = 0; r < ROWS; r++) {
      for (let j = 0; j < C; j++) {
        const g = args.strategy === 'group' ? (gIdx ? gIdx[j] : Math.floor(j / args.group_size!)) : 0;
        const k = args.strategy === 'tensor' ? 0 : r * groups + g;
        const code = q[r * C + j] / scale[k] + zeroPoint[k];
        expect(Math.abs(code - Math.round(code))).toBeLessThan(1e-3);
        expect(Math.round(code)).toBeGreaterThanOrEqual(-8);
        expect(Math.round(code)).toBeLessThanOrEqual(7);
      }
    }
  });

  it('takes qparams as the reference does for its actorder', () => {
    const { scale, gIdx } = res();
    const W = tf.tensor2d(Wdata, [ROWS, C]);
    const qp = observeWeight(W, args);
    const plain = qp.scale.dataSync();
    tf.dispose([W, qp.scale, qp.zeroPoint]);
    if (args.actorder === 'group') {
      // qparams of the permuted W: a permutation of columns, each group gets group_size of them
      expect(gIdx).toBeDefined();
      const counts = new Map<number, number>();
      for (const g of gIdx!) counts.set(g, (counts.get(g) ?? 0) + 1);
      expect([...counts.values()].every((c) => c === args.group_size)).toBe(true);
    } else {
      // none, static, tensor, channel: min/max of the unpermuted W; no g_idx
      expect(gIdx).toBeUndefined();
      expect(maxAbsDiff(scale, plain)).toBe(0);
    }
  });
});

describe('quantizeWeight against a Float64 reference of GPTQ', () => {
  it.each([
    ['channel', argsOf({ strategy: 'channel' }), 16],
    ['group 16', argsOf({ group_size: 16 }), 64],
    ['group 16, blocks of 7', argsOf({ group_size: 16 }), 7],
  ])('%s: same codes and loss as one unblocked pass', (_l, args, blockSize) => {
    const H = hessian();
    const got = gptq(args, H, { blockSize });
    // naive Algorithm 1 in Float64: full H⁻¹ upper factor, one column at a time
    const h = Float64Array.from(H.dataSync());
    H.dispose();
    let mean = 0;
    for (let j = 0; j < C; j++) mean += h[j * C + j] / C;
    for (let j = 0; j < C; j++) h[j * C + j] += 0.01 * mean;
    const U = transposeHost(choleskyHost(choleskyInverseHost(choleskyHost(h, C), C), C), C);
    const w = Float64Array.from(Wdata);
    const q = new Float64Array(ROWS * C);
    let loss = 0;
    const groups = args.strategy === 'group' ? C / args.group_size! : 1;
    for (let j = 0; j < C; j++) {
      for (let r = 0; r < ROWS; r++) {
        const k = r * groups + (args.strategy === 'group' ? Math.floor(j / args.group_size!) : 0);
        q[r * C + j] = fakeQuantizeScalar(w[r * C + j], got.scale[k], got.zeroPoint[k], -8, 7);
        const e = (w[r * C + j] - q[r * C + j]) / U[j * C + j];
        loss += (e * e) / 2;
        for (let i = j + 1; i < C; i++) w[r * C + i] -= e * U[j * C + i];
      }
    }
    let same = 0;
    for (let k = 0; k < q.length; k++) if (Math.abs(q[k] - got.q[k]) < 1e-6) same++;
    // float32 vs Float64 can flip a code that sits on a rounding boundary; nearly all agree
    expect(same / q.length).toBeGreaterThan(0.98);
    expect(Math.abs(got.loss - loss) / loss).toBeLessThan(0.02);
  });
});

describe('quantizeWeight edge cases', () => {
  const args = argsOf({ strategy: 'channel' });

  it('zeroes dead inputs (diag H = 0)', () => {
    const x = X.slice();
    for (let t = 0; t < B * T; t++) x[t * C + 5] = 0;
    const H = hessian(x);
    const res = gptq(args, H);
    H.dispose();
    for (let r = 0; r < ROWS; r++) expect(res.q[r * C + 5]).toBe(0);
    expect(res.fellBackToRtn).toBe(false);
  });

  it('falls back to round-to-nearest when H does not factor', () => {
    const H = tf.tidy(() => tf.mul(tf.eye(C), -1) as tf.Tensor2D);
    const res = gptq(args, H);
    H.dispose();
    expect(res.fellBackToRtn).toBe(true);
    expect(maxAbsDiff(res.q, rtn(args))).toBe(0);
  });

  it('loss is ½·Σ(w − q)²/U_ii²: with H = 2I it is ½·2.02·Σ(w − q)²', () => {
    const H = tf.tidy(() => tf.mul(tf.eye(C), 2) as tf.Tensor2D);
    const res = gptq(args, H);
    H.dispose();
    const q = rtn(args);
    expect(maxAbsDiff(res.q, q)).toBe(0);
    let sq = 0;
    for (let k = 0; k < q.length; k++) sq += (Wdata[k] - q[k]) ** 2;
    expect(res.loss).toBeCloseTo(0.5 * 2.02 * sq, 3);
  });

  it('keeps zeros at zero when at least 5 % of W is zero', () => {
    const w = Wdata.slice();
    for (let k = 0; k < w.length; k += 7) w[k] = 0;
    const W = tf.tensor2d(w, [ROWS, C]);
    const H = hessian();
    const res = quantizeWeight(W, H, args, { blockSize: 16 });
    const q = res.weight.dataSync();
    for (let k = 0; k < w.length; k += 7) expect(q[k]).toBe(0);
    tf.dispose([W, H, res.weight]);
  });

  it('rejects unsupported args with the fix', () => {
    const W = tf.zeros([2, 4]) as tf.Tensor2D;
    const H = tf.eye(4) as tf.Tensor2D;
    expect(() => quantizeWeight(W, H, { ...args, strategy: 'token' })).toThrow(/strategy 'token'.*tensor, channel or group/);
    const small = tf.eye(3) as tf.Tensor2D;
    expect(() => quantizeWeight(W, small, args)).toThrow(/'H' must be \[4, 4\]/);
    tf.dispose([W, H, small]);
  });

  it('leaks nothing', () => {
    const H = hessian();
    const W = tf.tensor2d(Wdata, [ROWS, C]);
    const before = tf.memory().numTensors;
    for (const [, a] of CASES) quantizeWeight(W, H, a, { blockSize: 16 }).weight.dispose();
    const bad = tf.tidy(() => tf.mul(tf.eye(C), -1) as tf.Tensor2D);
    quantizeWeight(W, bad, args).weight.dispose();
    bad.dispose();
    const x = tf.tensor3d(X, [B, T, C]);
    const a = accumulateHessian(null, 0, x);
    const b = accumulateHessian(a.H, a.nSamples, x);
    tf.dispose([x, a.H, b.H]);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([H, W]);
  });
});
