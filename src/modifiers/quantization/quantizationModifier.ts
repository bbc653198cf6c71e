/**
 * QuantizationModifier: round-to-nearest weight quantization (llm-compressor
 * `modifiers/quantization/quantization/base.py`, reference §3.5). Every target weight gets its
 * qparams from its observer (min/max, or mse) once, at calibration start, and is replaced by its
 * fake-quantized values. Weight-only and dynamic-activation schemes need no calibration data, so
 * the pipeline inferred for this modifier alone is 'datafree'.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { CausalLM } from '../../models/types.js';
import type { Modifier, ModifierContext } from '../modifier.js';
import type { QuantizationConfig, QuantizationScheme } from '../../quant/args.js';
import { fakeQuantizeWeight } from '../../quant/fakeQuant.js';
import { observeWeight } from '../../quant/observers.js';
import { checkKeys, isRecord, expected } from '../../quant/validate.js';
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
} from './resolve.js';

/** The recipe fields QuantizationModifier accepts. */
export const QUANTIZATION_MODIFIER_FIELDS: readonly string[] = [...QUANTIZATION_FIELDS];

/** Makes sure a target's weight is loaded (lazily loaded models read it on demand). */
export async function ensureWeight(ctx: ModifierContext, target: TargetModule): Promise<tf.Tensor2D> {
  if (!target.module.hasParameter('weight')) {
    const weights = (ctx.model as Partial<CausalLM>).weights;
    if (weights) await weights.load(target.name);
  }
  return target.module.param('weight') as tf.Tensor2D;
}

/**
 * @example
 * const rtn = new QuantizationModifier({ scheme: 'W8A16' }); // targets ['Linear'], ignore ['lm_head']
 */
export class QuantizationModifier implements Modifier {
  readonly type = 'QuantizationModifier';
  readonly sequential = false;
  readonly fields: QuantizationFields;
  readonly groups: Record<string, QuantizationScheme>;

  /** `raw` holds recipe fields (snake_case); `path` names the modifier in errors. */
  constructor(raw: Record<string, unknown> = {}, path = 'QuantizationModifier') {
    if (!isRecord(raw)) throw expected(path, 'a mapping of QuantizationModifier fields', raw);
    checkKeys(path, raw, QUANTIZATION_MODIFIER_FIELDS, 'QuantizationModifier');
    this.fields = parseQuantizationFields(raw, path);
    this.groups = resolveConfigGroups(this.fields, path);
  }

  /** False: static activation schemes, the ones that would need data, are refused at construction. */
  requiresCalibrationData(): boolean {
    return false;
  }

  async onCalibrationStart(ctx: ModifierContext): Promise<void> {
    const targets = resolveTargets(ctx.model, this.groups, this.fields.ignore);
    if (targets.length === 0) throw noTargetsError(this.type, this.fields, this.groups);
    for (const target of targets) {
      const started = performance.now();
      const W = await ensureWeight(ctx, target);
      const qp = observeWeight(W, target.args);
      const Q = fakeQuantizeWeight(W, qp.scale, qp.zeroPoint, target.args);
      const loss = tf.tidy(() => tf.sum(tf.square(tf.sub(W, Q))).dataSync()[0]);
      const scaleShape = qp.scale.shape;
      const scale = Float32Array.from(qp.scale.dataSync());
      const zeroPoint = Int32Array.from(qp.zeroPoint.dataSync());
      tf.dispose([qp.scale, qp.zeroPoint]);
      target.module.setParameter('weight', Q);
      ctx.quantized.set(target.name, { name: target.name, group: target.group, args: target.args, scaleShape, scale, zeroPoint });
      ctx.emit({
        type: 'module_result',
        modifier: this.type,
        module: target.name,
        samples: 0,
        loss,
        seconds: (performance.now() - started) / 1000,
      });
    }
  }

  onSequentialEpochEnd(): void {}

  onCalibrationEnd(): void {}

  quantizationConfig(): QuantizationConfig {
    return quantizationConfigOf(this.groups, this.fields.ignore);
  }

  toRecipe(): Record<string, unknown> {
    return quantizationFieldsToRecipe(this.fields);
  }
}
