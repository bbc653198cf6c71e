/**
 * QuantizationArgs, schemes and config_groups from plain objects (a recipe's YAML), with
 * compressed-tensors' defaults and validation: strategy inferred from group_size (none → tensor,
 * > 0 → group, −1 → channel), actorder only with group, `actorder: true` meaning 'group'.
 */
import type { ActivationOrdering, QuantizationArgs, QuantizationScheme, QuantizationStrategy } from './args.js';
import { WEIGHT_OBSERVERS } from './observers.js';
import { ValidationError, asBoolean, asPositiveInt, asStringList, checkKeys, expected, isRecord, join } from './validate.js';

/** Fields of QuantizationArgs, as in compressed-tensors. */
export const ARGS_FIELDS = [
  'num_bits', 'type', 'symmetric', 'group_size', 'strategy', 'block_structure',
  'dynamic', 'actorder', 'observer', 'observer_kwargs',
] as const;
/** Fields of a QuantizationScheme (a config group). */
export const SCHEME_FIELDS = ['targets', 'weights', 'input_activations', 'output_activations', 'format'] as const;
const STRATEGIES: QuantizationStrategy[] = ['tensor', 'channel', 'group', 'block', 'token', 'tensor_group'];
const ACTORDERS: ActivationOrdering[] = ['static', 'group', 'weight', 'dynamic'];

/**
 * Full QuantizationArgs from a partial object; `path` names it in errors.
 *
 * @example
 * parseQuantizationArgs({ num_bits: 4, group_size: 128 }) // strategy 'group', symmetric, observer 'minmax'
 */
export function parseQuantizationArgs(raw: unknown, path = 'weights'): QuantizationArgs {
  if (!isRecord(raw)) throw expected(path, 'a mapping of quantization args', raw);
  checkKeys(path, raw, ARGS_FIELDS, 'quantization args');
  const at = (k: string) => join(path, k);

  const num_bits = raw.num_bits === undefined ? 8 : asPositiveInt(at('num_bits'), raw.num_bits);
  const type = raw.type ?? 'int';
  if (type !== 'int' && type !== 'float') throw expected(at('type'), "'int' or 'float'", type);
  const symmetric = raw.symmetric === undefined ? true : asBoolean(at('symmetric'), raw.symmetric);

  let group_size: number | null = null;
  if (raw.group_size !== undefined && raw.group_size !== null) {
    const g = raw.group_size;
    if (typeof g !== 'number' || !Number.isInteger(g) || (g < 1 && g !== -1)) {
      throw expected(at('group_size'), 'a positive integer, or -1 for per-channel', g);
    }
    group_size = g;
  }

  let strategy: QuantizationStrategy;
  if (raw.strategy === undefined || raw.strategy === null) {
    strategy = group_size === null ? 'tensor' : group_size > 0 ? 'group' : 'channel';
  } else {
    if (!STRATEGIES.includes(raw.strategy as QuantizationStrategy)) {
      throw expected(at('strategy'), `one of ${STRATEGIES.join(', ')}`, raw.strategy);
    }
    strategy = raw.strategy as QuantizationStrategy;
    const grouped = strategy === 'group' || strategy === 'tensor_group';
    if (grouped && (group_size === null || group_size < 1)) {
      throw new ValidationError(at('group_size'), `strategy '${strategy}' needs a positive group_size, got ${group_size}`);
    }
    if (!grouped && group_size !== null && !(strategy === 'channel' && group_size === -1)) {
      throw new ValidationError(
        at('group_size'),
        `group_size ${group_size} needs strategy 'group', but strategy is '${strategy}'. Remove group_size or the strategy`,
      );
    }
  }

  let block_structure: number[] | null = null;
  if (raw.block_structure !== undefined && raw.block_structure !== null) {
    const b = raw.block_structure;
    if (!Array.isArray(b) || b.length !== 2 || !b.every((x) => Number.isInteger(x) && x > 0)) {
      throw expected(at('block_structure'), 'a pair of positive integers [rows, cols]', b);
    }
    block_structure = b as number[];
  }

  const dynamic = raw.dynamic ?? false;
  if (typeof dynamic !== 'boolean' && dynamic !== 'local') throw expected(at('dynamic'), "true, false or 'local'", dynamic);

  let actorder: ActivationOrdering | null = null;
  if (raw.actorder === true) actorder = 'group';
  else if (raw.actorder !== undefined && raw.actorder !== null && raw.actorder !== false) {
    if (!ACTORDERS.includes(raw.actorder as ActivationOrdering)) {
      throw expected(at('actorder'), `one of ${ACTORDERS.join(', ')}, true, false or null`, raw.actorder);
    }
    actorder = raw.actorder as ActivationOrdering;
  }
  if (actorder !== null && strategy !== 'group') {
    throw new ValidationError(at('actorder'), `actorder '${actorder}' needs strategy 'group', but strategy is '${strategy}'`);
  }

  let observer: string | null = dynamic ? null : 'minmax';
  if (raw.observer !== undefined) {
    if (raw.observer !== null && typeof raw.observer !== 'string') throw expected(at('observer'), 'an observer name', raw.observer);
    observer = raw.observer;
  }
  if (observer !== null && !dynamic && !WEIGHT_OBSERVERS.includes(observer)) {
    throw new ValidationError(at('observer'), `unknown observer '${observer}'. Known observers: ${WEIGHT_OBSERVERS.join(', ')}`);
  }
  const kw = raw.observer_kwargs ?? {};
  if (!isRecord(kw)) throw expected(at('observer_kwargs'), 'a mapping', kw);

  return {
    num_bits, type, symmetric, group_size, strategy, block_structure, dynamic, actorder, observer,
    observer_kwargs: { ...kw },
  };
}

/** A QuantizationScheme; `targets` is required (a string or list of strings). */
export function parseScheme(raw: unknown, path: string): QuantizationScheme {
  if (!isRecord(raw)) throw expected(path, 'a scheme mapping with targets and weights', raw);
  checkKeys(path, raw, SCHEME_FIELDS, 'a quantization scheme');
  if (raw.targets === undefined) throw new ValidationError(join(path, 'targets'), 'is required (e.g. [Linear])');
  const targets = asStringList(join(path, 'targets'), raw.targets);
  if (targets.length === 0) throw expected(join(path, 'targets'), 'at least one target', raw.targets);
  const opt = (k: 'weights' | 'input_activations' | 'output_activations') =>
    raw[k] === undefined || raw[k] === null ? null : parseQuantizationArgs(raw[k], join(path, k));
  const scheme: QuantizationScheme = {
    targets,
    weights: opt('weights'),
    input_activations: opt('input_activations'),
    output_activations: opt('output_activations'),
  };
  if (raw.format !== undefined) {
    if (raw.format !== null && typeof raw.format !== 'string') throw expected(join(path, 'format'), 'a format name', raw.format);
    scheme.format = raw.format;
  }
  return scheme;
}

/** `config_groups`: group name → scheme. */
export function parseConfigGroups(raw: unknown, path = 'config_groups'): Record<string, QuantizationScheme> {
  if (!isRecord(raw)) throw expected(path, 'a mapping of group names to schemes', raw);
  const names = Object.keys(raw);
  if (names.length === 0) throw expected(path, 'at least one config group', raw);
  const out: Record<string, QuantizationScheme> = {};
  for (const name of names) out[name] = parseScheme(raw[name], join(path, name));
  return out;
}
