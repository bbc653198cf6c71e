/**
 * Weight observers: scale and zero point for a weight [rows, cols] in the strategy's shape
 * (reference §3.4): tensor → [1], channel → [rows, 1], group → [rows, ⌈cols/group_size⌉] (the last
 * group may be partial).
 *
 * - `minmax` (also `memoryless_minmax`, `static_minmax`, and the default when `observer` is null):
 *   plain min/max of what it is given. For a weight observed once, the moving average of the
 *   reference's `minmax` reduces to this.
 * - `mse` (also `memoryless_mse`): shrinks the range by p = 1 − i/grid for i < maxshrink·grid and
 *   keeps, per group, the p with the least Σ|x − q(x)|^norm; stops after `patience` steps in which
 *   no group improved. observer_kwargs: maxshrink 0.2, grid 100, patience 5, norm 2.4.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { QuantizationArgs } from './args.js';
import { fakeQuantize } from './fakeQuant.js';
import { calculateQParams, type QParams } from './qparams.js';

/** Observer names that reduce to plain min/max for a weight observed once. */
export const MINMAX_OBSERVERS = ['minmax', 'memoryless_minmax', 'static_minmax'] as const;
/** Observer names of the shrink search. */
export const MSE_OBSERVERS = ['mse', 'memoryless_mse'] as const;
/** Every observer name accepted for weights. */
export const WEIGHT_OBSERVERS: readonly string[] = [...MINMAX_OBSERVERS, ...MSE_OBSERVERS];

/** observer_kwargs of the mse observer. */
export interface MseOptions {
  maxshrink: number;
  grid: number;
  patience: number;
  norm: number;
}

/** llm-compressor's defaults for the mse observer. */
export const MSE_DEFAULTS: MseOptions = { maxshrink: 0.2, grid: 100, patience: 5, norm: 2.4 };

/** The qparams shape a strategy gives a [rows, cols] weight. */
export function qparamShape(rows: number, cols: number, args: QuantizationArgs): number[] {
  switch (args.strategy) {
    case 'tensor':
      return [1];
    case 'channel':
      return [rows, 1];
    case 'group':
      return [rows, Math.ceil(cols / groupSize(args))];
    default:
      throw new Error(
        `observeWeight: strategy '${args.strategy}' is not supported for weights; use tensor, channel or group`,
      );
  }
}

function groupSize(args: QuantizationArgs): number {
  const gs = args.group_size;
  if (!gs || gs < 1) throw new Error(`observeWeight: strategy 'group' needs a positive group_size, got ${gs}`);
  return gs;
}

/**
 * Scale and zero point of `W` [rows, cols] for `args`. With a `gIdx` (group of each column) the
 * groups are gathered by it rather than taken as contiguous columns. Caller owns the result.
 */
export function observeWeight(W: tf.Tensor2D, args: QuantizationArgs, gIdx?: Int32Array): QParams {
  if (W.rank !== 2) throw new Error(`observeWeight: 'W' must be [rows, cols], got shape [${W.shape.join(', ')}]`);
  const [rows, cols] = W.shape;
  const shape = qparamShape(rows, cols, args);
  const observe = observerFor(args);
  if (args.strategy === 'tensor') return reshaped(observe(tf.reshape(W, [1, 1, rows * cols]), args, true), shape);
  if (args.strategy === 'channel') return reshaped(observe(tf.reshape(W, [rows, 1, cols]), args, true), shape);

  const gs = groupSize(args);
  const full = Math.floor(cols / gs);
  const rest = cols - full * gs;
  const parts: QParams[] = [];
  const src = gIdx ? gatherByGroup(W, gIdx, gs) : W;
  try {
    if (full > 0) {
      parts.push(observe(tf.tidy(() => tf.reshape(tf.slice(src, [0, 0], [rows, full * gs]), [rows, full, gs])), args, true));
    }
    if (rest > 0) {
      parts.push(observe(tf.tidy(() => tf.reshape(tf.slice(src, [0, full * gs], [rows, rest]), [rows, 1, rest])), args, true));
    }
  } finally {
    if (src !== W) src.dispose();
  }
  const out = tf.tidy(() => ({
    scale: tf.reshape(tf.concat(parts.map((p) => p.scale), 1), shape),
    zeroPoint: tf.reshape(tf.concat(parts.map((p) => p.zeroPoint), 1), shape),
  }));
  for (const p of parts) tf.dispose([p.scale, p.zeroPoint]);
  return out;
}

