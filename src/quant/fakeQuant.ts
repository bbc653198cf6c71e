/**
 * Quantize / dequantize arithmetic of compressed-tensors (`lifecycle/forward.py`, reference §3.4):
 * x/scale + zp, clamped to the range FIRST and then rounded half to even; dequantized as
 * (q − zp)·scale. Clamping first is what maps symmetric int4's +7.5 to +7.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { QuantizationArgs } from './args.js';
import { quantRange } from './qparams.js';

function checkInt(args: QuantizationArgs, op: string): void {
  if (args.type !== 'int') {
    throw new Error(`${op}: only int quantization is implemented, got type '${args.type}' (fp8/fp4 need a float cast)`);
  }
}

/** Integer codes (as float32) of `x`; `scale`/`zeroPoint` broadcast against `x`. Caller owns the result. */
export function quantize(x: tf.Tensor, scale: tf.Tensor, zeroPoint: tf.Tensor, args: QuantizationArgs): tf.Tensor {
  checkInt(args, 'quantize');
  const { qMin, qMax } = quantRange(args);
  return tf.tidy(() => tf.round(tf.clipByValue(tf.add(tf.div(x, scale), zeroPoint), qMin, qMax)));
}

/** (q − zp)·scale. Caller owns the result. */
export function dequantize(q: tf.Tensor, scale: tf.Tensor, zeroPoint: tf.Tensor): tf.Tensor {
  return tf.tidy(() => tf.mul(tf.sub(q, zeroPoint), scale));
}

/** dequantize(quantize(x)): the values a quantized tensor stands for. Caller owns the result. */
export function fakeQuantize(x: tf.Tensor, scale: tf.Tensor, zeroPoint: tf.Tensor, args: QuantizationArgs): tf.Tensor {
  return tf.tidy(() => dequantize(quantize(x, scale, zeroPoint, args), scale, zeroPoint));
}

/** Round half to even, as torch.round and tf.round do. */
export function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d < 0.5) return f;
  if (d > 0.5) return f + 1;
  return f % 2 === 0 ? f : f + 1;
}

/**
 * One value through quantize + dequantize in float32 arithmetic, for host loops (GPTQ's column
 * loop). Matches {@link fakeQuantize} bit for bit.
 */
export function fakeQuantizeScalar(w: number, scale: number, zeroPoint: number, qMin: number, qMax: number): number {
  let v = Math.fround(Math.fround(w / scale) + zeroPoint);
  v = roundHalfEven(v < qMin ? qMin : v > qMax ? qMax : v);
  return Math.fround(Math.fround(v - zeroPoint) * scale);
}

/**
 * Expands per-group qparams [rows, groups] to one column per weight column [rows, cols], using
 * `gIdx` (the group of each column; default ⌊col / group_size⌋). Tensor and channel qparams
 * broadcast as they are. Caller owns the result.
 */
export function expandQParam(
  q: tf.Tensor,
  cols: number,
  args: QuantizationArgs,
  gIdx?: Int32Array,
): tf.Tensor {
  if (args.strategy !== 'group') return tf.clone(q);
  const gs = args.group_size;
  if (!gs || gs < 1) throw new Error(`expandQParam: group strategy needs a positive group_size, got ${gs}`);
  const idx = gIdx ?? Int32Array.from({ length: cols }, (_, j) => Math.floor(j / gs));
  return tf.tidy(() => tf.gather(q, tf.tensor1d(idx, 'int32'), 1));
}

/**
 * Fake-quantizes a weight [rows, cols] with qparams in the strategy's shape (tensor [1], channel
 * [rows, 1], group [rows, groups]). Caller owns the result.
 */
export function fakeQuantizeWeight(
  W: tf.Tensor2D,
  scale: tf.Tensor,
  zeroPoint: tf.Tensor,
  args: QuantizationArgs,
  gIdx?: Int32Array,
): tf.Tensor2D {
  const cols = W.shape[1];
  return tf.tidy(() => {
    const s = expandQParam(scale, cols, args, gIdx);
    const z = expandQParam(zeroPoint, cols, args, gIdx);
    return fakeQuantize(W, s, z, args) as tf.Tensor2D;
  });
}
