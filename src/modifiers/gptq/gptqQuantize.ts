/**
 * GPTQ's math as pure functions (Frantar et al. 2022, "GPTQ: Accurate Post-Training Quantization
 * for Generative Pre-trained Transformers"; llm-compressor `gptq_quantize.py`, reference §3.2–§3.3).
 *
 * Shapes: W [rows = out_features, cols = in_features]; H, Hinv [cols, cols]; inputs [B, T, cols].
 * The per-column loop runs on host Float32Arrays, one row at a time (rows are independent inside a
 * block, so a row's block stays in cache); the between-block update is one rank-2 matMul on the device.
 */
import * as tf from '@tensorflow/tfjs-core';
import { gram } from '../../linalg/gram.js';
import { NotPositiveDefiniteError } from '../../linalg/errors.js';
import { inverseUpperCholesky } from '../../linalg/inverse.js';
import type { QuantizationArgs } from '../../quant/args.js';
import { fakeQuantizeScalar } from '../../quant/fakeQuant.js';
import { observeWeight } from '../../quant/observers.js';
import { quantRange } from '../../quant/qparams.js';

/** Fraction of exact zeros from which GPTQ keeps zeros at zero (llm-compressor SPARSITY_THRESHOLD). */
export const SPARSITY_THRESHOLD = 0.05;

/** A Hessian and the number of sequences it holds. */
export interface HessianAccumulation {
  /** (2/N)·Σ xxᵀ over every token of the N sequences seen so far, [cols, cols] float32. */
  H: tf.Tensor2D;
  /** N: sequences seen, counted as the leading dimension of each input (not tokens). */
  nSamples: number;
}

/**
 * Adds one batch of layer inputs to a Hessian (GPTQ §2, H = 2XXᵀ, normalised by the sample count
 * as llm-compressor does): H ← H·n/(n+B) + (√(2/(n+B))·X)ᵀ(√(2/(n+B))·X), X = inp as [B·T, cols].
 * A 2-D input counts as one sequence. Does not dispose `H`; the caller owns both.
 *
 * @example
 * let acc = accumulateHessian(null, 0, x);            // x: [B, T, C]
 * const next = accumulateHessian(acc.H, acc.nSamples, x2); acc.H.dispose(); acc = next;
 */
export function accumulateHessian(H: tf.Tensor2D | null, nSamples: number, inp: tf.Tensor): HessianAccumulation {
  if (inp.rank < 2) throw new Error(`accumulateHessian: 'inp' must be [B, T, C] or [T, C], got shape [${inp.shape.join(', ')}]`);
  const cols = inp.shape[inp.rank - 1];
  if (H && (H.shape[0] !== cols || H.shape[1] !== cols)) {
    throw new Error(`accumulateHessian: 'H' is [${H.shape.join(', ')}] but the input has ${cols} features; expected [${cols}, ${cols}]`);
  }
  const added = inp.rank === 2 ? 1 : inp.shape[0];
  const n = nSamples + added;
  const next = tf.tidy(() => {
    const X = tf.mul(tf.reshape(tf.cast(inp, 'float32'), [-1, cols]), Math.sqrt(2 / n)) as tf.Tensor2D;
    const batch = gram(X);
    return H ? (tf.add(tf.mul(H, nSamples / n), batch) as tf.Tensor2D) : batch;
  });
  return { H: next, nSamples: n };
}

/** Options of {@link quantizeWeight} (GPTQModifier's block_size and dampening_frac). */
export interface QuantizeWeightOptions {
  /** Columns per lazy batch (GPTQ §3, "Lazy Batch-Updates"). Default 128. */
  blockSize?: number;
  /** Damping λ as a fraction of mean(diag H) (GPTQ §3, "Cholesky Reformulation"). Default 0.01. */
  dampeningFrac?: number;
  /** Accumulates milliseconds per step, for benchmarks. */
  timings?: GPTQTimings;
}

/** Milliseconds per step of {@link quantizeWeight}, accumulated into. */
export interface GPTQTimings {
  observe: number;
  cholesky: number;
  inverse: number;
  loop: number;
}

