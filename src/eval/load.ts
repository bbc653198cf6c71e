/**
 * Loading a model directory for evaluation: a dense Hugging Face checkpoint, or a
 * compressed-tensors one (config.json has a compressed-tensors `quantization_config`), whose
 * quantized weights `loadModel` dequantizes into dense float32 as it reads them.
 */
import { loadModel } from '../models/registry.js';
import type { CausalLM } from '../models/types.js';

/**
 * Loads every weight of a model directory, dense or compressed.
 *
 * @example
 * const model = await loadModelForEval('out/brown-llama-gptq-w4a16');
 */
export function loadModelForEval(dir: string, options: { lazy?: boolean } = {}): Promise<CausalLM> {
  return loadModel(dir, { lazy: options.lazy });
}
