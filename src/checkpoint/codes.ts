/**
 * The integer arithmetic of compressed-tensors on host arrays (reference §3.4): which scale and
 * zero point each weight element uses, weight → int codes, and int codes → dense weight.
 *
 * Shapes: W is [rows, cols] = [out_features, in_features], row-major. Scales and zero points are
 * [1] (tensor), [rows, 1] (channel) or [rows, G] (group, G = ceil(cols / group_size)).
 */
import type { QuantizationArgs, QuantizationStrategy } from '../quant/args.js';
import { roundHalfEven } from '../quant/fakeQuant.js';
import { quantRange } from '../quant/qparams.js';

/** Which qparam element each weight element (r, c) uses: `(perRow ? r·groups : 0) + columnGroup[c]`. */
export interface QParamLayout {
  rows: number;
  cols: number;
  /** Scale columns: 1 for tensor and channel, G for group. */
  groups: number;
  perRow: boolean;
  /** The group of each original column (g_idx for actorder 'group', else c / group_size). */
  columnGroup: Int32Array;
}

/**
 * Works out and checks the qparam layout of one weight. `where` names the weight in errors.
 * `gIdx` (actorder 'group') overrides the contiguous column → group map.
 */
export function qparamLayout(
  where: string,
  strategy: QuantizationStrategy,
  groupSize: number | null,
  rows: number,
  cols: number,
  scaleShape: readonly number[],
  gIdx?: Int32Array,
): QParamLayout {
  const numel = scaleShape.reduce((a, d) => a * d, 1);
  const shapeText = `[${scaleShape.join(', ')}]`;
  const columnGroup = new Int32Array(cols);
  if (strategy === 'tensor') {
    if (numel !== 1) throw new Error(`${where}: tensor strategy needs a scale of shape [1], got ${shapeText}`);
    return { rows, cols, groups: 1, perRow: false, columnGroup };
  }
  if (strategy === 'channel') {
    if (numel !== rows || scaleShape[0] !== rows) {
      throw new Error(`${where}: channel strategy needs a scale of shape [${rows}, 1], got ${shapeText}`);
    }
    return { rows, cols, groups: 1, perRow: true, columnGroup };
  }
  if (strategy === 'group') {
    if (!groupSize || groupSize <= 0) {
      throw new Error(`${where}: group strategy needs a positive group_size, got ${groupSize}`);
    }
    const groups = Math.ceil(cols / groupSize);
    if (scaleShape.length !== 2 || scaleShape[0] !== rows || scaleShape[1] !== groups) {
      throw new Error(
        `${where}: group strategy with group_size ${groupSize} on ${cols} columns needs a scale of shape ` +
          `[${rows}, ${groups}], got ${shapeText}`,
      );
    }
    if (gIdx) {
      if (gIdx.length !== cols) throw new Error(`${where}: g_idx has ${gIdx.length} entries, expected one per column (${cols})`);
      for (let c = 0; c < cols; c++) {
        if (gIdx[c] < 0 || gIdx[c] >= groups) {
          throw new Error(`${where}: g_idx[${c}] = ${gIdx[c]} is outside the ${groups} groups`);
        }
        columnGroup[c] = gIdx[c];
      }
    } else {
      for (let c = 0; c < cols; c++) columnGroup[c] = Math.floor(c / groupSize);
    }
    return { rows, cols, groups, perRow: true, columnGroup };
  }
  throw new Error(
    `${where}: strategy '${strategy}' is not supported for int weights in compressed checkpoints ` +
      `(supported: tensor, channel, group)`,
  );
}

/**
 * Weight → int codes: `clamp(round(W / scale) + zp, q_min, q_max)` with float32 division, as
 * compressed-tensors' `_quantize`. Pass the scale as it is stored (in the checkpoint dtype) so the
 * codes reproduce what a loader dequantizes. A zero scale maps every element to its zero point.
 */
export function quantizeToCodes(
  weight: Float32Array,
  layout: QParamLayout,
  args: Pick<QuantizationArgs, 'num_bits'>,
  scale: Float32Array,
  zeroPoint: Int32Array | Int8Array | null,
): Int8Array {
  const { rows, cols, groups, perRow, columnGroup } = layout;
  const { qMin: lo, qMax: hi } = quantRange({ num_bits: args.num_bits, type: 'int' });
  const codes = new Int8Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const base = perRow ? r * groups : 0;
    for (let c = 0; c < cols; c++) {
      const p = base + columnGroup[c];
      const s = scale[p];
      const zp = zeroPoint ? zeroPoint[p] : 0;
      const x = s === 0 ? zp : Math.fround(weight[r * cols + c] / s) + zp;
      codes[r * cols + c] = Math.min(hi, Math.max(lo, roundHalfEven(x)));
    }
  }
  return codes;
}

/** Int codes → dense float32 weight: `(q − zp) · scale`, rounded to float32 like torch. */
export function dequantizeCodes(
  codes: Int8Array,
  layout: QParamLayout,
  scale: Float32Array,
  zeroPoint: Int32Array | Int8Array | null,
): Float32Array {
  const { rows, cols, groups, perRow, columnGroup } = layout;
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const base = perRow ? r * groups : 0;
    for (let c = 0; c < cols; c++) {
      const p = base + columnGroup[c];
      const zp = zeroPoint ? zeroPoint[p] : 0;
      out[r * cols + c] = (codes[r * cols + c] - zp) * scale[p];
    }
  }
  return out;
}