/** What {@link quantizeWeight} returns; the caller owns `weight`. */
export interface GPTQResult {
  /** ½·Σ (w − q)² / U_ii², as llm-compressor logs it (depends on H's normalisation). */
  loss: number;
  /** Dequantized weight [rows, cols], in the original column order. The caller owns it. */
  weight: tf.Tensor2D;
  /** Scales in the strategy's shape `scaleShape`: [1], [rows, 1] or [rows, groups]. */
  scale: Float32Array;
  scaleShape: number[];
  /** Integer zero points, same shape as the scales (zeros when symmetric). */
  zeroPoint: Int32Array;
  /** actorder 'group' only: the group of each original column. */
  gIdx?: Int32Array;
  /** True when H did not factor and the module was rounded to nearest instead. */
  fellBackToRtn: boolean;
}

type Order = 'none' | 'static' | 'group';

function orderOf(args: QuantizationArgs): Order {
  if (args.strategy !== 'group' || args.actorder === null) return 'none';
  return args.actorder === 'group' || args.actorder === 'dynamic' ? 'group' : 'static';
}

function hostOf(t: tf.Tensor): Float32Array {
  const v = t.dataSync() as Float32Array;
  t.dispose();
  // cpu returns the tensor's own buffer; copy so later writes do not alias anything
  return v.slice();
}

/**
 * Quantizes W with second-order error feedback (GPTQ Algorithm 1), exactly as llm-compressor's
 * `quantize_weight`: qparams from min/max (static actorder: of the unpermuted W), columns in
 * descending diag(H) order when actorder is set, dead inputs (diag H = 0) zeroed, damping, the
 * upper Cholesky factor of H⁻¹, blocks of `blockSize` columns with per-column error feedback,
 * zeros kept at zero when ≥ 5 % of W is zero. A Hessian that does not factor falls back to
 * round-to-nearest (`fellBackToRtn`). Neither W nor H is disposed.
 */
