/**
 * What the sequential-pipeline operators share: the run context, the typed errors, deep tensor
 * helpers and the per-batch step every layer stage runs (slot → fetch → body → dispose).
 */
import * as tf from '@tensorflow/tfjs-core';
import { EMPTY, concatMap, defer, from, ignoreElements, type Observable, type OperatorFunction } from 'rxjs';
import type { IntermediatesCache } from '../src/cache/intermediates.js';
import type { WeightStore } from '../src/models/types.js';
import type { TokenBatch } from '../src/data/types.js';
import type { Modifier, SequentialLayer } from '../src/modifiers/modifier.js';
import type { HookRegistry } from '../src/nn/hooks.js';
import type { Kwargs, Module } from '../src/nn/module.js';
import type { PeakTracker } from '../src/tensor/memory.js';
import type { DeviceCredit } from './deviceCredit.js';

/** One run's shared state, created by the pipeline inside its subscription. */
export interface SequentialRun {
  /** The whole model (a CausalLM): capture runs it; its `weights` load layers on demand. */
  model: Module & { weights?: WeightStore };
  /** The run's hook registry (the modifiers' hooks and the early-stop hook). */
  hooks: HookRegistry;
  /** Owns every batch's current layer inputs, off the device. */
  cache: IntermediatesCache;
  /** Device slots: bounds the batches resident on the device at once. */
  credit: DeviceCredit;
  /** Sampled at each stage's high-water point (after the forward, before disposal). */
  peak?: PeakTracker;
}

/** Where in a run a {@link PipelineStageError} happened. */
export type StagePhase = 'calibration start' | 'capturing' | 'calibrating' | 'epoch end' | 'propagating' | 'calibration end';

/** Thrown by the early-stop pre-hook; carries kept clones of the first target's inputs (the catcher owns them). */
export class EarlyStopError extends Error {
  constructor(
    readonly args: unknown[],
    readonly kwargs: Kwargs,
  ) {
    super('early stop before the first sequential target (caught by captureFirstLayer)');
    this.name = 'EarlyStopError';
  }
}

/** An error inside a pipeline stage, naming the layer and batch where it happened. */
export class PipelineStageError extends Error {
  constructor(
    message: string,
    readonly phase: StagePhase,
    readonly layer: SequentialLayer | undefined,
    readonly batch: number | undefined,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'PipelineStageError';
  }
}

/** Wraps `e` with where it happened, unless it already says so. */
export function stageError(e: unknown, phase: StagePhase, layer?: SequentialLayer, batch?: number, what?: string): Error {
  if (e instanceof PipelineStageError) return e;
  const where = [
    layer ? `layer ${layer.index} '${layer.name}'` : undefined,
    batch === undefined ? undefined : `batch ${batch}`,
    what,
  ].filter(Boolean);
  const msg = e instanceof Error ? e.message : String(e);
  return new PipelineStageError(`${where.join(', ')} (${phase}): ${msg}`, phase, layer, batch, { cause: e });
}

/** Disposes every tensor inside arrays and plain objects. */
export function disposeDeep(v: unknown): void {
  if (v instanceof tf.Tensor) v.dispose();
  else if (Array.isArray(v)) v.forEach(disposeDeep);
  else if (v !== null && typeof v === 'object') Object.values(v).forEach(disposeDeep);
}

/**
 * Clones every tensor and marks the clone kept, so it survives both an enclosing tf.tidy that
 * unwinds on the early-stop throw and the model disposing its own intermediates.
 */
export function cloneKeepDeep<T>(v: T): T {
  if (v instanceof tf.Tensor) return tf.keep(tf.clone(v)) as T;
  if (Array.isArray(v)) return v.map(cloneKeepDeep) as T;
  if (v !== null && typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, cloneKeepDeep(x)])) as T;
  }
  return v;
}

