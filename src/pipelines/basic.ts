/**
 * The basic pipeline (llm-compressor `basic`): the whole model runs on each batch with hooks on;
 * there is no sequential epoch end, so modifiers compress everything at calibration end (GPTQ keeps
 * every Hessian until then, and quantization error does not propagate between layers). The
 * fallback for models whose layers do not chain.
 */
import { concatMap, from, ignoreElements, tap, type Observable } from 'rxjs';
import { demandSource, type Leased } from '../../operators/demandSource.js';
import { DeviceCredit } from '../../operators/deviceCredit.js';
import { disposeDeep, stageError, uploadBatch } from '../../operators/pipelineInternals.js';
import type { TokenBatch } from '../data/types.js';
import type { CausalLM } from '../models/types.js';
import type { PeakTracker } from '../tensor/memory.js';
import { layerLabel, type PipelineEvent } from './events.js';
import { calibrationRun } from './lifecycle.js';
import type { PipelineOptions } from './types.js';

/**
 * Runs the basic calibration; emits `calibration_start`, one `layer_progress` per batch (labelled
 * `(1/1): Calibrating`), module results from modifiers, and `calibration_end`.
 *
 * @example
 * await lastValueFrom(basicPipeline({ model, modifiers, dataset }));
 */
export function basicPipeline(options: PipelineOptions): Observable<PipelineEvent> {
  const { model, dataset } = options;
  if (dataset === undefined) throw new Error(`basicPipeline: 'dataset' is required: pass calibration batches (an array, iterable, Observable or stream of TokenBatch).`);
  const batches = Array.isArray(dataset) ? dataset.length : undefined;
  return calibrationRun('basic', 1, options, (scope) => {
    const credit = new DeviceCredit(1);
    scope.onTeardown(() => credit.close());
    let seen = 0;
    return demandSource(dataset, credit).pipe(
      concatMap((lease) => from(forwardOne(model, lease, scope.peak))),
      tap(() => {
        scope.batches = ++seen;
        scope.emit({ type: 'layer_progress', layer: 0, layers: 1, phase: 'calibrating', batch: seen, batches, label: layerLabel(0, 1, 'calibrating') });
      }),
      ignoreElements(),
    );
  });
}

/** One whole-model forward with hooks on; the logits are discarded. */
async function forwardOne(model: CausalLM, lease: Leased<TokenBatch>, peak: PeakTracker): Promise<void> {
  try {
    await model.weights.load('');
    const inputs = uploadBatch(lease.value);
    try {
      const logits = model.call([], inputs);
      peak.sample();
      disposeDeep(logits);
    } finally {
      disposeDeep(inputs);
    }
  } catch (e) {
    throw stageError(e, 'calibrating', undefined, lease.index, 'whole model');
  } finally {
    lease.release();
  }
}
