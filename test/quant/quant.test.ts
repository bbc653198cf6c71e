import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../../src/tensor/backend.js';
import type { QuantizationArgs } from '../../src/quant/args.js';
import { calculateQParams, FLOAT32_EPS, quantRange } from '../../src/quant/qparams.js';
import {
  dequantize,
  fakeQuantize,
  fakeQuantizeScalar,
  fakeQuantizeWeight,
  quantize,
  roundHalfEven,
} from '../../src/quant/fakeQuant.js';
import { observeWeight } from '../../src/quant/observers.js';
import { parseConfigGroups, parseQuantizationArgs } from '../../src/quant/parse.js';
import { presetScheme, PRESET_NAMES } from '../../src/quant/presets.js';
import { randn } from '../linalg/random.js';

beforeAll(async () => {
  await initBackend({ backend: 'wasm' });
});

const args = (over: Partial<QuantizationArgs> = {}): QuantizationArgs => ({
  ...parseQuantizationArgs({ num_bits: 4 }),
  ...over,
});

function host(t: tf.Tensor): number[] {
  const v = Array.from(t.dataSync());
  t.dispose();
  return v;
}

function qp(min: number[], max: number[], a: QuantizationArgs): { scale: number[]; zp: number[] } {
  const lo = tf.tensor1d(min);
  const hi = tf.tensor1d(max);
  const q = calculateQParams(lo, hi, a);
  tf.dispose([lo, hi]);
  return { scale: host(q.scale), zp: host(q.zeroPoint) };
}

describe('quantRange', () => {
  it('gives the signed integer ranges', () => {
    expect(quantRange({ num_bits: 4, type: 'int' })).toEqual({ qMin: -8, qMax: 7 });
    expect(quantRange({ num_bits: 8, type: 'int' })).toEqual({ qMin: -128, qMax: 127 });
    expect(quantRange({ num_bits: 8, type: 'float' })).toEqual({ qMin: -448, qMax: 448 });
  });
});

describe('calculateQParams', () => {
  it('symmetric: absmax / (bit_range / 2): int4 /7.5, int8 /127.5', () => {
    expect(qp([-1.5], [0.3], args()).scale[0]).toBeCloseTo(0.2, 7);
    expect(qp([-0.1], [2.55], args({ num_bits: 8 })).scale[0]).toBeCloseTo(0.02, 7);
    expect(qp([-1.5], [0.3], args()).zp).toEqual([0]);
  });

  it('keeps zero representable and never goes below float32 eps', () => {
    // an all-positive range is widened to include 0; an all-zero range gets the eps scale
    const a = qp([0.5, 0], [2, 0], args({ symmetric: false }));
    expect(a.scale[0]).toBeCloseTo(2 / 15, 7);
    expect(a.zp[0]).toBe(-8);
    expect(a.scale[1]).toBe(Math.fround(FLOAT32_EPS));
    expect(qp([0], [0], args()).scale[0]).toBe(Math.fround(FLOAT32_EPS));
  });

  it('asymmetric: scale (max−min)/bit_range, zp round(clamp(q_min − min/scale))', () => {
    const a = qp([-1], [3], args({ symmetric: false }));
    expect(a.scale[0]).toBeCloseTo(4 / 15, 7);
    expect(a.zp[0]).toBe(-4); // −8 + 3.75 = −4.25 → −4
    const b = qp([-3], [0], args({ symmetric: false }));
    expect(b.zp[0]).toBe(7); // −8 + 15 = 7
  });
});

describe('quantize', () => {
  const a4 = args();
  let s: tf.Scalar;
  let z: tf.Scalar;
  beforeAll(() => {
    s = tf.scalar(0.25);
    z = tf.scalar(0);
  });

  it('clamps first, then rounds half to even', () => {
    const x = tf.tensor1d([1.875, -1.875, 0.625, 0.875, -0.625, 100, -100]);
    // 7.5 → clamp 7; −7.5 → −8 (half to even); 2.5 → 2; 3.5 → 4; −2.5 → −2
    expect(host(quantize(x, s, z, a4))).toEqual([7, -8, 2, 4, -2, 7, -8]);
    const q = quantize(x, s, z, a4);
    expect(host(dequantize(q, s, z))).toEqual([1.75, -2, 0.5, 1, -0.5, 1.75, -2]);
    q.dispose();
    x.dispose();
  });

  it('tf.round and roundHalfEven round half to even', () => {
    const x = tf.tensor1d([0.5, 1.5, 2.5, -0.5, -1.5, -2.5]);
    const zeroSign = (v: number[]) => v.map((x) => x + 0);
    expect(zeroSign(host(tf.round(x)))).toEqual([0, 2, 2, 0, -2, -2]);
    expect(zeroSign([0.5, 1.5, 2.5, -0.5, -1.5, -2.5].map(roundHalfEven))).toEqual([0, 2, 2, 0, -2, -2]);
    x.dispose();
  });

  it('fakeQuantizeScalar matches fakeQuantize bit for bit', () => {
    const v = randn(2000, 5);
    const aa = args({ symmetric: false });
    const scale = tf.scalar(0.0731);
    const zp = tf.scalar(-3);
    const x = tf.tensor1d(v);
    const got = host(fakeQuantize(x, scale, zp, aa));
    const s0 = Math.fround(0.0731);
    for (let i = 0; i < v.length; i++) expect(fakeQuantizeScalar(v[i], s0, -3, -8, 7)).toBe(got[i]);
    tf.dispose([scale, zp, x]);
  });

  it('refuses float types with a message naming them', () => {
    const x = tf.tensor1d([1]);
    expect(() => quantize(x, s, z, args({ type: 'float', num_bits: 8 }))).toThrow(/type 'float'/);
    x.dispose();
  });
});

