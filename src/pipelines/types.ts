/**
 * The options every calibration pipeline takes, and the pipeline names.
 */
import type { CalibrationSource } from '../../operators/demandSource.js';
import type { TokenBatch } from '../data/types.js';
import type { CausalLM } from '../models/types.js';
import type { Modifier } from '../modifiers/modifier.js';
import type { HookRegistry } from '../nn/hooks.js';
import type { QuantizedModule } from '../quant/args.js';

/** The pipelines layerstream implements (llm-compressor's names). */
export type PipelineName = 'layer_sequential' | 'basic' | 'datafree';

export interface PipelineOptions {
  model: CausalLM;
  modifiers: Modifier[];
  /**
   * Calibration batches: an array, Iterable, AsyncIterable, Observable or web ReadableStream of
   * TokenBatch. Read once, in order; its length need not be known. Not used by 'datafree'.
   */
  dataset?: CalibrationSource<TokenBatch>;
  /**
   * The modules calibrated one at a time: module names, class names or `re:` patterns, matched in
   * model order. Default: the model's decoder layer class (`LlamaDecoderLayer`).
   */
  sequentialTargets?: string[];
  /** Batches whose tensors may be on the device at once. Default 2. */
  maxResidentBatches?: number;
  /** Host bytes the intermediates cache keeps in memory before spilling to disk. Default: no limit. */
  hostCacheBytes?: number;
  /** Where the cache's spill directory is created. Default: `os.tmpdir()`. */
  spillDir?: string;
  /** Release each layer's unmodified weights once it has been propagated (lazily loaded models). */
  releaseWeights?: boolean;
  /** The run's hook registry; a new one if omitted. Every hook in it is removed on error or cancel. */
  hooks?: HookRegistry;
  /** Where modifiers record quantized modules, for the caller to read after the run. */
  quantized?: Map<string, QuantizedModule>;
}
