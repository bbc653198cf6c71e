/**
 * Trains the demo model, examples/models/brown-llama: a 4-layer Llama (H 256, GQA 4/2 heads) on the
 * Brown corpus, with layerstream's own model code, on tfjs-wasm.
 *
 *   npx tsx examples/train/train.ts [--steps N] [--out DIR] [--seed S] [--batch B] [--lr LR]
 *                                   [--eval-tokens N]
 *
 * Steps: train the byte-level BPE tokenizer on the training split (tokenizer.ts); tokenize every
 * training paragraph with `<s>` in front and concatenate; cut the stream into windows of T+1
 * tokens and visit them in a seeded shuffled order; Adam with linear warmup and cosine decay,
 * gradients clipped to global norm 1. Then save in bfloat16 with the tokenizer files, load the
 * saved directory back with `loadModel`, and measure perplexity on examples/data/brown-eval.txt.
 * Given the seed, initialisation and data order are fixed, so a rerun repeats the run.
 *
 * Shape legend: B batch, T sequence length, V vocabulary.
 */
import * as tf from '@tensorflow/tfjs-core';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Tokenizer } from '@huggingface/tokenizers';
import { initBackend } from '../../src/tensor/backend.js';
import { normalizeConfig } from '../../src/models/config.js';
import { LlamaForCausalLM, llamaTensorShapes } from '../../src/models/llama.js';
import { gaussian, mulberry32 } from '../../src/models/random.js';
import { loadModel } from '../../src/models/registry.js';
import { saveModel } from '../../src/models/save.js';
import type { CausalLM } from '../../src/models/types.js';
import { DATA_DIR, paragraphsOf, readBrown, REPO_ROOT, splitBrown } from './corpus.js';
import { registerTrainingGradients } from './grads.js';
import { modelCard, type TrainingSummary } from './model-card.js';
import { tokenizerFiles, trainBpe, writeTokenizerFiles } from './tokenizer.js';

export interface TrainOptions {
  steps: number;
  out: string;
  seed: number;
  batch: number;
  seqLen: number;
  lr: number;
  warmup: number;
  /** Cap on evaluation tokens (0: the whole eval file). */
  evalTokens: number;
  logEvery: number;
}

const DEFAULTS: TrainOptions = {
  steps: 720,
  out: path.join(REPO_ROOT, 'examples', 'models', 'brown-llama'),
  seed: 1234,
  batch: 16,
  seqLen: 128,
  lr: 3e-3,
  warmup: 40,
  evalTokens: 0,
  logEvery: 20,
};

const VOCAB_SIZE = 4096;

/** The demo architecture; in_features are multiples of 128 so W4A16 with group size 128 applies. */
export function demoConfigJson(vocabSize: number): Record<string, unknown> {
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    vocab_size: Math.ceil(vocabSize / 64) * 64,
    hidden_size: 256,
    intermediate_size: 768,
    num_hidden_layers: 4,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    head_dim: 64,
    hidden_act: 'silu',
    max_position_embeddings: 512,
    rope_theta: 10000,
    rms_norm_eps: 1e-5,
    attention_bias: false,
    mlp_bias: false,
    tie_word_embeddings: true,
    initializer_range: 0.02,
    torch_dtype: 'bfloat16',
    bos_token_id: 1,
    eos_token_id: 2,
    pad_token_id: 3,
  };
}

/**
 * Seeded GPT-2 style init: weights ~N(0, 0.02), the two projections that write into the residual
 * stream (o_proj, down_proj) scaled by 1/√(2·layers), norms at 1. Each parameter becomes a
 * tf.Variable owned by its module; returns the variables in model order.
 */
export function initParameters(model: LlamaForCausalLM, seed: number, std = 0.02): tf.Variable[] {
  const normal = gaussian(mulberry32(seed));
  const shapes = llamaTensorShapes(model.config);
  const residualStd = std / Math.sqrt(2 * model.config.num_hidden_layers);
  const variables: tf.Variable[] = [];
  for (const [name, , module, param] of model.namedParameters()) {
    const shape = shapes.get(name)!;
    const data = new Float32Array(shape.reduce((a, d) => a * d, 1));
    if (name.endsWith('norm.weight')) data.fill(1);
    else {
      const s = /(o_proj|down_proj)\.weight$/.test(name) ? residualStd : std;
      for (let i = 0; i < data.length; i++) data[i] = s * normal();
    }
    const v = tf.variable(tf.tensor(data, shape, 'float32'), true, `train/${name}`);
    module.setParameter(param, v);
    variables.push(v);
  }
  return variables;
}

