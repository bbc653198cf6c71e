/**
 * Quantization arguments and schemes, field for field as compressed-tensors defines them
 * (snake_case, so they serialise into `quantization_config` unchanged).
 */

export type QuantizationType = 'int' | 'float';
export type QuantizationStrategy = 'tensor' | 'channel' | 'group' | 'block' | 'token' | 'tensor_group';
export type ActivationOrdering = 'static' | 'group' | 'weight' | 'dynamic';

export interface QuantizationArgs {
  num_bits: number;
  type: QuantizationType;
  symmetric: boolean;
  group_size: number | null;
  strategy: QuantizationStrategy;
  block_structure: number[] | null;
  dynamic: boolean | 'local';
  actorder: ActivationOrdering | null;
  observer: string | null;
  observer_kwargs: Record<string, unknown>;
}

export interface QuantizationScheme {
  targets: string[];
  weights: QuantizationArgs | null;
  input_activations: QuantizationArgs | null;
  output_activations: QuantizationArgs | null;
  /** compressed-tensors format of this group, e.g. 'pack-quantized'; filled in at save time. */
  format?: string | null;
}

/** The `quantization_config` content a quantization modifier applies (before save-time fields). */
export interface QuantizationConfig {
  config_groups: Record<string, QuantizationScheme>;
  ignore: string[];
  kv_cache_scheme: null;
}

/**
 * What a quantization modifier leaves for one Linear module: the module's weight has been
 * replaced by its dequantized (fake-quantized) values; these host arrays hold the qparams.
 */
export interface QuantizedModule {
  /** Dotted module name, e.g. 'model.layers.0.self_attn.q_proj'. */
  name: string;
  /** The config group this module belongs to, e.g. 'group_0'. */
  group: string;
  args: QuantizationArgs;
  /** [rows, 1] (channel), [rows, ceil(cols/group_size)] (group) or [1] (tensor). */
  scaleShape: number[];
  scale: Float32Array;
  /** Integer zero points in the signed range; all zero for symmetric schemes. */
  zeroPoint: Int32Array;
  /** Only for actorder 'group': the group of each original column. */
  gIdx?: Int32Array;
}
