/**
 * GPTQModifier: the lifecycle around GPTQ's math (llm-compressor `modifiers/quantization/gptq/base.py`,
 * reference §3.1–§3.3). Hooks on the target Linear modules accumulate Hessians from their inputs
 * during each layer's calibration pass; at the sequential epoch end every module of that layer is
 * quantized and its weight replaced by the dequantized result, so the propagation pass already sees
 * the quantization error.
 *
 * Shared Hessians: modules that receive the same input tensor in a forward (q/k/v of an attention
 * block, gate/up of an MLP) would accumulate identical Hessians. The first module to see a tensor
 * owns the Hessian; a module that then receives that very tensor object (recognised by identity,
 * through a WeakMap from input tensor to owner) shares the owner's Hessian and accumulates nothing.
 * The Hessian is disposed after its last user is quantized. One [C, C] float32 matrix per distinct
 * input instead of one per module (Llama: 4 per layer instead of 7).
 */
import * as tf from '@tensorflow/tfjs-core';
import type { RemovableHandle } from '../../nn/module.js';
import { ensureDeviceRoom } from '../../tensor/memory.js';
import type { ActivationOrdering, QuantizationConfig, QuantizationScheme } from '../../quant/args.js';
import { ValidationError, asBoolean, asPositiveInt, checkKeys, expected, isRecord, join } from '../../quant/validate.js';
import type { Modifier, ModifierContext, SequentialLayer } from '../modifier.js';
import { ensureWeight } from '../quantization/quantizationModifier.js';
import {
  QUANTIZATION_FIELDS,
  noTargetsError,
  parseQuantizationFields,
  quantizationConfigOf,
  quantizationFieldsToRecipe,
  resolveConfigGroups,
  resolveTargets,
  type QuantizationFields,
  type TargetModule,
} from '../quantization/resolve.js';
import { accumulateHessian, quantizeWeight } from './gptqQuantize.js';

/** The recipe fields GPTQModifier accepts. */
export const GPTQ_FIELDS: readonly string[] = [
  ...QUANTIZATION_FIELDS,
  'block_size',
  'dampening_frac',
  'actorder',
  'offload_hessians',
];

const ACTORDERS: ActivationOrdering[] = ['static', 'group', 'weight', 'dynamic'];
/** 'static' ≙ 'weight' and 'group' ≙ 'dynamic' (compressed-tensors aliases). */
const canonical = (a: ActivationOrdering | null) => (a === 'weight' ? 'static' : a === 'dynamic' ? 'group' : a);

interface HessianOwner {
  /** On the device, or null while offloaded (then `host` holds it) or before the first batch. */
  H: tf.Tensor2D | null;
  host: Float32Array | null;
  nSamples: number;
  /** Modules that read this Hessian and are not quantized yet. */
  pending: Set<string>;
}

/**
 * @example
 * const gptq = new GPTQModifier({ scheme: 'W4A16' }); // targets [Linear], ignore [lm_head], actorder static
 */
export class GPTQModifier implements Modifier {
  readonly type = 'GPTQModifier';
  readonly sequential = true;
  readonly fields: QuantizationFields;
  readonly groups: Record<string, QuantizationScheme>;
  readonly block_size: number;
  readonly dampening_frac: number;
  /** The user's actorder, or undefined for the default ('static' for group schemes without one). */
  readonly actorder: ActivationOrdering | null | undefined;
  readonly offload_hessians: boolean;

  private targets: TargetModule[] = [];
  private owners = new Map<string, HessianOwner>();
  private seen = new WeakMap<tf.Tensor, { owner: HessianOwner; by: string }>();
  private handles: RemovableHandle[] = [];

  /** `raw` holds recipe fields (snake_case); `path` names the modifier in errors. */
  constructor(raw: Record<string, unknown> = {}, path = 'GPTQModifier') {
    if (!isRecord(raw)) throw expected(path, 'a mapping of GPTQModifier fields', raw);
    checkKeys(path, raw, GPTQ_FIELDS, 'GPTQModifier');
    this.fields = parseQuantizationFields(raw, path);
    this.block_size = raw.block_size === undefined ? 128 : asPositiveInt(join(path, 'block_size'), raw.block_size);
    const d = raw.dampening_frac ?? 0.01;
    if (typeof d !== 'number' || !(d >= 0) || !Number.isFinite(d)) {
      throw expected(join(path, 'dampening_frac'), 'a non-negative number (a fraction of mean(diag H), e.g. 0.01)', d);
    }
    this.dampening_frac = d;
    this.actorder = parseActorder(raw, join(path, 'actorder'));
    this.offload_hessians = raw.offload_hessians === undefined ? false : asBoolean(join(path, 'offload_hessians'), raw.offload_hessians);
    this.groups = resolveConfigGroups(this.fields, path);
    this.resolveActorder(path);
  }

