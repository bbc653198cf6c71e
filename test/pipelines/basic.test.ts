import * as tf from '@tensorflow/tfjs-core';
import { lastValueFrom, toArray } from 'rxjs';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import type { CausalLM } from '../../src/models/types.js';
import { basicPipeline } from '../../src/pipelines/basic.js';
import { datafreePipeline } from '../../src/pipelines/datafree.js';
import type { PipelineEvent } from '../../src/pipelines/events.js';
import { initBackend } from '../../src/tensor/backend.js';
import { RecordingModifier, fullModelInputs, maxAbsDiff, tinyLlama, tokenBatches, totalHooks } from './fixtures.js';

let model: CausalLM;

beforeAll(async () => {
  await initBackend({ backend: 'wasm' });
  model = await tinyLlama(2);
});

describe('basicPipeline', () => {
  it('runs the whole model per batch with hooks on, then calibration end; no sequential epoch end', async () => {
    const batches = tokenBatches(3);
    const rec = new RecordingModifier();
    const before = tf.memory().numTensors;
    const events = await lastValueFrom(basicPipeline({ model, modifiers: [rec], dataset: batches }).pipe(toArray()));
    expect(rec.calls).toEqual(['start', 'end']);
    const want = fullModelInputs(model, batches);
    for (const [name, list] of want) list.forEach((w, j) => expect(maxAbsDiff(rec.inputs.get(name)![j], w)).toBeLessThan(1e-5));
    expect(events.map((e) => e.type)).toEqual([
      'calibration_start',
      'layer_progress',
      'layer_progress',
      'layer_progress',
      'calibration_end',
    ]);
    expect(events[1]).toMatchObject({ label: '(1/1): Calibrating', batch: 1, batches: 3 });
    expect(events[0]).toMatchObject({ pipeline: 'basic', modifiers: ['RecordingModifier'] });
    expect(tf.memory().numTensors).toBe(before);
    expect(totalHooks(model)).toBe(0);
  });

  it('names the batch on error and removes every hook', async () => {
    const before = tf.memory().numTensors;
    const rec = new RecordingModifier({ failAt: { layer: 1, batch: 1 } });
    await expect(lastValueFrom(basicPipeline({ model, modifiers: [rec], dataset: tokenBatches(3) }))).rejects.toThrow(
      /batch 1, whole model \(calibrating\): recording modifier: injected failure/,
    );
    expect(totalHooks(model)).toBe(0);
    expect(rec.aborted).toBe(1);
    await vi.waitFor(() => expect(tf.memory().numTensors).toBe(before), { timeout: 2000, interval: 10 });
  });
});

describe('datafreePipeline', () => {
  it('is calibration start then calibration end', async () => {
    const rec = new RecordingModifier({ requiresData: false });
    const events: PipelineEvent[] = await lastValueFrom(datafreePipeline({ model, modifiers: [rec] }).pipe(toArray()));
    expect(rec.calls).toEqual(['start', 'end']);
    expect(events.map((e) => e.type)).toEqual(['calibration_start', 'calibration_end']);
    expect(events[0]).toMatchObject({ pipeline: 'datafree', layers: 0 });
    expect(events[1]).toMatchObject({ batches: 0 });
  });
});
