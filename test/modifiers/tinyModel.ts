/** A tiny Llama-shaped module tree for modifier tests: q/k/v share an input, gate/up share one. */
import * as tf from '@tensorflow/tfjs-core';
import { Linear } from '../../src/nn/layers.js';
import { Module, tensorInput, type Kwargs } from '../../src/nn/module.js';
import { randn } from '../linalg/random.js';

export const HIDDEN = 16;
export const INTER = 24;

function linear(inF: number, outF: number, seed: number): Linear {
  const l = new Linear(inF, outF);
  l.setParameter('weight', tf.tensor2d(randn(outF * inF, seed), [outF, inF]));
  return l;
}

class TinyAttention extends Module {
  readonly forwardParams = ['hidden_states'] as const;
  readonly q_proj: Linear;
  readonly k_proj: Linear;
  readonly v_proj: Linear;
  readonly o_proj: Linear;
  constructor(seed: number) {
    super();
    this.q_proj = this.addModule('q_proj', linear(HIDDEN, HIDDEN, seed));
    this.k_proj = this.addModule('k_proj', linear(HIDDEN, HIDDEN, seed + 1));
    this.v_proj = this.addModule('v_proj', linear(HIDDEN, HIDDEN, seed + 2));
    this.o_proj = this.addModule('o_proj', linear(HIDDEN, HIDDEN, seed + 3));
  }
  forward(inputs: Kwargs): tf.Tensor {
    const x = tensorInput(this, inputs, 'hidden_states');
    return tf.tidy(() => {
      const mixed = tf.add(tf.mul(this.q_proj.apply(x), this.k_proj.apply(x)), this.v_proj.apply(x));
      return this.o_proj.apply(tf.tanh(mixed));
    });
  }
}

class TinyMlp extends Module {
  readonly forwardParams = ['hidden_states'] as const;
  readonly gate_proj: Linear;
  readonly up_proj: Linear;
  readonly down_proj: Linear;
  constructor(seed: number) {
    super();
    this.gate_proj = this.addModule('gate_proj', linear(HIDDEN, INTER, seed));
    this.up_proj = this.addModule('up_proj', linear(HIDDEN, INTER, seed + 1));
    this.down_proj = this.addModule('down_proj', linear(INTER, HIDDEN, seed + 2));
  }
  forward(inputs: Kwargs): tf.Tensor {
    const x = tensorInput(this, inputs, 'hidden_states');
    return tf.tidy(() => this.down_proj.apply(tf.mul(tf.sigmoid(this.gate_proj.apply(x)), this.up_proj.apply(x))));
  }
}

export class TinyDecoderLayer extends Module {
  readonly forwardParams = ['hidden_states'] as const;
  readonly self_attn: TinyAttention;
  readonly mlp: TinyMlp;
  constructor(seed: number) {
    super();
    this.self_attn = this.addModule('self_attn', new TinyAttention(seed));
    this.mlp = this.addModule('mlp', new TinyMlp(seed + 10));
  }
  forward(inputs: Kwargs): tf.Tensor {
    const x = tensorInput(this, inputs, 'hidden_states');
    return tf.tidy(() => {
      const h = tf.add(x, this.self_attn.call([x]) as tf.Tensor);
      return tf.add(h, this.mlp.call([h]) as tf.Tensor);
    });
  }
}

class TinyInner extends Module {
  readonly forwardParams = ['hidden_states'] as const;
  readonly layerList: TinyDecoderLayer[] = [];
  constructor(n: number) {
    super();
    const layers = this.addModule('layers', new Container());
    for (let i = 0; i < n; i++) this.layerList.push(layers.add(String(i), new TinyDecoderLayer(100 * (i + 1))));
  }
  forward(inputs: Kwargs): tf.Tensor {
    let h = tensorInput(this, inputs, 'hidden_states');
    for (const layer of this.layerList) h = layer.call([h]) as tf.Tensor;
    return h;
  }
}

class Container extends Module {
  readonly forwardParams = [] as const;
  add<M extends Module>(name: string, m: M): M {
    return this.addModule(name, m);
  }
  forward(): never {
    throw new Error('Container has no forward');
  }
}

/** model.layers.{i}.{self_attn,mlp}.*, plus lm_head. */
export class TinyModel extends Module {
  readonly forwardParams = ['hidden_states'] as const;
  readonly model: TinyInner;
  readonly lm_head: Linear;
  constructor(layers = 2) {
    super();
    this.model = this.addModule('model', new TinyInner(layers));
    this.lm_head = this.addModule('lm_head', linear(HIDDEN, 8, 999));
  }
  get layers(): TinyDecoderLayer[] {
    return this.model.layerList;
  }
  forward(inputs: Kwargs): tf.Tensor {
    return this.lm_head.apply(this.model.call([tensorInput(this, inputs, 'hidden_states')]) as tf.Tensor);
  }
}

/** Calibration batches [1, T, HIDDEN]. */
export function batches(count: number, T: number, seed: number): tf.Tensor3D[] {
  return Array.from({ length: count }, (_, i) => tf.tensor3d(randn(T * HIDDEN, seed + i), [1, T, HIDDEN]));
}
