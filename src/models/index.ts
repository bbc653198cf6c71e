/** The models part of layerstream: load, run, save and generate Llama-family models. */
export { loadModel, modelFromSource, ARCHITECTURES, type Architecture, type LoadModelOptions } from './registry.js';
export { saveModel, configJson, type SaveModelOptions } from './save.js';
export { normalizeConfig, loadConfig, ropeInvFreq, SUPPORTED_MODEL_TYPES } from './config.js';
export { LlamaForCausalLM, buildAttentionMask, llamaTensorShapes, MASK_VALUE } from './llama.js';
export { SafetensorsSource, MemorySource, ModelWeights, checkTensors, underPrefix } from './weights.js';
export { generateRandomModel, createRandomModel, randomTensors, type RandomModelOptions } from './random.js';
export type * from './types.js';
