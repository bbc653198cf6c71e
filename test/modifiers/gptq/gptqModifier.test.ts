import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../../../src/tensor/backend.js';
import { HookRegistry } from '../../../src/nn/hooks.js';
import type { ModifierContext } from '../../../src/modifiers/modifier.js';
import type { PipelineEvent } from '../../../src/pipelines/events.js';
import { GPTQModifier } from '../../../src/modifiers/gptq/gptqModifier.js';
import { accumulateHessian, quantizeWeight } from '../../../src/modifiers/gptq/gptqQuantize.js';
import { batches, TinyModel } from '../tinyModel.js';

beforeAll(async () => {
  await initBackend({ backend: 'wasm' });
});

const GROUP8 = { group_0: { targets: ['Linear'], weights: { num_bits: 4, group_size: 8 } } };

function context(model: TinyModel): ModifierContext & { events: PipelineEvent[] } {
  const events: PipelineEvent[] = [];
  return { model, hooks: new HookRegistry(), emit: (e) => events.push(e), quantized: new Map(), events };
}

/** The layer-sequential flow: calibrate (hooks on), epoch end, propagate (hooks off). */
async function runSequential(model: TinyModel, gptq: GPTQModifier, ctx: ModifierContext, inputs: tf.Tensor[]) {
  await gptq.onCalibrationStart(ctx);
  let xs = inputs;
  for (const [index, layer] of model.layers.entries()) {
    for (const x of xs) tf.dispose(layer.call([x]) as tf.Tensor);
    await gptq.onSequentialEpochEnd(ctx, { index, name: `model.layers.${index}`, module: layer });
    const next = ctx.hooks.disableHooks(() => xs.map((x) => layer.call([x]) as tf.Tensor));
    if (xs !== inputs) tf.dispose(xs);
    xs = next;
  }
  tf.dispose(xs);
  await gptq.onCalibrationEnd(ctx);
}

describe('GPTQModifier fields', () => {
  it('has the reference defaults, lm_head ignored, actorder static for group schemes', () => {
    const g = new GPTQModifier({ scheme: 'W4A16' });
    expect([g.block_size, g.dampening_frac, g.offload_hessians, g.fields.targets, g.fields.ignore]).toEqual([
      128, 0.01, false, ['Linear'], ['lm_head'],
    ]);
    expect(g.quantizationConfig().config_groups.group_0.weights?.actorder).toBe('static');
    expect(new GPTQModifier({ scheme: 'W8A16' }).quantizationConfig().config_groups.group_0.weights?.actorder).toBeNull();
    expect(new GPTQModifier({ scheme: 'W4A16', actorder: null }).groups.group_0.weights?.actorder).toBeNull();
    expect(new GPTQModifier({ scheme: 'W4A16', actorder: 'group' }).groups.group_0.weights?.actorder).toBe('group');
  });

  it('rejects scheme with config_groups, conflicting actorder, bad values', () => {
    expect(() => new GPTQModifier({ scheme: 'W4A16', config_groups: GROUP8 })).toThrow(/mutually exclusive/);
    expect(() => new GPTQModifier({})).toThrow(/needs a quantization 'scheme'/);
    const withOrder = { group_0: { targets: ['Linear'], weights: { num_bits: 4, group_size: 8, actorder: 'group' } } };
    expect(() => new GPTQModifier({ config_groups: withOrder, actorder: 'static' })).toThrow(/conflicts with actorder 'group'/);
    expect(new GPTQModifier({ config_groups: withOrder, actorder: 'dynamic' }).groups.group_0.weights?.actorder).toBe('dynamic');
    expect(() => new GPTQModifier({ scheme: 'W4A16', dampening_frac: -1 })).toThrow(/dampening_frac: expected a non-negative number/);
    expect(() => new GPTQModifier({ scheme: 'W4A16', block_size: 'abc' })).toThrow(/GPTQModifier.block_size: expected a positive integer, got "abc"/);
    expect(() => new GPTQModifier({ scheme: 'FP8' })).toThrow(/GPTQModifier.scheme: unknown quantization scheme 'FP8'/);
  });

  it('toRecipe writes scheme, targets, ignore and non-default fields', () => {
    expect(new GPTQModifier({ scheme: 'W4A16', block_size: 64 }).toRecipe()).toEqual({
      targets: ['Linear'], ignore: ['lm_head'], scheme: 'W4A16', block_size: 64,
    });
  });
});

