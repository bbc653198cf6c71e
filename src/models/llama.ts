/**
 * The Llama family (Llama 2/3, Mistral, Qwen2) as Hugging Face transformers computes it
 * (`modeling_llama.py`), in one file: pre-norm decoder layers of grouped-query attention with
 * rotary position embeddings and a SiLU-gated MLP. Module names and class names are Hugging Face's,
 * so recipe targets (`re:.*self_attn\.q_proj`, `LlamaDecoderLayer`) match as they do in Python.
 *
 * Shape legend: B batch, T sequence length, H hidden size, I intermediate size, V vocabulary,
 * nh attention heads, nkv key/value heads, hs head size (nh * hs need not equal H).
 *
 * Ownership: every forward runs in tf.tidy and returns one new tensor; parameters are owned by
 * their modules and filled by a {@link WeightStore}.
 */
import * as tf from '@tensorflow/tfjs-core';
import { Module, describe, tensorInput, type Kwargs } from '../nn/module.js';
import { Embedding, Linear, RMSNorm, TiedLinear } from '../nn/layers.js';
import { familyPrefix, ropeInvFreq } from './config.js';
import type { CausalLM, ModelConfig, WeightStore } from './types.js';
import { NO_WEIGHTS } from './weights.js';

/** Added to attention scores where attention is not allowed: finite, so fully masked rows give no NaN. */
export const MASK_VALUE = -1e9;

/** A module whose class name is `<Family><role>` (`Qwen2DecoderLayer`), as in transformers. */
abstract class FamilyModule extends Module {
  constructor(private readonly familyClass: string) {
    super();
  }
  override get className(): string {
    return this.familyClass;
  }
  override classNames(): string[] {
    return [this.familyClass];
  }
}

/** x·(cos) + rotate_half(x)·(sin); x [B, T, n, hs], cos/sin [B, T, hs]. */
function applyRope(x: tf.Tensor, cos: tf.Tensor, sin: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const half = x.shape[3]! / 2;
    const [x1, x2] = tf.split(x, [half, half], 3);
    const rotated = tf.concat([tf.neg(x2), x1], 3);
    return tf.add(tf.mul(x, tf.expandDims(cos, 2)), tf.mul(rotated, tf.expandDims(sin, 2)));
  });
}

/** 1 where query i may attend key j (j ≤ i, and i - j < window), else 0; built in JS, which beats
 * broadcast comparisons on wasm by an order of magnitude. */
function allowedCausal(T: number, window: number | null): Uint8Array {
  const w = window ?? T;
  const out = new Uint8Array(T * T);
  for (let i = 0; i < T; i++) out.fill(1, i * T + Math.max(0, i - w + 1), i * T + i + 1);
  return out;
}

/**
 * `copies` stacked [T, T] additive masks, [copies·T, T], one per query head sharing a kv head, so
 * adding it to the scores needs no broadcast (slow on wasm, as is tf.tile). From `rows` (a [T, T]
 * additive mask) or, when absent, causal.
 */
function stackedMask(T: number, copies: number, window: number | null, rows?: Float32Array): tf.Tensor {
  const one = rows ?? Float32Array.from(allowedCausal(T, window), (a) => (a ? 0 : MASK_VALUE));
  const out = new Float32Array(copies * T * T);
  for (let c = 0; c < copies; c++) out.set(one, c * T * T);
  return tf.tensor2d(out, [copies * T, T]);
}

/**
 * The additive 4-D mask [B, 1, T, T] from a 2-D attention_mask [B, T] (1 = token, 0 = padding), or
 * null when nothing is padded and no sliding window applies (the layers then mask causally).
 */
export function buildAttentionMask(mask2d: tf.Tensor | undefined, B: number, T: number, window: number | null): tf.Tensor | null {
  const keys = mask2d?.dataSync();
  const padded = keys !== undefined && keys.some((k) => k === 0);
  if (!padded && (window === null || window >= T)) return null;
  const causal = allowedCausal(T, window);
  const out = new Float32Array(B * T * T);
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < T; i++) {
      for (let j = 0; j < T; j++) {
        const ok = causal[i * T + j] === 1 && (keys === undefined || keys[b * T + j] !== 0);
        out[(b * T + i) * T + j] = ok ? 0 : MASK_VALUE;
      }
    }
  }
  return tf.tensor4d(out, [B, 1, T, T]);
}

