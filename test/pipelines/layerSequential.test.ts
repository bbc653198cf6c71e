import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { Observable, from, lastValueFrom, toArray } from 'rxjs';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { TokenBatch } from '../../src/data/types.js';
import type { CausalLM } from '../../src/models/types.js';
import { HookRegistry } from '../../src/nn/hooks.js';
import type { PipelineEvent } from '../../src/pipelines/events.js';
import { layerSequentialPipeline } from '../../src/pipelines/layerSequential.js';
import { initBackend } from '../../src/tensor/backend.js';
import { RecordingModifier, fullModelInputs, maxAbsDiff, tinyLlama, tokenBatches, totalHooks } from './fixtures.js';

let model: CausalLM;
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'layerstream-seq-test-'));

beforeAll(async () => {
  await initBackend({ backend: 'wasm' });
  model = await tinyLlama(3);
});
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

function run(options: Partial<Parameters<typeof layerSequentialPipeline>[0]> & { dataset: unknown }) {
  return lastValueFrom(
    layerSequentialPipeline({ model, modifiers: [], ...options } as Parameters<typeof layerSequentialPipeline>[0]).pipe(toArray()),
  );
}

function expectSameInputs(
  got: Map<string, Float32Array[]>,
  want: Map<string, Float32Array[]>,
  batches: number,
  only: RegExp = /./,
) {
  expect([...got.keys()]).toEqual([...want.keys()]);
  for (const [name, list] of want) {
    if (!only.test(name)) continue;
    expect(got.get(name)!.length, name).toBe(batches);
    list.forEach((w, j) => expect(maxAbsDiff(got.get(name)![j], w), `${name} batch ${j}`).toBeLessThan(1e-5));
  }
}

