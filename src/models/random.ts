/**
 * Tiny deterministic random models, for tests and golden fixtures: a seeded PRNG fills every tensor
 * the config implies, weights ~N(0, std) and norm weights ~1, so activations stay in a sane range.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { familyPrefix, normalizeConfig } from './config.js';
import { modelFromSource, ARCHITECTURES } from './registry.js';
import { encodeFloat, writeSafetensors, type WritableTensor } from './safetensors.js';
import type { CausalLM, ModelConfig, ModelType, RopeScaling, TorchDtype } from './types.js';
import { MemorySource } from './weights.js';
import { mulberry32 } from '../util/prng.js';

export interface RandomModelOptions {
  modelType: ModelType;
  hiddenSize?: number;
  intermediateSize?: number;
  numLayers?: number;
  numHeads?: number;
  numKvHeads?: number;
  /** Default hidden / heads. */
  headDim?: number;
  vocabSize?: number;
  tieWordEmbeddings?: boolean;
  /** Llama/Mistral `attention_bias` (Qwen2 always has q/k/v biases). */
  attentionBias?: boolean;
  dtype?: TorchDtype;
  seed?: number;
  ropeScaling?: RopeScaling | null;
  ropeTheta?: number;
  /** Mistral only; default null (full attention). */
  slidingWindow?: number | null;
  /** Standard deviation of weights and biases; default 0.02 (transformers' initializer_range). */
  std?: number;
  /** Number of safetensors shards; > 1 writes `model.safetensors.index.json`. */
  shards?: number;
}

export { mulberry32 };

/** Standard normal samples (Box–Muller) from a uniform generator. */
export function gaussian(uniform: () => number): () => number {
  return () => {
    const u = 1 - uniform();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * uniform());
  };
}

/** The raw config.json object a generated model gets. */
export function randomConfigJson(o: RandomModelOptions): Record<string, unknown> {
  const hidden = o.hiddenSize ?? 64;
  const heads = o.numHeads ?? 4;
  const raw: Record<string, unknown> = {
    architectures: [`${familyPrefix(o.modelType)}ForCausalLM`],
    model_type: o.modelType,
    vocab_size: o.vocabSize ?? 256,
    hidden_size: hidden,
    intermediate_size: o.intermediateSize ?? hidden * 2,
    num_hidden_layers: o.numLayers ?? 2,
    num_attention_heads: heads,
    num_key_value_heads: o.numKvHeads ?? heads,
    head_dim: o.headDim ?? hidden / heads,
    hidden_act: 'silu',
    max_position_embeddings: 2048,
    rms_norm_eps: 1e-6,
    rope_theta: o.ropeTheta ?? 10000,
    rope_scaling: o.ropeScaling ?? null,
    tie_word_embeddings: o.tieWordEmbeddings ?? false,
    torch_dtype: o.dtype ?? 'float32',
    bos_token_id: 1,
    eos_token_id: 2,
    initializer_range: o.std ?? 0.02,
  };
  if (o.modelType === 'llama') {
    raw.attention_bias = o.attentionBias ?? false;
    raw.mlp_bias = false;
  }
  if (o.modelType === 'mistral') {
    raw.attention_bias = o.attentionBias ?? false;
    raw.sliding_window = o.slidingWindow ?? null;
  }
  if (o.modelType === 'qwen2') raw.use_sliding_window = false;
  return raw;
}

/** Every tensor `config` implies, filled from a seeded PRNG (norm weights 1 + N(0, 0.1)). */
export function randomTensors(config: ModelConfig, seed = 0, std = 0.02): Map<string, { shape: number[]; data: Float32Array }> {
  const normal = gaussian(mulberry32(seed));
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [name, shape] of ARCHITECTURES[config.model_type].tensorShapes(config)) {
    const n = shape.reduce((a, d) => a * d, 1);
    const data = new Float32Array(n);
    const isNorm = /norm\.weight$/.test(name);
    for (let i = 0; i < n; i++) data[i] = isNorm ? 1 + 0.1 * normal() : std * normal();
    out.set(name, { shape, data });
  }
  return out;
}

/** A random model in memory (no files): for tests that need a model quickly. */
export async function createRandomModel(options: RandomModelOptions): Promise<CausalLM> {
  const config = normalizeConfig(randomConfigJson(options), '(random config)');
  const source = new MemorySource(randomTensors(config, options.seed ?? 0, options.std ?? 0.02), '(random weights)');
  return modelFromSource(config, source);
}

/**
 * Writes a random Hugging Face model directory: config.json and model.safetensors, or
 * `model-0000i-of-0000n.safetensors` shards with an index when `shards > 1`. Deterministic in `seed`.
 * Weights are rounded to the storage dtype, so reading them back gives exactly what was written.
 */
export async function generateRandomModel(dir: string, options: RandomModelOptions): Promise<ModelConfig> {
  const raw = randomConfigJson(options);
  const config = normalizeConfig(raw, path.join(dir, 'config.json'));
  const tensors = randomTensors(config, options.seed ?? 0, options.std ?? 0.02);
  const stDtype = ({ float32: 'F32', float16: 'F16', bfloat16: 'BF16' } as const)[config.torch_dtype];
  const shards = Math.max(1, Math.min(options.shards ?? 1, tensors.size));
  await fsp.mkdir(dir, { recursive: true });
  await fsp.writeFile(path.join(dir, 'config.json'), `${JSON.stringify(raw, null, 2)}\n`);

  const encoded = [...tensors].map(([name, t]) => [name, { dtype: stDtype, shape: t.shape, data: encodeFloat(t.data, stDtype) }] as const);
  if (shards === 1) {
    await writeSafetensors(path.join(dir, 'model.safetensors'), new Map<string, WritableTensor>(encoded));
    return config;
  }
  // split in model order into shards of roughly equal byte size, as save_pretrained does
  const total = encoded.reduce((a, [, t]) => a + t.data.byteLength, 0);
  const weightMap: Record<string, string> = {};
  let shard = 0;
  let bytes = 0;
  const groups: Map<string, WritableTensor>[] = [new Map()];
  for (const [name, t] of encoded) {
    if (bytes >= ((shard + 1) * total) / shards && shard < shards - 1) {
      shard++;
      groups.push(new Map());
    }
    groups[shard].set(name, t);
    bytes += t.data.byteLength;
  }
  const pad = (i: number) => String(i).padStart(5, '0');
  for (let i = 0; i < groups.length; i++) {
    const file = `model-${pad(i + 1)}-of-${pad(groups.length)}.safetensors`;
    await writeSafetensors(path.join(dir, file), groups[i]);
    for (const name of groups[i].keys()) weightMap[name] = file;
  }
  await fsp.writeFile(
    path.join(dir, 'model.safetensors.index.json'),
    `${JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2)}\n`,
  );
  return config;
}
