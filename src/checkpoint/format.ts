/**
 * The `quantization_config` block of a compressed-tensors checkpoint (reference §5.1, §5.3):
 * per-scheme format inference, merging the configs of several modifiers, and JSON written the way
 * Python's `json.dump(indent=2, sort_keys=True)` lays it out.
 */
import type { QuantizationArgs, QuantizationConfig, QuantizationScheme } from '../quant/args.js';

/** The compressed-tensors release whose format this writer reproduces. */
export const COMPRESSED_TENSORS_VERSION = '0.12.2';

/** Formats layerstream writes and reads back. */
export type IntCompressionFormat = 'pack-quantized' | 'int-quantized' | 'naive-quantized';
/** Every {@link IntCompressionFormat}, for validation and error messages. */
export const SUPPORTED_FORMATS: readonly IntCompressionFormat[] = ['pack-quantized', 'int-quantized', 'naive-quantized'];

/** The `quantization_config` object as it appears in config.json. */
export interface CompressedTensorsConfig {
  config_groups: Record<string, QuantizationScheme & { format: string }>;
  format: string;
  global_compression_ratio: null;
  ignore: string[];
  kv_cache_scheme: null;
  quant_method: 'compressed-tensors';
  quantization_status: 'compressed';
  sparsity_config: Record<string, unknown>;
  transform_config: Record<string, unknown>;
  version: string;
}

/**
 * compressed-tensors' `_get_quant_compression_format`: float 4-bit → nvfp4-pack-quantized;
 * weight-only int 4/8 → pack-quantized, other weight-only → naive-quantized; weights and
 * activations: float8 → float-quantized, int → int-quantized.
 */
export function inferFormat(scheme: QuantizationScheme): string {
  const w = scheme.weights;
  if (!w) return 'dense';
  if (w.type === 'float' && w.num_bits === 4) return 'nvfp4-pack-quantized';
  if (!scheme.input_activations) {
    return w.type === 'int' && (w.num_bits === 4 || w.num_bits === 8) ? 'pack-quantized' : 'naive-quantized';
  }
  if (w.type === 'float' && w.num_bits === 8) return 'float-quantized';
  return w.type === 'int' ? 'int-quantized' : 'naive-quantized';
}

/**
 * The format a group is saved in: its explicit `format` if set, else the inferred one. Throws for
 * formats layerstream cannot write (float weights, static activation scales, sparse formats).
 */
export function groupFormat(name: string, scheme: QuantizationScheme): IntCompressionFormat {
  const format = scheme.format ?? inferFormat(scheme);
  const w = scheme.weights;
  if (!w) {
    throw new Error(`checkpoint: config group '${name}' has no weight quantization; layerstream writes weight-quantized groups only`);
  }
  if (!(SUPPORTED_FORMATS as readonly string[]).includes(format) || w.type !== 'int' || w.num_bits > 8) {
    throw new Error(
      `checkpoint: config group '${name}' (${w.type}${w.num_bits} weights) needs format '${format}', which layerstream ` +
        `cannot write; supported: ${SUPPORTED_FORMATS.join(', ')} with int weights of at most 8 bits`,
    );
  }
  for (const [which, a] of [['input_activations', scheme.input_activations], ['output_activations', scheme.output_activations]] as const) {
    if (a && a.dynamic === false) {
      throw new Error(
        `checkpoint: config group '${name}' has static ${which} (dynamic: false), whose calibrated scales are not ` +
          `recorded in QuantizedModule; use dynamic activations (e.g. the W8A8 preset) or a weight-only scheme`,
      );
    }
  }
  return format as IntCompressionFormat;
}

function sameArgs(a: QuantizationArgs | null, b: QuantizationArgs | null): boolean {
  return JSON.stringify(sortKeysDeep(a)) === JSON.stringify(sortKeysDeep(b));
}

function sameScheme(a: QuantizationScheme, b: QuantizationScheme): boolean {
  return (
    sameArgs(a.weights, b.weights) &&
    sameArgs(a.input_activations, b.input_activations) &&
    sameArgs(a.output_activations, b.output_activations) &&
    (a.format ?? null) === (b.format ?? null)
  );
}

/** A merged config plus, for each input config's group name, the merged group(s) it became. */
export interface MergedQuantizationConfig {
  config: QuantizationConfig;
  /** Original group name → merged group names (one per input config that used the name). */
  renamed: Map<string, string[]>;
}

/**
 * Merges the configs of several modifiers into one: identical schemes share a group (targets
 * united), distinct schemes get groups `group_0`, `group_1`, … in order of appearance.
 */
export function mergeQuantizationConfigs(configs: QuantizationConfig | QuantizationConfig[]): MergedQuantizationConfig {
  const list = Array.isArray(configs) ? configs : [configs];
  const groups: [string, QuantizationScheme][] = [];
  const renamed = new Map<string, string[]>();
  for (const cfg of list) {
    for (const [name, scheme] of Object.entries(cfg.config_groups)) {
      let entry = groups.find(([, s]) => sameScheme(s, scheme));
      if (entry) {
        for (const t of scheme.targets) if (!entry[1].targets.includes(t)) entry[1].targets.push(t);
      } else {
        entry = [`group_${groups.length}`, { ...scheme, targets: [...scheme.targets] }];
        groups.push(entry);
      }
      renamed.set(name, [...(renamed.get(name) ?? []), entry[0]]);
    }
  }
  const ignore = [...new Set(list.flatMap((c) => c.ignore))];
  return { config: { config_groups: Object.fromEntries(groups), ignore, kv_cache_scheme: null }, renamed };
}

/**
 * The full `quantization_config` block. `ignore` is what compressed-tensors writes: the names of
 * modules of a quantized class that were left unquantized (so vLLM loads them dense).
 */
export function buildQuantizationConfigBlock(config: QuantizationConfig, ignore: string[]): CompressedTensorsConfig {
  const groups: CompressedTensorsConfig['config_groups'] = {};
  const formats = new Set<string>();
  for (const [name, scheme] of Object.entries(config.config_groups)) {
    const format = groupFormat(name, scheme);
    formats.add(format);
    groups[name] = {
      targets: scheme.targets,
      weights: scheme.weights,
      input_activations: scheme.input_activations,
      output_activations: scheme.output_activations,
      format,
    };
  }
  return {
    config_groups: groups,
    format: formats.size === 0 ? 'dense' : formats.size === 1 ? [...formats][0] : 'mixed-precision',
    global_compression_ratio: null,
    ignore,
    kv_cache_scheme: null,
    quant_method: 'compressed-tensors',
    quantization_status: 'compressed',
    sparsity_config: {},
    transform_config: {},
    version: COMPRESSED_TENSORS_VERSION,
  };
}

/** A copy with object keys sorted at every depth (Python's `sort_keys=True`); arrays keep their order. */
export function sortKeysDeep<T>(value: T): T {
  if (Array.isArray(value)) return value.map(sortKeysDeep) as T;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return Object.fromEntries(entries.map(([k, v]) => [k, sortKeysDeep(v)])) as T;
  }
  return value;
}

/** JSON with indent 2 and sorted keys, as compressed-tensors writes config.json. */
export function toSortedJson(value: unknown): string {
  return JSON.stringify(sortKeysDeep(value), null, 2);
}
