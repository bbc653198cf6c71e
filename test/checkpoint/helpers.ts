/**
 * Test fixtures for the checkpoint writer and reader: the §4 presets, and a naive round-to-nearest
 * quantizer following compressed-tensors' arithmetic (§3.4) that leaves what a quantization
 * modifier leaves: dequantized weights in the model and a QuantizedModule per Linear.
 */
import * as tf from '@tensorflow/tfjs-core';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { bf16ToF32, f32ToBf16 } from '../../src/models/safetensors.js';
import type { CausalLM } from '../../src/models/types.js';
import { matchModules } from '../../src/nn/match.js';
import type { QuantizationArgs, QuantizationConfig, QuantizationScheme, QuantizedModule } from '../../src/quant/args.js';

const base: QuantizationArgs = {
  num_bits: 4, type: 'int', symmetric: true, group_size: 128, strategy: 'group', block_structure: null,
  dynamic: false, actorder: 'static', observer: 'minmax', observer_kwargs: {},
};

export const W4A16: QuantizationArgs = { ...base };
export const W4A16_ASYM: QuantizationArgs = { ...base, symmetric: false };
export const W8A16: QuantizationArgs = { ...base, num_bits: 8, group_size: null, strategy: 'channel', actorder: null };
export const W4A16_ACTORDER: QuantizationArgs = { ...base, actorder: 'group' };
export const INT8_TOKEN: QuantizationArgs = {
  ...base, num_bits: 8, group_size: null, strategy: 'token', dynamic: true, actorder: null, observer: null,
};

export function scheme(weights: QuantizationArgs, input: QuantizationArgs | null = null, targets = ['Linear']): QuantizationScheme {
  return { targets, weights, input_activations: input, output_activations: null };
}

export function configOf(s: QuantizationScheme, ignore = ['lm_head'], group = 'group_0'): QuantizationConfig {
  return { config_groups: { [group]: s }, ignore, kv_cache_scheme: null };
}

export interface QuantizeResult {
  quantized: Map<string, QuantizedModule>;
  /** The int codes the quantizer chose, per module, row-major [rows, cols]. */
  codes: Map<string, Int8Array>;
}

const roundEven = (x: number) => {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
};

/**
 * Quantizes every matching Linear in place (weight ← (q − zp)·scale). `bf16Scales` rounds scales to
 * bf16 first, so a bf16 checkpoint stores them exactly; `actorderSeed` shuffles columns into groups
 * (actorder 'group' g_idx).
 */
export async function quantizeModel(
  model: CausalLM,
  args: QuantizationArgs,
  options: { targets?: string[]; ignore?: string[]; group?: string; bf16Scales?: boolean } = {},
): Promise<QuantizeResult> {
  const quantized = new Map<string, QuantizedModule>();
  const codes = new Map<string, Int8Array>();
  for (const [name, module] of matchModules(model, options.targets ?? ['Linear'], options.ignore ?? ['lm_head'])) {
    await model.weights.load(name);
    const w = module.param('weight');
    const [rows, cols] = w.shape;
    const W = (await w.data()) as Float32Array;
    const r = quantizeMatrix(W, rows, cols, args, options.bf16Scales ?? false);
    module.setParameter('weight', tf.tensor(r.deq, [rows, cols], 'float32'));
    quantized.set(name, { name, group: options.group ?? 'group_0', args, scaleShape: r.scaleShape, scale: r.scale, zeroPoint: r.zp, gIdx: r.gIdx });
    codes.set(name, r.codes);
  }
  return { quantized, codes };
}

/** min/max round-to-nearest per §3.4 on a row-major [rows, cols] matrix. */
export function quantizeMatrix(W: Float32Array, rows: number, cols: number, args: QuantizationArgs, bf16Scales: boolean) {
  const lo = -(2 ** (args.num_bits - 1));
  const hi = 2 ** (args.num_bits - 1) - 1;
  let groups = 1;
  const colGroup = new Int32Array(cols);
  let gIdx: Int32Array | undefined;
  if (args.strategy === 'group') {
    const gs = args.group_size!;
    groups = Math.ceil(cols / gs);
    if (args.actorder === 'group') {
      // a fixed "activation order": odd columns first, then even ones
      const perm = [...Array(cols).keys()].sort((a, b) => (a % 2) - (b % 2) || b - a).reverse();
      gIdx = new Int32Array(cols);
      perm.forEach((c, i) => (gIdx![c] = Math.floor(i / gs)));
      colGroup.set(gIdx);
    } else {
      for (let c = 0; c < cols; c++) colGroup[c] = Math.floor(c / gs);
    }
  }
  const perRow = args.strategy !== 'tensor';
  const nRows = perRow ? rows : 1;
  const scaleShape = args.strategy === 'tensor' ? [1] : [rows, groups];
  const mins = new Float64Array(nRows * groups).fill(0);
  const maxs = new Float64Array(nRows * groups).fill(0);
  const idx = (r: number, c: number) => (perRow ? r * groups : 0) + colGroup[c];
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const v = W[r * cols + c];
      const i = idx(r, c);
      mins[i] = Math.min(mins[i], v);
      maxs[i] = Math.max(maxs[i], v);
    }
  }
  const eps = 1.1920929e-7;
  let scale: Float32Array = new Float32Array(nRows * groups);
  const zp = new Int32Array(nRows * groups);
  for (let i = 0; i < scale.length; i++) {
    if (args.symmetric) {
      scale[i] = Math.max(Math.max(Math.abs(mins[i]), Math.abs(maxs[i])) / ((hi - lo) / 2), eps);
    } else {
      scale[i] = Math.max((maxs[i] - mins[i]) / (hi - lo), eps);
      zp[i] = Math.min(hi, Math.max(lo, roundEven(lo - mins[i] / scale[i])));
    }
  }
  if (bf16Scales) scale = bf16ToF32(f32ToBf16(scale));
  const codes = new Int8Array(rows * cols);
  const deq = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const i = idx(r, c);
      const q = Math.min(hi, Math.max(lo, roundEven(Math.fround(W[r * cols + c] / scale[i]) + zp[i])));
      codes[r * cols + c] = q;
      deq[r * cols + c] = (q - zp[i]) * scale[i];
    }
  }
  return { scale, zp, scaleShape, codes, deq, gIdx };
}

/** A fresh temporary directory, removed by the returned cleanup. */
export async function tempDir(prefix = 'layerstream-ckpt-'): Promise<string> {
  return fsp.mkdtemp(path.join(os.tmpdir(), prefix));
}

/** Asserts that every object in a JSON text lists its keys in sorted order (Python's sort_keys). */
export function keysSortedInText(text: string): boolean {
  const check = (v: unknown): boolean => {
    if (Array.isArray(v)) return v.every(check);
    if (v && typeof v === 'object') {
      const keys = Object.keys(v);
      return keys.every((k, i) => i === 0 || keys[i - 1] < k) && Object.values(v).every(check);
    }
    return true;
  };
  return check(JSON.parse(text));
}

/**
 * Index of the first differing element, or -1 (vitest's deep equality is slow on big typed arrays).
 * −0 equals +0: fake quantization can give −0 (round(−0.3)·s), which int codes cannot carry.
 */
export function firstMismatch(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i] && !(Number.isNaN(a[i]) && Number.isNaN(b[i]))) return i;
  return -1;
}
