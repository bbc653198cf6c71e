/**
 * YAML recipes ↔ modifiers, in llm-compressor's shape (reference §6):
 *
 * ```yaml
 * quant_stage:             # any key ending in _stage
 *   quant_modifiers:       # any key ending in _modifiers
 *     GPTQModifier: {targets: [Linear], ignore: [lm_head], scheme: W4A16}
 * ```
 *
 * Also accepted, as llm-compressor accepts them: a `<x>_modifiers` group at the top level, a bare
 * mapping of modifier names to fields, and a list of single-entry mappings. Errors name the path
 * inside the YAML: `quant_stage.quant_modifiers.GPTQModifier.block_size: expected a positive integer, got "abc"`.
 */
import { existsSync, readFileSync } from 'node:fs';
import YAML from 'yaml';
import type { Modifier } from '../modifiers/modifier.js';
import { createModifier } from '../modifiers/registry.js';
import { ValidationError, expected, isRecord, join } from '../quant/validate.js';

/** Stage keys that carry settings rather than modifiers (llm-compressor's `run_type`). */
const STAGE_SETTINGS = ['run_type'];

/**
 * The modifiers of a recipe, in order.
 *
 * @example
 * parseRecipe('quant_stage:\n  quant_modifiers:\n    GPTQModifier: {scheme: W4A16}\n');
 */
export function parseRecipe(text: string): Modifier[] {
  let doc: unknown;
  try {
    doc = YAML.parse(text);
  } catch (e) {
    throw new Error(`recipe: not valid YAML: ${(e as Error).message}`);
  }
  const modifiers: Modifier[] = [];
  if (Array.isArray(doc)) {
    modifierList(doc, '', modifiers);
  } else if (isRecord(doc)) {
    for (const [key, value] of Object.entries(doc)) {
      if (key.endsWith('_stage') || key === 'stage') stage(value, key, modifiers);
      else if (key.endsWith('_modifiers') || key === 'modifiers') group(value, key, modifiers);
      else modifiers.push(createModifier(key, value, key));
    }
  } else {
    throw expected(
      'recipe',
      'a mapping of stages (e.g. quant_stage: {quant_modifiers: {GPTQModifier: {...}}}), of modifiers, or a list of modifiers',
      doc,
    );
  }
  if (modifiers.length === 0) throw new ValidationError('recipe', 'has no modifiers');
  return modifiers;
}

function stage(value: unknown, path: string, out: Modifier[]): void {
  if (!isRecord(value)) throw expected(path, 'a mapping of modifier groups (keys ending in _modifiers)', value);
  for (const [key, v] of Object.entries(value)) {
    if (key.endsWith('_modifiers') || key === 'modifiers') group(v, join(path, key), out);
    else if (!STAGE_SETTINGS.includes(key)) {
      throw new ValidationError(
        join(path, key),
        `a stage holds modifier groups whose names end in '_modifiers' (e.g. quant_modifiers), got '${key}'`,
      );
    }
  }
}

function group(value: unknown, path: string, out: Modifier[]): void {
  if (Array.isArray(value)) return modifierList(value, path, out);
  if (!isRecord(value)) throw expected(path, 'a mapping of modifier names to their fields', value);
  for (const [type, fields] of Object.entries(value)) out.push(createModifier(type, fields, join(path, type)));
}

function modifierList(items: unknown[], path: string, out: Modifier[]): void {
  items.forEach((item, i) => {
    const at = `${path}[${i}]`;
    if (!isRecord(item) || Object.keys(item).length !== 1) {
      throw expected(at, 'a single-entry mapping such as {GPTQModifier: {scheme: W4A16}}', item);
    }
    const [type, fields] = Object.entries(item)[0];
    out.push(createModifier(type, fields, join(at, type)));
  });
}

/**
 * A recipe from a file path or from YAML text: an existing file is read; text with a newline or a
 * colon is parsed as YAML; anything else is a missing file.
 */
export function loadRecipe(pathOrYaml: string): Modifier[] {
  if (existsSync(pathOrYaml)) {
    const text = readFileSync(pathOrYaml, 'utf8');
    try {
      return parseRecipe(text);
    } catch (e) {
      (e as Error).message = `${pathOrYaml}: ${(e as Error).message}`;
      throw e;
    }
  }
  if (/[\n:]/.test(pathOrYaml)) return parseRecipe(pathOrYaml);
  throw new Error(`recipe file '${pathOrYaml}' not found. Pass a path to a YAML recipe, or the YAML text itself.`);
}

/**
 * The recipe.yaml text for modifiers, as llm-compressor saves it:
 * `default_stage: default_modifiers: <Type>: {fields}`. Two modifiers of one type go to
 * successive stages (`default_1_stage`, ...), since a mapping cannot hold a key twice.
 */
export function recipeToYaml(modifiers: readonly Modifier[]): string {
  const stages: Record<string, Record<string, unknown>>[] = [];
  for (const m of modifiers) {
    let s = stages.find((st) => !(m.type in st));
    if (!s) stages.push((s = {}));
    s[m.type] = m.toRecipe();
  }
  const doc: Record<string, unknown> = {};
  stages.forEach((mods, i) => {
    doc[i === 0 ? 'default_stage' : `default_${i}_stage`] = { default_modifiers: mods };
  });
  return YAML.stringify(doc);
}
