/**
 * config.json → {@link ModelConfig}, once, with the defaults Hugging Face transformers applies
 * (`LlamaConfig`, `MistralConfig`, `Qwen2Config`). Everything after this reads the typed config.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import type { ModelConfig, ModelType, RopeScaling, TorchDtype } from './types.js';

/** The `model_type` values layerstream can build (see src/models/registry.ts). */
export const SUPPORTED_MODEL_TYPES: readonly ModelType[] = ['llama', 'mistral', 'qwen2'];

const TORCH_DTYPES: readonly TorchDtype[] = ['float32', 'float16', 'bfloat16'];

/** Per-family defaults that differ from Llama's (transformers' config classes). */
const FAMILY_DEFAULTS: Record<ModelType, { rms_norm_eps: number; rope_theta: number; tie: boolean; maxPos: number }> = {
  llama: { rms_norm_eps: 1e-6, rope_theta: 10000, tie: false, maxPos: 2048 },
  mistral: { rms_norm_eps: 1e-6, rope_theta: 10000, tie: false, maxPos: 4096 * 32 },
  qwen2: { rms_norm_eps: 1e-6, rope_theta: 10000, tie: false, maxPos: 32768 },
};

/**
 * Normalises a parsed config.json. `source` names the file in error messages.
 * Throws on an unknown `model_type`, a missing or invalid field, or an unsupported rope scaling.
 */
export function normalizeConfig(raw: Record<string, unknown>, source: string): ModelConfig {
  const fail = (field: string, expected: string, got: unknown): never => {
    throw new Error(
      `${source}: field '${field}' must be ${expected}, got ${JSON.stringify(got)}. Fix config.json.`,
    );
  };
  const modelType = raw.model_type;
  if (typeof modelType !== 'string' || !(SUPPORTED_MODEL_TYPES as readonly string[]).includes(modelType)) {
    throw new Error(
      `${source}: model_type ${JSON.stringify(modelType)} is not supported; supported types are ` +
        `${SUPPORTED_MODEL_TYPES.join(', ')}. To add an architecture, follow the checklist at the top of ` +
        `src/models/registry.ts.`,
    );
  }
  const type = modelType as ModelType;
  const defaults = FAMILY_DEFAULTS[type];

  const int = (field: string, fallback?: number): number => {
    const v = raw[field] ?? fallback;
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) fail(field, 'a positive integer', raw[field]);
    return v as number;
  };
  const num = (field: string, fallback: number): number => {
    const v = raw[field] ?? fallback;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) fail(field, 'a positive number', raw[field]);
    return v as number;
  };
  const bool = (field: string, fallback: boolean): boolean => {
    const v = raw[field] ?? fallback;
    if (typeof v !== 'boolean') fail(field, 'true or false', raw[field]);
    return v as boolean;
  };
  const optionalId = (field: string): number | null => {
    const v = raw[field];
    if (v === undefined || v === null) return null;
    if (typeof v !== 'number' || !Number.isInteger(v)) fail(field, 'an integer or null', v);
    return v as number;
  };

  const hidden = int('hidden_size');
  const heads = int('num_attention_heads');
  const kvHeads = int('num_key_value_heads', heads);
  if (heads % kvHeads !== 0) {
    fail('num_key_value_heads', `a divisor of num_attention_heads (${heads})`, kvHeads);
  }
  const headDim = raw.head_dim ?? (hidden % heads === 0 ? hidden / heads : undefined);
  if (headDim === undefined) fail('head_dim', `given, since hidden_size ${hidden} is not divisible by ${heads} heads`, raw.head_dim);
  if (typeof headDim !== 'number' || !Number.isInteger(headDim) || headDim <= 0 || headDim % 2 !== 0) {
    fail('head_dim', 'a positive even integer', headDim);
  }

  // Qwen2 always has q/k/v biases and no o_proj bias; Llama/Mistral read `attention_bias`.
  const attentionBias = type === 'qwen2' ? true : bool('attention_bias', false);
  const oProjBias = type === 'qwen2' ? false : attentionBias;

  let slidingWindow: number | null = null;
  // MistralConfig defaults sliding_window to 4096 when absent; null means full attention.
  if (type === 'mistral' && raw.sliding_window !== null) slidingWindow = int('sliding_window', 4096);
  if (type === 'qwen2' && raw.use_sliding_window === true) {
    throw new Error(
      `${source}: use_sliding_window: true is not supported for qwen2 (per-layer sliding windows). ` +
        `Set it to false if the model was trained without it.`,
    );
  }

  if (raw.hidden_act !== undefined && raw.hidden_act !== 'silu') {
    fail('hidden_act', "'silu' (the only activation the Llama family uses)", raw.hidden_act);
  }

  const torchDtype = (raw.torch_dtype ?? raw.dtype ?? 'float32') as TorchDtype;
  if (!TORCH_DTYPES.includes(torchDtype)) fail('torch_dtype', `one of ${TORCH_DTYPES.join(', ')}`, torchDtype);

  const eos = raw.eos_token_id;
  if (eos !== undefined && eos !== null && typeof eos !== 'number' && !(Array.isArray(eos) && eos.every((e) => typeof e === 'number'))) {
    fail('eos_token_id', 'an integer, a list of integers or null', eos);
  }
  const architectures = raw.architectures ?? [`${familyPrefix(type)}ForCausalLM`];
  if (!Array.isArray(architectures) || !architectures.every((a) => typeof a === 'string')) {
    fail('architectures', 'a list of class names', architectures);
  }

  return {
    model_type: type,
    architectures: architectures as string[],
    vocab_size: int('vocab_size'),
    hidden_size: hidden,
    intermediate_size: int('intermediate_size'),
    num_hidden_layers: int('num_hidden_layers'),
    num_attention_heads: heads,
    num_key_value_heads: kvHeads,
    head_dim: headDim as number,
    rms_norm_eps: num('rms_norm_eps', defaults.rms_norm_eps),
    rope_theta: num('rope_theta', defaults.rope_theta),
    rope_scaling: normalizeRopeScaling(raw.rope_scaling, source),
    max_position_embeddings: int('max_position_embeddings', defaults.maxPos),
    tie_word_embeddings: bool('tie_word_embeddings', defaults.tie),
    attention_bias: attentionBias,
    o_proj_bias: oProjBias,
    mlp_bias: type === 'llama' ? bool('mlp_bias', false) : false,
    sliding_window: slidingWindow,
    torch_dtype: torchDtype,
    bos_token_id: optionalId('bos_token_id'),
    eos_token_id: (eos ?? null) as number | number[] | null,
    pad_token_id: optionalId('pad_token_id'),
    raw,
  };
}

