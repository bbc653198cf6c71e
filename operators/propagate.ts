import * as tf from '@tensorflow/tfjs-core';
import type { OperatorFunction } from 'rxjs';
import type { SequentialLayer } from '../src/modifiers/modifier.js';
import { describe, type Kwargs } from '../src/nn/module.js';
import { disposeDeep, layerStage, type SequentialRun } from './pipelineInternals.js';

/**
 * The propagation pass of one sequential layer: for each batch index, runs the (now compressed)
 * layer with every hook disabled, turns its output into the next layer's named inputs and replaces
 * the batch's cache entry with them; passes the index on.
 *
 * A bare tensor output counts as the tuple `(tensor,)`; tuple entries bind to the next layer's
 * `forwardParams` in order (the reference's `to_next_layer_kwargs`). Every other input the next
 * layer accepts is carried over from this layer's inputs: `position_embeddings` as the reference
 * does, and also `attention_mask` and `position_ids`, which the reference drops after layer 0
 * (silently changing attention for padded batches).
 *
 * @example
 * calibrated$.pipe(epochEndBarrier(ctx, modifiers, layers[i]), propagate(run, layers[i], layers[i + 1]))
 */
export function propagate(run: SequentialRun, layer: SequentialLayer, next: SequentialLayer): OperatorFunction<number, number> {
  return layerStage(run, layer, 'propagating', async (inputs, index) => {
    const output = run.hooks.disableHooks(() => layer.module.call([], inputs));
    try {
      run.peak?.sample();
      const nextInputs = toNextLayerInputs(output, inputs, layer, next);
      // carried-over values (mask, positions, rotary cos/sin) are already cached as they are:
      // download only what the layer produced, and drop what the next layer ignores
      const produced = Object.fromEntries(Object.entries(nextInputs).filter(([k, v]) => v !== inputs[k]));
      run.cache.delete(index, run.cache.names(index).filter((name) => !(name in nextInputs)));
      await run.cache.update(index, produced);
    } finally {
      disposeDeep(output);
    }
  });
}

/**
 * Binds `output` to `next`'s forward parameters and carries the remaining ones from `inputs`.
 * Refuses outputs that cannot be the next layer's inputs (the layer-sequential assumption), judged
 * by arity and by the shape of the first input; targets that chain by shape but not by data flow
 * (q_proj → k_proj) cannot be told apart this way, which is why the default targets are whole
 * decoder layers.
 *
 * @example
 * toNextLayerInputs(h, { hidden_states: x, attention_mask: m, position_ids: p, position_embeddings: pe }, l0, l1)
 * // → { hidden_states: h, attention_mask: m, position_ids: p, position_embeddings: pe }
 */
export function toNextLayerInputs(output: unknown, inputs: Kwargs, layer: SequentialLayer, next: SequentialLayer): Kwargs {
  const params = next.module.forwardParams;
  const outs = output instanceof tf.Tensor ? [output] : Array.isArray(output) ? output : undefined;
  const refuse = (why: string) =>
    new Error(
      `the output of '${layer.name}' cannot be the input of '${next.name}': ${why}. The layer-sequential ` +
        `pipeline assumes each sequential target's outputs are exactly the next target's inputs; choose ` +
        `sequential targets that chain (the decoder layer class), or run the 'basic' pipeline.`,
    );
  if (!outs || outs.length === 0) throw refuse(`it returned ${describe(output)}, expected a tensor or a tuple`);
  if (outs.length > params.length) {
    throw refuse(`it returned ${outs.length} values but ${next.module.className} takes ${params.length} (${params.join(', ')})`);
  }
  const first = outs[0];
  const was = inputs[params[0]];
  if (first instanceof tf.Tensor && was instanceof tf.Tensor && !tf.util.arraysEqual(first.shape, was.shape)) {
    throw refuse(`'${params[0]}' would become ${describe(first)}, but '${layer.name}' took ${describe(was)}`);
  }
  const out: Kwargs = {};
  for (const name of params) if (name in inputs) out[name] = inputs[name];
  outs.forEach((v, i) => (out[params[i]] = v));
  return out;
}
