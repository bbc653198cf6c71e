import { concatMap, defer, from, type OperatorFunction } from 'rxjs';
import type { TokenBatch } from '../src/data/types.js';
import type { SequentialLayer } from '../src/modifiers/modifier.js';
import type { Kwargs } from '../src/nn/module.js';
import type { Leased } from './demandSource.js';
import {
  EarlyStopError,
  cloneKeepDeep,
  disposeDeep,
  stageError,
  uploadBatch,
  weightLoader,
  type SequentialRun,
} from './pipelineInternals.js';

/**
 * Runs the model on each batch until the first sequential target and stores that target's inputs
 * (by name, via its `argsToKwargs`) in the cache, off the device. Emits each batch's index.
 *
 * The batch is uploaded only when it arrives (it already holds a device slot, which is released
 * here); padding is masked out of `input_ids` first (`input_ids *= attention_mask`, as the
 * reference does). A pre-hook on the target, registered through the run's HookRegistry and removed
 * after each batch, throws {@link EarlyStopError}, so nothing after the target runs.
 *
 * @example
 * demandSource(batches, run.credit).pipe(captureFirstLayer(run, layers[0])) // 0, 1, 2, ...
 */
export function captureFirstLayer(run: SequentialRun, first: SequentialLayer): OperatorFunction<Leased<TokenBatch>, number> {
  return (source) =>
    defer(() => {
      const ready = weightLoader(run, () => prefixModules(run, first));
      return source.pipe(concatMap((lease) => from(captureOne(run, first, lease, ready))));
    });
}

async function captureOne(run: SequentialRun, first: SequentialLayer, lease: Leased<TokenBatch>, ready: () => Promise<void>) {
  try {
    await ready();
    const inputs = uploadBatch(lease.value);
    let captured: Kwargs | undefined;
    try {
      captured = runUntil(run, first, inputs);
      run.peak?.sample();
      await run.cache.update(lease.index, captured);
    } finally {
      disposeDeep(inputs);
      disposeDeep(captured);
    }
    return lease.index;
  } catch (e) {
    throw stageError(e, 'capturing', undefined, lease.index, `first target '${first.name}'`);
  } finally {
    lease.release();
  }
}

function runUntil(run: SequentialRun, first: SequentialLayer, inputs: Kwargs): Kwargs {
  const handle = run.hooks.registerForwardPreHook(first.module, (_m, args, kwargs) => {
    throw new EarlyStopError(cloneKeepDeep(args), cloneKeepDeep(kwargs));
  });
  try {
    disposeDeep(run.model.call([], inputs));
  } catch (e) {
    if (!(e instanceof EarlyStopError)) throw e;
    try {
      return first.module.argsToKwargs(e.args, e.kwargs);
    } catch (bad) {
      disposeDeep([e.args, e.kwargs]);
      throw bad;
    }
  } finally {
    handle.remove();
  }
  throw new Error(
    `the model returned without calling the first sequential target '${first.name}'. Check sequentialTargets: ` +
      `the target must run inside the model's forward.`,
  );
}

/** Modules with parameters that come before the first target in model order (embeddings). */
function prefixModules(run: SequentialRun, first: SequentialLayer): string[] {
  const out = new Set<string>();
  for (const [name, , , param] of run.model.namedParameters()) {
    if (name.startsWith(`${first.name}.`)) break;
    out.add(name.slice(0, Math.max(0, name.length - param.length - 1)));
  }
  return [...out];
}
