/**
 * What quantization modifiers share (llm-compressor `QuantizationMixin`): the `targets`, `ignore`,
 * `scheme` and `config_groups` fields, their validation, and the Linear modules each config
 * group applies to.
 */
import { Linear } from '../../nn/layers.js';
import { matchesAny } from '../../nn/match.js';
import type { Module } from '../../nn/module.js';
import type { QuantizationArgs, QuantizationConfig, QuantizationScheme } from '../../quant/args.js';
import { parseConfigGroups } from '../../quant/parse.js';
import { presetScheme } from '../../quant/presets.js';
import { ValidationError, asStringList, expected, isRecord, join } from '../../quant/validate.js';

/** Fields every quantization modifier accepts. */
export const QUANTIZATION_FIELDS = ['targets', 'ignore', 'scheme', 'config_groups', 'kv_cache_scheme'] as const;

/** A preset name, or preset name → targets (llm-compressor accepts both). */
export type SchemeField = string | Record<string, string[]>;

/** The validated shared fields. */
export interface QuantizationFields {
  /** Targets the `scheme` applies to. Default ['Linear']. */
  targets: string[];
  /**
   * Modules left unquantized. Default ['lm_head']: llm-compressor's default is [] but its canonical
   * usage ignores lm_head, and a quantized lm_head is rarely wanted.
   */
  ignore: string[];
  scheme: SchemeField | null;
  config_groups: Record<string, QuantizationScheme> | null;
}

/** Validates the shared fields of `raw`; `path` prefixes error messages. */
export function parseQuantizationFields(raw: Record<string, unknown>, path: string): QuantizationFields {
  const targets = raw.targets === undefined ? ['Linear'] : asStringList(join(path, 'targets'), raw.targets);
  const ignore = raw.ignore === undefined || raw.ignore === null ? ['lm_head'] : asStringList(join(path, 'ignore'), raw.ignore);
  if (raw.kv_cache_scheme !== undefined && raw.kv_cache_scheme !== null) {
    throw new ValidationError(join(path, 'kv_cache_scheme'), 'kv-cache quantization is not supported; remove the field');
  }
  let scheme: SchemeField | null = null;
  if (raw.scheme !== undefined && raw.scheme !== null) {
    const s = raw.scheme;
    if (typeof s === 'string') {
      scheme = s;
    } else if (isRecord(s)) {
      scheme = {};
      for (const [name, t] of Object.entries(s)) scheme[name] = asStringList(join(join(path, 'scheme'), name), t);
    } else {
      throw expected(join(path, 'scheme'), "a preset name such as 'W4A16', or a mapping of preset names to targets", s);
    }
  }
  const config_groups =
    raw.config_groups === undefined || raw.config_groups === null
      ? null
      : parseConfigGroups(raw.config_groups, join(path, 'config_groups'));
  if (scheme !== null && config_groups !== null) {
    throw new ValidationError(path, "'scheme' and 'config_groups' are mutually exclusive; keep one of them");
  }
  if (scheme === null && config_groups === null) {
    throw new ValidationError(path, "needs a quantization 'scheme' (e.g. W4A16) or 'config_groups'");
  }
  return { targets, ignore, scheme, config_groups };
}

/**
 * The config groups the fields stand for: `scheme: W4A16` becomes `{ group_0: W4A16 on targets }`.
 * Weight args are checked for what layerstream implements (int, tensor/channel/group strategy)
 * and activations must be dynamic (static activation calibration is not implemented).
 */
export function resolveConfigGroups(fields: QuantizationFields, path: string): Record<string, QuantizationScheme> {
  let groups: Record<string, QuantizationScheme>;
  if (fields.config_groups) {
    groups = structuredClone(fields.config_groups);
  } else if (typeof fields.scheme === 'string') {
    groups = { group_0: presetOrError(fields.scheme, fields.targets, join(path, 'scheme')) };
  } else {
    groups = {};
    Object.entries(fields.scheme ?? {}).forEach(([name, targets], i) => {
      groups[`group_${i}`] = presetOrError(name, targets, join(join(path, 'scheme'), name));
    });
  }
  for (const [name, g] of Object.entries(groups)) checkScheme(g, join(join(path, 'config_groups'), name));
  return groups;
}

function presetOrError(name: string, targets: string[], path: string): QuantizationScheme {
  try {
    return presetScheme(name, targets);
  } catch (e) {
    throw new ValidationError(path, (e as Error).message);
  }
}

function checkScheme(g: QuantizationScheme, path: string): void {
  const w = g.weights;
  if (w) {
    if (w.type !== 'int') throw new ValidationError(join(path, 'weights.type'), `only int weights are implemented, got '${w.type}'`);
    if (!['tensor', 'channel', 'group'].includes(w.strategy)) {
      throw new ValidationError(join(path, 'weights.strategy'), `weights support tensor, channel or group, got '${w.strategy}'`);
    }
    if (w.dynamic !== false) throw new ValidationError(join(path, 'weights.dynamic'), 'weights cannot be dynamic');
  }
  for (const key of ['input_activations', 'output_activations'] as const) {
    const a = g[key];
    if (a && a.dynamic !== true) {
      throw new ValidationError(
        join(path, key),
        `static activation quantization is not implemented (dynamic is ${String(a.dynamic)}); use a dynamic scheme such as W8A8, or a weight-only one`,
      );
    }
  }
}

/** A Linear module to quantize, with the config group and weight args that apply to it. */
export interface TargetModule {
  name: string;
  module: Linear;
  group: string;
  args: QuantizationArgs;
}

/**
 * The Linear modules with a weight scheme, in model order: each takes the first config group
 * whose targets match it; modules matching `ignore` are skipped.
 */
export function resolveTargets(
  model: Module,
  groups: Record<string, QuantizationScheme>,
  ignore: readonly string[],
): TargetModule[] {
  const out: TargetModule[] = [];
  for (const [name, module] of model.namedModules()) {
    if (!(module instanceof Linear) || matchesAny(name, module, ignore)) continue;
    for (const [group, scheme] of Object.entries(groups)) {
      if (scheme.weights && matchesAny(name, module, scheme.targets)) {
        out.push({ name, module, group, args: scheme.weights });
        break;
      }
    }
  }
  return out;
}

/** The `quantization_config` body for resolved groups. */
export function quantizationConfigOf(groups: Record<string, QuantizationScheme>, ignore: string[]): QuantizationConfig {
  return { config_groups: structuredClone(groups), ignore: [...ignore], kv_cache_scheme: null };
}

/** Recipe fields for the shared part: scheme or config_groups, targets, ignore. */
export function quantizationFieldsToRecipe(fields: QuantizationFields): Record<string, unknown> {
  const out: Record<string, unknown> = { targets: [...fields.targets], ignore: [...fields.ignore] };
  if (fields.scheme !== null) out.scheme = structuredClone(fields.scheme);
  if (fields.config_groups !== null) out.config_groups = structuredClone(fields.config_groups);
  return out;
}

/** Where a module's error sits: no target matched. */
export function noTargetsError(type: string, fields: QuantizationFields, groups: Record<string, QuantizationScheme>): Error {
  const targets = [...new Set(Object.values(groups).flatMap((g) => g.targets))];
  return new Error(
    `${type}: no Linear module matched targets [${targets.join(', ')}] (ignore [${fields.ignore.join(', ')}]). ` +
      `Targets are class names ('Linear'), full module names, or 're:<regex>' patterns matched from the start of the name.`,
  );
}
