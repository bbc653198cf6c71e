import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { firstValueFrom, toArray } from 'rxjs';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { loadTokenizer } from '../../src/data/tokenizer.js';
import { loadModelForEval } from '../../src/eval/load.js';
import { evaluatePerplexity } from '../../src/eval/perplexity.js';
import { generateRandomModel } from '../../src/models/random.js';
import { oneshot, oneshotAsync, resolveModifiers, type OneshotEvent } from '../../src/oneshot.js';
import { initBackend } from '../../src/tensor/backend.js';

const FIX = path.join(import.meta.dirname, '../fixtures');
const tmp = mkdtempSync(path.join(tmpdir(), 'ls-oneshot-'));
const modelDir = path.join(tmp, 'tiny');
const calib = path.join(tmp, 'calib.txt');
const words = ['the', 'cat', 'sat', 'on', 'mat', 'a', 'dog', 'ran', 'in', 'park', 'sun', 'is', 'hot'];

beforeAll(async () => {
  await initBackend({ backend: 'wasm' });
  // in_features 128/256 so W4A16's group size 128 applies; vocab 272 ≥ the fixture tokenizer's 270
  await generateRandomModel(modelDir, { modelType: 'llama', hiddenSize: 128, intermediateSize: 256, numLayers: 2, numHeads: 4, numKvHeads: 2, vocabSize: 272, seed: 5 });
  cpSync(path.join(FIX, 'tokenizer'), modelDir, { recursive: true });
  const lines = Array.from({ length: 64 }, (_, i) => Array.from({ length: 12 }, (_, j) => words[(i * 7 + j * 3) % words.length]).join(' '));
  writeFileSync(calib, lines.join('\n') + '\n');
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const leftovers = () => readdirSync(tmp).filter((n) => n.includes('.tmp'));

describe('oneshot', () => {
  it('runs GPTQ W4A16 end to end, writes a checkpoint that evaluates, and leaks no tensor', async () => {
    const before = tf.memory().numTensors;
    const outputDir = path.join(tmp, 'out-gptq');
    const events = await firstValueFrom(
      oneshot({ model: modelDir, dataset: calib, scheme: 'W4A16', outputDir, numCalibrationSamples: 8, maxSeqLength: 32 }).pipe(toArray()),
    );
    const types = events.map((e) => e.type);
    expect(types[types.length - 1]).toBe('result');
    expect(types).toContain('calibration_start');
    expect(events.some((e) => e.type === 'layer_progress' && e.label === '(2/2): Calibrating')).toBe(true);
    const result = events[events.length - 1] as Extract<OneshotEvent, { type: 'result' }>;
    expect(result.modules).toHaveLength(14);
    expect(result.modules.every((m) => m.samples === 8 && m.loss >= 0)).toBe(true);
    expect(result.outputDir).toBe(outputDir);
    expect(result.peakDeviceBytes).toBeGreaterThan(0);
    expect(tf.memory().numTensors).toBe(before);
    const config = JSON.parse(readFileSync(path.join(outputDir, 'config.json'), 'utf8'));
    expect(config.quantization_config.quant_method).toBe('compressed-tensors');
    expect(existsSync(path.join(outputDir, 'recipe.yaml'))).toBe(true);
    expect(existsSync(path.join(outputDir, 'tokenizer.json'))).toBe(true);

    const model = await loadModelForEval(outputDir);
    const ppl = await evaluatePerplexity({ model, tokenizer: await loadTokenizer(outputDir), dataset: calib, maxSeqLength: 32, maxTokens: 200 });
    model.releaseParameters();
    expect(ppl.perplexity).toBeGreaterThan(100);
    expect(ppl.perplexity).toBeLessThan(600);
  });

  it('runs a round-to-nearest recipe without data (datafree)', async () => {
    const recipe = 'quant_stage:\n  quant_modifiers:\n    QuantizationModifier:\n      targets: [Linear]\n      scheme: W8A16\n      ignore: [lm_head]\n';
    const before = tf.memory().numTensors;
    const result = await oneshotAsync({ model: modelDir, recipe, outputDir: path.join(tmp, 'out-rtn') });
    expect(tf.memory().numTensors).toBe(before);
    expect(result.pipeline).toBe('datafree');
    const config = JSON.parse(readFileSync(path.join(tmp, 'out-rtn', 'config.json'), 'utf8'));
    expect(config.quantization_config.config_groups.group_0.weights.num_bits).toBe(8);
    expect(existsSync(path.join(tmp, 'out-rtn', 'model.safetensors'))).toBe(true);
  });

  it('aborting through the signal leaves no output directory, no temp files and no tensors', async () => {
    const before = tf.memory().numTensors;
    const controller = new AbortController();
    const outputDir = path.join(tmp, 'out-aborted');
    const run = oneshotAsync(
      { model: modelDir, dataset: calib, scheme: 'W4A16', outputDir, numCalibrationSamples: 32, maxSeqLength: 32, signal: controller.signal },
      (e) => {
        if (e.type === 'layer_done') controller.abort(new Error('stop here'));
      },
    );
    await expect(run).rejects.toThrow(/stop here/);
    expect(existsSync(outputDir)).toBe(false);
    expect(leftovers()).toEqual([]);
    expect(tf.memory().numTensors).toBe(before);
    await new Promise((r) => setTimeout(r, 300)); // nothing in flight comes back later
    expect(tf.memory().numTensors).toBe(before);
  });

  it('aborting while the checkpoint is written removes it', async () => {
    const before = tf.memory().numTensors;
    const controller = new AbortController();
    const outputDir = path.join(tmp, 'out-aborted-save');
    const run = oneshotAsync(
      { model: modelDir, dataset: calib, scheme: 'W4A16', outputDir, numCalibrationSamples: 4, maxSeqLength: 16, signal: controller.signal },
      (e) => {
        if (e.type === 'stage' && e.stage === 'save') queueMicrotask(() => controller.abort(new Error('stop saving')));
      },
    );
    await expect(run).rejects.toThrow(/stop saving/);
    expect(existsSync(outputDir)).toBe(false);
    expect(leftovers()).toEqual([]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('unsubscribing stops the run', async () => {
    const outputDir = path.join(tmp, 'out-unsubscribed');
    const before = tf.memory().numTensors;
    let sawProgress = false;
    await new Promise<void>((resolve) => {
      const sub = oneshot({ model: modelDir, dataset: calib, scheme: 'W4A16', outputDir, numCalibrationSamples: 32, maxSeqLength: 32 }).subscribe((e) => {
        if (e.type === 'layer_progress' && !sawProgress) {
          sawProgress = true;
          queueMicrotask(() => {
            sub.unsubscribe();
            resolve();
          });
        }
      });
    });
    // teardown is synchronous, but a forward pass in flight finishes (and is disposed) first
    await vi.waitFor(() => expect(tf.memory().numTensors).toBe(before), { timeout: 5000, interval: 50 });
    expect(existsSync(outputDir)).toBe(false);
    expect(leftovers()).toEqual([]);
  });

  it('takes a loaded model and ready batches, and writes nothing without outputDir', async () => {
    const { createRandomModel } = await import('../../src/models/random.js');
    const model = await createRandomModel({ modelType: 'llama', hiddenSize: 128, intermediateSize: 256, numLayers: 1, numHeads: 4, numKvHeads: 2, vocabSize: 64, seed: 2 });
    const batches = [0, 1, 2].map((b) => ({ inputIds: Int32Array.from({ length: 8 }, (_, i) => (b * 8 + i) % 64), batchSize: 1, seqLen: 8 }));
    const result = await oneshotAsync({ model, dataset: batches, scheme: 'W4A16' });
    expect(result.outputDir).toBeNull();
    expect(result.modules.map((m) => m.samples)).toEqual(Array(7).fill(3));
    // the caller's model stays loaded, now with fake-quantized weights
    expect(model.getSubmodule('model.layers.0.mlp.up_proj').hasParameter('weight')).toBe(true);
    model.releaseParameters();
  });

  it('says what is missing: recipe or scheme, dataset', async () => {
    await expect(resolveModifiers({})).rejects.toThrow(/no recipe.*scheme such as 'W4A16'/);
    await expect(resolveModifiers({ scheme: 'W4A16', recipe: 'x.yaml' })).rejects.toThrow(/either a recipe or a scheme/);
    await expect(resolveModifiers({ recipe: path.join(tmp, 'nope.yaml') })).rejects.toThrow(/recipe file '.*nope\.yaml' not found/);
    await expect(oneshotAsync({ model: modelDir, scheme: 'W4A16' })).rejects.toThrow(/GPTQModifier needs calibration data.*--dataset/);
  });
});
