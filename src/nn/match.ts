/**
 * Target matching as compressed-tensors does it: a target matches a module if it equals the full
 * module name, or is `re:<pattern>` and the pattern matches at the start of the name, or equals one
 * of the module's class names (`Linear`, `LlamaDecoderLayer`).
 */
import type { Module } from './module.js';

const regexCache = new Map<string, RegExp>();

/** The anchored, cached RegExp of a `re:<pattern>` target (`pattern` without the prefix); names a bad pattern. */
export function targetRegex(pattern: string): RegExp {
  let re = regexCache.get(pattern);
  if (!re) {
    try {
      re = new RegExp(`^(?:${pattern})`);
    } catch (e) {
      throw new Error(`target 're:${pattern}' is not a valid regular expression: ${(e as Error).message}`);
    }
    regexCache.set(pattern, re);
  }
  return re;
}

/**
 * Whether one recipe target matches the module at `name`: exact name, `re:` prefix regex, or class name.
 *
 * @example
 * matchesTarget('model.layers.0.self_attn.q_proj', qProj, 're:.*q_proj') // true
 */
export function matchesTarget(name: string, module: Module, target: string): boolean {
  if (target === name) return true;
  if (target.startsWith('re:')) return targetRegex(target.slice(3)).test(name);
  return module.classNames().includes(target);
}

/** Whether any of `targets` matches the module at `name` (see {@link matchesTarget}). */
export function matchesAny(name: string, module: Module, targets: readonly string[]): boolean {
  return targets.some((t) => matchesTarget(name, module, t));
}

/**
 * Modules of `root` matching any target and no ignore entry, in model (definition) order,
 * so `layers.10` comes after `layers.2`.
 */
export function matchModules(
  root: Module,
  targets: readonly string[],
  ignore: readonly string[] = [],
): [string, Module][] {
  const out: [string, Module][] = [];
  for (const [name, m] of root.namedModules()) {
    if (matchesAny(name, m, targets) && !matchesAny(name, m, ignore)) out.push([name, m]);
  }
  return out;
}
