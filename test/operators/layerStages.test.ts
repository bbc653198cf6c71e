/**
 * captureFirstLayer, calibrateTap and propagate on the tiny Llama, composed by hand the way the
 * pipeline composes them.
 */
import * as tf from '@tensorflow/tfjs-core';
import { from, lastValueFrom, toArray } from 'rxjs';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { calibrateTap } from '../../operators/calibrateTap.js';
import { captureFirstLayer } from '../../operators/captureFirstLayer.js';
import { demandSource } from '../../operators/demandSource.js';
import { DeviceCredit } from '../../operators/deviceCredit.js';
import { disposeDeep, type SequentialRun } from '../../operators/pipelineInternals.js';
import { propagate, toNextLayerInputs } from '../../operators/propagate.js';
import { IntermediatesCache } from '../../src/cache/intermediates.js';
import type { CausalLM } from '../../src/models/types.js';
import type { SequentialLayer } from '../../src/modifiers/modifier.js';
import { HookRegistry } from '../../src/nn/hooks.js';
import { Linear } from '../../src/nn/layers.js';
import { initBackend } from '../../src/tensor/backend.js';
import { tinyLlama, tokenBatches, totalHooks } from '../pipelines/fixtures.js';

let model: CausalLM;
let layers: SequentialLayer[];
const runs: SequentialRun[] = [];

beforeAll(async () => {
  await initBackend({ backend: 'wasm' });
  model = await tinyLlama(2);
  layers = model.layers.map((module, index) => ({ index, name: `model.layers.${index}`, module }));
});
afterEach(() => {
  for (const r of runs.splice(0)) {
    r.hooks.removeAll();
    r.cache.close();
  }
});

function newRun(capacity = 2): SequentialRun {
  const run = { model, hooks: new HookRegistry(), cache: new IntermediatesCache(), credit: new DeviceCredit(capacity) };
  runs.push(run);
  return run;
}

const capture = (run: SequentialRun, count: number) =>
  lastValueFrom(demandSource(tokenBatches(count), run.credit).pipe(captureFirstLayer(run, layers[0]), toArray()));

describe('captureFirstLayer', () => {
  it("stores the first layer's named inputs per batch, masks padding, runs nothing after the target", async () => {
    const run = newRun();
    const after = ['model.layers.1', 'model.norm', 'lm_head'].map((n) => {
      const calls = { n: 0 };
      const h = model.getSubmodule(n).registerForwardPreHook(() => void calls.n++);
      return { calls, h };
    });
    const before = tf.memory().numTensors;
    expect(await capture(run, 3)).toEqual([0, 1, 2]);
    expect(tf.memory().numTensors).toBe(before);
    expect(after.map((a) => a.calls.n)).toEqual([0, 0, 0]);
    after.forEach((a) => a.h.remove());
    expect(totalHooks(model)).toBe(0);
    expect(run.credit.inUse).toBe(0);

    const plain = await run.cache.fetch(0);
    expect(Object.keys(plain).sort()).toEqual(['attention_mask', 'hidden_states', 'position_embeddings', 'position_ids']);
    expect((plain.hidden_states as tf.Tensor).shape).toEqual([2, 6, 32]);
    expect(plain.attention_mask).toBeNull();
    expect((plain.position_embeddings as tf.Tensor[]).map((t) => t.shape)).toEqual([
      [2, 6, 8],
      [2, 6, 8],
    ]);
    // the embedding of the ids, with the padded ids replaced by 0
    const padded = await run.cache.fetch(1);
    const b = tokenBatches(3)[1];
    const ids = tf.tensor2d(b.inputIds.map((x, i) => x * b.attentionMask![i]), [2, 6], 'int32');
    const embedded = (model.getSubmodule('model.embed_tokens') as unknown as { apply(x: tf.Tensor): tf.Tensor }).apply(ids);
    expect(tf.tidy(() => tf.max(tf.abs(tf.sub(embedded, padded.hidden_states as tf.Tensor))).dataSync()[0])).toBe(0);
    expect((padded.attention_mask as tf.Tensor).shape).toEqual([2, 1, 6, 6]);
    disposeDeep([plain, padded, ids, embedded]);
  });

  it('errors, naming the target and batch, when the model never reaches the target', async () => {
    const run = newRun();
    const stray: SequentialLayer = { index: 0, name: 'not.in.forward', module: new Linear(2, 2) };
    const before = tf.memory().numTensors;
    await expect(
      lastValueFrom(demandSource(tokenBatches(1), run.credit).pipe(captureFirstLayer(run, stray))),
    ).rejects.toThrow(/batch 0, first target 'not.in.forward' \(capturing\): the model returned without calling the first sequential target 'not.in.forward'/);
    expect(tf.memory().numTensors).toBe(before);
    expect(run.hooks.size).toBe(0);
  });
});

