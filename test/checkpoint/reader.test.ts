import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openCompressedTensorsSource } from '../../src/checkpoint/reader.js';
import { writeCompressedCheckpoint } from '../../src/checkpoint/writer.js';
import { generateRandomModel } from '../../src/models/random.js';
import { loadModel } from '../../src/models/registry.js';
import { SafetensorsFile, writeSafetensors, type WritableTensor } from '../../src/models/safetensors.js';
import { initBackend } from '../../src/tensor/backend.js';
import { W4A16_ASYM, configOf, quantizeModel, scheme, tempDir } from './helpers.js';

let root: string;
let good: string;
const P = 'model.layers.0.mlp.down_proj';

beforeAll(async () => {
  await initBackend({ backend: 'cpu' });
  root = await tempDir();
  const src = path.join(root, 'source');
  await generateRandomModel(src, { modelType: 'llama', hiddenSize: 128, intermediateSize: 256, numLayers: 1, numHeads: 2, vocabSize: 64, seed: 4 });
  const model = await loadModel(src, { lazy: true });
  const q = await quantizeModel(model, W4A16_ASYM);
  good = path.join(root, 'good');
  await writeCompressedCheckpoint({ model, quantized: q.quantized, quantizationConfig: configOf(scheme(W4A16_ASYM)), outputDir: good });
});
afterAll(async () => {
  await fsp.rm(root, { recursive: true, force: true });
});

/** A copy of the good checkpoint with its config and tensors edited. */
async function variant(
  name: string,
  edit: { config?: (c: Record<string, any>) => void; tensors?: (t: Map<string, WritableTensor>) => void },
): Promise<string> {
  const dir = path.join(root, name);
  await fsp.mkdir(dir);
  const config = JSON.parse(await fsp.readFile(path.join(good, 'config.json'), 'utf8'));
  edit.config?.(config);
  await fsp.writeFile(path.join(dir, 'config.json'), JSON.stringify(config));
  const st = await SafetensorsFile.open(path.join(good, 'model.safetensors'));
  const tensors = new Map<string, WritableTensor>();
  for (const k of st.keys()) tensors.set(k, await st.read(k));
  edit.tensors?.(tensors);
  await writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
  return dir;
}

describe('openCompressedTensorsSource errors', () => {
  it('names an unsupported format', async () => {
    const dir = await variant('fp8', { config: (c) => (c.quantization_config.config_groups.group_0.format = 'float-quantized') });
    await expect(openCompressedTensorsSource(dir)).rejects.toThrow(/group 'group_0' uses format 'float-quantized', which layerstream cannot read/);
  });

  it('refuses sparse checkpoints', async () => {
    const dir = await variant('sparse', { config: (c) => (c.quantization_config.sparsity_config = { format: 'sparse-24-bitmask' }) });
    await expect(openCompressedTensorsSource(dir)).rejects.toThrow(/sparsity_config/);
  });

  it('names a packed weight without weight_scale', async () => {
    const dir = await variant('no-scale', { tensors: (t) => void t.delete(`${P}.weight_scale`) });
    await expect(openCompressedTensorsSource(dir)).rejects.toThrow(`'${P}.weight_packed' in ${path.join(dir, 'model.safetensors')} has no '${P}.weight_scale'`);
  });

  it('names a weight_shape that does not match weight_packed', async () => {
    const dir = await variant('bad-shape', {
      tensors: (t) => void t.set(`${P}.weight_shape`, { dtype: 'I64', shape: [2], data: BigInt64Array.of(128n, 264n) }),
    });
    await expect(openCompressedTensorsSource(dir)).rejects.toThrow(
      /'model\.layers\.0\.mlp\.down_proj'.*weight_packed has shape \[128, 32\], but weight_shape \[128, 264\] with 4-bit packing implies \[128, 33\]/,
    );
  });

  it('names a module no config group fits', async () => {
    const dir = await variant('int8-groups', { config: (c) => (c.quantization_config.config_groups.group_0.weights.num_bits = 8) });
    await expect(openCompressedTensorsSource(dir)).rejects.toThrow(/no config group fits its tensors \(group 'group_0': weight_packed has shape/);
  });

  it('a broken index is reported with the file it names', async () => {
    const dir = await variant('bad-index', {});
    await fsp.rename(path.join(dir, 'model.safetensors'), path.join(dir, 'model-00001-of-00001.safetensors'));
    await fsp.writeFile(
      path.join(dir, 'model.safetensors.index.json'),
      JSON.stringify({ metadata: {}, weight_map: { 'model.norm.weight': 'model-00001-of-00001.safetensors', 'extra.weight': 'model-00001-of-00001.safetensors' } }),
    );
    await expect(openCompressedTensorsSource(dir)).rejects.toThrow(/maps 'extra\.weight' to 'model-00001-of-00001\.safetensors', which does not contain it/);
  });

  it('loadModel checks the dense view like any checkpoint', async () => {
    const source = await openCompressedTensorsSource(good);
    expect(source.shape(`${P}.weight`)).toEqual([128, 256]);
    const model = await loadModel(good, { source, lazy: true });
    await model.weights.load(P);
    expect(model.getSubmodule(P).param('weight').shape).toEqual([128, 256]);
    model.weights.release('');
  });
});