/** Encodes each line (the tokenizer prepends `<s>`) and concatenates the ids. */
export function tokenizeLines(tokenizer: Tokenizer, lines: readonly string[]): Int32Array {
  const parts = lines.map((l) => tokenizer.encode(l).ids);
  const out = new Int32Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * Mean next-token cross-entropy of logits [N, V] against targets [N] int32. The gradient is
 * written out, (softmax − onehot)/N, so the backward pass costs two passes over the logits
 * instead of the composite logSoftmax's six.
 */
export function crossEntropy(logits: tf.Tensor2D, targets: tf.Tensor1D): tf.Scalar {
  const [N, V] = logits.shape;
  if (targets.shape[0] !== N) {
    throw new Error(`crossEntropy: logits have ${N} rows but targets has ${targets.shape[0]} entries; flatten both to B·T`);
  }
  const loss = tf.customGrad(((x: tf.Tensor, save: tf.GradSaveFunc) => {
    const probs = tf.softmax(x);
    // int32 then cast: tfjs-wasm's OneHot writes integer bits into a float32 output
    const onehot = tf.cast(tf.oneHot(targets, V), 'float32');
    // floor at 1e-30: a target with probability 0 in float32 costs 69 nats, not Infinity
    const picked = tf.maximum(tf.sum(tf.mul(probs, onehot), 1), 1e-30);
    save([probs, onehot]);
    return {
      value: tf.neg(tf.mean(tf.log(picked))) as tf.Scalar,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.mul(tf.sub(saved[0], saved[1]), tf.div(dy, N)),
    };
  }) as unknown as Parameters<typeof tf.customGrad<tf.Scalar>>[0]);
  return tf.tidy(() => loss(logits) as tf.Scalar);
}

/** The model's loss on a batch: logits [B, T, V] flattened against targets [B·T]. */
export function lmLoss(model: CausalLM, ids: tf.Tensor2D, targets: tf.Tensor1D): tf.Scalar {
  return tf.tidy(() => {
    const logits = model.call([], { input_ids: ids }) as tf.Tensor;
    return crossEntropy(tf.reshape(logits, [-1, logits.shape[2]!]) as tf.Tensor2D, targets);
  });
}

/** Inputs [B, T] and targets [B·T] from windows of T+1 tokens starting at `starts`. */
function makeBatch(stream: Int32Array, starts: number[], T: number): { ids: tf.Tensor2D; targets: tf.Tensor1D } {
  const ids = new Int32Array(starts.length * T);
  const targets = new Int32Array(starts.length * T);
  starts.forEach((s, b) => {
    ids.set(stream.subarray(s, s + T), b * T);
    targets.set(stream.subarray(s + 1, s + T + 1), b * T);
  });
  return { ids: tf.tensor2d(ids, [starts.length, T], 'int32'), targets: tf.tensor1d(targets, 'int32') };
}

/** Scales gradients so their global L2 norm is at most `maxNorm`. */
function clipByGlobalNorm(grads: tf.NamedTensorMap, maxNorm: number): tf.NamedTensorMap {
  return tf.tidy(() => {
    const norm = tf.sqrt(tf.addN(Object.values(grads).map((g) => tf.sum(tf.square(g)))));
    const scale = tf.div(maxNorm, tf.maximum(norm, maxNorm));
    return Object.fromEntries(Object.entries(grads).map(([k, g]) => [k, tf.mul(g, scale)]));
  });
}

/** Linear warmup to `peak`, then cosine decay to peak/10 at `total`. */
export function learningRate(step: number, peak: number, warmup: number, total: number): number {
  if (step < warmup) return (peak * (step + 1)) / warmup;
  const progress = Math.min(1, (step - warmup) / Math.max(1, total - warmup));
  return peak * (0.1 + 0.45 * (1 + Math.cos(Math.PI * progress)));
}

/**
 * Perplexity over non-overlapping windows of T+1 tokens (each window predicts T tokens from its own
 * context only). `maxTokens` > 0 stops after that many predicted tokens.
 */
export async function perplexity(model: CausalLM, stream: Int32Array, T: number, B: number, maxTokens = 0): Promise<{ ppl: number; nll: number; tokens: number }> {
  const starts: number[] = [];
  for (let s = 0; s + T + 1 <= stream.length && (maxTokens <= 0 || starts.length * T < maxTokens); s += T) starts.push(s);
  let sum = 0;
  for (let i = 0; i < starts.length; i += B) {
    const chunk = starts.slice(i, i + B);
    const nll = tf.tidy(() => {
      const { ids, targets } = makeBatch(stream, chunk, T);
      return tf.mul(lmLoss(model, ids, targets), chunk.length * T);
    });
    sum += (await nll.data())[0];
    nll.dispose();
  }
  const tokens = starts.length * T;
  return { ppl: Math.exp(sum / tokens), nll: sum / tokens, tokens };
}

function parseArgs(argv: string[]): TrainOptions {
  const o = { ...DEFAULTS };
  const numeric: Record<string, keyof TrainOptions> = {
    '--steps': 'steps', '--seed': 'seed', '--batch': 'batch', '--seq-len': 'seqLen', '--lr': 'lr',
    '--warmup': 'warmup', '--eval-tokens': 'evalTokens', '--log-every': 'logEvery',
  };
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]];
    if (flag === '--out') o.out = path.resolve(value);
    else if (flag in numeric) {
      const n = Number(value);
      if (!Number.isFinite(n) || n < 0) throw new Error(`${flag}: expected a non-negative number, got '${value}'`);
      (o as Record<string, unknown>)[numeric[flag]] = n;
    } else {
      throw new Error(`unknown option '${flag}'. Options: --steps --out --seed --batch --seq-len --lr --warmup --eval-tokens --log-every`);
    }
  }
  return o;
}

