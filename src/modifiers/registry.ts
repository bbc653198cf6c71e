/**
 * Modifier classes by recipe name. Adding a modifier: write its class (constructor takes the raw
 * recipe fields and a path for errors), export its field list, and add one entry below.
 */
import { ValidationError, checkKeys, expected, isRecord } from '../quant/validate.js';
import { GPTQ_FIELDS, GPTQModifier } from './gptq/gptqModifier.js';
import type { Modifier } from './modifier.js';
import { QUANTIZATION_MODIFIER_FIELDS, QuantizationModifier } from './quantization/quantizationModifier.js';

/** A registered modifier class. */
export interface ModifierEntry {
  /** The recipe fields the class accepts. */
  fields: readonly string[];
  create(fields: Record<string, unknown>, path: string): Modifier;
}

const MODIFIERS: Record<string, ModifierEntry> = {
  GPTQModifier: { fields: GPTQ_FIELDS, create: (f, p) => new GPTQModifier(f, p) },
  QuantizationModifier: { fields: QUANTIZATION_MODIFIER_FIELDS, create: (f, p) => new QuantizationModifier(f, p) },
};

/** The modifier names recipes may use. */
export const MODIFIER_TYPES: readonly string[] = Object.keys(MODIFIERS);

/** The accepted fields of a modifier type (undefined for an unknown type). */
export function modifierFields(type: string): readonly string[] | undefined {
  return Object.hasOwn(MODIFIERS, type) ? MODIFIERS[type].fields : undefined;
}

/**
 * A modifier from its recipe name and fields, validated: an unknown type lists the supported ones;
 * an unknown field is named with the allowed fields; a value of the wrong type says what was
 * expected. `path` (default: the type) prefixes every message.
 *
 * @example
 * createModifier('GPTQModifier', { scheme: 'W4A16', ignore: ['lm_head'] });
 */
export function createModifier(type: string, fields: unknown = {}, path: string = type): Modifier {
  if (!Object.hasOwn(MODIFIERS, type)) {
    throw new ValidationError(
      path,
      `unknown modifier '${type}'. Supported modifiers: ${MODIFIER_TYPES.join(', ')}. ` +
        `Remove it from the recipe, or run it with llm-compressor.`,
    );
  }
  const raw = fields ?? {};
  if (!isRecord(raw)) throw expected(path, `a mapping of ${type} fields`, fields);
  const entry = MODIFIERS[type];
  checkKeys(path, raw, entry.fields, type);
  return entry.create(raw, path);
}