export function quantizeWeight(
  W: tf.Tensor2D,
  H: tf.Tensor2D,
  args: QuantizationArgs,
  options: QuantizeWeightOptions = {},
): GPTQResult {
  const blockSize = options.blockSize ?? 128;
  const percdamp = options.dampeningFrac ?? 0.01;
  if (W.rank !== 2) throw new Error(`quantizeWeight: 'W' must be [rows, cols], got shape [${W.shape.join(', ')}]`);
  const [rows, cols] = W.shape;
  if (H.rank !== 2 || H.shape[0] !== cols || H.shape[1] !== cols) {
    throw new Error(`quantizeWeight: 'H' must be [${cols}, ${cols}] for W [${rows}, ${cols}], got [${H.shape.join(', ')}]`);
  }
  if (!Number.isInteger(blockSize) || blockSize < 1) throw new Error(`quantizeWeight: blockSize must be a positive integer, got ${blockSize}`);
  if (!(percdamp >= 0)) throw new Error(`quantizeWeight: dampeningFrac must be ≥ 0, got ${percdamp}`);
  if (args.type !== 'int') throw new Error(`quantizeWeight: only int weights are supported, got type '${args.type}'`);
  if (!['tensor', 'channel', 'group'].includes(args.strategy)) {
    throw new Error(`quantizeWeight: strategy '${args.strategy}' is not supported; use tensor, channel or group`);
  }
  // checked here, not only in observeWeight, so that no permuted copy of W is alive when it throws
  if (args.strategy === 'group' && !(args.group_size && args.group_size >= 1)) {
    throw new Error(`quantizeWeight: strategy 'group' needs a positive group_size, got ${args.group_size}; set group_size (e.g. 128)`);
  }
  const timings = options.timings;
  const clock = (key: keyof GPTQTimings, t0: number) => {
    if (timings) timings[key] += performance.now() - t0;
  };
  const { qMin, qMax } = quantRange(args);
  const order = orderOf(args);
  const gs = args.group_size ?? 0;

  // H on the host: the permutation and damping below are O(n²) copies, and doing them here keeps
  // the device peak at H plus one matrix (a big MLP's Hessian is hundreds of MiB).
  const Hsrc = H.dataSync() as Float32Array;
  const diag = Float32Array.from({ length: cols }, (_, j) => Hsrc[j * cols + j]);
  // perm[j] = original column of permuted column j (descending diag H, ties by index)
  const perm = Int32Array.from({ length: cols }, (_, j) => j);
  if (order !== 'none') perm.sort((a, b) => diag[b] - diag[a] || a - b);

  // §3.3 step 2: qparams, and the group of each permuted column
  let t0 = performance.now();
  const Wp = order === 'none' ? tf.clone(W) : tf.tidy(() => tf.gather(W, tf.tensor1d(perm, 'int32'), 1));
  const qp = observeWeight(order === 'group' ? Wp : W, args);
  const scaleShape = qp.scale.shape;
  const scale = hostOf(qp.scale);
  const zeroPoint = Int32Array.from(hostOf(qp.zeroPoint));
  const groups = args.strategy === 'group' ? (scaleShape[1] ?? 1) : 1;
  const gIdxPerm = Int32Array.from({ length: cols }, (_, j) =>
    args.strategy !== 'group' ? 0 : Math.floor((order === 'static' ? perm[j] : j) / gs),
  );
  clock('observe', t0);

  // steps 3–4: zeros to keep, dead inputs
  const Wh = hostOf(Wp);
  let zeros = 0;
  for (let k = 0; k < Wh.length; k++) if (Math.abs(Wh[k]) <= 1e-8) zeros++;
  const mask = zeros / Wh.length >= SPARSITY_THRESHOLD ? Float32Array.from(Wh, (w) => (Math.abs(w) <= 1e-8 ? 0 : 1)) : null;
  const diagP = Float32Array.from(perm, (c) => diag[c]);
  let diagSum = 0;
  for (let j = 0; j < cols; j++) {
    if (diagP[j] === 0) {
      diagP[j] = 1;
      for (let r = 0; r < rows; r++) Wh[r * cols + j] = 0;
    }
    diagSum += diagP[j];
  }

  // step 5: damping and the upper Cholesky factor of H⁻¹
  const damp = Math.fround(percdamp * Math.fround(diagSum / cols));
  const Hh = new Float32Array(cols * cols);
  for (let i = 0; i < cols; i++) {
    const src = perm[i] * cols;
    const dst = i * cols;
    for (let j = 0; j < cols; j++) Hh[dst + j] = Hsrc[src + perm[j]];
    Hh[dst + i] = Math.fround(diagP[i] + damp);
  }
  const Hd = tf.tensor2d(Hh, [cols, cols]);
  let U: tf.Tensor2D | null = null;
  let Uh: Float32Array | null = null;
  try {
    U = inverseUpperCholesky(Hd, {}, timings);
    Uh = U.dataSync() as Float32Array;
    for (let j = 0; j < cols; j++) if (!Number.isFinite(Uh[j * cols + j])) throw new NotPositiveDefiniteError(j, 'H⁻¹');
  } catch (e) {
    if (!(e instanceof NotPositiveDefiniteError)) throw e;
    U?.dispose();
    U = null;
    Uh = null;
  } finally {
    Hd.dispose();
  }

  // step 6: the block loop. Left-looking: a block receives the error feedback of all earlier blocks
  // at once, E·U[:i1, i1:i2] (E = their scaled errors, [rows, i1]), which equals the reference's
  // per-block W[:, i2:] −= Err1·Hinv[i1:i2, i2:] without rewriting the whole tail every block.
  t0 = performance.now();
  const Q = new Float32Array(rows * cols);
  let loss = 0;
  let E: tf.Tensor2D | null = null;
  try {
    for (let i1 = 0; i1 < cols; i1 += blockSize) {
      const i2 = Math.min(i1 + blockSize, cols);
      const b = i2 - i1;
      const W1 = new Float32Array(rows * b);
      for (let r = 0; r < rows; r++) W1.set(Wh.subarray(r * cols + i1, r * cols + i2), r * b);
      if (E && U) {
        const upd = hostOf(tf.tidy(() => tf.matMul(E!, tf.slice(U!, [0, i1], [i1, b]))));
        for (let r = 0; r < rows; r++) {
          for (let j = 0; j < b; j++) W1[r * b + j] -= mask ? upd[r * b + j] * mask[r * cols + i1 + j] : upd[r * b + j];
        }
      }
      const Err1 = new Float32Array(rows * b);
      loss += quantizeBlock({ W1, Err1, Q, rows, cols, i1, b, Uh, mask, scale, zeroPoint, gIdxPerm, groups, qMin, qMax, perTensor: args.strategy === 'tensor' });
      if (U && i2 < cols) {
        const e1 = tf.tensor2d(Err1, [rows, b]);
        const next: tf.Tensor2D = E ? tf.concat([E, e1], 1) : e1;
        if (E) tf.dispose([E, e1]);
        E = next;
      }
    }
  } finally {
    E?.dispose();
    U?.dispose();
  }
  clock('loop', t0);

  // step 7: back to the original column order
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let j = 0; j < cols; j++) out[r * cols + perm[j]] = Q[r * cols + j];
  let gIdx: Int32Array | undefined;
  if (order === 'group') {
    gIdx = new Int32Array(cols);
    for (let j = 0; j < cols; j++) gIdx[perm[j]] = gIdxPerm[j];
  }
  return {
    loss: loss / 2,
    weight: tf.tensor2d(out, [rows, cols]),
    scale,
    scaleShape,
    zeroPoint,
    gIdx,
    fellBackToRtn: Uh === null,
  };
}

