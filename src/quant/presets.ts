/**
 * Named quantization schemes as compressed-tensors 0.12 defines them (`quant_scheme.py`,
 * reference §4). Weights use the 'minmax' observer and are never dynamic; W8A8/INT8 and W4A8
 * quantize activations per token, dynamically (no observer, nothing to calibrate).
 */
import type { QuantizationArgs, QuantizationScheme } from './args.js';

function intArgs(numBits: number, over: Partial<QuantizationArgs>): QuantizationArgs {
  return {
    num_bits: numBits,
    type: 'int',
    symmetric: true,
    group_size: null,
    strategy: 'tensor',
    block_structure: null,
    dynamic: false,
    actorder: null,
    observer: 'minmax',
    observer_kwargs: {},
    ...over,
  };
}

const group128 = (symmetric: boolean) => intArgs(4, { symmetric, strategy: 'group', group_size: 128 });
const channel8 = () => intArgs(8, { strategy: 'channel' });
const token8 = () => intArgs(8, { strategy: 'token', dynamic: true, observer: null });

const PRESETS: Record<string, () => Pick<QuantizationScheme, 'weights' | 'input_activations'>> = {
  W4A16: () => ({ weights: group128(true), input_activations: null }),
  W4A16_ASYM: () => ({ weights: group128(false), input_activations: null }),
  W8A16: () => ({ weights: channel8(), input_activations: null }),
  W8A8: () => ({ weights: channel8(), input_activations: token8() }),
  INT8: () => ({ weights: channel8(), input_activations: token8() }),
  W4A8: () => ({ weights: group128(true), input_activations: token8() }),
};

/** Preset names layerstream implements. */
export const PRESET_NAMES: readonly string[] = Object.keys(PRESETS);

/** compressed-tensors presets that exist but need float (fp8/fp4) arithmetic, not implemented here. */
export const UNSUPPORTED_PRESETS: readonly string[] = ['FP8', 'FP8_DYNAMIC', 'FP8_BLOCK', 'NVFP4A16', 'NVFP4', 'MXFP4', 'MXFP8'];

/**
 * The scheme for a preset name (case-insensitive, as compressed-tensors accepts it), applied to `targets`.
 *
 * @example
 * presetScheme('W4A16', ['Linear']).weights // int4, symmetric, group 128, observer 'minmax'
 */
export function presetScheme(name: string, targets: string[]): QuantizationScheme {
  const make = PRESETS[name.toUpperCase()];
  if (!make) {
    const why = UNSUPPORTED_PRESETS.includes(name.toUpperCase())
      ? ` '${name}' needs float quantization, which layerstream does not implement yet.`
      : '';
    throw new Error(`unknown quantization scheme '${name}'.${why} Supported schemes: ${PRESET_NAMES.join(', ')}`);
  }
  return { targets: [...targets], ...make(), output_activations: null };
}