/** Columns reordered so each group's columns are contiguous (argsort of gIdx, stable). */
function gatherByGroup(W: tf.Tensor2D, gIdx: Int32Array, gs: number): tf.Tensor2D {
  const cols = W.shape[1];
  if (gIdx.length !== cols) throw new Error(`observeWeight: gIdx has ${gIdx.length} entries, W has ${cols} columns`);
  const order = Array.from({ length: cols }, (_, j) => j).sort((a, b) => gIdx[a] - gIdx[b] || a - b);
  for (let j = 0; j < cols; j++) {
    if (gIdx[order[j]] !== Math.floor(j / gs)) {
      throw new Error(`observeWeight: gIdx must give every group exactly group_size (${gs}) columns`);
    }
  }
  return tf.tidy(() => tf.gather(W, tf.tensor1d(Int32Array.from(order), 'int32'), 1));
}

type Observe = (x: tf.Tensor3D, args: QuantizationArgs, dispose?: boolean) => QParams;

function observerFor(args: QuantizationArgs): Observe {
  const name = args.observer ?? 'minmax';
  if ((MINMAX_OBSERVERS as readonly string[]).includes(name)) return minMax;
  if ((MSE_OBSERVERS as readonly string[]).includes(name)) return mse;
  throw new Error(`observeWeight: unknown observer '${name}'. Known observers: ${WEIGHT_OBSERVERS.join(', ')}`);
}

function reshaped(q: QParams, shape: number[]): QParams {
  const out = tf.tidy(() => ({ scale: tf.reshape(q.scale, shape), zeroPoint: tf.reshape(q.zeroPoint, shape) }));
  tf.dispose([q.scale, q.zeroPoint]);
  return out;
}

/** Min/max over the last axis of x [R, G, S] → qparams [R, G, 1]. Disposes x when asked. */
function minMax(x: tf.Tensor3D, args: QuantizationArgs, dispose = false): QParams {
  try {
    return tf.tidy(() => {
      const lo = tf.min(x, 2, true);
      const hi = tf.max(x, 2, true);
      return calculateQParams(lo, hi, args);
    });
  } finally {
    if (dispose) x.dispose();
  }
}

function mseOptions(args: QuantizationArgs): MseOptions {
  const o = { ...MSE_DEFAULTS };
  for (const key of Object.keys(o) as (keyof MseOptions)[]) {
    const v = args.observer_kwargs[key];
    if (v !== undefined) {
      if (typeof v !== 'number' || !Number.isFinite(v)) {
        throw new Error(`observer_kwargs.${key} must be a number, got ${JSON.stringify(v)}`);
      }
      o[key] = v;
    }
  }
  return o;
}

/** The shrink search of the reference's mse observer over the last axis of x [R, G, S]. */
function mse(x: tf.Tensor3D, args: QuantizationArgs, dispose = false): QParams {
  const o = mseOptions(args);
  const absMin = tf.min(x, 2, true);
  const absMax = tf.max(x, 2, true);
  let best = tf.fill(absMin.shape, 3.4028234663852886e38);
  let bestMin = tf.onesLike(absMin);
  let bestMax = tf.zerosLike(absMax);
  try {
    let noImprove = 0;
    for (let i = 0; i < Math.floor(o.maxshrink * o.grid); i++) {
      const p = 1 - i / o.grid;
      const next = tf.tidy(() => {
        const lo = tf.mul(absMin, p);
        const hi = tf.mul(absMax, p);
        const q = calculateQParams(lo, hi, args);
        const err = tf.sum(tf.pow(tf.abs(tf.sub(fakeQuantize(x, q.scale, q.zeroPoint, args), x)), o.norm), 2, true);
        const better = tf.less(err, best);
        return {
          any: tf.any(better),
          best: tf.where(better, err, best),
          lo: tf.where(better, lo, bestMin),
          hi: tf.where(better, hi, bestMax),
        };
      });
      const improved = next.any.dataSync()[0] !== 0;
      next.any.dispose();
      tf.dispose([best, bestMin, bestMax]);
      best = next.best;
      bestMin = next.lo;
      bestMax = next.hi;
      if (improved) {
        noImprove = 0;
      } else if (++noImprove >= o.patience) {
        break;
      }
    }
    return calculateQParams(bestMin, bestMax, args);
  } finally {
    tf.dispose([absMin, absMax, best, bestMin, bestMax]);
    if (dispose) x.dispose();
  }
}