/**
 * softmax(q·kᵀ·scale + mask)·v; q [B, T, nh, hs], k/v [B, T, nkv, hs], mask [B, 1, T, T] or null
 * (causal). Head h reads kv head ⌊h / g⌋, g = nh/nkv (transformers' repeat_kv), so the g query heads
 * of one kv head are stacked into one [g·T, hs] operand: one pair of rank-2 matMuls per (batch, kv
 * head), the only fast matMul on wasm. Each pair runs in its own tidy, so at most one [g·T, T] block of
 * scores is live.
 */
function attend(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, mask: tf.Tensor | null, window: number | null): tf.Tensor {
  return tf.tidy(() => {
    const [B, T, nh, hs] = q.shape as number[];
    const nkv = k.shape[2]!;
    const g = nh / nkv;
    const n = B * nkv;
    const scale = 1 / Math.sqrt(hs);
    const qs = tf.split(tf.reshape(tf.transpose(q, [0, 2, 1, 3]), [n * g * T, hs]), n, 0); // [g·T, hs] each
    const kTs = tf.split(tf.reshape(tf.transpose(k, [0, 2, 3, 1]), [n * hs, T]), n, 0); // [hs, T] each
    const vs = tf.split(tf.reshape(tf.transpose(v, [0, 2, 1, 3]), [n * T, hs]), n, 0); // [T, hs] each
    const data = mask?.dataSync() as Float32Array | undefined;
    const masks = data
      ? Array.from({ length: B }, (_, b) => stackedMask(T, g, window, data.subarray(b * T * T, (b + 1) * T * T)))
      : [stackedMask(T, g, window)]; // [g·T, T] per batch row, or one causal
    const outs = qs.map((qg, i) =>
      tf.tidy(() => {
        const scores = tf.add(tf.mul(tf.matMul(qg, kTs[i]), scale), masks[mask ? Math.floor(i / nkv) : 0]);
        return tf.matMul(tf.softmax(scores), vs[i]); // [g·T, hs]
      }),
    );
    const out = tf.reshape(tf.concat(outs, 0), [B, nh, T, hs]);
    return tf.reshape(tf.transpose(out, [0, 2, 1, 3]), [B, T, nh * hs]);
  });
}

/** Reads `position_embeddings` ([cos, sin], each [B, T, hs]) with an error that says what was passed. */
function cosSin(module: Module, inputs: Kwargs): [tf.Tensor, tf.Tensor] {
  const pe = inputs.position_embeddings;
  if (!Array.isArray(pe) || pe.length !== 2 || !(pe[0] instanceof tf.Tensor) || !(pe[1] instanceof tf.Tensor)) {
    throw new Error(
      `${module.className}.forward: 'position_embeddings' must be [cos, sin] (tensors [B, T, hs] from ` +
        `model.rotary_emb), got ${describe(pe)}. Pass the kwargs the model gives its decoder layers.`,
    );
  }
  return [pe[0], pe[1]];
}

function optionalMask(module: Module, inputs: Kwargs): tf.Tensor | null {
  const m = inputs.attention_mask;
  if (m === undefined || m === null) return null;
  if (!(m instanceof tf.Tensor) || m.rank !== 4) {
    throw new Error(`${module.className}.forward: 'attention_mask' must be null or an additive [B, 1, T, T] mask, got ${describe(m)}`);
  }
  return m;
}

