import { concat, concatMap, from, toArray, type OperatorFunction } from 'rxjs';
import type { Modifier, ModifierContext, SequentialLayer } from '../src/modifiers/modifier.js';
import { callModifiers, stageError } from './pipelineInternals.js';

/**
 * Holds every item until the source completes, then calls `onSequentialEpochEnd(ctx, layer)` on
 * each modifier exactly once, in order (GPTQ compresses the layer here), then releases the items
 * in arrival order. If the source errors or is unsubscribed first, no modifier is called.
 *
 * @example
 * // a--b--c--|            (calibrated batch indices)
 * // ---------(abc|)       after every modifier's onSequentialEpochEnd
 * indices$.pipe(epochEndBarrier(ctx, modifiers, layer))
 */
export function epochEndBarrier<T>(
  ctx: ModifierContext,
  modifiers: readonly Modifier[],
  layer: SequentialLayer,
): OperatorFunction<T, T> {
  return (source) =>
    source.pipe(
      toArray(),
      concatMap((items) =>
        concat(
          callModifiers(
            modifiers,
            (m) => m.onSequentialEpochEnd(ctx, layer),
            (e, m) => stageError(e, 'epoch end', layer, undefined, m.type),
          ),
          from(items),
        ),
      ),
    );
}
