/**
 * `oneshot`: llm-compressor's entry point for Node. Loads a model, builds calibration batches,
 * runs a calibration pipeline with the recipe's modifiers, and writes a compressed-tensors
 * checkpoint, as an Observable of typed events ending in one `result` event.
 *
 * Names and defaults follow llm-compressor's `oneshot(...)`: `numCalibrationSamples=512`,
 * `maxSeqLength=2048` (its canonical example; the dataclass default is 384), seeded shuffling
 * (seed 42, as the example's `shuffle(seed=42)`), batch size 1, `scheme` as a shortcut for
 * `GPTQModifier(targets="Linear", scheme=..., ignore=["lm_head"])`.
 *
 * Cancelling (unsubscribe, or `signal`) stops the pipeline, removes its hooks and releases the
 * model's tensors; an interrupted checkpoint write leaves no output directory and no temp files.
 * The cleanup of a write in flight is asynchronous: to wait for it, abort through `signal` and wait
 * for the Observable's error instead of unsubscribing.
 */
import * as path from 'node:path';
import { Observable } from 'rxjs';
import type { CalibrationSource } from '../operators/demandSource.js';
import { writeCompressedCheckpoint } from './checkpoint/writer.js';
import { calibrationBatches, checkDatasetFile } from './data/datasets.js';
import { loadTokenizer } from './data/tokenizer.js';
import type { TokenBatch } from './data/types.js';
import { loadModel } from './models/registry.js';
import type { CausalLM, WeightStore } from './models/types.js';
import type { Modifier } from './modifiers/modifier.js';
import { createModifier } from './modifiers/registry.js';
import type { PipelineEvent } from './pipelines/events.js';
import { inferPipeline, runPipeline } from './pipelines/infer.js';
import type { QuantizationConfig, QuantizedModule } from './quant/args.js';
import { loadRecipe, recipeToYaml } from './recipe/index.js';
import { initBackend } from './tensor/backend.js';
import { PeakTracker } from './tensor/memory.js';

export interface OneshotOptions {
  /** A Hugging Face model directory (loaded lazily, layer by layer), or a loaded model. */
  model: string | CausalLM;
  /**
   * Calibration data: a .txt/.jsonl file (tokenized with the model directory's tokenizer), or
   * ready batches (array, Iterable, AsyncIterable, Observable or ReadableStream of TokenBatch).
   */
  dataset?: string | CalibrationSource<TokenBatch>;
  /** A recipe file path, recipe YAML text, or modifiers. */
  recipe?: string | Modifier[];
  /** Shortcut for `GPTQModifier(targets: [Linear], scheme, ignore: [lm_head])`, e.g. 'W4A16'. */
  scheme?: string;
  /** Where the compressed checkpoint goes; nothing is written without it. */
  outputDir?: string;
  /** Replace a non-empty outputDir. Default false. */
  overwrite?: boolean;
  /** Directory of the tokenizer for a dataset file. Default: the model directory. */
  tokenizer?: string;
  /** JSON lines: the text field. Default 'text'. */
  textColumn?: string;
  /** Default 512. */
  numCalibrationSamples?: number;
  /** Default 2048, capped at the model's max_position_embeddings. */
  maxSeqLength?: number;
  /** Default 1. */
  batchSize?: number;
  /** Take a seeded random subset of the dataset file (llm-compressor's `shuffle_calibration_samples`). Default true. */
  shuffleCalibrationSamples?: boolean;
  /** Default: inferred from the modifiers ('layer_sequential' when one needs data, else 'datafree'). */
  pipeline?: string;
  /** Modules calibrated one at a time. Default: the model's decoder layer class. */
  sequentialTargets?: string[];
  /** 'wasm', 'cpu' or 'tensorflow'. Default: the best available (see src/tensor/backend.ts). */
  backend?: string;
  /** Default 42. */
  seed?: number;
  signal?: AbortSignal;
}

/** Per-module figures of the run, as the modifiers reported them. */
export interface ModuleSummary {
  name: string;
  modifier: string;
  samples: number;
  loss: number;
  seconds: number;
}

export interface OneshotResult {
  type: 'result';
  backend: string;
  pipeline: string;
  /** Wall time of the whole call, loading and saving included. */
  seconds: number;
  peakDeviceBytes: number;
  modules: ModuleSummary[];
  /** Absolute path of the written checkpoint, or null without `outputDir`. */
  outputDir: string | null;
  /** Total size of the written files. */
  outputBytes: number;
}

