import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { lastValueFrom, toArray } from 'rxjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeCompressedCheckpoint } from '../../src/checkpoint/writer.js';
import { generateRandomModel } from '../../src/models/random.js';
import { loadModel } from '../../src/models/registry.js';
import type { CausalLM } from '../../src/models/types.js';
import type { ModelWeights } from '../../src/models/weights.js';
import { GPTQModifier } from '../../src/modifiers/gptq/gptqModifier.js';
import type { PipelineEvent } from '../../src/pipelines/events.js';
import { layerSequentialPipeline } from '../../src/pipelines/layerSequential.js';
import type { QuantizedModule } from '../../src/quant/args.js';
import { initBackend } from '../../src/tensor/backend.js';
import { RecordingModifier, tokenBatches } from './fixtures.js';

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'layerstream-offload-test-'));
const dir = path.join(scratch, 'model');
const LAYERS = 4;

beforeAll(async () => {
  await initBackend({ backend: 'wasm' });
  await generateRandomModel(dir, {
    modelType: 'llama', hiddenSize: 64, intermediateSize: 128, numLayers: LAYERS, numHeads: 4, numKvHeads: 2, vocabSize: 64, seed: 5, std: 0.2,
  });
});
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

const dispose = (m: CausalLM) => (m as unknown as { dispose(): void }).dispose();

/** float32 bytes of every parameter under `prefix`. */
function paramBytes(model: CausalLM, prefix: string): number {
  const store = model.weights as ModelWeights;
  return store.names(prefix).reduce((a, n) => a + 4 * store.shape(n).reduce((x, d) => x * d, 1), 0);
}

/** Runs the pipeline with a modifier that rewrites every Linear at epoch end; returns the sampled peak of live device bytes. */
async function peakOfRun(model: CausalLM): Promise<number> {
  let peak = 0;
  const sample = () => (peak = Math.max(peak, tf.memory().numBytes));
  const rec = new RecordingModifier({ quantStep: 0.05, onHook: sample });
  const events = await lastValueFrom(
    layerSequentialPipeline({ model, modifiers: [rec], dataset: tokenBatches(3), releaseWeights: true }).pipe(toArray()),
  );
  const end = events.at(-1) as Extract<PipelineEvent, { type: 'calibration_end' }>;
  return Math.max(peak, end.peakDeviceBytes);
}

describe('releaseWeights offloads compressed layers to the host', () => {
  it('peak device bytes stay about one layer of weights, not all of them', async () => {
    const before = tf.memory().numTensors;
    const offloading = await loadModel(dir, { lazy: true });
    const layer = paramBytes(offloading, 'model.layers.0');
    const baseline = tf.memory().numBytes;
    const withOffload = (await peakOfRun(offloading)) - baseline;
    // after the run no layer weight is on the device; the compressed ones are on the host
    expect(offloading.weights.isOffloaded?.(`model.layers.${LAYERS - 1}.mlp.down_proj.weight`)).toBe(true);
    for (let i = 0; i < LAYERS; i++) expect(offloading.getSubmodule(`model.layers.${i}.mlp.up_proj`).hasParameter('weight')).toBe(false);
    dispose(offloading);

    // the same store without offload keeps every compressed layer on the device
    const keeping = await loadModel(dir, { lazy: true });
    (keeping.weights as { offload?: unknown }).offload = undefined;
    const withoutOffload = (await peakOfRun(keeping)) - baseline;
    dispose(keeping);
    console.log(`peak device bytes above the loaded model, ${LAYERS} layers of ${layer} B: offload ${withOffload}, release only ${withoutOffload}`);

    // two layers at most overlap (layer i+1 loads while layer i's last batch propagates), plus activations
    expect(withOffload).toBeLessThan(2.5 * layer);
    expect(withoutOffload).toBeGreaterThan(LAYERS * layer);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('the checkpoint written after offloading equals the one written from an eagerly loaded model', async () => {
    const before = tf.memory().numTensors;
    const write = async (model: CausalLM, releaseWeights: boolean, name: string) => {
      const gptq = new GPTQModifier({ scheme: 'W8A16' });
      const quantized = new Map<string, QuantizedModule>();
      await lastValueFrom(layerSequentialPipeline({ model, modifiers: [gptq], dataset: tokenBatches(3), quantized, releaseWeights }));
      const out = path.join(scratch, name);
      // sample live bytes right after every load the writer makes, when an uploaded weight is resident
      const baseline = tf.memory().numBytes;
      let peak = baseline;
      const store = model.weights as ModelWeights;
      const load = store.load.bind(store);
      store.load = async (prefix?: string) => {
        await load(prefix);
        peak = Math.max(peak, tf.memory().numBytes);
      };
      await writeCompressedCheckpoint({ model, quantized, quantizationConfig: gptq.quantizationConfig(), outputDir: out });
      return { out, quantized, writePeak: peak - baseline };
    };
    const lazy = await loadModel(dir, { lazy: true });
    const offloaded = await write(lazy, true, 'offloaded');
    // every quantized weight was offloaded, and writing left it offloaded
    for (const name of offloaded.quantized.keys()) {
      expect(lazy.getSubmodule(name).hasParameter('weight'), name).toBe(false);
      expect(lazy.weights.isOffloaded?.(`${name}.weight`), name).toBe(true);
    }
    // writing uploads one weight at a time: at most the largest, an MLP projection [128, 64]
    expect(offloaded.writePeak).toBe(4 * 128 * 64);
    dispose(lazy);
    const eager = await loadModel(dir);
    const resident = await write(eager, false, 'eager');
    dispose(eager);
    expect(offloaded.quantized.size).toBe(7 * LAYERS);
    const files = fs.readdirSync(resident.out).sort();
    expect(fs.readdirSync(offloaded.out).sort()).toEqual(files);
    for (const f of files) {
      expect(fs.readFileSync(path.join(offloaded.out, f)).equals(fs.readFileSync(path.join(resident.out, f))), f).toBe(true);
    }
    expect(tf.memory().numTensors).toBe(before);
  });

  it('refuses a quantized weight that is neither in memory nor offloaded', async () => {
    const lazy = await loadModel(dir, { lazy: true });
    const gptq = new GPTQModifier({ scheme: 'W8A16' });
    const quantized = new Map<string, QuantizedModule>();
    await lastValueFrom(layerSequentialPipeline({ model: lazy, modifiers: [gptq], dataset: tokenBatches(2), quantized }));
    lazy.getSubmodule('model.layers.1.mlp.up_proj').setParameter('weight', undefined);
    await expect(
      writeCompressedCheckpoint({ model: lazy, quantized, quantizationConfig: gptq.quantizationConfig(), outputDir: path.join(scratch, 'refused') }),
    ).rejects.toThrow(/quantized module 'model.layers.1.mlp.up_proj': its dequantized weight is neither in memory nor offloaded/);
    dispose(lazy);
  });
});