interface BlockArgs {
  /** The block's columns of W after earlier blocks' feedback, [rows, b]; updated in place. */
  W1: Float32Array;
  /** Receives the scaled errors (w − q)/U_ii, [rows, b]. */
  Err1: Float32Array;
  /** Receives the dequantized values, [rows, cols] (permuted order). */
  Q: Float32Array;
  rows: number;
  cols: number;
  i1: number;
  b: number;
  /** The upper factor U of H⁻¹, [cols, cols]; null rounds to nearest. */
  Uh: Float32Array | null;
  mask: Float32Array | null;
  scale: Float32Array;
  zeroPoint: Int32Array;
  gIdxPerm: Int32Array;
  groups: number;
  qMin: number;
  qMax: number;
  perTensor: boolean;
}

/**
 * GPTQ Algorithm 1's inner loop for one block, one row at a time (rows are independent within a
 * block): quantize column i, then feed its scaled error into the block's later columns. Returns
 * Σ((w − q)/U_ii)² of the block. A separate function so the JIT sees monomorphic arguments.
 */
function quantizeBlock(a: BlockArgs): number {
  const { W1, Err1, Q, rows, cols, i1, b, Uh, mask, scale, zeroPoint, gIdxPerm, groups, qMin, qMax, perTensor } = a;
  let loss = 0;
  for (let r = 0; r < rows; r++) {
    const o = r * b;
    const qRow = perTensor ? 0 : r * groups;
    for (let i = 0; i < b; i++) {
      const w = W1[o + i];
      const qi = qRow + gIdxPerm[i1 + i];
      const q = fakeQuantizeScalar(w, scale[qi], zeroPoint[qi], qMin, qMax);
      Q[r * cols + i1 + i] = q;
      if (Uh === null) {
        loss += (w - q) * (w - q);
        continue;
      }
      const rowU = (i1 + i) * cols + i1;
      const e = Math.fround((w - q) / Uh[rowU + i]);
      loss += e * e;
      Err1[o + i] = e;
      if (mask !== null) {
        const m = r * cols + i1;
        for (let j = i + 1; j < b; j++) W1[o + j] -= e * Uh[rowU + j] * mask[m + j];
      } else {
        let j = i + 1;
        // unrolled by 4: V8 does not vectorise, but fewer loop tests help this hot loop
        for (; j + 3 < b; j += 4) {
          W1[o + j] -= e * Uh[rowU + j];
          W1[o + j + 1] -= e * Uh[rowU + j + 1];
          W1[o + j + 2] -= e * Uh[rowU + j + 2];
          W1[o + j + 3] -= e * Uh[rowU + j + 3];
        }
        for (; j < b; j++) W1[o + j] -= e * Uh[rowU + j];
      }
    }
  }
  return loss;
}