describe('calibrateTap and propagate', () => {
  it('calibrate runs hooks once per batch and passes indices; propagate runs with hooks off and replaces the cache entry', async () => {
    const run = newRun();
    await capture(run, 3);
    const seen: number[] = [];
    run.hooks.registerForwardPreHook(layers[0].module.getSubmodule('self_attn.q_proj'), () => void seen.push(1));
    const before = tf.memory().numTensors;
    expect(await lastValueFrom(from([0, 1, 2]).pipe(calibrateTap(run, layers[0]), toArray()))).toEqual([0, 1, 2]);
    expect(seen).toHaveLength(3);
    expect(tf.memory().numTensors).toBe(before);

    const inputs = await run.cache.fetch(1);
    const expected = layers[0].module.call([], inputs) as tf.Tensor;
    seen.length = 0;
    expect(await lastValueFrom(from([0, 1, 2]).pipe(propagate(run, layers[0], layers[1]), toArray()))).toEqual([0, 1, 2]);
    expect(seen).toHaveLength(0); // hooks were off
    expect(tf.memory().numTensors).toBe(before + 5 + 1); // the fetched inputs (4 tensors + a second in the pair) and expected
    const next = await run.cache.fetch(1);
    expect(Object.keys(next).sort()).toEqual(Object.keys(inputs).sort());
    expect(tf.tidy(() => tf.max(tf.abs(tf.sub(expected, next.hidden_states as tf.Tensor))).dataSync()[0])).toBe(0);
    // carried, unlike the reference: the padded batch keeps its mask and positions
        const same = (x: unknown, y: unknown) => tf.tidy(() => tf.all(tf.equal(x as tf.Tensor, y as tf.Tensor)).dataSync()[0]);
    expect(same(inputs.attention_mask, next.attention_mask)).toBe(1);
    expect(same(inputs.position_ids, next.position_ids)).toBe(1);
    disposeDeep([inputs, expected, next]);
    run.hooks.removeAll();
  });

  it('propagate downloads only what the layer produced; carried inputs stay cached as they were', async () => {
    const run = newRun();
    await capture(run, 2);
    const names = run.cache.names(0).sort();
    const updated: string[][] = [];
    const update = run.cache.update.bind(run.cache);
    run.cache.update = (index, values) => {
      updated.push(Object.keys(values));
      return update(index, values);
    };
    await lastValueFrom(from([0, 1]).pipe(propagate(run, layers[0], layers[1]), toArray()));
    expect(updated).toEqual([['hidden_states'], ['hidden_states']]);
    expect(run.cache.names(0).sort()).toEqual(names);
  });

  it('errors name the layer and the batch; the slot is released', async () => {
    const run = newRun(1);
    await capture(run, 2);
    let calls = 0;
    // a pre-hook: Module.call cannot dispose the output when a forward (post) hook throws
    run.hooks.registerForwardPreHook(layers[0].module, () => {
      if (calls++ === 1) throw new Error('hook failed');
    });
    const before = tf.memory().numTensors;
    await expect(lastValueFrom(from([0, 1]).pipe(calibrateTap(run, layers[0])))).rejects.toThrow(
      "layer 0 'model.layers.0', batch 1 (calibrating): hook failed",
    );
    expect(tf.memory().numTensors).toBe(before);
    expect(run.credit.inUse).toBe(0);
    run.hooks.removeAll();
  });

  it('with K device slots, stages interleave but never hold more than K batches (64 batches)', async () => {
    for (const K of [1, 3]) {
      const run = newRun(K);
      const out = await lastValueFrom(
        demandSource(tokenBatches(64, 1, 4, false), run.credit).pipe(
          captureFirstLayer(run, layers[0]),
          calibrateTap(run, layers[0]),
          propagate(run, layers[0], layers[1]),
          calibrateTap(run, layers[1]),
          toArray(),
        ),
      );
      expect(out).toHaveLength(64);
      expect(run.credit.peakInUse).toBe(K); // reached (stages do overlap) and never exceeded
    }
  });
});

describe('toNextLayerInputs', () => {
  const a: SequentialLayer = { index: 0, name: 'a', module: new Linear(2, 2) };
  const b: SequentialLayer = { index: 1, name: 'b', module: new Linear(2, 2) };
  it('binds a bare tensor or a tuple to the next forwardParams and refuses what cannot chain', () => {
    const x = tf.zeros([1, 2]);
    const y = tf.ones([1, 2]);
    expect(toNextLayerInputs(y, { input: x }, a, b)).toEqual({ input: y });
    expect(toNextLayerInputs([y], { input: x }, a, b)).toEqual({ input: y });
    expect(() => toNextLayerInputs([y, y], { input: x }, a, b)).toThrow(/returned 2 values but Linear takes 1 \(input\).*'basic' pipeline/);
    const wide = tf.zeros([1, 3]);
    expect(() => toNextLayerInputs(wide, { input: x }, a, b)).toThrow(/'input' would become tensor\[1,3\] float32, but 'a' took tensor\[1,2\]/);
    expect(() => toNextLayerInputs({ h: y }, { input: x }, a, b)).toThrow(/expected a tensor or a tuple/);
    tf.dispose([x, y, wide]);
  });
});
