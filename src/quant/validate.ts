/**
 * Validation at the boundary (recipes, config groups, modifier fields): every error names where
 * the value sits, what was expected and what was got.
 */

/** A bad value in a recipe or config; `path` is dotted, e.g. `quant_stage.quant_modifiers.GPTQModifier.block_size`. */
export class ValidationError extends Error {
  constructor(
    readonly path: string,
    readonly detail: string,
  ) {
    super(path ? `${path}: ${detail}` : detail);
    this.name = 'ValidationError';
  }
}

/** Renders a value for an error message: strings quoted, objects as short JSON. */
export function show(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean' || value === null) return String(value);
  try {
    const s = JSON.stringify(value);
    return s.length > 80 ? `${s.slice(0, 77)}...` : s;
  } catch {
    return typeof value;
  }
}

/** `<path>: expected <what>, got <value>[. <fix>]`. */
export function expected(path: string, what: string, got: unknown, fix?: string): ValidationError {
  return new ValidationError(path, `expected ${what}, got ${show(got)}${fix ? `. ${fix}` : ''}`);
}

/** A plain mapping (not null, not an array). */
export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Dotted path of `key` below `path`. */
export function join(path: string, key: string): string {
  return path ? `${path}.${key}` : key;
}

/** Rejects keys outside `allowed`, naming the first unknown one and listing the allowed ones. */
export function checkKeys(path: string, obj: Record<string, unknown>, allowed: readonly string[], what: string): void {
  for (const key of Object.keys(obj)) {
    if (!allowed.includes(key)) {
      throw new ValidationError(join(path, key), `unknown field '${key}' for ${what}. Allowed fields: ${allowed.join(', ')}`);
    }
  }
}

/** The value if it is a positive integer, else a ValidationError at `path`. */
export function asPositiveInt(path: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw expected(path, 'a positive integer', v);
  return v;
}

/** The value if it is a boolean, else a ValidationError at `path`. */
export function asBoolean(path: string, v: unknown): boolean {
  if (typeof v !== 'boolean') throw expected(path, 'true or false', v);
  return v;
}

/** A string or a list of strings, normalised to a list (llm-compressor accepts both for targets). */
export function asStringList(path: string, v: unknown): string[] {
  if (typeof v === 'string') return [v];
  if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return [...v];
  throw expected(path, 'a string or a list of strings', v);
}