describe('observeWeight', () => {
  const rows = 3;
  const cols = 10;
  const data = randn(rows * cols, 9);

  it.each([
    ['tensor', { strategy: 'tensor' as const }, [1]],
    ['channel', { strategy: 'channel' as const }, [3, 1]],
    ['group (last group partial)', { strategy: 'group' as const, group_size: 4 }, [3, 3]],
  ])('%s gives compressed-tensors shapes and min/max scales', (_l, over, shape) => {
    const W = tf.tensor2d(data, [rows, cols]);
    const a = args(over);
    const q = observeWeight(W, a);
    expect(q.scale.shape).toEqual(shape);
    expect(q.zeroPoint.shape).toEqual(shape);
    const scale = host(q.scale);
    q.zeroPoint.dispose();
    W.dispose();
    // check each qparam against the absmax of its slice of W
    const slice = (i: number): number[] => {
      if (a.strategy === 'tensor') return Array.from(data);
      if (a.strategy === 'channel') return Array.from(data.subarray(i * cols, (i + 1) * cols));
      const r = Math.floor(i / 3);
      const g = i % 3;
      return Array.from(data.subarray(r * cols + g * 4, r * cols + Math.min(cols, g * 4 + 4)));
    };
    scale.forEach((sc, i) => {
      const absMax = Math.max(...slice(i).map(Math.abs));
      expect(sc).toBeCloseTo(absMax / 7.5, 6);
    });
  });

  it('group with gIdx observes the columns each group owns', () => {
    const W = tf.tensor2d(data.subarray(0, 8), [1, 8]);
    const gIdx = Int32Array.from([1, 0, 1, 0, 0, 1, 1, 0]);
    const q = observeWeight(W, args({ strategy: 'group', group_size: 4 }), gIdx);
    const scale = host(q.scale);
    q.zeroPoint.dispose();
    W.dispose();
    for (const g of [0, 1]) {
      const cols = [...gIdx.keys()].filter((j) => gIdx[j] === g);
      expect(scale[g]).toBeCloseTo(Math.max(...cols.map((j) => Math.abs(data[j]))) / 7.5, 6);
    }
  });

  it('mse shrinks the range to reduce Σ|x − q(x)|^2.4, matching a host search', () => {
    const v = randn(256, 21);
    v[7] = 9; // an outlier makes clipping worthwhile
    const W = tf.tensor2d(v, [1, 256]);
    const a = args({ observer: 'mse', strategy: 'tensor' });
    const q = observeWeight(W, a);
    const scale = host(q.scale)[0];
    q.zeroPoint.dispose();
    W.dispose();
    // host reference of the shrink search: p = 1 − i/100, i < 20, patience 5
    const absMax = Math.max(...Array.from(v).map(Math.abs));
    let best = Infinity;
    let bestScale = 0;
    let noImprove = 0;
    for (let i = 0; i < 20; i++) {
      const s = Math.max(Math.fround(Math.fround((1 - i / 100) * absMax) / 7.5), Math.fround(FLOAT32_EPS));
      let err = 0;
      for (const x of v) err += Math.abs(fakeQuantizeScalar(x, s, 0, -8, 7) - x) ** 2.4;
      if (err < best) {
        best = err;
        bestScale = s;
        noImprove = 0;
      } else if (++noImprove >= 5) break;
    }
    expect(bestScale).toBeLessThan(absMax / 7.5);
    expect(scale).toBeCloseTo(bestScale, 5);
  });

  it('rejects an unknown observer and an unsupported strategy', () => {
    const W = tf.zeros([2, 2]) as tf.Tensor2D;
    expect(() => observeWeight(W, args({ observer: 'nope' }))).toThrow(/unknown observer 'nope'.*minmax/);
    expect(() => observeWeight(W, args({ strategy: 'token' }))).toThrow(/strategy 'token'/);
    W.dispose();
  });

  it('fakeQuantizeWeight puts every value on its group grid', () => {
    const W = tf.tensor2d(data, [rows, cols]);
    const a = args({ strategy: 'group', group_size: 4, symmetric: false });
    const q = observeWeight(W, a);
    const Q = host(fakeQuantizeWeight(W, q.scale, q.zeroPoint, a));
    const scale = host(q.scale);
    const zp = host(q.zeroPoint);
    W.dispose();
    Q.forEach((value, k) => {
      const r = Math.floor(k / cols);
      const g = Math.floor((k % cols) / 4);
      const code = value / scale[r * 3 + g] + zp[r * 3 + g];
      expect(Math.abs(code - Math.round(code))).toBeLessThan(1e-3);
      expect(Math.round(code)).toBeGreaterThanOrEqual(-8);
      expect(Math.round(code)).toBeLessThanOrEqual(7);
    });
  });

  it('leaks nothing', () => {
    const W = tf.tensor2d(data, [rows, cols]);
    const before = tf.memory().numTensors;
    for (const over of [{}, { strategy: 'channel' as const }, { strategy: 'group' as const, group_size: 4 }]) {
      for (const observer of ['minmax', 'mse']) {
        const a = args({ ...over, observer });
        const q = observeWeight(W, a);
        const f = fakeQuantizeWeight(W, q.scale, q.zeroPoint, a);
        tf.dispose([q.scale, q.zeroPoint, f]);
      }
    }
    expect(tf.memory().numTensors).toBe(before);
    W.dispose();
  });
});

