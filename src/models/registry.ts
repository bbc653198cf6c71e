/**
 * The model registry, keyed by config.json's `model_type`, and {@link loadModel}.
 *
 * Adding an architecture (checklist):
 * 1. src/models/types.ts: add the `model_type` to `ModelType` (an additive change).
 * 2. src/models/config.ts: add it to `SUPPORTED_MODEL_TYPES`, its transformers defaults to
 *    `FAMILY_DEFAULTS`, its class-name prefix to `familyPrefix`, and any fields it reads.
 * 3. A model file (or a flag in llama.ts when the graph is Llama's with a twist, as Qwen2's biases
 *    are): module and class names exactly as transformers names them, and a `tensorShapes(config)`
 *    listing every checkpoint tensor.
 * 4. `ARCHITECTURES` below: map the `model_type` to its builder and tensor shapes.
 * 5. src/models/random.ts: make `generateRandomModel` able to write one, and add a golden fixture
 *    (scripts/golden/, test/fixtures/golden/) computed by a PyTorch reference of the transformers code.
 */
import * as path from 'node:path';
import { loadConfig } from './config.js';
import { LlamaForCausalLM, llamaTensorShapes } from './llama.js';
import type { CausalLM, ModelConfig, ModelType, TensorSource, WeightStore } from './types.js';
import { ModelWeights, SafetensorsSource } from './weights.js';
import { isCompressedCheckpoint, openCompressedTensorsSource } from '../checkpoint/reader.js';

/** A model whose weight store is attached after construction. */
export type BuiltModel = CausalLM & { weights: WeightStore };

/** How to build one model family and check its checkpoint (adding a family adds one of these). */
export interface Architecture {
  /** Builds the module tree with empty parameter slots. */
  build(config: ModelConfig): BuiltModel;
  /** Every checkpoint tensor name → shape the config implies. */
  tensorShapes(config: ModelConfig): Map<string, number[]>;
  /** Checkpoint keys tolerated but not loaded (a tied `lm_head.weight` some exporters write). */
  optionalKeys(config: ModelConfig): Set<string>;
}

const LLAMA_FAMILY: Architecture = {
  build: (config) => new LlamaForCausalLM(config),
  tensorShapes: llamaTensorShapes,
  optionalKeys: (config) => new Set(config.tie_word_embeddings ? ['lm_head.weight'] : []),
};

/** The registry: config.json's `model_type` → its {@link Architecture}. */
export const ARCHITECTURES: Record<ModelType, Architecture> = {
  llama: LLAMA_FAMILY,
  mistral: LLAMA_FAMILY,
  qwen2: LLAMA_FAMILY,
};

export interface LoadModelOptions {
  /** Load parameters on demand (`model.weights.load('model.layers.3')`) instead of all at once. */
  lazy?: boolean;
  /** Read tensors from here instead of the directory's safetensors (e.g. a compressed checkpoint). */
  source?: TensorSource;
}

/**
 * Loads a Hugging Face model directory (config.json + model.safetensors or a sharded index).
 * Every checkpoint key and shape is checked against the config before anything is read.
 *
 * @example
 * const model = await loadModel('models/tiny-llama');
 * const logits = model.call([tf.tensor2d([[1, 2, 3]], undefined, 'int32')]) as tf.Tensor; // [1, 3, V]
 */
export async function loadModel(dir: string, options: LoadModelOptions = {}): Promise<CausalLM> {
  const config = await loadConfig(dir);
  // A compressed-tensors checkpoint (ours or llm-compressor's) is read back as dense weights.
  const source =
    options.source ??
    (isCompressedCheckpoint(config.raw) ? await openCompressedTensorsSource(dir) : await SafetensorsSource.open(dir));
  return modelFromSource(config, source, { lazy: options.lazy, configFile: path.join(dir, 'config.json') });
}

/** Builds a model for `config` over `source` (checked), loading everything unless `lazy`. */
export async function modelFromSource(
  config: ModelConfig,
  source: TensorSource,
  options: { lazy?: boolean; configFile?: string } = {},
): Promise<CausalLM> {
  const arch = ARCHITECTURES[config.model_type];
  const model = arch.build(config);
  model.weights = new ModelWeights(
    model,
    source,
    arch.tensorShapes(config),
    options.configFile ?? 'config.json',
    arch.optionalKeys(config),
  );
  if (!options.lazy) await model.weights.load('');
  return model;
}
