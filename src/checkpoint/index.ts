/** Compressed-tensors checkpoints: the writer vLLM serves from, and a dense reader for evaluation. */
export { writeCompressedCheckpoint, COPIED_SOURCE_FILES, DEFAULT_MAX_SHARD_BYTES } from './writer.js';
export type { WriteCompressedCheckpointOptions, WriteCompressedCheckpointResult } from './writer.js';
export { openCompressedTensorsSource, isCompressedCheckpoint, readQuantizationConfig } from './reader.js';
export {
  COMPRESSED_TENSORS_VERSION,
  SUPPORTED_FORMATS,
  buildQuantizationConfigBlock,
  inferFormat,
  mergeQuantizationConfigs,
  sortKeysDeep,
  toSortedJson,
} from './format.js';
export type { CompressedTensorsConfig, IntCompressionFormat } from './format.js';
