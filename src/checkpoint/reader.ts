/**
 * Reads a compressed-tensors checkpoint back as dense float32 weights, so a quantized model can be
 * evaluated in layerstream: `loadModel(dir, { source: await openCompressedTensorsSource(dir) })`.
 *
 * Each quantized Linear `<p>` (pack-quantized `weight_packed` or int8 `weight`, with `weight_scale`,
 * `weight_zero_point`, `weight_g_idx`, `weight_shape`) appears as one `<p>.weight` holding
 * (q − zp)·scale; the qparam tensors are hidden. Other tensors pass through unchanged. A directory
 * without a compressed-tensors `quantization_config` is read as a plain checkpoint.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { SafetensorsFile, toFloat32, type RawTensor } from '../models/safetensors.js';
import type { TensorSource } from '../models/types.js';
import { targetRegex } from '../nn/match.js';
import type { QuantizationArgs } from '../quant/args.js';
import { packFactor, unpackFromInt32, unpackRowsFromInt32 } from '../quant/pack.js';
import { dequantizeCodes, qparamLayout } from './codes.js';
import { SUPPORTED_FORMATS, type CompressedTensorsConfig } from './format.js';

/** True when a config.json object declares a compressed-tensors checkpoint. */
export function isCompressedCheckpoint(config: Record<string, unknown>): boolean {
  const q = config.quantization_config as { quant_method?: unknown } | undefined;
  return !!q && typeof q === 'object' && q.quant_method === 'compressed-tensors';
}

