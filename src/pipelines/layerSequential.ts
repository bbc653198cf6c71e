/**
 * The layer-sequential pipeline (llm-compressor's `layer_sequential`, with its deliberate fixes):
 * capture the first target's inputs for every batch, then per target layer: calibration pass
 * (hooks on) → sequential epoch end (modifiers compress the layer) → propagation pass (hooks off,
 * compressed weights) whose outputs become the next layer's cached inputs.
 *
 * Flow of one batch (each arrow is an operator from operators/):
 *
 *   dataset ─demandSource─▶ captureFirstLayer ─▶ calibrateTap(0) ─▶ epochEndBarrier(0) ─▶ propagate(0, 1)
 *           ─▶ calibrateTap(1) ─▶ … ─▶ calibrateTap(N-1) ─▶ epochEndBarrier(N-1)
 *
 * Only the barriers wait for the whole calibration set; propagation of layer i streams straight
 * into calibration of layer i+1. At most `maxResidentBatches` batches have tensors on the device at
 * once (one DeviceCredit shared by every stage); between stages a batch lives in the
 * IntermediatesCache on the host (or on disk past `hostCacheBytes`).
 *
 * Differences from the reference, on purpose: layers are matched in model order (not string
 * order); `attention_mask` and `position_ids` are carried to every layer (the reference drops
 * them after layer 0); a bare tensor output is the tuple `(tensor,)`; the last layer is not
 * propagated (nothing reads its output).
 */
import {
  EMPTY,
  concat,
  defer,
  from,
  identity,
  ignoreElements,
  pipe,
  tap,
  type MonoTypeOperatorFunction,
  type Observable,
} from 'rxjs';
import { calibrateTap } from '../../operators/calibrateTap.js';
import { captureFirstLayer } from '../../operators/captureFirstLayer.js';
import { demandSource } from '../../operators/demandSource.js';
import { DeviceCredit } from '../../operators/deviceCredit.js';
import { epochEndBarrier } from '../../operators/epochEndBarrier.js';
import type { SequentialRun } from '../../operators/pipelineInternals.js';
import { propagate } from '../../operators/propagate.js';
import { IntermediatesCache } from '../cache/intermediates.js';
import type { CausalLM } from '../models/types.js';
import type { SequentialLayer } from '../modifiers/modifier.js';
import { matchModules } from '../nn/match.js';
import { layerLabel, type LayerPhase, type PipelineEvent } from './events.js';
import { calibrationRun } from './lifecycle.js';
import type { PipelineOptions } from './types.js';

export const DEFAULT_MAX_RESIDENT_BATCHES = 2;

const EMPTY_DATASET =
  'layerSequentialPipeline: the calibration dataset is empty (a one-shot iterator or stream can be ' +
  'read by one run only; pass an array to run twice)';

/**
 * Runs the layer-sequential calibration; the returned Observable is cold (each subscription is one
 * run) and emits typed progress events. Unsubscribing stops the work, removes every hook of the
 * run's registry, disposes every tensor the run holds and deletes the cache's spill files.
 *
 * @example
 * const quantized = new Map();
 * layerSequentialPipeline({ model, modifiers: [gptq], dataset: batches, quantized })
 *   .subscribe((e) => e.type === 'layer_progress' && bar.update(e.batch));
 */
