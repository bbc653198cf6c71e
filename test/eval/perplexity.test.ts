import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { strideWindows, evaluatePerplexity } from '../../src/eval/perplexity.js';
import { Module, tensorInput, type Kwargs } from '../../src/nn/module.js';
import type { CausalLM } from '../../src/models/types.js';
import { initBackend } from '../../src/tensor/backend.js';

/** A bigram "language model": logits at t are row ids[t] of a fixed table. Exact to check by hand. */
class BigramLM extends Module {
  readonly forwardParams = ['input_ids', 'attention_mask'] as const;
  readonly config = { vocab_size: 5, max_position_embeddings: 64 } as CausalLM['config'];
  readonly layers: Module[] = [];
  readonly decoderLayerClass = 'None';
  readonly weights = { load: async () => {}, release: () => {} };
  constructor(readonly table: number[][]) {
    super();
    this.addParameter('table', tf.tensor2d(table));
  }
  forward(inputs: Kwargs): tf.Tensor {
    const ids = tensorInput(this, inputs, 'input_ids');
    return tf.tidy(() => tf.gather(this.param('table'), ids));
  }
}

const TABLE = [
  [2, 0.5, -1, 0, 0.3],
  [0, 1, 2, -0.5, 0],
  [1, 1, 1, 1, 1],
  [-2, 0, 3, 0.1, 0.7],
  [0.2, 0.4, 0.6, 0.8, 1],
];
function logSoftmax64(row: number[]): number[] {
  const m = Math.max(...row);
  const lse = m + Math.log(row.reduce((s, x) => s + Math.exp(x - m), 0));
  return row.map((x) => x - lse);
}
/** Reference: mean NLL over the (prev, next) pairs a windowing scores. */
function referenceNll(pairs: [number, number][]): number {
  return pairs.reduce((s, [a, b]) => s - logSoftmax64(TABLE[a])[b], 0) / pairs.length;
}

const tmp = mkdtempSync(path.join(tmpdir(), 'ls-ppl-'));
beforeAll(async () => {
  await initBackend({ backend: 'cpu', warn: () => {} });
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function* chunks(...cs: number[][]) {
  yield* cs;
}
async function all<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

describe('strideWindows', () => {
  it('cuts non-overlapping windows, each scoring all but its first token', async () => {
    const w = await all(strideWindows(chunks([0, 1, 2], [3, 4, 5, 6, 7, 8], [9]), 4, 4));
    expect(w).toEqual([
      { ids: [0, 1, 2, 3], firstScored: 1 },
      { ids: [4, 5, 6, 7], firstScored: 1 },
      { ids: [8, 9], firstScored: 1 },
    ]);
  });
  it('with a smaller stride scores every token after the first exactly once', async () => {
    const w = await all(strideWindows(chunks([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]), 4, 2));
    expect(w.map((x) => x.ids[0])).toEqual([0, 2, 4, 6]);
    const scored = w.flatMap((x) => x.ids.slice(x.firstScored));
    expect(scored).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });
});

describe('evaluatePerplexity', () => {
  it('matches a float64 log-softmax reference on pre-tokenized data', async () => {
    const model = new BigramLM(TABLE) as unknown as CausalLM;
    const file = path.join(tmp, 'ids.jsonl');
    writeFileSync(file, '{"input_ids": [0, 1, 2, 3]}\n{"input_ids": [4, 0, 3]}\n');
    // stream 0 1 2 3 4 0 3, windows of 3: [0 1 2] [3 4 0] [3]
    const r = await evaluatePerplexity({ model, dataset: file, maxSeqLength: 3 });
    const pairs: [number, number][] = [[0, 1], [1, 2], [3, 4], [4, 0]];
    expect(r.tokens).toBe(4);
    expect(r.windows).toBe(2);
    expect(r.nll).toBeCloseTo(referenceNll(pairs), 6);
    expect(r.perplexity).toBeCloseTo(Math.exp(referenceNll(pairs)), 5);
    // one window covering everything: every adjacent pair
    const whole = await evaluatePerplexity({ model, dataset: file, maxSeqLength: 16 });
    expect(whole.tokens).toBe(6);
    expect(whole.nll).toBeCloseTo(referenceNll([[0, 1], [1, 2], [2, 3], [3, 4], [4, 0], [0, 3]]), 6);
  });

  it('scores caller batches per their attention mask, and leaks no tensor', async () => {
    const model = new BigramLM(TABLE) as unknown as CausalLM;
    const batch = {
      inputIds: Int32Array.from([0, 1, 2, 2, 3, 0]),
      attentionMask: Int32Array.from([1, 1, 1, 1, 1, 0]),
      batchSize: 2,
      seqLen: 3,
    };
    const before = tf.memory().numTensors;
    const r = await evaluatePerplexity({ model, dataset: [batch] });
    expect(tf.memory().numTensors).toBe(before);
    expect(r.tokens).toBe(3);
    expect(r.nll).toBeCloseTo(referenceNll([[0, 1], [1, 2], [2, 3]]), 6);
  });

  it('says which dataset gave nothing to score', async () => {
    const model = new BigramLM(TABLE) as unknown as CausalLM;
    const file = path.join(tmp, 'one.jsonl');
    writeFileSync(file, '{"input_ids": [2]}\n');
    await expect(evaluatePerplexity({ model, dataset: file, maxSeqLength: 8 })).rejects.toThrow(/one\.jsonl' gave no token to score/);
  });
});

describe('evaluatePerplexity on a Llama', () => {
  it('equals a direct log-softmax over the model logits', async () => {
    const { createRandomModel } = await import('../../src/models/random.js');
    const model = await createRandomModel({ modelType: 'llama', hiddenSize: 32, intermediateSize: 64, numLayers: 2, numHeads: 4, numKvHeads: 2, vocabSize: 50, seed: 11, std: 0.2 });
    const ids = Array.from({ length: 12 }, (_, i) => (i * 7 + 3) % 50);
    const file = path.join(tmp, 'llama.jsonl');
    writeFileSync(file, `${JSON.stringify({ input_ids: ids })}\n`);
    const before = tf.memory().numTensors;
    const r = await evaluatePerplexity({ model, dataset: file, maxSeqLength: 6 });
    expect(tf.memory().numTensors).toBe(before);
    // reference: windows [0..5] and [6..11], each scoring positions 1..5
    let nll = 0;
    for (const w of [ids.slice(0, 6), ids.slice(6)]) {
      const lpT = tf.tidy(() => {
        const logits = model.call([], { input_ids: tf.tensor2d([w], [1, 6], 'int32') }) as tf.Tensor;
        return tf.logSoftmax(tf.reshape(logits, [6, 50]));
      });
      const lp = (await lpT.array()) as number[][];
      lpT.dispose();
      for (let t = 1; t < 6; t++) nll -= lp[t - 1][w[t]];
    }
    expect(r.tokens).toBe(10);
    expect(r.nll).toBeCloseTo(nll / 10, 5);
    model.releaseParameters();
  });
});