describe('presets', () => {
  it('W4A16 is int4 symmetric group 128 with the minmax observer', () => {
    expect(presetScheme('W4A16', ['Linear'])).toEqual({
      targets: ['Linear'],
      weights: {
        num_bits: 4, type: 'int', symmetric: true, group_size: 128, strategy: 'group', block_structure: null,
        dynamic: false, actorder: null, observer: 'minmax', observer_kwargs: {},
      },
      input_activations: null,
      output_activations: null,
    });
  });

  it('W4A16_ASYM, W8A16, W8A8 = INT8, W4A8', () => {
    expect(presetScheme('W4A16_ASYM', ['Linear']).weights?.symmetric).toBe(false);
    const w8 = presetScheme('W8A16', ['Linear']).weights!;
    expect([w8.num_bits, w8.strategy, w8.group_size]).toEqual([8, 'channel', null]);
    const w8a8 = presetScheme('W8A8', ['Linear']);
    expect(presetScheme('int8', ['Linear'])).toEqual(w8a8);
    expect(w8a8.input_activations).toMatchObject({ num_bits: 8, strategy: 'token', dynamic: true, observer: null });
    const w4a8 = presetScheme('W4A8', ['Linear']);
    expect([w4a8.weights?.num_bits, w4a8.weights?.group_size, w4a8.input_activations?.dynamic]).toEqual([4, 128, true]);
    expect(PRESET_NAMES).toEqual(['W4A16', 'W4A16_ASYM', 'W8A16', 'W8A8', 'INT8', 'W4A8']);
  });

  it('unknown and float presets say what is supported', () => {
    expect(() => presetScheme('W3A3', [])).toThrow(/unknown quantization scheme 'W3A3'. Supported schemes: W4A16/);
    expect(() => presetScheme('FP8', [])).toThrow(/needs float quantization/);
  });
});

describe('parsing config groups', () => {
  it('infers the strategy from group_size', () => {
    expect(parseQuantizationArgs({}).strategy).toBe('tensor');
    expect(parseQuantizationArgs({ group_size: 128 }).strategy).toBe('group');
    expect(parseQuantizationArgs({ group_size: -1 }).strategy).toBe('channel');
    expect(parseQuantizationArgs({ actorder: true, group_size: 64 }).actorder).toBe('group');
  });

  it('parses the reference config_groups example', () => {
    const groups = parseConfigGroups({
      group_0: { targets: ['Linear'], weights: { num_bits: 4, type: 'int', symmetric: true, strategy: 'group', group_size: 128 } },
    });
    expect(groups.group_0.weights).toEqual(presetScheme('W4A16', ['Linear']).weights);
    expect(groups.group_0.input_activations).toBeNull();
  });

  it.each([
    [{ weights: { num_bits: 'abc' } }, /group_0.weights.num_bits: expected a positive integer, got "abc"/],
    [{ weights: { strategy: 'group' } }, /group_0.weights.group_size: strategy 'group' needs a positive group_size/],
    [{ weights: { strategy: 'channel', actorder: 'static' } }, /actorder 'static' needs strategy 'group'/],
    [{ weights: { bits: 4 } }, /group_0.weights.bits: unknown field 'bits'.*Allowed fields: num_bits/],
    [{ weights: { group_size: 0 } }, /group_size: expected a positive integer, or -1/],
    [{ weights: {} , targetz: 1 }, /unknown field 'targetz'/],
  ])('rejects %j with a message naming the path', (scheme, message) => {
    expect(() => parseConfigGroups({ group_0: { targets: ['Linear'], ...scheme } })).toThrow(message);
  });

  it('requires targets', () => {
    expect(() => parseConfigGroups({ g: { weights: {} } })).toThrow(/config_groups.g.targets: is required/);
  });
});
