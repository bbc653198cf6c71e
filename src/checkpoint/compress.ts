/**
 * One quantized Linear → its compressed-tensors tensors (reference §5.2), on host arrays.
 *
 * pack-quantized: `weight_packed` int32 [rows, ceil(cols/pf)], `weight_scale` (model dtype),
 * `weight_shape` int64 [2], `weight_zero_point` only when asymmetric (int32 packed along rows for
 * group/channel, int8 [1] for tensor), `weight_g_idx` int32 [cols] only for actorder 'group'.
 * int-quantized / naive-quantized: `weight` int8 [rows, cols], `weight_scale`, `weight_zero_point`
 * int8 when asymmetric, `weight_g_idx` when present.
 */
import { encodeFloat, toFloat32, type WritableTensor } from '../models/safetensors.js';
import type { QuantizedModule } from '../quant/args.js';
import { packRowsToInt32, packToInt32, packFactor } from '../quant/pack.js';
import { qparamLayout, quantizeToCodes } from './codes.js';
import type { IntCompressionFormat } from './format.js';

export type FloatDtype = 'F32' | 'F16' | 'BF16';

export interface CompressLinearInput {
  /** Module name, e.g. 'model.layers.0.self_attn.q_proj'. */
  prefix: string;
  /** The module's dequantized weight [rows, cols], row-major float32. */
  weight: Float32Array;
  rows: number;
  cols: number;
  module: QuantizedModule;
  format: IntCompressionFormat;
  /** The checkpoint's float dtype, used for `weight_scale`. */
  dtype: FloatDtype;
}

/**
 * The tensors that replace `<prefix>.weight`. Codes are re-derived from the dequantized weight with
 * the scale as stored in `dtype`, so a loader computing (q − zp)·scale gets back the weight up to
 * the rounding of the scale itself.
 */
export function compressLinear(input: CompressLinearInput): [string, WritableTensor][] {
  const { prefix, weight, rows, cols, module: qm, format, dtype } = input;
  const args = qm.args;
  const where = `checkpoint: quantized module '${prefix}'`;
  if (weight.length !== rows * cols) {
    throw new Error(`${where}: weight has ${weight.length} elements, expected [${rows}, ${cols}]`);
  }
  // 'dynamic' is compressed-tensors' alias of 'group'; 'static'/'weight' orders write no g_idx (§3.3)
  const groupOrder = args.actorder === 'group' || args.actorder === 'dynamic';
  if (groupOrder && !qm.gIdx) {
    throw new Error(`${where}: actorder '${args.actorder}' needs a g_idx (one group per column), the QuantizedModule has none`);
  }
  const gIdx = groupOrder ? qm.gIdx : undefined;
  const layout = qparamLayout(where, args.strategy, args.group_size, rows, cols, qm.scaleShape, gIdx);
  const numel = qm.scaleShape.reduce((a, d) => a * d, 1);
  if (qm.scale.length !== numel || qm.zeroPoint.length !== numel) {
    throw new Error(
      `${where}: scale has ${qm.scale.length} and zeroPoint ${qm.zeroPoint.length} elements, ` +
        `expected ${numel} each (scaleShape [${qm.scaleShape.join(', ')}])`,
    );
  }
  if (args.symmetric && qm.zeroPoint.some((z) => z !== 0)) {
    throw new Error(`${where}: the scheme is symmetric but zeroPoint has non-zero entries; symmetric checkpoints store no zero point`);
  }
  const scaleData = encodeFloat(Float32Array.from(qm.scale), dtype);
  const storedScale = toFloat32({ dtype, shape: qm.scaleShape, data: scaleData as Float32Array | Uint16Array });
  const zp = args.symmetric ? null : qm.zeroPoint;
  const codes = quantizeToCodes(weight, layout, args, storedScale, zp);

  const out: [string, WritableTensor][] = [];
  const scale: WritableTensor = { dtype, shape: [...qm.scaleShape], data: scaleData };
  if (format === 'pack-quantized') {
    out.push([`${prefix}.weight_packed`, { dtype: 'I32', shape: [rows, Math.ceil(cols / packFactor(args.num_bits))], data: packToInt32(codes, rows, cols, args.num_bits) }]);
    out.push([`${prefix}.weight_scale`, scale]);
    out.push([`${prefix}.weight_shape`, { dtype: 'I64', shape: [2], data: BigInt64Array.of(BigInt(rows), BigInt(cols)) }]);
    if (zp && args.strategy !== 'tensor') {
      const groups = layout.groups;
      const packed = packRowsToInt32(zp, rows, groups, args.num_bits);
      out.push([`${prefix}.weight_zero_point`, { dtype: 'I32', shape: [Math.ceil(rows / packFactor(args.num_bits)), groups], data: packed }]);
    } else if (zp) {
      out.push([`${prefix}.weight_zero_point`, { dtype: 'I8', shape: [...qm.scaleShape], data: Int8Array.from(zp) }]);
    }
  } else {
    out.push([`${prefix}.weight`, { dtype: 'I8', shape: [rows, cols], data: codes }]);
    out.push([`${prefix}.weight_scale`, scale]);
    if (zp) out.push([`${prefix}.weight_zero_point`, { dtype: 'I8', shape: [...qm.scaleShape], data: Int8Array.from(zp) }]);
  }
  if (gIdx) out.push([`${prefix}.weight_g_idx`, { dtype: 'I32', shape: [cols], data: Int32Array.from(gIdx) }]);
  return out;
}