describe('GPTQModifier lifecycle', () => {
  it('quantizes every Linear of each layer at its epoch end, sharing Hessians of shared inputs', async () => {
    const model = new TinyModel(2);
    const ctx = context(model);
    const inputs = batches(3, 10, 1);
    const before = tf.memory().numTensors;
    const gptq = new GPTQModifier({ config_groups: GROUP8 });
    await gptq.onCalibrationStart(ctx);
    expect(ctx.hooks.size).toBe(14);

    const layer0 = model.layers[0];
    for (const x of inputs) tf.dispose(layer0.call([x]) as tf.Tensor);
    // q/k/v share one Hessian, gate/up one: 4 Hessians for 7 modules
    expect(gptq.hessianCount()).toBe(4);
    await gptq.onSequentialEpochEnd(ctx, { index: 0, name: 'model.layers.0', module: layer0 });
    expect(gptq.hessianCount()).toBe(0);

    const results = ctx.events.filter((e) => e.type === 'module_result');
    expect(results.map((e) => e.type === 'module_result' && e.module)).toEqual([
      'model.layers.0.self_attn.q_proj', 'model.layers.0.self_attn.k_proj', 'model.layers.0.self_attn.v_proj',
      'model.layers.0.self_attn.o_proj', 'model.layers.0.mlp.gate_proj', 'model.layers.0.mlp.up_proj',
      'model.layers.0.mlp.down_proj',
    ]);
    for (const e of results) expect(e).toMatchObject({ modifier: 'GPTQModifier', layer: 0, samples: 3 });
    expect([...ctx.quantized.keys()]).toHaveLength(7);
    const k = ctx.quantized.get('model.layers.0.self_attn.k_proj')!;
    expect(k.scaleShape).toEqual([16, 2]);
    expect(k.args.actorder).toBe('static');

    // the rest of layer 1 is compressed at calibration end (as the basic pipeline does)
    const layer1 = model.layers[1];
    for (const x of inputs) tf.dispose(layer1.call([x]) as tf.Tensor);
    await gptq.onCalibrationEnd(ctx);
    expect(ctx.quantized.size).toBe(14);
    expect(ctx.quantized.has('lm_head')).toBe(false);
    expect(ctx.hooks.size).toBe(0);
    for (const [, m] of model.namedModules()) expect(m.hookCount()).toBe(0);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose(inputs);
  });

  it('a shared Hessian gives each user the result of its own Hessian', async () => {
    const model = new TinyModel(1);
    const layer = model.layers[0];
    const inputs = batches(2, 12, 7);
    // k_proj's input is the layer input itself: its own Hessian, for comparison
    const W = tf.clone(layer.self_attn.k_proj.param('weight')) as tf.Tensor2D;
    let acc = accumulateHessian(null, 0, inputs[0]);
    const acc2 = accumulateHessian(acc.H, acc.nSamples, inputs[1]);
    acc.H.dispose();
    acc = acc2;
    const ctx = context(model);
    const gptq = new GPTQModifier({ config_groups: GROUP8 });
    await runSequential(model, gptq, ctx, inputs);
    const own = quantizeWeight(W, acc.H, ctx.quantized.get('model.layers.0.self_attn.k_proj')!.args);
    const got = layer.self_attn.k_proj.param('weight').dataSync();
    const want = own.weight.dataSync();
    let maxDiff = 0;
    for (let i = 0; i < got.length; i++) maxDiff = Math.max(maxDiff, Math.abs(got[i] - want[i]));
    expect(maxDiff).toBeLessThan(1e-6);
    tf.dispose([W, acc.H, own.weight, ...inputs]);
  });

  it('offload_hessians keeps Hessians on the host and gives the same weights', async () => {
    const weightsAfter = async (offload: boolean) => {
      const model = new TinyModel(1);
      const inputs = batches(2, 8, 3);
      const ctx = context(model);
      await runSequential(model, new GPTQModifier({ config_groups: GROUP8, offload_hessians: offload }), ctx, inputs);
      tf.dispose(inputs);
      return Array.from(model.layers[0].mlp.down_proj.param('weight').dataSync());
    };
    expect(await weightsAfter(true)).toEqual(await weightsAfter(false));
  });

  it('falls back to round-to-nearest with a warning naming dampening_frac', async () => {
    const model = new TinyModel(1);
    const ctx = context(model);
    const x = tf.fill([1, 4, 16], NaN);
    const gptq = new GPTQModifier({ scheme: 'W8A16', targets: ['re:.*q_proj'] });
    await gptq.onCalibrationStart(ctx);
    tf.dispose(model.layers[0].call([x]) as tf.Tensor);
    await gptq.onCalibrationEnd(ctx);
    const warnings = ctx.events.filter((e) => e.type === 'warning');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ message: expect.stringMatching(/q_proj.*round-to-nearest.*GPTQModifier.dampening_frac \(now 0.01\)/) });
    expect(Number.isFinite(model.layers[0].self_attn.q_proj.param('weight').dataSync()[0])).toBe(true);
    x.dispose();
  });

  it('errors when no Linear matches its targets, and warns about modules that saw no input', async () => {
    const model = new TinyModel(1);
    const ctx = context(model);
    await expect(new GPTQModifier({ scheme: 'W8A16', targets: ['Conv2d'] }).onCalibrationStart(ctx)).rejects.toThrow(
      /no Linear module matched targets \[Conv2d\]/,
    );
    const gptq = new GPTQModifier({ scheme: 'W8A16' });
    await gptq.onCalibrationStart(ctx);
    await gptq.onCalibrationEnd(ctx);
    expect(ctx.events.at(-1)).toMatchObject({ type: 'warning', message: expect.stringMatching(/7 target module\(s\) never received/) });
  });

  it('onAbort releases Hessians and hooks', async () => {
    const model = new TinyModel(1);
    const ctx = context(model);
    const x = batches(1, 5, 2);
    const before = tf.memory().numTensors;
    const gptq = new GPTQModifier({ scheme: 'W8A16' });
    await gptq.onCalibrationStart(ctx);
    tf.dispose(model.layers[0].call(x) as tf.Tensor);
    expect(gptq.hessianCount()).toBe(4);
    gptq.onAbort(ctx);
    expect(gptq.hessianCount()).toBe(0);
    expect(ctx.hooks.size).toBe(0);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose(x);
  });
});

describe('GPTQModifier device budget', () => {
  it('refuses a Hessian past the device budget and names offload_hessians', async () => {
    const model = new TinyModel(1);
    const ctx = context(model);
    const x = batches(1, 4, 5);
    const gptq = new GPTQModifier({ scheme: 'W8A16' });
    await gptq.onCalibrationStart(ctx);
    const saved = process.env.LAYERSTREAM_DEVICE_BUDGET;
    process.env.LAYERSTREAM_DEVICE_BUDGET = String(tf.memory().numBytes + 100);
    try {
      expect(() => model.layers[0].call(x)).toThrow(/Hessian of 'model.layers.0.self_attn.q_proj' \[16, 16\].*offload_hessians: true/);
    } finally {
      if (saved === undefined) delete process.env.LAYERSTREAM_DEVICE_BUDGET;
      else process.env.LAYERSTREAM_DEVICE_BUDGET = saved;
      gptq.onAbort(ctx);
      tf.dispose(x);
    }
  });
});
