import * as tf from '@tensorflow/tfjs-core';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isCompressedCheckpoint, openCompressedTensorsSource, readQuantizationConfig } from '../../src/checkpoint/reader.js';
import { writeCompressedCheckpoint } from '../../src/checkpoint/writer.js';
import { generateRandomModel } from '../../src/models/random.js';
import { loadModel } from '../../src/models/registry.js';
import type { CausalLM, TorchDtype } from '../../src/models/types.js';
import type { QuantizationArgs } from '../../src/quant/args.js';
import { initBackend } from '../../src/tensor/backend.js';
import {
  INT8_TOKEN, W4A16, W4A16_ACTORDER, W4A16_ASYM, W8A16, configOf, firstMismatch, quantizeModel, scheme, tempDir,
} from './helpers.js';

let root: string;
let modelDir: string;

beforeAll(async () => {
  await initBackend({ backend: 'cpu' });
  root = await tempDir();
  modelDir = path.join(root, 'source');
  await generateRandomModel(modelDir, {
    modelType: 'llama', hiddenSize: 256, intermediateSize: 196, numLayers: 2, numHeads: 4, numKvHeads: 2,
    vocabSize: 96, dtype: 'bfloat16', seed: 11,
  });
});
afterAll(async () => {
  await fsp.rm(root, { recursive: true, force: true });
});

/** Quantizes, writes, reads back through loadModel; returns both models. */
async function roundTrip(
  name: string,
  args: QuantizationArgs,
  options: { input?: QuantizationArgs; bf16Scales?: boolean; dtype?: TorchDtype; maxShardBytes?: number } = {},
): Promise<{ original: CausalLM; reloaded: CausalLM; out: string }> {
  const original = await loadModel(modelDir, { lazy: true });
  const q = await quantizeModel(original, args, { bf16Scales: options.bf16Scales ?? true });
  const out = path.join(root, name);
  await writeCompressedCheckpoint({
    model: original, quantized: q.quantized, quantizationConfig: configOf(scheme(args, options.input ?? null)), outputDir: out,
    dtype: options.dtype, maxShardBytes: options.maxShardBytes,
  });
  await original.weights.load('');
  const reloaded = await loadModel(out, { source: await openCompressedTensorsSource(out) });
  return { original, reloaded, out };
}

async function expectSameParameters(a: CausalLM, b: CausalLM): Promise<void> {
  const names = [...a.namedParameters()].map(([n]) => n);
  expect([...b.namedParameters()].map(([n]) => n)).toEqual(names);
  for (const [name, t, m, p] of a.namedParameters()) {
    const other = b.getSubmodule(name.slice(0, -p.length - 1)).param(p);
    expect(other.shape, name).toEqual(t!.shape);
    const i = firstMismatch((await t!.data()) as Float32Array, (await other.data()) as Float32Array);
    expect(i, `${name} differs at ${i}`).toBe(-1);
    void m;
  }
}

function dispose(...models: CausalLM[]): void {
  for (const m of models) (m as unknown as { dispose(): void }).dispose();
}

describe('writer → reader → loadModel reproduces the quantized model exactly', () => {
  const cases: [string, QuantizationArgs, QuantizationArgs | undefined][] = [
    ['w4a16', W4A16, undefined],
    ['w4a16-asym', W4A16_ASYM, undefined],
    ['w4a16-actorder', W4A16_ACTORDER, undefined],
    ['w8a16', W8A16, undefined],
    ['w8a8', W8A16, INT8_TOKEN],
  ];
  for (const [name, args, input] of cases) {
    it(name, async () => {
      const { original, reloaded } = await roundTrip(name, args, { input });
      await expectSameParameters(original, reloaded);
      dispose(original, reloaded);
    });
  }

  it('float32 scales in a float32 checkpoint; sharded', async () => {
    const { original, reloaded, out } = await roundTrip('f32-sharded', W4A16_ASYM, { bf16Scales: false, dtype: 'float32', maxShardBytes: 50_000 });
    expect((await fsp.readdir(out)).filter((f) => f.endsWith('.safetensors')).length).toBeGreaterThan(3);
    await expectSameParameters(original, reloaded);
    const ids = tf.tensor2d([[1, 5, 9, 2]], undefined, 'int32');
    const [la, lb] = [original.call([ids]) as tf.Tensor, reloaded.call([ids]) as tf.Tensor];
    expect(firstMismatch(la.dataSync(), lb.dataSync())).toBe(-1);
    tf.dispose([ids, la, lb]);
    dispose(original, reloaded);
  });
});

describe('the dense TensorSource', () => {
  it('hides qparam tensors, reports the dense shape and the scale dtype, and names the packed tensor', async () => {
    const { original, reloaded, out } = await roundTrip('source-view', W4A16_ACTORDER);
    dispose(original, reloaded);
    const source = await openCompressedTensorsSource(out);
    const keys = source.keys();
    expect(keys.filter((k) => /weight_(packed|scale|shape|zero_point|g_idx)$/.test(k))).toEqual([]);
    expect(keys).toContain('model.layers.1.mlp.down_proj.weight');
    expect(source.has('model.layers.1.mlp.down_proj.weight_packed')).toBe(false);
    expect(source.shape('model.layers.1.mlp.down_proj.weight')).toEqual([256, 196]);
    expect(source.dtype('model.layers.1.mlp.down_proj.weight')).toBe('BF16');
    expect(source.describe('model.layers.1.mlp.down_proj.weight')).toMatch(/model\.safetensors \(dequantized from 'model\.layers\.1\.mlp\.down_proj\.weight_packed'\)/);
    expect(source.shape('model.norm.weight')).toEqual([256]);
    const before = tf.memory().numTensors;
    await source.readFloat32('model.layers.0.self_attn.o_proj.weight');
    expect(tf.memory().numTensors).toBe(before);
  });

  it('isCompressedCheckpoint and readQuantizationConfig', async () => {
    expect(isCompressedCheckpoint({ quantization_config: { quant_method: 'compressed-tensors' } })).toBe(true);
    expect(isCompressedCheckpoint({ quantization_config: { quant_method: 'gptq' } })).toBe(false);
    expect(isCompressedCheckpoint({})).toBe(false);
    expect(await readQuantizationConfig(modelDir)).toBeNull();
    const q = await readQuantizationConfig(path.join(root, 'w4a16'));
    expect(q?.config_groups.group_0.format).toBe('pack-quantized');
  });

  it('reads an uncompressed checkpoint as a plain source', async () => {
    const source = await openCompressedTensorsSource(modelDir);
    expect(source.keys()).toContain('lm_head.weight');
    expect(source.dtype('lm_head.weight')).toBe('BF16');
  });
});