/** RoPE cos/sin from position_ids; `inv_freq` is a constant, not a parameter (as in transformers). */
export class RotaryEmbedding extends FamilyModule {
  readonly forwardParams = ['x', 'position_ids'] as const;
  constructor(family: string, readonly invFreq: Float32Array) {
    super(`${family}RotaryEmbedding`);
  }
  /** → [cos, sin], each [B, T, hs]. */
  forward(inputs: Kwargs): [tf.Tensor, tf.Tensor] {
    const pos = tensorInput(this, inputs, 'position_ids'); // [B, T]
    return tf.tidy(() => {
      const freqs = tf.mul(tf.expandDims(tf.cast(pos, 'float32'), 2), tf.tensor1d(this.invFreq)); // [B, T, hs/2]
      const emb = tf.concat([freqs, freqs], 2);
      return [tf.cos(emb), tf.sin(emb)] as [tf.Tensor, tf.Tensor];
    });
  }
}

/** Multi-head attention with grouped key/value heads and rotary positions (transformers' `LlamaAttention`). */
export class Attention extends FamilyModule {
  readonly forwardParams = ['hidden_states', 'attention_mask', 'position_ids', 'position_embeddings'] as const;
  readonly q_proj: Linear;
  readonly k_proj: Linear;
  readonly v_proj: Linear;
  readonly o_proj: Linear;
  constructor(family: string, readonly config: ModelConfig) {
    super(`${family}Attention`);
    const { hidden_size: H, num_attention_heads: nh, num_key_value_heads: nkv, head_dim: hs } = config;
    this.q_proj = this.addModule('q_proj', new Linear(H, nh * hs, config.attention_bias));
    this.k_proj = this.addModule('k_proj', new Linear(H, nkv * hs, config.attention_bias));
    this.v_proj = this.addModule('v_proj', new Linear(H, nkv * hs, config.attention_bias));
    this.o_proj = this.addModule('o_proj', new Linear(nh * hs, H, config.o_proj_bias));
  }
  forward(inputs: Kwargs): tf.Tensor {
    const x = tensorInput(this, inputs, 'hidden_states'); // [B, T, H]
    const mask = optionalMask(this, inputs);
    const [cos, sin] = cosSin(this, inputs);
    const { num_attention_heads: nh, num_key_value_heads: nkv, head_dim: hs } = this.config;
    return tf.tidy(() => {
      const [B, T] = x.shape as number[];
      if (mask && (mask.shape[0] !== B || mask.shape[1] !== 1 || mask.shape[2] !== T || mask.shape[3] !== T)) {
        throw new Error(`${this.className}.forward: 'attention_mask' must be [${B}, 1, ${T}, ${T}] for hidden_states ${describe(x)}, got ${describe(mask)}`);
      }
      const q = applyRope(tf.reshape(this.q_proj.apply(x), [B, T, nh, hs]), cos, sin);
      const k = applyRope(tf.reshape(this.k_proj.apply(x), [B, T, nkv, hs]), cos, sin);
      const v = tf.reshape(this.v_proj.apply(x), [B, T, nkv, hs]);
      return this.o_proj.apply(attend(q, k, v, mask, this.config.sliding_window)); // [B, T, H]
    });
  }
}

/** The gated MLP: `down_proj(silu(gate_proj(x)) · up_proj(x))` (transformers' `LlamaMLP`). */
export class MLP extends FamilyModule {
  readonly forwardParams = ['hidden_states'] as const;
  readonly gate_proj: Linear;
  readonly up_proj: Linear;
  readonly down_proj: Linear;
  constructor(family: string, config: ModelConfig) {
    super(`${family}MLP`);
    const { hidden_size: H, intermediate_size: I, mlp_bias: bias } = config;
    this.gate_proj = this.addModule('gate_proj', new Linear(H, I, bias));
    this.up_proj = this.addModule('up_proj', new Linear(H, I, bias));
    this.down_proj = this.addModule('down_proj', new Linear(I, H, bias));
  }
  /** down(silu(gate(x)) · up(x)). */
  forward(inputs: Kwargs): tf.Tensor {
    const x = tensorInput(this, inputs, 'hidden_states');
    return tf.tidy(() => {
      const gate = this.gate_proj.apply(x); // [B, T, I]
      const act = tf.mul(gate, tf.sigmoid(gate));
      return this.down_proj.apply(tf.mul(act, this.up_proj.apply(x)));
    });
  }
}