const fmt = (s: number) => `${Math.floor(s / 60)}m${(s % 60).toFixed(0).padStart(2, '0')}s`;

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  const started = performance.now();
  const elapsed = () => (performance.now() - started) / 1000;
  const backend = await initBackend({ backend: 'wasm' });
  const nativeMatMul = backend.acceleratedKernels.includes(tf.BatchMatMul);
  registerTrainingGradients({ matMul: !nativeMatMul });
  console.log(`backend ${backend.name}${nativeMatMul ? ' + native BLAS matMul' : ''}; seed ${opts.seed}`);

  const splits = splitBrown(await readBrown());
  const bpe = trainBpe(paragraphsOf(splits.train), { vocabSize: VOCAB_SIZE });
  const files = tokenizerFiles(bpe, 512);
  const tokenizer = new Tokenizer(files.tokenizer, files.tokenizerConfig);
  const trainStream = tokenizeLines(tokenizer, paragraphsOf(splits.train));
  const evalLines = (await fsp.readFile(path.join(DATA_DIR, 'brown-eval.txt'), 'utf8')).split('\n').filter((l) => l.length > 0);
  const evalStream = tokenizeLines(tokenizer, evalLines);
  console.log(`tokenizer: ${bpe.merges.length} merges; train ${trainStream.length} tokens, eval ${evalStream.length} tokens (${fmt(elapsed())})`);

  const config = normalizeConfig(demoConfigJson(Object.keys(bpe.vocab).length), 'examples/train/train.ts');
  const model = new LlamaForCausalLM(config);
  const variables = initParameters(model, opts.seed);
  const nParams = variables.reduce((a, v) => a + v.size, 0);
  console.log(`model: ${config.num_hidden_layers} layers, H ${config.hidden_size}, V ${config.vocab_size}, ${(nParams / 1e6).toFixed(2)} M parameters`);

  const { batch: B, seqLen: T } = opts;
  const order: number[] = [];
  for (let s = 0; s + T + 1 <= trainStream.length; s += T) order.push(s);
  const rng = mulberry32(opts.seed + 1);
  const shuffle = () => {
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(rng() * (i + 1));
      [order[i], order[j]] = [order[j], order[i]];
    }
  };
  shuffle();

  const optimizer = tf.train.adam(opts.lr, 0.9, 0.95, 1e-8);
  const setLr = (lr: number) => ((optimizer as unknown as { learningRate: number }).learningRate = lr);
  const log: { step: number; loss: number; lr: number; seconds: number }[] = [];
  let window = 0;
  let cursor = 0;
  let tensorsAfterFirst = 0;
  const trainStart = performance.now();
  for (let step = 0; step < opts.steps; step++) {
    if (cursor + B > order.length) {
      shuffle();
      cursor = 0;
    }
    const starts = order.slice(cursor, (cursor += B));
    const lr = learningRate(step, opts.lr, opts.warmup, opts.steps);
    setLr(lr);
    const loss = tf.tidy(() => {
      const { ids, targets } = makeBatch(trainStream, starts, T);
      const { value, grads } = tf.variableGrads(() => lmLoss(model, ids, targets), variables);
      optimizer.applyGradients(clipByGlobalNorm(grads, 1) as Parameters<typeof optimizer.applyGradients>[0]);
      return value;
    });
    window += (await loss.data())[0];
    loss.dispose();
    if (step === 0) tensorsAfterFirst = tf.memory().numTensors;
    if ((step + 1) % opts.logEvery === 0 || step + 1 === opts.steps) {
      const n = (step % opts.logEvery) + 1;
      const seconds = (performance.now() - trainStart) / 1000;
      log.push({ step: step + 1, loss: window / n, lr, seconds });
      console.log(
        `step ${step + 1}/${opts.steps}  loss ${(window / n).toFixed(4)}  lr ${lr.toExponential(2)}  ` +
          `${((seconds * 1000) / (step + 1)).toFixed(0)} ms/step  tensors ${tf.memory().numTensors}  ${fmt(seconds)}`,
      );
      window = 0;
    }
  }
  const trainSeconds = (performance.now() - trainStart) / 1000;
  if (tf.memory().numTensors !== tensorsAfterFirst) {
    throw new Error(`training leaked tensors: ${tensorsAfterFirst} after step 1, ${tf.memory().numTensors} at the end`);
  }

  await saveModel(model, opts.out, { dtype: 'bfloat16' });
  await writeTokenizerFiles(opts.out, files);
  await fsp.writeFile(
    path.join(opts.out, 'generation_config.json'),
    JSON.stringify({ bos_token_id: 1, eos_token_id: 2, pad_token_id: 3 }, null, 2) + '\n',
  );
  model.dispose();
  optimizer.dispose();

  const saved = await loadModel(opts.out);
  const evalResult = await perplexity(saved, evalStream, T, B, opts.evalTokens);
  (saved as LlamaForCausalLM).dispose();
  const summary: TrainingSummary = {
    command: `npx tsx examples/train/train.ts ${process.argv.slice(2).join(' ')}`.trim(),
    seed: opts.seed,
    steps: opts.steps,
    batch: B,
    seq_len: T,
    peak_lr: opts.lr,
    warmup: opts.warmup,
    tokens_seen: opts.steps * B * T,
    train_tokens: trainStream.length,
    parameters: nParams,
    backend: backend.name + (nativeMatMul ? ' + native BLAS matMul' : ''),
    train_seconds: Math.round(trainSeconds),
    final_train_loss: log[log.length - 1].loss,
    eval_tokens: evalResult.tokens,
    eval_nll: evalResult.nll,
    eval_perplexity_bf16: evalResult.ppl,
    loss_curve: log,
  };
  await fsp.writeFile(path.join(opts.out, 'training_log.json'), JSON.stringify(summary, null, 2) + '\n');
  await fsp.writeFile(path.join(opts.out, 'README.md'), modelCard(summary));
  console.log(
    `trained ${opts.steps} steps (${summary.tokens_seen} tokens) in ${fmt(trainSeconds)}; final train loss ` +
      `${summary.final_train_loss.toFixed(4)}; eval perplexity (bf16, ${evalResult.tokens} tokens) ` +
      `${evalResult.ppl.toFixed(2)}; total ${fmt(elapsed())} → ${opts.out}`,
  );
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await main();
}
