/**
 * Perplexity of a causal LM on a text file (or on caller-made token batches).
 *
 * Method (the Hugging Face "perplexity of fixed-length models" recipe): the file's samples are
 * tokenized as for calibration (BOS per sample where the tokenizer adds one) and concatenated
 * into one token stream; windows of `maxSeqLength` tokens start every `stride` tokens (default
 * `stride = maxSeqLength`: non-overlapping windows). Each window scores only the tokens no earlier
 * window scored, and never its own first token (it has no context). The result is the mean
 * negative log-likelihood per scored token (accumulated in float64) and `exp` of it.
 *
 * Memory: one window is on the device at a time; its logits and log-softmax live inside one
 * `tf.tidy`, and only the scored log-probabilities come back to the host.
 */
import * as tf from '@tensorflow/tfjs-core';
import { tokenizedSamples } from '../data/datasets.js';
import type { TextTokenizer } from '../data/tokenizer.js';
import type { TokenBatch } from '../data/types.js';
import type { CausalLM } from '../models/types.js';
import { uploadBatch } from '../../operators/pipelineInternals.js';

export interface PerplexityOptions {
  model: CausalLM;
  /** Needed for text data; pre-tokenized data and TokenBatch sources need none. */
  tokenizer?: TextTokenizer;
  /**
   * A dataset file (see src/data/datasets.ts for formats), or batches whose rows are scored as
   * given (each row one window; padding per its attention mask).
   */
  dataset: string | AsyncIterable<TokenBatch> | Iterable<TokenBatch>;
  /** Window length. Default 2048, capped at the model's max_position_embeddings. */
  maxSeqLength?: number;
  /** Distance between window starts; default `maxSeqLength`. Smaller strides give each token more context. */
  stride?: number;
  /** JSON lines: the text field. Default 'text'. */
  textColumn?: string;
  /** Stop after scoring about this many tokens (whole windows). Default: the whole dataset. */
  maxTokens?: number;
  signal?: AbortSignal;
  /** Called after each window. */
  onProgress?: (progress: { windows: number; tokens: number }) => void;
}

export interface PerplexityResult {
  /** exp(nll). */
  perplexity: number;
  /** Mean negative log-likelihood per scored token, in nats. */
  nll: number;
  /** Number of scored (predicted) tokens. */
  tokens: number;
  windows: number;
  seconds: number;
}

/** A window of the token stream and the first position (window-relative) it scores. */
interface Window {
  ids: number[];
  firstScored: number;
}

/** Splits a stream of token chunks into strided windows (see the module doc). */
export async function* strideWindows(
  chunks: AsyncIterable<readonly number[]>,
  maxSeqLength: number,
  stride: number,
): AsyncGenerator<Window> {
  let buffer: number[] = [];
  let bufferStart = 0; // stream position of buffer[0]
  let begin = 0;
  let prevEnd = 0;
  const take = (end: number): Window => {
    const w = { ids: buffer.slice(begin - bufferStart, end - bufferStart), firstScored: Math.max(1, prevEnd - begin) };
    prevEnd = end;
    begin += stride;
    buffer = buffer.slice(begin - bufferStart);
    bufferStart = begin;
    return w;
  };
  for await (const chunk of chunks) {
    for (const id of chunk) buffer.push(id);
    while (bufferStart + buffer.length >= begin + maxSeqLength) yield take(begin + maxSeqLength);
  }
  const total = bufferStart + buffer.length;
  if (total > prevEnd && total - begin > 1) yield take(total);
}

/**
 * Log-probabilities of `ids[t]` under the logits at `t-1`, for every t ≥ 1. One forward pass,
 * tidied: only the [B, T-1] result leaves the device. Owner of the returned tensor: the caller.
 */
export function targetLogProbs(model: CausalLM, batch: TokenBatch): tf.Tensor2D {
  const { batchSize: B, seqLen: T } = batch;
  if (T < 2) throw new Error(`targetLogProbs: a window needs at least 2 tokens, got ${T}.`);
  return tf.tidy(() => {
    // padded ids become 0 there; only positions whose token and predecessor are real are scored,
    // and those never attend to padding, so their log-probabilities are unaffected
    const kwargs = uploadBatch(batch);
    const inputIds = kwargs.input_ids as tf.Tensor2D;
    const logits = model.call([], kwargs) as tf.Tensor3D; // [B, T, V]
    const V = logits.shape[2];
    const predicting = tf.reshape(tf.slice(logits, [0, 0, 0], [B, T - 1, V]), [B * (T - 1), V]);
    const logp = tf.reshape(tf.logSoftmax(predicting), [-1]);
    const targets = tf.reshape(tf.slice(inputIds, [0, 1], [B, T - 1]), [-1]);
    const rowBase = tf.mul(tf.range(0, B * (T - 1), 1, 'int32'), tf.scalar(V, 'int32'));
    return tf.reshape(tf.gather(logp, tf.add(rowBase, targets)), [B, T - 1]) as tf.Tensor2D;
  });
}