describe('layerSequentialPipeline', () => {
  it('each layer calibrates on what the full model feeds it (identity modifier, padded batches)', async () => {
    const batches = tokenBatches(4);
    const rec = new RecordingModifier();
    const events = await run({ modifiers: [rec], dataset: batches });
    expectSameInputs(rec.inputs, fullModelInputs(model, batches), batches.length);
    expect(rec.calls).toEqual([
      'start',
      'epoch:0:model.layers.0',
      'epoch:1:model.layers.1',
      'epoch:2:model.layers.2',
      'end',
    ]);
    const types = events.map((e) => e.type);
    expect(types[0]).toBe('calibration_start');
    expect(types.at(-1)).toBe('calibration_end');
    expect(types.filter((t) => t === 'layer_done')).toHaveLength(3);
    const progress = events.filter((e): e is Extract<PipelineEvent, { type: 'layer_progress' }> => e.type === 'layer_progress');
    expect(progress.filter((e) => e.phase === 'calibrating')).toHaveLength(12);
    expect(progress.filter((e) => e.phase === 'propagating')).toHaveLength(8); // the last layer is not propagated
    expect(progress[0]).toMatchObject({ layer: 0, layers: 3, batch: 1, batches: 4, label: '(1/3): Calibrating' });
    expect(progress.find((e) => e.phase === 'propagating')!.label).toBe('(1/3): Propagating');
    const end = events.at(-1) as Extract<PipelineEvent, { type: 'calibration_end' }>;
    expect(end.batches).toBe(4);
    expect(end.peakDeviceBytes).toBeGreaterThan(0);
    // 4 batches × [2, 6] tokens × (hidden 32 + cos/sin 2 × 8) floats + 2 ids ints + 2 padded masks [2, 1, 6, 6]
    expect(end.peakHostCacheBytes).toBe(4 * 12 * (32 + 16) * 4 + 4 * 12 * 4 + 2 * 72 * 4);
    expect(end.peakDiskCacheBytes).toBe(0);
    expect(totalHooks(model)).toBe(0);
  });

  it('with compression at epoch end, layer i+1 sees the output of the compressed layers (model loaded lazily)', async () => {
    const { generateRandomModel } = await import('../../src/models/random.js');
    const { loadModel } = await import('../../src/models/registry.js');
    const dir = path.join(scratch, 'lazy-llama');
    await generateRandomModel(dir, { modelType: 'llama', hiddenSize: 32, intermediateSize: 48, numLayers: 3, numHeads: 4, numKvHeads: 2, vocabSize: 64, seed: 9, std: 0.2 });
    const lazy = await loadModel(dir, { lazy: true });
    expect(lazy.getSubmodule('model.layers.1.self_attn.q_proj').hasParameter('weight')).toBe(false);
    const batches = tokenBatches(3);
    const rec = new RecordingModifier({ quantStep: 0.05 });
    await lastValueFrom(layerSequentialPipeline({ model: lazy, modifiers: [rec], dataset: batches, releaseWeights: true }));
    // lm_head and the final norm never ran, so they were never loaded
    expect(lazy.getSubmodule('lm_head').hasParameter('weight')).toBe(false);
    // releaseWeights: a finished layer's unmodified weights are released, its compressed ones offloaded to the host
    expect(lazy.getSubmodule('model.layers.0.input_layernorm').hasParameter('weight')).toBe(false);
    expect(lazy.getSubmodule('model.layers.0.self_attn.q_proj').hasParameter('weight')).toBe(false);
    expect(lazy.weights.isOffloaded?.('model.layers.0.self_attn.q_proj.weight')).toBe(true);
    await lazy.weights.load('');
    // Every layer is compressed now. A layer's input depends only on the layers before it, compressed
    // before it calibrated; q/k/v_proj see (the norm of) exactly that input. Later projections of the
    // same layer saw its uncompressed q/k/v during calibration, as in the reference.
    const want = fullModelInputs(lazy, batches);
    expectSameInputs(rec.inputs, want, batches.length, /[qkv]_proj$/);
    // and compression made a difference, so the check above has teeth
    const original = await loadModel(dir);
    const uncompressed = fullModelInputs(original, batches);
    const q2 = 'model.layers.2.self_attn.q_proj';
    expect(maxAbsDiff(uncompressed.get(q2)![0], rec.inputs.get(q2)![0])).toBeGreaterThan(1e-3);
    (original as unknown as { dispose(): void }).dispose();
    (lazy as unknown as { dispose(): void }).dispose();
  });

  it('keeps at most maxResidentBatches on the device: peak bytes do not grow from 4 to 64 batches', async () => {
    const peakFor = async (n: number) => {
      let peak = 0;
      const rec = new RecordingModifier({ onHook: () => (peak = Math.max(peak, tf.memory().numBytes)) });
      const events = await run({ modifiers: [rec], dataset: tokenBatches(n, 2, 16, false), maxResidentBatches: 2 });
      const end = events.at(-1) as Extract<PipelineEvent, { type: 'calibration_end' }>;
      expect(end.batches).toBe(n);
      return Math.max(peak, end.peakDeviceBytes);
    };
    const weights = tf.memory().numBytes;
    const small = await peakFor(4);
    const large = await peakFor(64);
    const perBatch = 2 * 16 * 32 * 4; // one [B, T, H] float32 activation
    expect(large).toBeLessThanOrEqual(small + perBatch);
    expect(large - weights).toBeLessThan(64 * perBatch); // far below "every batch resident"
  });

  it('reads every kind of source the same way', async () => {
    const batches = tokenBatches(3);
    const want = fullModelInputs(model, batches);
    async function* gen() {
      for (const b of batches) yield b;
    }
    const stream = new ReadableStream<TokenBatch>({
      start(c) {
        batches.forEach((b) => c.enqueue(b));
        c.close();
      },
    });
    const sources: [string, Parameters<typeof layerSequentialPipeline>[0]['dataset']][] = [
      ['array', batches],
      ['iterable', new Set(batches)],
      ['async generator', gen()],
      ['Observable', from(batches)],
      ['ReadableStream', stream],
    ];
    for (const [kind, dataset] of sources) {
      const rec = new RecordingModifier();
      const events = await run({ modifiers: [rec], dataset });
      expect((events.at(-1) as { batches: number }).batches, kind).toBe(3);
      expectSameInputs(rec.inputs, want, 3);
    }
  });

  it('spills to disk past hostCacheBytes and leaves no spill directory', async () => {
    const rec = new RecordingModifier();
    const spillDir = path.join(scratch, 'spill');
    const batches = tokenBatches(3);
    const events = await run({ modifiers: [rec], dataset: batches, hostCacheBytes: 0, spillDir });
    expect(events.at(-1)).toMatchObject({ peakHostCacheBytes: 0, peakDiskCacheBytes: expect.any(Number) });
    expect((events.at(-1) as { peakDiskCacheBytes: number }).peakDiskCacheBytes).toBeGreaterThan(0);
    expectSameInputs(rec.inputs, fullModelInputs(model, batches), 3);
    expect(fs.readdirSync(spillDir)).toEqual([]);
  });

  it('cancel mid-run: no tensors, hooks or spill files left, modifiers told', async () => {
    const spillDir = path.join(scratch, 'cancel');
    const before = tf.memory().numTensors;
    const hooks = new HookRegistry();
    const rec = new RecordingModifier();
    await new Promise<void>((resolve, reject) => {
      const sub = layerSequentialPipeline({ model, modifiers: [rec], dataset: tokenBatches(6), hooks, hostCacheBytes: 0, spillDir })
        .subscribe({
          next: (e) => {
            if (e.type === 'layer_progress' && e.layer === 1 && e.phase === 'calibrating' && e.batch === 2) {
              expect(fs.readdirSync(spillDir).length).toBe(1);
              sub.unsubscribe();
              resolve();
            }
          },
          error: reject,
          complete: () => reject(new Error('completed before the cancel point')),
        });
    });
    expect(hooks.size).toBe(0);
    expect(totalHooks(model)).toBe(0);
    expect(fs.readdirSync(spillDir)).toEqual([]);
    expect(rec.aborted).toBe(1);
    expect(rec.calls).not.toContain('end');
    await vi.waitFor(() => expect(tf.memory().numTensors).toBe(before), { timeout: 2000, interval: 10 });
  });

  it('an error in a layer names the layer and the batch, and cleans up', async () => {
    const before = tf.memory().numTensors;
    const rec = new RecordingModifier({ failAt: { layer: 1, batch: 2 } });
    await expect(run({ modifiers: [rec], dataset: tokenBatches(4) })).rejects.toThrow(
      /layer 1 'model.layers.1', batch 2 \(calibrating\): recording modifier: injected failure/,
    );
    expect(totalHooks(model)).toBe(0);
    await vi.waitFor(() => expect(tf.memory().numTensors).toBe(before), { timeout: 2000, interval: 10 });
  });

  it('refuses an empty dataset, unmatched and nested targets', async () => {
    await expect(run({ dataset: [] })).rejects.toThrow(/calibration dataset is empty/);
    await expect(run({ dataset: [{ ids: [1, 2] }] as never })).rejects.toThrow(
      /batch 0, first target 'model.layers.0' \(capturing\): expected a TokenBatch .* got an object with keys ids/,
    );
    expect(() => layerSequentialPipeline({ model, modifiers: [], dataset: [], sequentialTargets: ['NoSuchLayer'] })).toThrow(
      /match no module/,
    );
    expect(() =>
      layerSequentialPipeline({ model, modifiers: [], dataset: [], sequentialTargets: ['LlamaDecoderLayer', 'Linear'] }),
    ).toThrow(/must not nest/);
  });

  it('refuses targets whose outputs cannot be the next target inputs, pointing to basic', async () => {
    const batches = tokenBatches(1);
    await expect(
      run({ dataset: batches, sequentialTargets: ['re:model\\.layers\\.0\\.mlp\\.(up|down)_proj$'] }),
    ).rejects.toThrow(/cannot be the input of 'model.layers.0.mlp.down_proj'.*'basic' pipeline/);
  });

  it('is cold: each subscription is a separate run', async () => {
    const rec = new RecordingModifier();
    const pipeline$: Observable<PipelineEvent> = layerSequentialPipeline({ model, modifiers: [rec], dataset: tokenBatches(2) });
    await lastValueFrom(pipeline$);
    await lastValueFrom(pipeline$);
    expect(rec.calls.filter((c) => c === 'start')).toHaveLength(2);
  });
});
