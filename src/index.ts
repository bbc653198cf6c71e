/**
 * layerstream: layer-wise streaming calibration and GPTQ quantization of transformer language
 * models, on RxJS and TensorFlow.js. The public API; the RxJS operators are at `layerstream/operators`.
 */
export { initBackend, backendInfo, BACKEND_NAMES, type BackendInfo, type BackendName } from './tensor/backend.js';
export { enableAccelerator, disableAccelerator, acceleratorInfo, type AcceleratorInfo } from './tensor/accel.js';
export { liveDeviceBytes, deviceBudget, ensureDeviceRoom, PeakTracker } from './tensor/memory.js';

export { Module, type Kwargs, type ForwardHook, type ForwardPreHook, type RemovableHandle } from './nn/module.js';
export { HookRegistry } from './nn/hooks.js';
export { Linear, Embedding, RMSNorm } from './nn/layers.js';
export { matchesTarget, matchModules } from './nn/match.js';

export * from './models/index.js';

export { oneshot, oneshotAsync, resolveModifiers } from './oneshot.js';
export type { OneshotOptions, OneshotEvent, OneshotResult, ModuleSummary } from './oneshot.js';

export * from './pipelines/index.js';
export { IntermediatesCache } from './cache/intermediates.js';

export type { Modifier, ModifierContext, SequentialLayer } from './modifiers/modifier.js';
export { GPTQModifier } from './modifiers/gptq/gptqModifier.js';
export { accumulateHessian, quantizeWeight } from './modifiers/gptq/gptqQuantize.js';
export { QuantizationModifier } from './modifiers/quantization/quantizationModifier.js';
export { createModifier, MODIFIER_TYPES } from './modifiers/registry.js';
export * from './recipe/index.js';

export type * from './quant/args.js';
export { presetScheme, PRESET_NAMES } from './quant/presets.js';
export { packToInt32, unpackFromInt32 } from './quant/pack.js';

export * from './checkpoint/index.js';
export * from './data/index.js';
export { evaluatePerplexity, type PerplexityOptions, type PerplexityResult } from './eval/perplexity.js';
export { loadModelForEval } from './eval/load.js';
