/**
 * Scale and zero point from observed ranges, as compressed-tensors `calculate_qparams` computes
 * them (reference §3.4): zero is always representable, the symmetric scale divides the absolute
 * maximum by half the integer range (int4: 7.5, int8: 127.5), and scales never go below float32 eps.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { QuantizationArgs } from './args.js';

/** torch.finfo(torch.float32).eps, the smallest scale compressed-tensors allows. */
export const FLOAT32_EPS = 1.1920928955078125e-7;

/** The representable range: int b bits → [−2^(b−1), 2^(b−1)−1]; fp8 e4m3 → ±448; fp4 → ±6. */
export function quantRange(args: Pick<QuantizationArgs, 'num_bits' | 'type'>): { qMin: number; qMax: number } {
  if (args.type === 'int') {
    if (!Number.isInteger(args.num_bits) || args.num_bits < 1 || args.num_bits > 32) {
      throw new Error(`quantRange: num_bits must be an integer in 1..32 for int, got ${args.num_bits}`);
    }
    return { qMin: -(2 ** (args.num_bits - 1)), qMax: 2 ** (args.num_bits - 1) - 1 };
  }
  if (args.num_bits === 8) return { qMin: -448, qMax: 448 };
  if (args.num_bits === 4) return { qMin: -6, qMax: 6 };
  throw new Error(`quantRange: float quantization supports 8 (e4m3) or 4 (e2m1) bits, got ${args.num_bits}`);
}

// A type alias (not an interface) so it can be returned from tf.tidy.
export type QParams = {
  /** float32, in the strategy's shape (tensor [1], channel [rows, 1], group [rows, groups]). */
  scale: tf.Tensor;
  /** float32 holding integers in [qMin, qMax]; zeros when symmetric. */
  zeroPoint: tf.Tensor;
};

/**
 * Scale and zero point for ranges `minVals`/`maxVals` (same shape). The caller owns the result.
 *
 * @example
 * // int4 symmetric, absmax 1.5 → scale 0.2
 * calculateQParams(tf.tensor1d([-1.5]), tf.tensor1d([0.3]), args)
 */
export function calculateQParams(minVals: tf.Tensor, maxVals: tf.Tensor, args: QuantizationArgs): QParams {
  const { qMin, qMax } = quantRange(args);
  const bitRange = qMax - qMin;
  return tf.tidy(() => {
    const lo = tf.minimum(minVals, 0);
    const hi = tf.maximum(maxVals, 0);
    if (args.symmetric) {
      const absMax = tf.maximum(tf.abs(lo), tf.abs(hi));
      const scale = tf.maximum(tf.div(absMax, bitRange / 2), FLOAT32_EPS);
      return { scale, zeroPoint: tf.zerosLike(scale) };
    }
    const scale = tf.maximum(tf.div(tf.sub(hi, lo), bitRange), FLOAT32_EPS);
    let zeroPoint = tf.clipByValue(tf.sub(qMin, tf.div(lo, scale)), qMin, qMax);
    // torch.round, like tf.round, rounds half to even.
    if (args.type === 'int') zeroPoint = tf.round(zeroPoint);
    return { scale, zeroPoint };
  });
}
