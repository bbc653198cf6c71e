/**
 * Writes a model back as a Hugging Face directory: config.json + model.safetensors, names and
 * layout as read (a tied model writes no `lm_head.weight`), loadable by {@link loadModel} and by
 * transformers.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { encodeFloat, writeSafetensors, type WritableTensor } from './safetensors.js';
import type { CausalLM, ModelConfig, TorchDtype } from './types.js';
import { ModelWeights } from './weights.js';

const SAFETENSORS_DTYPE: Record<TorchDtype, 'F32' | 'F16' | 'BF16'> = {
  float32: 'F32',
  float16: 'F16',
  bfloat16: 'BF16',
};

/** The config.json object for `config`: the raw fields as read, with the normalised ones written over. */
export function configJson(config: ModelConfig, dtype: TorchDtype = config.torch_dtype): Record<string, unknown> {
  const { raw, ...fields } = config;
  const out: Record<string, unknown> = { ...raw, ...fields, torch_dtype: dtype };
  // `o_proj_bias` is derived (Qwen2), not a transformers field
  delete out.o_proj_bias;
  // the weights written here are dense: a compressed checkpoint's description no longer applies
  delete out.quantization_config;
  delete out.compression_config;
  if (config.model_type === 'qwen2') delete out.attention_bias;
  if (config.model_type !== 'llama') delete out.mlp_bias;
  if (config.model_type !== 'mistral') delete out.sliding_window;
  return out;
}

export interface SaveModelOptions {
  /** Storage dtype of the weights; default the config's `torch_dtype`. */
  dtype?: TorchDtype;
}

/**
 * Saves every parameter (loaded, modified, or still on disk for a lazily loaded model) to
 * `<dir>/model.safetensors` and the config to `<dir>/config.json`.
 */
export async function saveModel(model: CausalLM, dir: string, options: SaveModelOptions = {}): Promise<void> {
  const dtype = options.dtype ?? model.config.torch_dtype;
  const stDtype = SAFETENSORS_DTYPE[dtype];
  if (!stDtype) throw new Error(`saveModel: dtype '${dtype}' is not one of float32, float16, bfloat16`);
  const store = model.weights instanceof ModelWeights ? model.weights : undefined;
  const tensors = new Map<string, WritableTensor>();
  for (const [name, t] of model.namedParameters()) {
    let values: Float32Array;
    let shape: number[];
    if (t) {
      values = (await t.data()) as Float32Array;
      shape = t.shape;
    } else if (store) {
      values = await store.readFloat32(name);
      shape = store.shape(name);
    } else {
      throw new Error(`saveModel: parameter '${name}' is not loaded and the model has no weight source to read it from. Set it (setParameter) or load the model through loadModel, whose weights can be read back, before saving.`);
    }
    tensors.set(name, { dtype: stDtype, shape, data: encodeFloat(values, stDtype) });
  }
  await fsp.mkdir(dir, { recursive: true });
  await writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
  await fsp.writeFile(path.join(dir, 'config.json'), `${JSON.stringify(configJson(model.config, dtype), null, 2)}\n`);
}
