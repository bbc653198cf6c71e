import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { promises as fsp, statSync } from 'node:fs';
import * as path from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { initBackend } from '../../src/tensor/backend.js';
import { loadModel } from '../../src/models/registry.js';
import { SafetensorsFile } from '../../src/models/safetensors.js';
import type { CausalLM } from '../../src/models/types.js';
import { DATA_DIR, REPO_ROOT } from '../../examples/train/corpus.js';
import { perplexity, tokenizeLines } from '../../examples/train/train.js';

const DIR = path.join(REPO_ROOT, 'examples', 'models', 'brown-llama');
const readJson = async (name: string) => JSON.parse(await fsp.readFile(path.join(DIR, name), 'utf8')) as Record<string, unknown>;

let tokenizer: Tokenizer;
let evalLines: string[];

beforeAll(async () => {
  await initBackend({ backend: 'wasm' });
  tokenizer = new Tokenizer(await readJson('tokenizer.json'), await readJson('tokenizer_config.json'));
  evalLines = (await fsp.readFile(path.join(DATA_DIR, 'brown-eval.txt'), 'utf8')).split('\n').filter((l) => l.length > 0);
});

describe('committed data files', () => {
  it('are small, and calibration has at least 512 lines', async () => {
    for (const f of ['brown-calib.txt', 'brown-eval.txt']) expect(statSync(path.join(DATA_DIR, f)).size).toBeLessThan(1 << 20);
    const calib = (await fsp.readFile(path.join(DATA_DIR, 'brown-calib.txt'), 'utf8')).split('\n').filter(Boolean);
    expect(calib.length).toBeGreaterThanOrEqual(512);
    expect(calib.some((l) => /\/(nn|at|vbd)\b/.test(l))).toBe(false); // POS tags stripped
  });
});

describe('examples/models/brown-llama', () => {
  it('has the demo architecture, W4A16 group-128 friendly', async () => {
    const c = await readJson('config.json');
    expect(c).toMatchObject({
      model_type: 'llama', hidden_size: 256, intermediate_size: 768, num_hidden_layers: 4,
      num_attention_heads: 4, num_key_value_heads: 2, head_dim: 64, vocab_size: 4096,
      tie_word_embeddings: true, torch_dtype: 'bfloat16', bos_token_id: 1, eos_token_id: 2,
    });
    for (const inFeatures of [c.hidden_size, c.intermediate_size] as number[]) expect(inFeatures % 128).toBe(0);
  });

  it('stores bf16 weights in under 10 MB', async () => {
    const file = path.join(DIR, 'model.safetensors');
    expect(statSync(file).size).toBeLessThan(10 * 2 ** 20);
    const st = await SafetensorsFile.open(file);
    expect(new Set(st.keys().map((k) => st.info(k).dtype))).toEqual(new Set(['BF16']));
    expect(st.keys()).not.toContain('lm_head.weight');
  });

  it('has a tokenizer that prepends <s> and round-trips the eval text', () => {
    expect(tokenizer.token_to_id('<s>')).toBe(1);
    expect(tokenizer.token_to_id('</s>')).toBe(2);
    for (const line of evalLines.slice(0, 50)) {
      const { ids } = tokenizer.encode(line);
      expect(ids[0]).toBe(1);
      expect(Math.max(...ids)).toBeLessThan(4096);
      expect(tokenizer.decode(ids, { skip_special_tokens: true })).toBe(line);
    }
  });

  it('loads with loadModel and predicts held-out text far better than chance, without leaking', async () => {
    const model: CausalLM = await loadModel(DIR);
    const stream = tokenizeLines(tokenizer, evalLines.slice(0, 40));
    const before = tf.memory().numTensors;
    const { ppl, tokens } = await perplexity(model, stream, 128, 4, 512);
    expect(tf.memory().numTensors).toBe(before);
    expect(tokens).toBe(512);
    // chance is 4096; the trained model's full-eval perplexity is in README.md
    expect(ppl).toBeLessThan(1000);
    model.weights.release('');
    model.releaseParameters();
  });
});