/** `{input_ids, attention_mask?}` on the device, with padded positions' ids set to 0. */
export function uploadBatch(b: TokenBatch): Kwargs {
  if (!b || !(b.inputIds instanceof Int32Array)) {
    throw new Error(
      `expected a TokenBatch ({inputIds: Int32Array, attentionMask?, batchSize, seqLen}), got ` +
        `${b === null ? 'null' : typeof b === 'object' ? `an object with keys ${Object.keys(b).join(', ')}` : typeof b}. ` +
        `Tokenize and batch the data first (src/data).`,
    );
  }
  const n = b.batchSize * b.seqLen;
  if (!Number.isInteger(n) || n <= 0 || b.inputIds.length !== n || (b.attentionMask && b.attentionMask.length !== n)) {
    throw new Error(
      `TokenBatch: inputIds (${b.inputIds.length}) and attentionMask (${b.attentionMask?.length ?? 'absent'}) must ` +
        `hold batchSize × seqLen = ${b.batchSize} × ${b.seqLen} values`,
    );
  }
  const shape: [number, number] = [b.batchSize, b.seqLen];
  if (!b.attentionMask) return { input_ids: tf.tensor2d(b.inputIds, shape, 'int32') };
  const mask = b.attentionMask;
  const ids = b.inputIds.map((id, i) => id * mask[i]);
  return { input_ids: tf.tensor2d(ids, shape, 'int32'), attention_mask: tf.tensor2d(mask, shape, 'int32') };
}

/** Loads a module's weights once per subscription (a no-op for eagerly loaded models). */
export function weightLoader(run: SequentialRun, prefixes: () => string[]): () => Promise<void> {
  let loading: Promise<void> | undefined;
  return () => (loading ??= (async () => {
    const weights = run.model.weights;
    if (weights) for (const p of prefixes()) await weights.load(p);
  })());
}

/**
 * A per-batch layer stage as an operator: the layer's weights load once per subscription, then
 * each batch index runs {@link layerStep} in order and is passed on.
 *
 * @example
 * layerStage(run, layer, 'calibrating', (inputs) => disposeDeep(layer.module.call([], inputs)))
 */
export function layerStage(
  run: SequentialRun,
  layer: SequentialLayer,
  phase: StagePhase,
  body: (inputs: Kwargs, index: number) => void | Promise<void>,
): OperatorFunction<number, number> {
  return (source) =>
    defer(() => {
      const ready = weightLoader(run, () => [layer.name]);
      return source.pipe(concatMap((index) => from(layerStep(run, layer, index, phase, ready, body))));
    });
}

/**
 * One layer stage for one batch: waits for the layer's weights, takes a device slot, fetches the
 * batch's inputs from the cache, runs `body`, disposes the inputs, releases the slot. Errors are
 * rethrown naming the layer and batch.
 */
export async function layerStep(
  run: SequentialRun,
  layer: SequentialLayer,
  index: number,
  phase: StagePhase,
  ready: () => Promise<void>,
  body: (inputs: Kwargs, index: number) => void | Promise<void>,
): Promise<number> {
  try {
    await ready();
    await run.credit.use(async () => {
      const inputs = await run.cache.fetch(index);
      try {
        await body(inputs, index);
      } finally {
        disposeDeep(inputs);
      }
    });
    return index;
  } catch (e) {
    throw stageError(e, phase, layer, index);
  }
}

/**
 * Calls a lifecycle method on each modifier in order (synchronously when the calls are), and
 * completes without emitting; errors name the modifier.
 */
export function callModifiers(
  modifiers: readonly Modifier[],
  call: (m: Modifier) => void | Promise<void>,
  onError: (e: unknown, m: Modifier) => Error,
): Observable<never> {
  return from(modifiers).pipe(
    concatMap((m) =>
      defer(() => {
        let r: void | Promise<void>;
        try {
          r = call(m);
        } catch (e) {
          throw onError(e, m);
        }
        return r instanceof Promise ? from(r.catch((e: unknown) => Promise.reject(onError(e, m)))) : EMPTY;
      }),
    ),
    ignoreElements(),
  );
}