/** Coarse steps around the pipeline, for progress display. */
export interface OneshotStageEvent {
  type: 'stage';
  stage: 'load' | 'calibrate' | 'save';
  message: string;
}

export type OneshotEvent = PipelineEvent | OneshotStageEvent | OneshotResult;

/**
 * Compresses a model; see the module doc.
 *
 * @example
 * oneshot({ model: 'models/brown-llama', dataset: 'calib.txt', scheme: 'W4A16', outputDir: 'out/w4a16',
 *           numCalibrationSamples: 64, maxSeqLength: 256 })
 *   .subscribe((e) => { if (e.type === 'result') console.log(e.modules.length, 'modules'); });
 */
export function oneshot(options: OneshotOptions): Observable<OneshotEvent> {
  return new Observable<OneshotEvent>((subscriber) => {
    const controller = new AbortController();
    const forward = () => controller.abort(options.signal?.reason);
    if (options.signal?.aborted) forward();
    else options.signal?.addEventListener('abort', forward, { once: true });
    run(options, controller.signal, (e) => subscriber.next(e)).then(
      (result) => {
        subscriber.next(result);
        subscriber.complete();
      },
      (e) => subscriber.error(e),
    );
    return () => {
      options.signal?.removeEventListener('abort', forward);
      controller.abort(new Error('oneshot: unsubscribed'));
    };
  });
}

/** {@link oneshot} as a Promise of its result (events are dropped, or passed to `onEvent`). */
export function oneshotAsync(options: OneshotOptions, onEvent?: (e: OneshotEvent) => void): Promise<OneshotResult> {
  return new Promise((resolve, reject) => {
    oneshot(options).subscribe({
      next: (e) => (e.type === 'result' ? resolve(e) : onEvent?.(e)),
      error: reject,
    });
  });
}

/** The modifiers of `recipe` or `scheme` (exactly one of them). */
export async function resolveModifiers(options: Pick<OneshotOptions, 'recipe' | 'scheme'>): Promise<Modifier[]> {
  if (options.recipe !== undefined && options.scheme !== undefined) {
    throw new Error(`oneshot: give either a recipe or a scheme, not both (got recipe and scheme '${options.scheme}').`);
  }
  if (options.scheme !== undefined) {
    return [createModifier('GPTQModifier', { targets: ['Linear'], scheme: options.scheme, ignore: ['lm_head'] })];
  }
  const { recipe } = options;
  if (recipe === undefined) {
    throw new Error(`oneshot: no recipe. Pass a recipe (a YAML file, YAML text or modifiers) or a scheme such as 'W4A16'.`);
  }
  return Array.isArray(recipe) ? recipe : loadRecipe(recipe);
}

/** The error an aborted run rejects with: the signal's reason when it is an Error. */
function abortReason(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new Error('oneshot: aborted');
}

function throwIfAborted(signal: AbortSignal): void {
  if (signal.aborted) throw abortReason(signal);
}

/** Runs a pipeline Observable to completion, forwarding events; aborting unsubscribes it. */
function drain(source: Observable<PipelineEvent>, emit: (e: PipelineEvent) => void, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      subscription.unsubscribe();
      reject(abortReason(signal));
    };
    const subscription = source.subscribe({
      next: emit,
      error: (e) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
      complete: () => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      },
    });
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * A lazy layer load still in flight when the run is cancelled completes after the teardown and
 * would leave that layer's tensors behind; on a model this run loaded, such a late load releases
 * what it read.
 */
function guardLoads(model: CausalLM, signal: AbortSignal): CausalLM {
  const inner = model.weights;
  const guarded: WeightStore = {
    load: async (prefix) => {
      await inner.load(prefix);
      if (signal.aborted) inner.release(prefix);
    },
    release: (prefix) => inner.release(prefix),
  };
  (model as { weights: WeightStore }).weights = guarded;
  return model;
}