/** One pre-norm block: h = x + attn(norm(x)); out = h + mlp(norm(h)). Returns a bare tensor [B, T, H]. */
export class DecoderLayer extends FamilyModule {
  readonly forwardParams = ['hidden_states', 'attention_mask', 'position_ids', 'position_embeddings'] as const;
  readonly self_attn: Attention;
  readonly mlp: MLP;
  readonly input_layernorm: RMSNorm;
  readonly post_attention_layernorm: RMSNorm;
  constructor(family: string, config: ModelConfig) {
    super(`${family}DecoderLayer`);
    this.self_attn = this.addModule('self_attn', new Attention(family, config));
    this.mlp = this.addModule('mlp', new MLP(family, config));
    this.input_layernorm = this.addModule('input_layernorm', new RMSNorm(config.hidden_size, config.rms_norm_eps, `${family}RMSNorm`));
    this.post_attention_layernorm = this.addModule(
      'post_attention_layernorm',
      new RMSNorm(config.hidden_size, config.rms_norm_eps, `${family}RMSNorm`),
    );
  }
  forward(inputs: Kwargs): tf.Tensor {
    const x = tensorInput(this, inputs, 'hidden_states');
    const { attention_mask, position_ids, position_embeddings } = inputs;
    return tf.tidy(() => {
      const attn = this.self_attn.call([this.input_layernorm.apply(x)], { attention_mask, position_ids, position_embeddings });
      const h = tf.add(x, attn as tf.Tensor);
      return tf.add(h, this.mlp.call([this.post_attention_layernorm.apply(h)]) as tf.Tensor);
    });
  }
}

/** `model`: embeddings, rotary embedding, the decoder layers and the final norm → hidden [B, T, H]. */
export class DecoderModel extends FamilyModule {
  readonly forwardParams = ['input_ids', 'attention_mask', 'position_ids'] as const;
  readonly embed_tokens: Embedding;
  readonly rotary_emb: RotaryEmbedding;
  readonly layers: DecoderLayer[] = [];
  readonly norm: RMSNorm;
  constructor(family: string, readonly config: ModelConfig) {
    super(`${family}Model`);
    this.embed_tokens = this.addModule('embed_tokens', new Embedding(config.vocab_size, config.hidden_size));
    this.rotary_emb = this.addModule('rotary_emb', new RotaryEmbedding(family, ropeInvFreq(config)));
    // `layers` is a container module so names read `model.layers.{i}` as in PyTorch's ModuleList
    const list = this.addModule('layers', new ModuleList());
    for (let i = 0; i < config.num_hidden_layers; i++) this.layers.push(list.append(new DecoderLayer(family, config)));
    this.norm = this.addModule('norm', new RMSNorm(config.hidden_size, config.rms_norm_eps, `${family}RMSNorm`));
  }
  forward(inputs: Kwargs): tf.Tensor {
    const ids = tensorInput(this, inputs, 'input_ids');
    if (ids.rank !== 2) throw new Error(`${this.className}.forward: 'input_ids' must be [B, T], got ${describe(ids)}`);
    const [B, T] = ids.shape as number[];
    const mask2d = inputs.attention_mask == null ? undefined : tensorInput(this, inputs, 'attention_mask');
    if (mask2d && (mask2d.rank !== 2 || mask2d.shape[0] !== B || mask2d.shape[1] !== T)) {
      throw new Error(`${this.className}.forward: 'attention_mask' must be [${B}, ${T}] like input_ids, got ${describe(mask2d)}`);
    }
    const given = inputs.position_ids == null ? undefined : tensorInput(this, inputs, 'position_ids');
    return tf.tidy(() => {
      // transformers' default: 0..T-1 on every row, even with left padding
      const position_ids = given ?? tf.tile(tf.expandDims(tf.range(0, T, 1, 'int32'), 0), [B, 1]);
      let h = this.embed_tokens.apply(ids); // [B, T, H]
      const position_embeddings = this.rotary_emb.call([h, position_ids]);
      const attention_mask = buildAttentionMask(mask2d, B, T, this.config.sliding_window);
      for (const layer of this.layers) {
        h = layer.call([h], { attention_mask, position_ids, position_embeddings }) as tf.Tensor;
      }
      return this.norm.apply(h);
    });
  }
}

