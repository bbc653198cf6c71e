export { layerSequentialPipeline, sequentialLayers, DEFAULT_MAX_RESIDENT_BATCHES } from './layerSequential.js';
export { basicPipeline } from './basic.js';
export { datafreePipeline } from './datafree.js';
export { inferPipeline, pipelineName, runPipeline, PIPELINE_NAMES } from './infer.js';
export type { PipelineName, PipelineOptions } from './types.js';
export type { AbortableModifier } from './lifecycle.js';
export * from './events.js';