function isBatchSource(d: PerplexityOptions['dataset']): d is AsyncIterable<TokenBatch> | Iterable<TokenBatch> {
  return typeof d !== 'string';
}

/** Scored positions of a caller-made batch: t ≥ 1 with a real token at t and t-1. */
function batchScoredMask(batch: TokenBatch): (b: number, t: number) => boolean {
  const m = batch.attentionMask;
  return m ? (b, t) => m[b * batch.seqLen + t] === 1 && m[b * batch.seqLen + t - 1] === 1 : () => true;
}

async function* windowsAsBatches(options: PerplexityOptions, maxSeqLength: number, stride: number) {
  const chunks = tokenizedSamples({
    path: options.dataset as string,
    tokenizer: options.tokenizer,
    vocabSize: options.model.config.vocab_size,
    textColumn: options.textColumn,
  });
  for await (const w of strideWindows(chunks, maxSeqLength, stride)) {
    const batch: TokenBatch = { inputIds: Int32Array.from(w.ids), batchSize: 1, seqLen: w.ids.length };
    yield { batch, scored: (_b: number, t: number) => t >= w.firstScored };
  }
}

async function* givenBatches(source: AsyncIterable<TokenBatch> | Iterable<TokenBatch>) {
  for await (const batch of source) yield { batch, scored: batchScoredMask(batch) };
}

/**
 * Evaluates perplexity; see the module doc for the method.
 *
 * @example
 * const model = await loadModelForEval('out/brown-llama-w4a16');
 * const tokenizer = await loadTokenizer('out/brown-llama-w4a16');
 * const { perplexity, tokens } = await evaluatePerplexity({ model, tokenizer, dataset: 'eval.txt', maxSeqLength: 512 });
 */
export async function evaluatePerplexity(options: PerplexityOptions): Promise<PerplexityResult> {
  const started = performance.now();
  const { model } = options;
  const maxSeqLength = Math.min(options.maxSeqLength ?? 2048, model.config.max_position_embeddings);
  const stride = options.stride ?? maxSeqLength;
  if (!Number.isInteger(maxSeqLength) || maxSeqLength < 2) {
    throw new Error(`evaluatePerplexity: maxSeqLength must be an integer ≥ 2, got ${options.maxSeqLength}.`);
  }
  if (!Number.isInteger(stride) || stride < 1 || stride > maxSeqLength) {
    throw new Error(`evaluatePerplexity: stride must be an integer in [1, maxSeqLength=${maxSeqLength}], got ${options.stride}.`);
  }
  await model.weights.load('');
  const source = isBatchSource(options.dataset) ? givenBatches(options.dataset) : windowsAsBatches(options, maxSeqLength, stride);
  let nllSum = 0;
  let tokens = 0;
  let windows = 0;
  for await (const { batch, scored } of source) {
    // wasm reads resolve as microtasks: without a macrotask turn, signals (Ctrl-C) and timers starve
    await new Promise((resolve) => setImmediate(resolve));
    options.signal?.throwIfAborted();
    if (batch.seqLen < 2) continue;
    const logp = targetLogProbs(model, batch);
    const values = await logp.data().finally(() => logp.dispose());
    const T1 = batch.seqLen - 1;
    for (let b = 0; b < batch.batchSize; b++) {
      for (let t = 1; t <= T1; t++) {
        if (!scored(b, t)) continue;
        nllSum -= values[b * T1 + t - 1];
        tokens++;
      }
    }
    windows++;
    options.onProgress?.({ windows, tokens });
    if (options.maxTokens !== undefined && tokens >= options.maxTokens) break;
  }
  if (tokens === 0) {
    const what = typeof options.dataset === 'string' ? `'${options.dataset}'` : 'the given batches';
    throw new Error(`evaluatePerplexity: ${what} gave no token to score (perplexity needs at least 2 tokens in a window).`);
  }
  const nll = nllSum / tokens;
  return { perplexity: Math.exp(nll), nll, tokens, windows, seconds: (performance.now() - started) / 1000 };
}
