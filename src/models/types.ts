/**
 * The contract between models and the rest of layerstream (pipelines, modifiers, checkpoint).
 *
 * Shape legend: B batch, T sequence length, H hidden size, V vocabulary, nh attention heads,
 * nkv key/value heads, hs head size.
 */
import type * as tf from '@tensorflow/tfjs-core';
import type { Module } from '../nn/module.js';

export type ModelType = 'llama' | 'mistral' | 'qwen2';
export type TorchDtype = 'float32' | 'float16' | 'bfloat16';

/** Llama-3 style rope scaling (`rope_type: 'llama3'`); other types are refused at load. */
export interface RopeScaling {
  rope_type: 'llama3' | 'default' | 'linear';
  factor: number;
  low_freq_factor?: number;
  high_freq_factor?: number;
  original_max_position_embeddings?: number;
}

/** config.json normalised once: every field the model needs, with the defaults filled in. */
export interface ModelConfig {
  model_type: ModelType;
  architectures: string[];
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  head_dim: number;
  rms_norm_eps: number;
  rope_theta: number;
  rope_scaling: RopeScaling | null;
  max_position_embeddings: number;
  tie_word_embeddings: boolean;
  /** q/k/v (and o for llama) projections have a bias. Qwen2: q/k/v always biased. */
  attention_bias: boolean;
  /** Qwen2 only: o_proj has no bias even though q/k/v do. */
  o_proj_bias: boolean;
  mlp_bias: boolean;
  /** Mistral sliding window; recorded, enforced only when shorter than the sequence. */
  sliding_window: number | null;
  torch_dtype: TorchDtype;
  bos_token_id: number | null;
  eos_token_id: number | number[] | null;
  pad_token_id: number | null;
  /** The config.json object as read, for writing back unchanged fields. */
  raw: Record<string, unknown>;
}

/**
 * A decoder-only causal language model.
 *
 * - `call([], {input_ids, attention_mask?})` → logits [B, T, V] (float32).
 * - Module names follow Hugging Face: `model.embed_tokens`, `model.rotary_emb`, `model.layers.{i}`
 *   (`self_attn.{q,k,v,o}_proj`, `mlp.{gate,up,down}_proj`, `input_layernorm`,
 *   `post_attention_layernorm`), `model.norm`, `lm_head`.
 * - Decoder layers have forwardParams `['hidden_states', 'attention_mask', 'position_ids',
 *   'position_embeddings']` and return a bare tensor [B, T, H]. `attention_mask` as a layer sees
 *   it is the additive 4-D mask [B, 1, T, T] (0 or -Infinity-like large negative, causal + padding),
 *   or null for plain causal attention; `position_embeddings` is `[cos, sin]`, each [B, T, hs].
 */
export interface CausalLM extends Module {
  readonly config: ModelConfig;
  /** The decoder layers in model order (module names `model.layers.{i}`). */
  readonly layers: Module[];
  /** The class name of the decoder layer, the default sequential target (`LlamaDecoderLayer`). */
  readonly decoderLayerClass: string;
  /** Where the weights come from; lazily loaded models read a module's tensors on demand. */
  readonly weights: WeightStore;
}

/** Loads and releases parameters by module-name prefix. */
export interface WeightStore {
  /** Reads every not-yet-loaded parameter whose name starts with `prefix` (all if ''). */
  load(prefix?: string): Promise<void>;
  /** Disposes the loaded parameters under `prefix` that were not modified since loading. */
  release(prefix?: string): void;
  /**
   * Empties the parameter slots under `prefix` (module-boundary matching, as `load`): modified
   * values move to host memory and later loads upload them instead of the source's; unmodified
   * ones are released. Optional: stores without it keep modified parameters on the device.
   */
  offload?(prefix: string): Promise<void> | void;
  /** True when the parameter's modified values were offloaded (they are on the host, not the device). */
  isOffloaded?(name: string): boolean;
}

export interface ForwardOptions {
  input_ids: tf.Tensor;
  attention_mask?: tf.Tensor;
}

/**
 * Where a model's tensors are read from: a safetensors file, a sharded set, or a compressed
 * checkpoint presenting dense weights. Names are Hugging Face parameter names.
 */
export interface TensorSource {
  keys(): string[];
  has(name: string): boolean;
  shape(name: string): number[];
  /** The stored dtype, e.g. 'F32', 'BF16' (for compressed tensors, the dtype of the dense weight). */
  dtype(name: string): string;
  readFloat32(name: string): Promise<Float32Array>;
  /** Where a tensor lives, for error messages (a file path). */
  describe(name: string): string;
}