export function layerSequentialPipeline(options: PipelineOptions): Observable<PipelineEvent> {
  const { model, modifiers } = options;
  const dataset = options.dataset;
  if (dataset === undefined) {
    throw new Error(`layerSequentialPipeline: 'dataset' is required (calibration batches); use the 'datafree' pipeline without data`);
  }
  const layers = sequentialLayers(model, options.sequentialTargets ?? [model.decoderLayerClass]);
  const N = layers.length;
  return calibrationRun('layer_sequential', N, options, (scope) => {
    const { ctx, emit, peak } = scope;
    const cache = new IntermediatesCache({ hostBytes: options.hostCacheBytes, spillDir: options.spillDir });
    const credit = new DeviceCredit(options.maxResidentBatches ?? DEFAULT_MAX_RESIDENT_BATCHES);
    scope.onTeardown(() => {
      credit.close();
      cache.close();
    });
    const run: SequentialRun = { model, hooks: ctx.hooks, cache, credit, peak };
    const cachePeak = (scope.cachePeak = { hostBytes: 0, diskBytes: 0 });
    const sampleCache = () => {
      cachePeak.hostBytes = Math.max(cachePeak.hostBytes, cache.size());
      cachePeak.diskBytes = Math.max(cachePeak.diskBytes, cache.diskBytes);
    };
    let batches: number | undefined = Array.isArray(dataset) ? dataset.length : undefined;
    let layerStarted = performance.now();
    const progress = (layer: number, phase: LayerPhase, batch: number): PipelineEvent => ({
      type: 'layer_progress',
      layer,
      layers: N,
      phase,
      batch,
      batches,
      label: layerLabel(layer, N, phase),
    });

    // a finished layer leaves the device: its compressed weights move to the host (offload), the
    // rest is released, so device memory does not grow with the number of layers
    const releaseLayer = (name: string): Observable<never> =>
      defer(() => {
        if (!options.releaseWeights) return EMPTY;
        const { weights } = model;
        const pending = weights.offload ? weights.offload(name) : weights.release(name);
        return pending ? from(pending).pipe(ignoreElements()) : EMPTY;
      });

    // per layer: calibrate → epoch end → propagate into the next layer's inputs
    const layerPass = (layer: SequentialLayer): MonoTypeOperatorFunction<number> => {
      const i = layer.index;
      let calibrated = 0;
      let propagated = 0;
      return pipe(
        calibrateTap(run, layer),
        tap(() => emit(progress(i, 'calibrating', ++calibrated))),
        epochEndBarrier(ctx, modifiers, layer),
        i + 1 === N // nothing reads the last layer's outputs
          ? identity
          : pipe(
              propagate(run, layer, layers[i + 1]),
              tap(() => {
                sampleCache();
                emit(progress(i, 'propagating', ++propagated));
              }),
            ),
        (done) => concat(done, releaseLayer(layer.name)),
        tap({
          complete: () => {
            const now = performance.now();
            emit({ type: 'layer_done', layer: i, layers: N, seconds: (now - layerStarted) / 1000 });
            layerStarted = now;
          },
        }),
      );
    };

    let captured = 0;
    let stream = demandSource(dataset, credit).pipe(
      captureFirstLayer(run, layers[0]),
      tap({
        next: () => {
          captured++;
          sampleCache();
        },
        complete: () => {
          if (captured === 0) throw new Error(EMPTY_DATASET);
          batches = scope.batches = captured;
        },
      }),
    );
    for (const layer of layers) stream = stream.pipe(layerPass(layer));
    return stream.pipe(ignoreElements());
  });
}

/**
 * The modules matching `targets`, in model order, as sequential layers. Refuses no match and
 * targets nested inside one another (their outputs cannot chain).
 */
export function sequentialLayers(model: CausalLM, targets: readonly string[]): SequentialLayer[] {
  const matched = matchModules(model, targets);
  if (matched.length === 0) {
    throw new Error(
      `sequentialTargets [${targets.join(', ')}] match no module of the model. Use module names ` +
        `('model.layers.0'), class names ('${model.decoderLayerClass}') or 're:' patterns.`,
    );
  }
  for (let i = 1; i < matched.length; i++) {
    const [outer] = matched.find(([name]) => matched[i][0].startsWith(`${name}.`)) ?? [];
    if (outer !== undefined) {
      throw new Error(
        `sequentialTargets [${targets.join(', ')}] match '${outer}' and '${matched[i][0]}' inside it; sequential ` +
          `targets must not nest. Target one level only (e.g. '${model.decoderLayerClass}').`,
      );
    }
  }
  return matched.map(([name, module], index) => ({ index, name, module }));
}