  /** llm-compressor `resolve_actorder`: the default fills only schemes without one; explicit values must agree. */
  private resolveActorder(path: string): void {
    for (const [name, g] of Object.entries(this.groups)) {
      const w = g.weights;
      if (!w || w.strategy !== 'group') continue;
      if (this.actorder === undefined) {
        w.actorder ??= 'static';
      } else if (w.actorder === null || canonical(w.actorder) === canonical(this.actorder)) {
        w.actorder = this.actorder;
      } else {
        throw new ValidationError(
          join(path, 'actorder'),
          `'${this.actorder}' conflicts with actorder '${w.actorder}' of config group '${name}'; set it in one place`,
        );
      }
    }
  }

  requiresCalibrationData(): boolean {
    return true;
  }

  async onCalibrationStart(ctx: ModifierContext): Promise<void> {
    this.targets = resolveTargets(ctx.model, this.groups, this.fields.ignore);
    if (this.targets.length === 0) throw noTargetsError(this.type, this.fields, this.groups);
    for (const target of this.targets) {
      this.handles.push(
        ctx.hooks.registerForwardHook(target.module, (_m, args) => {
          this.accumulate(target.name, args[0]);
          return undefined;
        }),
      );
    }
  }

  private accumulate(name: string, x: unknown): void {
    if (!(x instanceof tf.Tensor)) {
      throw new Error(`GPTQModifier: module '${name}' was called with ${typeof x} as its input; expected a tensor`);
    }
    let owner = this.owners.get(name);
    const seen = this.seen.get(x);
    // an owner whose users are all quantized is gone; its tensor no longer links anything
    const prior = seen && seen.owner.pending.size > 0 ? seen : undefined;
    if (prior && prior.by !== name) {
      // the same tensor object already went into a Hessian: share it
      if (!owner) {
        owner = prior.owner;
        owner.pending.add(name);
        this.owners.set(name, owner);
      }
      if (owner !== prior.owner) throw sharingChanged(name, prior.by);
      return;
    }
    if (!owner) {
      owner = { H: null, host: null, nSamples: 0, pending: new Set([name]) };
      this.owners.set(name, owner);
    } else if (owner.nSamples > 0 && !prior && this.ownerName(owner) !== name) {
      throw sharingChanged(name, this.ownerName(owner));
    }
    const cols = x.shape[x.rank - 1];
    if (owner.nSamples === 0) this.checkRoom(name, cols);
    const H = owner.host ? tf.tensor2d(owner.host, [cols, cols]) : owner.H;
    const next = accumulateHessian(H, owner.nSamples, x);
    H?.dispose();
    owner.nSamples = next.nSamples;
    if (this.offload_hessians) {
      owner.host = next.H.dataSync() as Float32Array;
      next.H.dispose();
      owner.H = null;
    } else {
      // hooks may run inside a caller's tf.tidy; the Hessian outlives it
      owner.H = tf.keep(next.H);
    }
    this.seen.set(x, { owner, by: name });
  }

  /** A new device-resident Hessian must fit the device budget (on wasm, overflow corrupts memory). */
  private checkRoom(name: string, cols: number): void {
    // the accumulation holds the old and the new matrix for a moment
    const bytes = (this.offload_hessians ? 1 : 2) * cols * cols * 4;
    ensureDeviceRoom(
      bytes,
      `GPTQModifier: the Hessian of '${name}' [${cols}, ${cols}]`,
      this.offload_hessians
        ? 'Use smaller calibration batches or raise LAYERSTREAM_DEVICE_BUDGET.'
        : 'Set offload_hessians: true to keep Hessians on the host between batches.',
    );
  }

  /** The module that accumulates into `owner` (the first of its users). */
  private ownerName(owner: HessianOwner): string {
    return [...owner.pending][0];
  }

  async onSequentialEpochEnd(ctx: ModifierContext, layer: SequentialLayer): Promise<void> {
    const prefix = `${layer.name}.`;
    for (const target of this.targets) {
      if (target.name.startsWith(prefix) && this.owners.has(target.name)) await this.compress(ctx, target, layer.index);
    }
    // sharing is decided within one layer's forwards
    this.seen = new WeakMap();
  }

