/**
 * Regenerates the golden fixtures in test/fixtures/golden/: a tiny random model per case (written by
 * generateRandomModel), the token inputs, and the logits the PyTorch reference (llama_ref.py) computes.
 *
 * Run: npx tsx scripts/golden/make_fixtures.ts   (needs Debian's /usr/bin/python3 with python3-torch)
 */
import { execFileSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { generateRandomModel, type RandomModelOptions } from '../../src/models/random.js';

interface Case {
  name: string;
  input_ids: number[][];
  attention_mask?: number[][];
  position_ids?: number[][];
}

const root = path.resolve('test/fixtures/golden');
const small = { hiddenSize: 64, numHeads: 4, intermediateSize: 96, vocabSize: 128, numLayers: 2, std: 0.08 };

/** Row 0 is left-padded by 3 (pad id 0), row 1 is full: the usual batched-generation layout. */
const padded: Case = {
  name: 'padded_batch',
  input_ids: [
    [0, 0, 0, 17, 99, 4, 56, 23],
    [5, 64, 3, 127, 88, 12, 9, 41],
  ],
  attention_mask: [
    [0, 0, 0, 1, 1, 1, 1, 1],
    [1, 1, 1, 1, 1, 1, 1, 1],
  ],
};
const plain: Case = { name: 'no_mask', input_ids: [[7, 21, 3, 90, 45, 110, 2, 66, 31, 8]] };
const farPositions: Case = {
  name: 'position_ids_offset',
  input_ids: [[11, 12, 13, 14, 15, 16]],
  position_ids: [[200, 201, 202, 203, 204, 205]],
};

const fixtures: { name: string; options: RandomModelOptions; cases: Case[] }[] = [
  {
    name: 'llama_gqa_llama3_untied_bf16',
    options: {
      ...small,
      modelType: 'llama',
      numKvHeads: 2,
      tieWordEmbeddings: false,
      dtype: 'bfloat16',
      seed: 11,
      ropeScaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 },
    },
    cases: [padded, plain, farPositions],
  },
  {
    name: 'qwen2_gqa_bias_tied_f32',
    options: { ...small, modelType: 'qwen2', numKvHeads: 2, tieWordEmbeddings: true, dtype: 'float32', seed: 12, ropeTheta: 1000000 },
    cases: [padded, plain],
  },
  {
    name: 'mistral_mqa_sliding_f16',
    options: { ...small, modelType: 'mistral', numKvHeads: 1, dtype: 'float16', seed: 13, slidingWindow: 3 },
    cases: [padded, plain],
  },
];

for (const f of fixtures) {
  const dir = path.join(root, f.name);
  await fsp.rm(dir, { recursive: true, force: true });
  await generateRandomModel(dir, f.options);
  const inputs = path.join(dir, 'inputs.json');
  await fsp.writeFile(inputs, `${JSON.stringify({ cases: f.cases })}\n`);
  execFileSync('/usr/bin/python3', ['scripts/golden/llama_ref.py', dir, inputs, path.join(dir, 'expected.json')], {
    stdio: 'inherit',
  });
  console.log(`wrote ${dir}`);
}
