import type { OperatorFunction } from 'rxjs';
import type { SequentialLayer } from '../src/modifiers/modifier.js';
import { disposeDeep, layerStage, type SequentialRun } from './pipelineInternals.js';

/**
 * The calibration pass of one sequential layer: for each batch index, runs the layer on the
 * batch's cached inputs with hooks ON (so modifiers accumulate statistics, e.g. GPTQ Hessians),
 * discards the output and passes the index on. The layer's weights are loaded before the first
 * batch. Layers run outside tf.tidy so modifier hooks may keep state tensors.
 *
 * @example
 * indices$.pipe(calibrateTap(run, layers[3]), epochEndBarrier(ctx, modifiers, layers[3]))
 */
export function calibrateTap(run: SequentialRun, layer: SequentialLayer): OperatorFunction<number, number> {
  return layerStage(run, layer, 'calibrating', (inputs) => {
    const output = layer.module.call([], inputs);
    run.peak?.sample();
    disposeDeep(output);
  });
}
