/**
 * Loading a model directory for evaluation: a dense Hugging Face checkpoint, or a
 * compressed-tensors one (config.json has a compressed-tensors `quantization_config`), whose
 * quantized weights are dequantized into dense float32 as they are read.
 */
import { openCompressedTensorsSource, readQuantizationConfig } from '../checkpoint/reader.js';
import { loadModel } from '../models/registry.js';
import type { CausalLM } from '../models/types.js';

/**
 * Loads every weight of a model directory, dense or compressed.
 *
 * @example
 * const model = await loadModelForEval('out/brown-llama-gptq-w4a16');
 */
export async function loadModelForEval(dir: string, options: { lazy?: boolean } = {}): Promise<CausalLM> {
  // a missing or broken config.json is reported by loadModel, with its file name
  const quantization = await readQuantizationConfig(dir).catch(() => null);
  if (quantization) return loadModel(dir, { lazy: options.lazy, source: await openCompressedTensorsSource(dir) });
  return loadModel(dir, { lazy: options.lazy });
}
