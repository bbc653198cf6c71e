/**
 * Shared test fixtures for the pipeline and operator tests: a tiny random Llama, deterministic token
 * batches (some padded), and a RecordingModifier that records lifecycle calls and the input every
 * Linear of the decoder layers saw, and can fake-quantize a layer at sequential epoch end.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { TokenBatch } from '../../src/data/types.js';
import { createRandomModel } from '../../src/models/random.js';
import type { CausalLM } from '../../src/models/types.js';
import type { Modifier, ModifierContext, SequentialLayer } from '../../src/modifiers/modifier.js';
import type { Module, RemovableHandle } from '../../src/nn/module.js';
import { matchModules } from '../../src/nn/match.js';

export const VOCAB = 64;

export function tinyLlama(numLayers = 3, seed = 3): Promise<CausalLM> {
  return createRandomModel({
    modelType: 'llama',
    hiddenSize: 32,
    intermediateSize: 48,
    numLayers,
    numHeads: 4,
    numKvHeads: 2,
    vocabSize: VOCAB,
    seed,
    std: 0.2,
  });
}

/**
 * `count` batches of [B, T]; batch 1 is right-padded and batch 2 left-padded (when count allows),
 * so masks reach the layers.
 */
export function tokenBatches(count: number, B = 2, T = 6, padded = true): TokenBatch[] {
  const out: TokenBatch[] = [];
  for (let b = 0; b < count; b++) {
    const inputIds = Int32Array.from({ length: B * T }, (_, i) => 1 + ((i * 7 + b * 13) % (VOCAB - 1)));
    let attentionMask: Int32Array | undefined;
    if (padded && (b === 1 || b === 2)) {
      attentionMask = new Int32Array(B * T).fill(1);
      for (let t = 0; t < 2; t++) attentionMask[(B - 1) * T + (b === 1 ? T - 1 - t : t)] = 0;
    }
    out.push({ inputIds, attentionMask, batchSize: B, seqLen: T });
  }
  return out;
}

export const LINEARS = 're:model\\.layers\\.\\d+\\.(self_attn|mlp)\\.\\w+_proj$';

/** Records the first positional input of every matched module (host copies), per call. */
export function recordInputs(model: Module, into: Map<string, Float32Array[]>): RemovableHandle[] {
  return matchModules(model, [LINEARS]).map(([name, m]) => {
    const hook = (_m: Module, args: unknown[]) => {
      const x = args[0] as tf.Tensor;
      const list = into.get(name) ?? [];
      list.push(x.dataSync() as Float32Array);
      into.set(name, list);
    };
    return m.registerForwardPreHook(hook);
  });
}

export interface RecordingOptions {
  /** Round the layer's Linear weights to this step at epoch end (a stand-in for quantization). */
  quantStep?: number;
  /** Throw from the hook of this layer's first Linear at this batch (0-based call count). */
  failAt?: { layer: number; batch: number };
  /** Called from every hook (e.g. to sample device memory). */
  onHook?: () => void;
  requiresData?: boolean;
  type?: string;
}

export class RecordingModifier implements Modifier {
  readonly type: string;
  readonly sequential = true;
  readonly calls: string[] = [];
  readonly inputs = new Map<string, Float32Array[]>();
  private handles: RemovableHandle[] = [];
  aborted = 0;

  constructor(private readonly options: RecordingOptions = {}) {
    this.type = options.type ?? 'RecordingModifier';
  }

  requiresCalibrationData(): boolean {
    return this.options.requiresData ?? true;
  }

  onCalibrationStart(ctx: ModifierContext): void {
    this.calls.push('start');
    for (const [name, m] of matchModules(ctx.model, [LINEARS])) {
      const layer = Number(/layers\.(\d+)\./.exec(name)![1]);
      this.handles.push(
        ctx.hooks.registerForwardPreHook(m, (_m, args) => {
          this.options.onHook?.();
          const list = this.inputs.get(name) ?? [];
          const f = this.options.failAt;
          if (f && f.layer === layer && f.batch === list.length && name.endsWith('q_proj')) {
            throw new Error('recording modifier: injected failure');
          }
          list.push((args[0] as tf.Tensor).dataSync() as Float32Array);
          this.inputs.set(name, list);
        }),
      );
    }
  }

  onSequentialEpochEnd(ctx: ModifierContext, layer: SequentialLayer): void {
    this.calls.push(`epoch:${layer.index}:${layer.name}`);
    const step = this.options.quantStep;
    if (!step) return;
    for (const [, m] of matchModules(layer.module, ['Linear'])) {
      const w = m.param('weight');
      m.setParameter('weight', tf.tidy(() => tf.mul(tf.round(tf.div(w, step)), step)));
    }
  }

  onCalibrationEnd(ctx: ModifierContext): void {
    this.calls.push('end');
    ctx.hooks.removeAll(this.handles);
    this.handles = [];
  }

  onAbort(): void {
    this.aborted++;
  }

  toRecipe(): Record<string, unknown> {
    return {};
  }
}

/** Runs the full model on each batch (ids masked by the attention mask, as the pipelines do) and records Linear inputs. */
export function fullModelInputs(model: CausalLM, batches: TokenBatch[]): Map<string, Float32Array[]> {
  const into = new Map<string, Float32Array[]>();
  const handles = recordInputs(model, into);
  try {
    for (const b of batches) {
      tf.tidy(() => {
        const shape: [number, number] = [b.batchSize, b.seqLen];
        const mask = b.attentionMask;
        const ids = tf.tensor2d(mask ? b.inputIds.map((x, i) => x * mask[i]) : b.inputIds, shape, 'int32');
        const kwargs = mask ? { attention_mask: tf.tensor2d(mask, shape, 'int32') } : {};
        model.call([ids], kwargs);
      });
    }
  } finally {
    handles.forEach((h) => h.remove());
  }
  return into;
}

export function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return Infinity;
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

export function totalHooks(model: Module): number {
  let n = 0;
  for (const [, m] of model.namedModules()) n += m.hookCount();
  return n;
}
