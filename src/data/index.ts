/** Calibration and evaluation data: tokenizers, dataset readers, batching. */
export type { TokenBatch } from './types.js';
export { loadTokenizer, type TextTokenizer, type ChatMessage, type EncodeOptions, type ChatTemplateOptions } from './tokenizer.js';
export {
  calibrationBatches,
  readSamples,
  tokenizedSamples,
  tokenizeSample,
  parseRecord,
  detectFormat,
  checkDatasetFile,
  type CalibrationBatchesOptions,
  type ReadSamplesOptions,
  type DatasetSample,
  type DatasetFormat,
} from './datasets.js';
export { collate, type CollateOptions } from './batching.js';
export { seededRandom, shuffleInPlace, Reservoir } from './random.js';