/** Batches from a dataset file (tokenized with the model's tokenizer), or the caller's source as is. */
async function calibrationSource(
  options: OneshotOptions,
  model: CausalLM,
  modelDir: string | undefined,
  emit: (e: OneshotEvent) => void,
): Promise<CalibrationSource<TokenBatch> | undefined> {
  if (typeof options.dataset !== 'string') return options.dataset;
  let maxSeqLength = options.maxSeqLength ?? 2048;
  const maxPositions = model.config.max_position_embeddings;
  if (maxSeqLength > maxPositions) {
    if (options.maxSeqLength !== undefined) {
      emit({ type: 'warning', message: `maxSeqLength ${maxSeqLength} is past the model's max_position_embeddings; samples are truncated to ${maxPositions} tokens.` });
    }
    maxSeqLength = maxPositions;
  }
  const tokenizerDir = options.tokenizer ?? modelDir;
  return calibrationBatches({
    path: options.dataset,
    tokenizer: tokenizerDir ? await loadTokenizer(tokenizerDir) : undefined,
    vocabSize: model.config.vocab_size,
    textColumn: options.textColumn,
    numSamples: options.numCalibrationSamples ?? 512,
    maxSeqLength,
    batchSize: options.batchSize ?? 1,
    shuffle: options.shuffleCalibrationSamples ?? true,
    seed: options.seed ?? 42,
  });
}

async function run(options: OneshotOptions, signal: AbortSignal, emit: (e: OneshotEvent) => void): Promise<OneshotResult> {
  const started = performance.now();
  const backend = await initBackend({ backend: options.backend, warn: (message) => emit({ type: 'warning', message }) });
  const peak = new PeakTracker();
  const modifiers = await resolveModifiers(options);
  const chosen = inferPipeline(modifiers, options.pipeline);
  const pipeline = chosen.name;
  if (chosen.warning) emit({ type: 'warning', message: chosen.warning });
  const needData = modifiers.filter((m) => m.requiresCalibrationData()).map((m) => m.type);
  if (needData.length > 0 && options.dataset === undefined && pipeline !== 'datafree') {
    throw new Error(`oneshot: ${needData.join(', ')} needs calibration data, but no dataset was given. Pass a .txt or .jsonl file (--dataset FILE).`);
  }
  if (typeof options.dataset === 'string') await checkDatasetFile(options.dataset);

  const modelDir = typeof options.model === 'string' ? options.model : undefined;
  // layer-wise pipelines read each layer when they reach it; datafree compresses every module at
  // calibration start, so the whole model is read up front
  const lazy = pipeline !== 'datafree';
  if (modelDir) emit({ type: 'stage', stage: 'load', message: `loading ${modelDir}${lazy ? ' (layers are read as they are needed)' : ''}` });
  const model = modelDir ? guardLoads(await loadModel(modelDir, { lazy }), signal) : (options.model as CausalLM);
  try {
    throwIfAborted(signal);
    const dataset = await calibrationSource(options, model, modelDir, emit);
    const quantized = new Map<string, QuantizedModule>();
    const modules: ModuleSummary[] = [];
    let pipelinePeak = 0;
    emit({ type: 'stage', stage: 'calibrate', message: `running the ${pipeline} pipeline with ${modifiers.map((m) => m.type).join(', ')}` });
    await drain(
      runPipeline(pipeline, { model, modifiers, dataset, sequentialTargets: options.sequentialTargets, quantized, releaseWeights: modelDir !== undefined }),
      (e) => {
        peak.sample();
        if (e.type === 'module_result') modules.push({ name: e.module, modifier: e.modifier, samples: e.samples, loss: e.loss, seconds: e.seconds });
        if (e.type === 'calibration_end') pipelinePeak = e.peakDeviceBytes;
        emit(e);
      },
      signal,
    );

    let outputDir: string | null = null;
    let outputBytes = 0;
    if (options.outputDir) {
      throwIfAborted(signal);
      emit({ type: 'stage', stage: 'save', message: `writing the compressed checkpoint to ${options.outputDir}` });
      const written = await writeCompressedCheckpoint({
        model,
        quantized,
        quantizationConfig: modifiers.map((m) => m.quantizationConfig?.()).filter((c): c is QuantizationConfig => c !== undefined),
        outputDir: options.outputDir,
        sourceDir: modelDir,
        recipeYaml: recipeToYaml(modifiers),
        overwrite: options.overwrite,
        signal,
      });
      outputDir = path.resolve(options.outputDir);
      outputBytes = written.bytes;
    }
    peak.sample();
    return {
      type: 'result',
      backend: backend.name,
      pipeline,
      seconds: (performance.now() - started) / 1000,
      peakDeviceBytes: Math.max(peak.peakBytes, pipelinePeak),
      modules,
      outputDir,
      outputBytes,
    };
  } finally {
    // a model we loaded is ours to release; a caller's model stays as the run left it
    if (modelDir) model.releaseParameters();
  }
}