/** The `quantization_config` of `dir/config.json`, or null when it is not a compressed-tensors checkpoint. */
export async function readQuantizationConfig(dir: string): Promise<CompressedTensorsConfig | null> {
  const file = path.join(dir, 'config.json');
  let config: Record<string, unknown>;
  try {
    config = JSON.parse(await fsp.readFile(file, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new Error(`checkpoint: cannot read '${file}': ${(e as Error).message}`);
  }
  return isCompressedCheckpoint(config) ? (config.quantization_config as CompressedTensorsConfig) : null;
}

const QPARAM_SUFFIXES = ['weight_packed', 'weight_scale', 'weight_shape', 'weight_zero_point', 'weight_g_idx',
  'input_scale', 'input_zero_point', 'output_scale', 'output_zero_point'];

/** How to rebuild one dense weight. */
interface DenseWeight {
  prefix: string;
  packed: boolean;
  rows: number;
  cols: number;
  args: QuantizationArgs;
  scaleDtype: string;
}

/** Opens `dir` (single `model.safetensors` or a sharded index) as a dense float32 {@link TensorSource}. */
export async function openCompressedTensorsSource(dir: string): Promise<TensorSource> {
  const qconfig = await readQuantizationConfig(dir);
  if (qconfig) checkSupported(dir, qconfig);
  const files = await openFiles(dir);
  const dense = new Map<string, DenseWeight>();
  const hidden = new Set<string>();
  if (qconfig) {
    for (const name of files.keys()) {
      const m = /^(.*)\.weight_scale$/.exec(name);
      if (!m) continue;
      const w = await describeWeight(m[1], files, qconfig);
      dense.set(`${w.prefix}.weight`, w);
      for (const s of QPARAM_SUFFIXES) if (files.has(`${w.prefix}.${s}`)) hidden.add(`${w.prefix}.${s}`);
    }
    for (const name of files.keys()) {
      const m = /^(.*)\.weight_packed$/.exec(name);
      if (m && !dense.has(`${m[1]}.weight`)) {
        throw new Error(`checkpoint: '${name}' in ${files.get(name)!.file} has no '${m[1]}.weight_scale'; the checkpoint is incomplete`);
      }
    }
  }
  const keys = [...new Set([...files.keys()].filter((k) => !hidden.has(k)).concat([...dense.keys()]))];
  const fileOf = (name: string): SafetensorsFile => {
    const f = files.get(name);
    if (!f) throw new Error(`checkpoint: no tensor '${name}' in '${dir}'`);
    return f;
  };
  return {
    keys: () => [...keys],
    has: (name) => dense.has(name) || (files.has(name) && !hidden.has(name)),
    shape: (name) => {
      const d = dense.get(name);
      return d ? [d.rows, d.cols] : fileOf(name).info(name).shape;
    },
    dtype: (name) => dense.get(name)?.scaleDtype ?? fileOf(name).info(name).dtype,
    readFloat32: async (name) => {
      const d = dense.get(name);
      return d ? readDense(d, files) : (await fileOf(name).readFloat32(name)).data;
    },
    describe: (name) => {
      const d = dense.get(name);
      const stored = d ? `${d.prefix}.${d.packed ? 'weight_packed' : 'weight'}` : name;
      return `${fileOf(stored).file}${d ? ` (dequantized from '${stored}')` : ''}`;
    },
  };
}

function checkSupported(dir: string, q: CompressedTensorsConfig): void {
  const where = `checkpoint: '${path.join(dir, 'config.json')}'`;
  if (q.sparsity_config && Object.keys(q.sparsity_config).length > 0) {
    throw new Error(`${where} has a sparsity_config; sparse compressed checkpoints are not supported by layerstream's reader`);
  }
  if (q.quantization_status && q.quantization_status !== 'compressed') {
    throw new Error(`${where} has quantization_status '${q.quantization_status}'; only 'compressed' checkpoints are supported`);
  }
  for (const [name, g] of Object.entries(q.config_groups ?? {})) {
    const format = g.format ?? q.format;
    if (!(SUPPORTED_FORMATS as readonly string[]).includes(format)) {
      throw new Error(
        `${where}: config group '${name}' uses format '${format}', which layerstream cannot read ` +
          `(supported: ${SUPPORTED_FORMATS.join(', ')}); evaluate this checkpoint with vLLM instead`,
      );
    }
  }
}

async function openFiles(dir: string): Promise<Map<string, SafetensorsFile>> {
  const index = path.join(dir, 'model.safetensors.index.json');
  let shardNames: string[];
  let weightMap: Record<string, string> | undefined;
  try {
    weightMap = (JSON.parse(await fsp.readFile(index, 'utf8')) as { weight_map: Record<string, string> }).weight_map;
    shardNames = [...new Set(Object.values(weightMap))];
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`checkpoint: cannot read '${index}': ${(e as Error).message}`);
    shardNames = ['model.safetensors'];
  }
  const files = new Map<string, SafetensorsFile>();
  for (const shard of shardNames) {
    const st = await SafetensorsFile.open(path.join(dir, shard));
    for (const key of st.keys()) files.set(key, st);
  }
  for (const [key, shard] of Object.entries(weightMap ?? {})) {
    if (files.get(key)?.file !== path.join(dir, shard)) {
      throw new Error(`checkpoint: '${index}' maps '${key}' to '${shard}', which does not contain it; re-save the checkpoint`);
    }
  }
  return files;
}

/** Works out a quantized weight's layout from its tensors and the config group that fits them. */
async function describeWeight(prefix: string, files: Map<string, SafetensorsFile>, q: CompressedTensorsConfig): Promise<DenseWeight> {
  const where = `checkpoint: quantized weight '${prefix}'`;
  const scale = files.get(`${prefix}.weight_scale`)!.info(`${prefix}.weight_scale`);
  const packedName = `${prefix}.weight_packed`;
  let packed: boolean;
  let rows: number;
  let cols: number;
  if (files.has(packedName)) {
    packed = true;
    const shapeName = `${prefix}.weight_shape`;
    if (!files.has(shapeName)) throw new Error(`${where}: '${packedName}' has no '${shapeName}' (the unpacked [rows, cols])`);
    const raw = await files.get(shapeName)!.read(shapeName);
    if (raw.shape.length !== 1 || raw.shape[0] !== 2) throw new Error(`${where}: weight_shape has shape [${raw.shape.join(', ')}], expected [2]`);
    [rows, cols] = Array.from(raw.data as ArrayLike<number | bigint>, (v) => Number(v));
  } else if (files.has(`${prefix}.weight`) && /^I/.test(files.get(`${prefix}.weight`)!.info(`${prefix}.weight`).dtype)) {
    packed = false;
    [rows, cols] = files.get(`${prefix}.weight`)!.info(`${prefix}.weight`).shape;
  } else {
    throw new Error(`${where}: '${prefix}.weight_scale' has neither a '${packedName}' nor an int8 '${prefix}.weight' beside it; float-quantized weights are not supported`);
  }
  const candidates = rankGroups(prefix, q);
  const fits = (args: QuantizationArgs, format: string): string | null => {
    if (packed !== (format === 'pack-quantized')) return `format '${format}' does not match the stored tensors`;
    if (packed) {
      const shape = files.get(packedName)!.info(packedName).shape;
      const expected = [rows, Math.ceil(cols / packFactor(args.num_bits))];
      if (shape[0] !== expected[0] || shape[1] !== expected[1]) {
        return `weight_packed has shape [${shape.join(', ')}], but weight_shape [${rows}, ${cols}] with ${args.num_bits}-bit packing implies [${expected.join(', ')}]`;
      }
    }
    try {
      qparamLayout(where, args.strategy, args.group_size, rows, cols, scale.shape);
    } catch (e) {
      return (e as Error).message;
    }
    return null;
  };
  const reasons: string[] = [];
  for (const [name, args, format] of candidates) {
    const why = fits(args, format);
    if (!why) return { prefix, packed, rows, cols, args, scaleDtype: scale.dtype };
    reasons.push(`group '${name}': ${why}`);
  }
  throw new Error(`${where}: no config group fits its tensors (${reasons.join('; ') || 'no group targets it'})`);
}

/** Groups that may target `prefix`, best first: exact name, then `re:` pattern, then class names. */
function rankGroups(prefix: string, q: CompressedTensorsConfig): [string, QuantizationArgs, string][] {
  const tiers: [string, QuantizationArgs, string][][] = [[], [], []];
  for (const [name, g] of Object.entries(q.config_groups ?? {})) {
    if (!g.weights) continue;
    const entry: [string, QuantizationArgs, string] = [name, g.weights, g.format ?? q.format];
    if (g.targets.includes(prefix)) tiers[0].push(entry);
    else if (g.targets.some((t) => t.startsWith('re:') && targetRegex(t.slice(3)).test(prefix))) tiers[1].push(entry);
    // class names (`Linear`) are capitalised; module names are not
    else if (g.targets.some((t) => /^[A-Z]/.test(t))) tiers[2].push(entry);
  }
  return tiers.flat();
}

async function readDense(d: DenseWeight, files: Map<string, SafetensorsFile>): Promise<Float32Array> {
  const read = (suffix: string): Promise<RawTensor> => files.get(`${d.prefix}.${suffix}`)!.read(`${d.prefix}.${suffix}`);
  const { rows, cols, args } = d;
  const codes = d.packed
    ? unpackFromInt32((await read('weight_packed')).data as Int32Array, rows, cols, args.num_bits)
    : Int8Array.from((await read('weight')).data as ArrayLike<number>);
  const scaleRaw = await read('weight_scale');
  const scale = toFloat32(scaleRaw);
  let gIdx: Int32Array | undefined;
  if (files.has(`${d.prefix}.weight_g_idx`)) gIdx = Int32Array.from((await read('weight_g_idx')).data as ArrayLike<number>);
  const layout = qparamLayout(`checkpoint: quantized weight '${d.prefix}'`, args.strategy, args.group_size, rows, cols, scaleRaw.shape, gIdx);
  let zp: Int32Array | null = null;
  if (files.has(`${d.prefix}.weight_zero_point`)) {
    const raw = await read('weight_zero_point');
    const values = Int32Array.from(raw.data as ArrayLike<number>);
    const packedRows = Math.ceil(rows / packFactor(args.num_bits));
    zp = d.packed && raw.dtype === 'I32' && args.strategy !== 'tensor' && raw.shape[0] === packedRows
      ? Int32Array.from(unpackRowsFromInt32(values, rows, layout.groups, args.num_bits))
      : values;
    if (zp.length !== scale.length) {
      throw new Error(`checkpoint: quantized weight '${d.prefix}': weight_zero_point [${raw.shape.join(', ')}] does not match weight_scale [${scaleRaw.shape.join(', ')}]`);
    }
  }
  return dequantizeCodes(codes, layout, scale, zp);
}