/** A numbered container (`layers.0`, `layers.1`, ...), like torch.nn.ModuleList; not callable. */
export class ModuleList extends Module {
  readonly forwardParams = [] as const;
  private count = 0;
  append<M extends Module>(m: M): M {
    return this.addModule(String(this.count++), m);
  }
  forward(): never {
    throw new Error('ModuleList is a container; call its children');
  }
}

/**
 * `LlamaForCausalLM` / `MistralForCausalLM` / `Qwen2ForCausalLM`: `call([input_ids], {attention_mask?,
 * position_ids?})` → logits [B, T, V] float32. Parameters start empty; {@link loadModel} fills them.
 */
export class LlamaForCausalLM extends FamilyModule implements CausalLM {
  readonly forwardParams = ['input_ids', 'attention_mask', 'position_ids'] as const;
  readonly model: DecoderModel;
  readonly lm_head: Linear | TiedLinear;
  readonly decoderLayerClass: string;
  weights: WeightStore = NO_WEIGHTS;

  constructor(readonly config: ModelConfig) {
    const family = familyPrefix(config.model_type);
    super(`${family}ForCausalLM`);
    this.decoderLayerClass = `${family}DecoderLayer`;
    this.model = this.addModule('model', new DecoderModel(family, config));
    const { hidden_size: H, vocab_size: V } = config;
    this.lm_head = this.addModule(
      'lm_head',
      config.tie_word_embeddings ? new TiedLinear(this.model.embed_tokens, 'model.embed_tokens.weight', H, V) : new Linear(H, V),
    );
  }

  get layers(): DecoderLayer[] {
    return this.model.layers;
  }

  forward(inputs: Kwargs): tf.Tensor {
    const { input_ids, attention_mask, position_ids } = inputs;
    return tf.tidy(() => {
      const h = this.model.call([input_ids], { attention_mask, position_ids }) as tf.Tensor;
      return tf.cast(this.lm_head.apply(h), 'float32'); // [B, T, V]
    });
  }

  /** Disposes every parameter (the model is unusable afterwards unless reloaded). */
  dispose(): void {
    this.weights.release('');
    this.releaseParameters();
  }
}

/**
 * Tensor name → shape, as `config` implies for a Hugging Face checkpoint (a tied model has no
 * `lm_head.weight`). The weight store checks every checkpoint key and shape against this.
 */
export function llamaTensorShapes(config: ModelConfig): Map<string, number[]> {
  const { hidden_size: H, intermediate_size: I, vocab_size: V, head_dim: hs } = config;
  const q = config.num_attention_heads * hs;
  const kv = config.num_key_value_heads * hs;
  const out = new Map<string, number[]>();
  const linear = (name: string, o: number, i: number, bias: boolean) => {
    out.set(`${name}.weight`, [o, i]);
    if (bias) out.set(`${name}.bias`, [o]);
  };
  out.set('model.embed_tokens.weight', [V, H]);
  for (let l = 0; l < config.num_hidden_layers; l++) {
    const p = `model.layers.${l}`;
    linear(`${p}.self_attn.q_proj`, q, H, config.attention_bias);
    linear(`${p}.self_attn.k_proj`, kv, H, config.attention_bias);
    linear(`${p}.self_attn.v_proj`, kv, H, config.attention_bias);
    linear(`${p}.self_attn.o_proj`, H, q, config.o_proj_bias);
    linear(`${p}.mlp.gate_proj`, I, H, config.mlp_bias);
    linear(`${p}.mlp.up_proj`, I, H, config.mlp_bias);
    linear(`${p}.mlp.down_proj`, H, I, config.mlp_bias);
    out.set(`${p}.input_layernorm.weight`, [H]);
    out.set(`${p}.post_attention_layernorm.weight`, [H]);
  }
  out.set('model.norm.weight', [H]);
  if (!config.tie_word_embeddings) out.set('lm_head.weight', [V, H]);
  return out;
}