function normalizeRopeScaling(value: unknown, source: string): RopeScaling | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw new Error(`${source}: field 'rope_scaling' must be an object or null, got ${JSON.stringify(value)}`);
  }
  const rs = value as Record<string, unknown>;
  const type = rs.rope_type ?? rs.type;
  if (type === 'default') return null;
  if (type !== 'llama3') {
    throw new Error(
      `${source}: rope_scaling type ${JSON.stringify(type)} is not supported; layerstream implements ` +
        `'llama3' (and 'default', i.e. no scaling). Remove rope_scaling or use a model without it.`,
    );
  }
  const field = (name: string): number => {
    const v = rs[name];
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
      throw new Error(
        `${source}: field 'rope_scaling.${name}' must be a positive number for rope_type 'llama3', got ${JSON.stringify(v)}`,
      );
    }
    return v;
  };
  const out: RopeScaling = {
    rope_type: 'llama3',
    factor: field('factor'),
    low_freq_factor: field('low_freq_factor'),
    high_freq_factor: field('high_freq_factor'),
    original_max_position_embeddings: field('original_max_position_embeddings'),
  };
  if (out.high_freq_factor! <= out.low_freq_factor!) {
    throw new Error(
      `${source}: rope_scaling.high_freq_factor (${out.high_freq_factor}) must exceed low_freq_factor (${out.low_freq_factor})`,
    );
  }
  return out;
}

/** 'Llama', 'Mistral' or 'Qwen2': the prefix of the family's Hugging Face class names. */
export function familyPrefix(type: ModelType): string {
  return { llama: 'Llama', mistral: 'Mistral', qwen2: 'Qwen2' }[type];
}

/** Reads and normalises `<dir>/config.json`, with clear errors when it is missing or not JSON. */
export async function loadConfig(dir: string): Promise<ModelConfig> {
  const file = path.join(dir, 'config.json');
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new Error(
      code === 'ENOENT'
        ? `loadModel: no config.json in '${dir}'. Point at a Hugging Face model directory (config.json + *.safetensors).`
        : `loadModel: cannot read '${file}': ${(e as Error).message}`,
    );
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new Error(`loadModel: '${file}' is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new Error(`loadModel: '${file}' must hold a JSON object (a Hugging Face config.json), got ${Array.isArray(raw) ? 'an array' : String(raw)}`);
  }
  return normalizeConfig(raw as Record<string, unknown>, file);
}

/**
 * RoPE inverse frequencies [hs/2] as transformers computes them: the default
 * `1 / theta^(2i/hs)`, then for `llama3` scaling `_compute_llama3_parameters`: low frequencies
 * (wavelength above original_max/low_freq_factor) divided by `factor`, high ones kept, and a
 * smooth interpolation in between.
 */
export function ropeInvFreq(config: ModelConfig): Float32Array {
  const dim = config.head_dim;
  const inv = new Float32Array(dim / 2);
  for (let i = 0; i < dim / 2; i++) {
    // transformers computes this in float32: arange/dim, pow, reciprocal each round to f32
    const exponent = Math.fround((2 * i) / dim);
    inv[i] = Math.fround(1 / Math.fround(Math.pow(config.rope_theta, exponent)));
  }
  const rs = config.rope_scaling;
  if (!rs || rs.rope_type !== 'llama3') return inv;
  const factor = rs.factor;
  const low = rs.low_freq_factor!;
  const high = rs.high_freq_factor!;
  const oldContext = rs.original_max_position_embeddings!;
  const lowFreqWavelen = oldContext / low;
  const highFreqWavelen = oldContext / high;
  const out = new Float32Array(inv.length);
  for (let i = 0; i < inv.length; i++) {
    const wavelen = (2 * Math.PI) / inv[i];
    let f = wavelen > lowFreqWavelen ? inv[i] / factor : inv[i];
    if (!(wavelen < highFreqWavelen) && !(wavelen > lowFreqWavelen)) {
      const smooth = (oldContext / wavelen - low) / (high - low);
      f = (1 - smooth) * (f / factor) + smooth * f;
    }
    out[i] = f;
  }
  return out;
}
