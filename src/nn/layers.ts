/**
 * Leaf modules: Linear (optional bias), Embedding, RMSNorm. Shapes follow PyTorch:
 * Linear.weight is [out, in]; Embedding.weight is [vocab, hidden]; RMSNorm.weight is [hidden].
 */
import * as tf from '@tensorflow/tfjs-core';
import { Module, tensorInput, type Kwargs } from './module.js';
import { acceleratorActive } from '../tensor/accel.js';

function transposeFlagIsFast(): boolean {
  return tf.getBackend() !== 'wasm' || acceleratorActive();
}

/**
 * x·Wᵀ (+ b) over the last axis, with the input flattened to 2-D. Stock wasm runs matMul fast only
 * without transpose flags (14 vs 25 GFLOP/s here, far worse for transposeA), so there the weight is
 * transposed explicitly; the native kernels and tfjs-node take transposeB directly (181 vs 117).
 */
export function linear(x: tf.Tensor, weight: tf.Tensor, bias?: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const [out, inF] = weight.shape;
    if (x.shape[x.shape.length - 1] !== inF) {
      throw new Error(
        `linear: input has ${x.shape[x.shape.length - 1]} features, weight expects ${inF} (input shape ` +
          `[${x.shape}], weight shape [out, in] = [${weight.shape}]). The input's last axis must be the ` +
          `weight's in_features: check the checkpoint's shapes against config.json.`,
      );
    }
    const lead = x.shape.slice(0, -1);
    const x2 = tf.reshape(x, [-1, inF]) as tf.Tensor2D;
    const w = weight as tf.Tensor2D;
    let y: tf.Tensor = transposeFlagIsFast() ? tf.matMul(x2, w, false, true) : tf.matMul(x2, tf.transpose(w));
    if (bias) y = tf.add(y, bias);
    return tf.reshape(y, [...lead, out]);
  });
}

/** `nn.Linear`: y = x·Wᵀ (+ b), weight [outFeatures, inFeatures]; the quantization modifiers' usual target. */
export class Linear extends Module {
  readonly forwardParams = ['input'] as const;
  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    readonly hasBias = false,
  ) {
    super();
    this.addParameter('weight');
    if (hasBias) this.addParameter('bias');
  }
  forward(inputs: Kwargs): tf.Tensor {
    const x = tensorInput(this, inputs, 'input');
    return linear(x, this.param('weight'), this.hasBias ? this.param('bias') : undefined);
  }
  /** Runs with hooks on one input tensor. */
  apply(x: tf.Tensor): tf.Tensor {
    return this.call([x]) as tf.Tensor;
  }
}

/** `nn.Embedding`: a row of the weight [numEmbeddings, embeddingDim] per token id. */
export class Embedding extends Module {
  readonly forwardParams = ['input_ids'] as const;
  constructor(
    readonly numEmbeddings: number,
    readonly embeddingDim: number,
  ) {
    super();
    this.addParameter('weight');
  }
  forward(inputs: Kwargs): tf.Tensor {
    const ids = tensorInput(this, inputs, 'input_ids');
    return tf.tidy(() => tf.gather(this.param('weight'), tf.cast(ids, 'int32')));
  }
  apply(ids: tf.Tensor): tf.Tensor {
    return this.call([ids]) as tf.Tensor;
  }
}

/** RMSNorm over the last axis: `weight · x / sqrt(mean(x²) + eps)`, weight [hiddenSize]. */
export class RMSNorm extends Module {
  readonly forwardParams = ['hidden_states'] as const;
  /** @param familyClass an extra class name to answer to in target matching (`LlamaRMSNorm`). */
  constructor(
    readonly hiddenSize: number,
    readonly eps: number,
    readonly familyClass?: string,
  ) {
    super();
    this.addParameter('weight');
  }
  override classNames(): string[] {
    return this.familyClass ? [...super.classNames(), this.familyClass] : super.classNames();
  }
  forward(inputs: Kwargs): tf.Tensor {
    const x = tensorInput(this, inputs, 'hidden_states');
    return tf.tidy(() => {
      const variance = tf.mean(tf.square(x), -1, true);
      return tf.mul(this.param('weight'), tf.mul(x, tf.rsqrt(tf.add(variance, this.eps))));
    });
  }
  apply(x: tf.Tensor): tf.Tensor {
    return this.call([x]) as tf.Tensor;
  }
}

/**
 * A Linear whose weight is another module's (`lm_head` tied to `model.embed_tokens` when
 * `tie_word_embeddings` is set). It owns no parameter: the embedding owns the tensor, so releasing
 * or saving sees it once, and `tiedTo` tells a checkpoint writer not to write `lm_head.weight`.
 */
export class TiedLinear extends Module {
  readonly forwardParams = ['input'] as const;
  readonly hasBias = false;
  constructor(
    readonly source: Module,
    /** Full name of the parameter this weight is, e.g. `model.embed_tokens.weight`. */
    readonly tiedTo: string,
    readonly inFeatures: number,
    readonly outFeatures: number,
  ) {
    super();
  }
  /** Answers to `Linear` too, as Hugging Face's tied `lm_head` is an `nn.Linear`. */
  override classNames(): string[] {
    return ['TiedLinear', 'Linear'];
  }
  override param(name: string): tf.Tensor {
    return name === 'weight' ? this.source.param('weight') : super.param(name);
  }
  override hasParameter(name: string): boolean {
    return name === 'weight' ? this.source.hasParameter('weight') : super.hasParameter(name);
  }
  override setParameter(name: string, value: tf.Tensor | undefined): void {
    if (name === 'weight') {
      throw new Error(
        `TiedLinear: this weight is '${this.tiedTo}' (tie_word_embeddings); changing it would change the ` +
          `embeddings too. Add 'lm_head' to the recipe's ignore list.`,
      );
    }
    super.setParameter(name, value);
  }
  forward(inputs: Kwargs): tf.Tensor {
    return linear(tensorInput(this, inputs, 'input'), this.param('weight'));
  }
  apply(x: tf.Tensor): tf.Tensor {
    return this.call([x]) as tf.Tensor;
  }
}