  private async compress(ctx: ModifierContext, target: TargetModule, layer?: number): Promise<void> {
    const owner = this.owners.get(target.name)!;
    const started = performance.now();
    const W = await ensureWeight(ctx, target);
    const cols = W.shape[1];
    const H = owner.H ?? tf.tensor2d(owner.host!, [cols, cols]);
    let result;
    try {
      result = quantizeWeight(W, H, target.args, { blockSize: this.block_size, dampeningFrac: this.dampening_frac });
    } finally {
      if (H !== owner.H) H.dispose();
    }
    target.module.setParameter('weight', result.weight);
    ctx.quantized.set(target.name, {
      name: target.name,
      group: target.group,
      args: target.args,
      scaleShape: result.scaleShape,
      scale: result.scale,
      zeroPoint: result.zeroPoint,
      ...(result.gIdx ? { gIdx: result.gIdx } : {}),
    });
    if (result.fellBackToRtn) {
      ctx.emit({
        type: 'warning',
        message:
          `GPTQModifier: failed to invert the Hessian of '${target.name}' due to numerical instability; ` +
          `falling back to round-to-nearest for this module. Consider increasing GPTQModifier.dampening_frac ` +
          `(now ${this.dampening_frac}), increasing the number of calibration samples, or shuffling the calibration dataset.`,
      });
    }
    ctx.emit({
      type: 'module_result',
      modifier: this.type,
      module: target.name,
      layer,
      samples: owner.nSamples,
      loss: result.loss,
      seconds: (performance.now() - started) / 1000,
    });
    this.owners.delete(target.name);
    owner.pending.delete(target.name);
    if (owner.pending.size === 0) releaseOwner(owner);
  }

  async onCalibrationEnd(ctx: ModifierContext): Promise<void> {
    // the basic pipeline has no sequential epochs: everything is compressed here
    for (const target of this.targets) if (this.owners.has(target.name)) await this.compress(ctx, target);
    ctx.hooks.removeAll(this.handles);
    this.handles = [];
    const untouched = this.targets.filter((t) => !ctx.quantized.has(t.name)).map((t) => t.name);
    if (untouched.length > 0) {
      ctx.emit({
        type: 'warning',
        message:
          `GPTQModifier: ${untouched.length} target module(s) never received calibration input and were left ` +
          `unquantized: ${untouched.slice(0, 5).join(', ')}${untouched.length > 5 ? ', ...' : ''}.`,
      });
    }
    this.targets = [];
    if (this.owners.size > 0) {
      const left = [...this.owners.keys()];
      this.onAbort();
      throw new Error(`GPTQModifier: failed to compress ${left.length} modules: ${left.join(', ')}`);
    }
  }

  /** Releases every Hessian and hook after a run stopped early. */
  onAbort(ctx?: ModifierContext): void {
    for (const owner of new Set(this.owners.values())) releaseOwner(owner);
    this.owners.clear();
    this.seen = new WeakMap();
    ctx?.hooks.removeAll(this.handles);
    this.handles = [];
  }

  /** Hessians currently held (shared ones once), for tests and memory reports. */
  hessianCount(): number {
    return new Set(this.owners.values()).size;
  }

  quantizationConfig(): QuantizationConfig {
    return quantizationConfigOf(this.groups, this.fields.ignore);
  }

  toRecipe(): Record<string, unknown> {
    const out = quantizationFieldsToRecipe(this.fields);
    if (this.block_size !== 128) out.block_size = this.block_size;
    if (this.dampening_frac !== 0.01) out.dampening_frac = this.dampening_frac;
    if (this.actorder !== undefined) out.actorder = this.actorder;
    if (this.offload_hessians) out.offload_hessians = true;
    return out;
  }
}

function parseActorder(raw: Record<string, unknown>, path: string): ActivationOrdering | null | undefined {
  if (!('actorder' in raw)) return undefined;
  const a = raw.actorder;
  if (a === null || a === false) return null;
  if (a === true) return 'group';
  if (!ACTORDERS.includes(a as ActivationOrdering)) throw expected(path, `one of ${ACTORDERS.join(', ')}, or null`, a);
  return a as ActivationOrdering;
}

function releaseOwner(owner: HessianOwner): void {
  owner.H?.dispose();
  owner.H = null;
  owner.host = null;
}

function sharingChanged(name: string, other: string): Error {
  return new Error(
    `GPTQModifier: module '${name}' shared its input with '${other}' in one forward but not in another; ` +
      `a shared Hessian needs the same input tensor in every forward. Give both modules the same input each time.`,
  );
}
