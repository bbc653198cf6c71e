/**
 * The calibration lifecycle every pipeline shares: calibration start → the pipeline's body →
 * calibration end, as an Observable of typed events. Per-run state lives inside the subscription;
 * on error or unsubscribe every hook of the run's registry is removed and each modifier's optional
 * `onAbort` is called, so state tensors can be released.
 */
import { EMPTY, Observable, concat, defer } from 'rxjs';
import { callModifiers, stageError } from '../../operators/pipelineInternals.js';
import type { Modifier, ModifierContext } from '../modifiers/modifier.js';
import { HookRegistry } from '../nn/hooks.js';
import { PeakTracker } from '../tensor/memory.js';
import type { PipelineEvent } from './events.js';
import type { PipelineOptions } from './types.js';

/**
 * A modifier with the optional `onAbort`, called when a run stops early.
 * @deprecated `Modifier` declares `onAbort` itself; kept so existing imports still compile.
 */
export interface AbortableModifier {
  onAbort?(ctx: ModifierContext): void;
}

/** What a pipeline body gets from {@link calibrationRun}: the modifier context, event output and teardown. */
export interface RunScope {
  ctx: ModifierContext;
  emit(event: PipelineEvent): void;
  peak: PeakTracker;
  /** Registers cleanup that runs when the subscription ends, however it ends. */
  onTeardown(fn: () => void): void;
  /** Set by the body once it knows: the number of calibration batches. */
  batches: number;
  /** Set by bodies that cache intermediates: their high-water marks, reported at calibration end. */
  cachePeak?: { hostBytes: number; diskBytes: number };
}

/**
 * Wraps a pipeline `body` in the shared lifecycle: `calibration_start`, every modifier's
 * `onCalibrationStart`, the body, every `onCalibrationEnd`, then `calibration_end` with timings
 * and peaks. Cold: each subscription is a separate run.
 *
 * @example
 * calibrationRun('datafree', 0, options, () => EMPTY)
 */
export function calibrationRun(
  pipeline: string,
  layers: number,
  options: PipelineOptions,
  body: (scope: RunScope) => Observable<never>,
): Observable<PipelineEvent> {
  return new Observable<PipelineEvent>((subscriber) => {
    const { model, modifiers } = options;
    const hooks = options.hooks ?? new HookRegistry();
    const emit = (event: PipelineEvent) => subscriber.next(event);
    const ctx: ModifierContext = { model, hooks, emit, quantized: options.quantized ?? new Map() };
    const teardowns: (() => void)[] = [];
    const scope: RunScope = { ctx, emit, peak: new PeakTracker(), onTeardown: (fn) => teardowns.push(fn), batches: 0 };
    const started = performance.now();
    let finished = false;
    const lifecycle = (phase: 'calibration start' | 'calibration end', call: (m: Modifier) => void | Promise<void>) =>
      callModifiers(modifiers, call, (e, m) => stageError(e, phase, undefined, undefined, m.type));

    const subscription = concat(
      defer(() => {
        emit({ type: 'calibration_start', pipeline, layers, modifiers: modifiers.map((m) => m.type) });
        return lifecycle('calibration start', (m) => m.onCalibrationStart(ctx));
      }),
      defer(() => body(scope)),
      defer(() => lifecycle('calibration end', (m) => m.onCalibrationEnd(ctx))),
      defer(() => {
        scope.peak.sample();
        emit({
          type: 'calibration_end',
          seconds: (performance.now() - started) / 1000,
          batches: scope.batches,
          peakDeviceBytes: scope.peak.peakBytes,
          ...(scope.cachePeak && {
            peakHostCacheBytes: scope.cachePeak.hostBytes,
            peakDiskCacheBytes: scope.cachePeak.diskBytes,
          }),
        });
        return EMPTY;
      }),
    ).subscribe({
      error: (e) => subscriber.error(e),
      complete: () => {
        finished = true;
        subscriber.complete();
      },
    });

    return () => {
      subscription.unsubscribe();
      for (const fn of teardowns.splice(0).reverse()) fn();
      if (!finished) {
        hooks.removeAll();
        for (const m of modifiers) m.onAbort?.(ctx);
      }
    };
  });
}
