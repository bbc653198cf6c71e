import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../../../src/tensor/backend.js';
import { HookRegistry } from '../../../src/nn/hooks.js';
import type { ModifierContext } from '../../../src/modifiers/modifier.js';
import type { PipelineEvent } from '../../../src/pipelines/events.js';
import { QuantizationModifier } from '../../../src/modifiers/quantization/quantizationModifier.js';
import { observeWeight } from '../../../src/quant/observers.js';
import { fakeQuantizeWeight } from '../../../src/quant/fakeQuant.js';
import { TinyModel } from '../tinyModel.js';

beforeAll(async () => {
  await initBackend({ backend: 'wasm' });
});

function context(model: TinyModel): ModifierContext & { events: PipelineEvent[] } {
  const events: PipelineEvent[] = [];
  return { model, hooks: new HookRegistry(), emit: (e) => events.push(e), quantized: new Map(), events };
}

describe('QuantizationModifier', () => {
  it('needs no calibration data for weight-only and dynamic-activation schemes', () => {
    for (const scheme of ['W4A16', 'W8A16', 'W8A8', 'W4A8']) {
      expect(new QuantizationModifier({ scheme }).requiresCalibrationData()).toBe(false);
    }
  });

  it('refuses static activation quantization with the fix', () => {
    const config_groups = { g: { targets: ['Linear'], weights: { num_bits: 8 }, input_activations: { num_bits: 8 } } };
    expect(() => new QuantizationModifier({ config_groups })).toThrow(
      /config_groups.g.input_activations: static activation quantization is not implemented.*dynamic scheme/,
    );
  });

  it.each(['minmax', 'mse'])('rounds every target weight to nearest at calibration start (%s)', async (observer) => {
    const model = new TinyModel(1);
    const ctx = context(model);
    const original = tf.clone(model.layers[0].mlp.up_proj.param('weight')) as tf.Tensor2D;
    const before = tf.memory().numTensors;
    const config_groups = { group_0: { targets: ['Linear'], weights: { num_bits: 4, group_size: 8, observer } } };
    const rtn = new QuantizationModifier({ config_groups });
    await rtn.onCalibrationStart(ctx);
    rtn.onCalibrationEnd();
    expect(tf.memory().numTensors).toBe(before);
    expect(ctx.quantized.size).toBe(7);
    expect(ctx.quantized.has('lm_head')).toBe(false);
    expect(ctx.events.filter((e) => e.type === 'module_result')).toHaveLength(7);

    const args = ctx.quantized.get('model.layers.0.mlp.up_proj')!.args;
    const qp = observeWeight(original, args);
    const want = fakeQuantizeWeight(original, qp.scale, qp.zeroPoint, args);
    expect(Array.from(model.layers[0].mlp.up_proj.param('weight').dataSync())).toEqual(Array.from(want.dataSync()));
    expect(Array.from(ctx.quantized.get('model.layers.0.mlp.up_proj')!.scale)).toEqual(Array.from(qp.scale.dataSync()));
    tf.dispose([original, qp.scale, qp.zeroPoint, want]);
  });

  it('reports its quantization config and recipe', () => {
    const rtn = new QuantizationModifier({ scheme: 'W8A8', ignore: ['lm_head', 're:.*down_proj'] });
    const cfg = rtn.quantizationConfig();
    expect(cfg.ignore).toEqual(['lm_head', 're:.*down_proj']);
    expect(cfg.config_groups.group_0.input_activations).toMatchObject({ strategy: 'token', dynamic: true });
    expect(rtn.toRecipe()).toEqual({ targets: ['Linear'], ignore: ['lm_head', 're:.*down_proj'], scheme: 'W8A8' });
  });
});

describe('QuantizationModifier on a lazily loaded model', () => {
  it('reads each target weight on demand and quantizes it', async () => {
    const { mkdtemp, rm } = await import('node:fs/promises');
    const os = await import('node:os');
    const path = await import('node:path');
    const { generateRandomModel } = await import('../../../src/models/random.js');
    const { loadModel } = await import('../../../src/models/registry.js');
    const dir = await mkdtemp(path.join(os.tmpdir(), 'ls-rtn-lazy-'));
    try {
      await generateRandomModel(dir, { modelType: 'llama', numLayers: 2, seed: 3 });
      const model = await loadModel(dir, { lazy: true });
      const ctx: ModifierContext = { model, hooks: new HookRegistry(), emit: () => {}, quantized: new Map() };
      const rtn = new QuantizationModifier({ scheme: 'W8A16' });
      await rtn.onCalibrationStart(ctx);
      await rtn.onCalibrationEnd();
      expect(ctx.quantized.size).toBe(14);
      expect(model.getSubmodule('model.layers.1.mlp.down_proj').hasParameter('weight')).toBe(true);
      model.weights.release();
      model.releaseParameters();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
