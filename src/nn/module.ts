/**
 * A small torch-like module system on tfjs-core.
 *
 * - Modules have named children and named parameters; `namedModules()` walks them in
 *   definition order, with dotted names as in PyTorch (`model.layers.0.self_attn.q_proj`).
 * - `call(args, kwargs)` runs forward pre-hooks (which see args and kwargs and may throw to stop
 *   the forward early), maps positional args to names by `forwardParams`, runs `forward`, then
 *   forward hooks (which may replace the output).
 * - Parameters are owned by their module: replacing or releasing one disposes the old tensor.
 */
import * as tf from '@tensorflow/tfjs-core';

/** Named forward inputs, as Python kwargs (`hidden_states`, `attention_mask`, ...). */
export type Kwargs = Record<string, unknown>;

/** Sees the call's args and kwargs; may return replacements, or throw to stop the forward. */
export type ForwardPreHook = (module: Module, args: unknown[], kwargs: Kwargs) => void | [unknown[], Kwargs];
/** Sees args, kwargs and output; a non-undefined return value replaces the output. */
export type ForwardHook = (module: Module, args: unknown[], kwargs: Kwargs, output: unknown) => unknown;

/** Returned by hook registration; `remove()` detaches the hook (idempotent). */
export interface RemovableHandle {
  readonly id: number;
  remove(): void;
}

let nextHandleId = 1;

/** A torch-like module: named children and parameters, hooks, and `forward` over named inputs (see the file doc). */
export abstract class Module {
  /** Names of `forward`'s inputs, in positional order (positional args bind to these). */
  abstract readonly forwardParams: readonly string[];
  private readonly children = new Map<string, Module>();
  private readonly params = new Map<string, tf.Tensor | undefined>();
  private readonly preHooks = new Map<number, ForwardPreHook>();
  private readonly postHooks = new Map<number, ForwardHook>();

  /** The class name used for target matching (`LlamaDecoderLayer`, `Linear`). */
  get className(): string {
    return this.constructor.name;
  }

  /** Class names this module answers to in target matching (its class and its ancestors). */
  classNames(): string[] {
    const names: string[] = [];
    let proto = Object.getPrototypeOf(this) as { constructor: { name: string } } | null;
    while (proto && proto.constructor !== Module && proto.constructor !== Object) {
      names.push(proto.constructor.name);
      proto = Object.getPrototypeOf(proto);
    }
    return names;
  }

  protected addModule<M extends Module>(name: string, module: M): M {
    this.children.set(name, module);
    return module;
  }

  /** Declares a parameter slot; `value` may be undefined for a lazily loaded weight. */
  protected addParameter(name: string, value?: tf.Tensor): void {
    this.params.set(name, value === undefined ? undefined : tf.keep(value));
  }

  namedChildren(): [string, Module][] {
    return [...this.children.entries()];
  }

  getChild(name: string): Module | undefined {
    return this.children.get(name);
  }

  /** This module and all descendants, depth first in definition order (the root is named ''). */
  *namedModules(prefix = ''): Generator<[string, Module]> {
    yield [prefix, this];
    for (const [name, child] of this.children) {
      yield* child.namedModules(prefix ? `${prefix}.${name}` : name);
    }
  }

  /** Looks a descendant up by dotted name. */
  getSubmodule(path: string): Module {
    if (path === '') return this;
    let m: Module | undefined = this;
    for (const part of path.split('.')) {
      const parent: Module = m;
      m = parent.children.get(part);
      if (!m) {
        const children = [...parent.children.keys()].join(', ') || 'none';
        throw new Error(
          `getSubmodule: no module '${path}' (missing '${part}'; the children there are: ${children}). ` +
            `Use a dotted name from namedModules(), e.g. 'model.layers.0.mlp'.`,
        );
      }
    }
    return m;
  }

  parameterNames(): string[] {
    return [...this.params.keys()];
  }

  /** A parameter's tensor. Throws if the slot does not exist or the weight is not loaded. */
  param(name: string): tf.Tensor {
    if (!this.params.has(name)) throw this.noParameter(name);
    const t = this.params.get(name);
    if (!t) {
      throw new Error(`${this.className}: parameter '${name}' is not loaded (load the layer's weights first)`);
    }
    return t;
  }

  private noParameter(name: string): Error {
    return new Error(`${this.className}: no parameter '${name}' (it has ${this.parameterNames().join(', ') || 'none'})`);
  }

  hasParameter(name: string): boolean {
    return this.params.get(name) !== undefined;
  }

  /** Replaces a parameter; the module takes ownership of `value` and disposes the old tensor. */
  setParameter(name: string, value: tf.Tensor | undefined): void {
    if (!this.params.has(name)) throw this.noParameter(name);
    const old = this.params.get(name);
    if (old === value) return;
    this.params.set(name, value === undefined ? undefined : tf.keep(value));
    old?.dispose();
  }

  /** All parameter slots below this module, with dotted names (`...q_proj.weight`). */
  *namedParameters(prefix = ''): Generator<[string, tf.Tensor | undefined, Module, string]> {
    for (const [mname, m] of this.namedModules(prefix)) {
      for (const [pname, t] of m.params) yield [mname ? `${mname}.${pname}` : pname, t, m, pname];
    }
  }

  /** Disposes every loaded parameter below this module (slots stay, values become undefined). */
  releaseParameters(): void {
    for (const [, t, m, pname] of this.namedParameters()) if (t) m.setParameter(pname, undefined);
  }

  registerForwardPreHook(hook: ForwardPreHook): RemovableHandle {
    const id = nextHandleId++;
    this.preHooks.set(id, hook);
    return { id, remove: () => void this.preHooks.delete(id) };
  }

  registerForwardHook(hook: ForwardHook): RemovableHandle {
    const id = nextHandleId++;
    this.postHooks.set(id, hook);
    return { id, remove: () => void this.postHooks.delete(id) };
  }

  /** Number of hooks attached to this module (pre and post). */
  hookCount(): number {
    return this.preHooks.size + this.postHooks.size;
  }

  /** Maps positional args to names by `forwardParams`; a name given twice is an error. */
  argsToKwargs(args: unknown[], kwargs: Kwargs = {}): Kwargs {
    if (args.length > this.forwardParams.length) {
      throw new Error(
        `${this.className}.forward takes ${this.forwardParams.length} positional inputs ` +
          `(${this.forwardParams.join(', ')}), got ${args.length}`,
      );
    }
    const out: Kwargs = { ...kwargs };
    args.forEach((a, i) => {
      const name = this.forwardParams[i];
      if (name in kwargs) throw new Error(`${this.className}.forward got '${name}' both positionally and by name`);
      out[name] = a;
    });
    return out;
  }

  /** Runs the module with hooks: pre-hooks, forward on named inputs, forward hooks. */
  call(args: unknown[] = [], kwargs: Kwargs = {}): unknown {
    for (const hook of [...this.preHooks.values()]) {
      const r = hook(this, args, kwargs);
      if (r) [args, kwargs] = r;
    }
    let output = this.forward(this.argsToKwargs(args, kwargs));
    try {
      for (const hook of [...this.postHooks.values()]) {
        const r = hook(this, args, kwargs, output);
        if (r !== undefined) output = r;
      }
    } catch (e) {
      // The caller never receives the output, so it has no other owner.
      if (output instanceof tf.Tensor) output.dispose();
      throw e;
    }
    return output;
  }

  /** The computation, on named inputs. Call `call()` instead, so that hooks run. */
  abstract forward(inputs: Kwargs): unknown;
}

/** Reads a named input as a tensor, with an error naming the module and input. */
export function tensorInput(module: Module, inputs: Kwargs, name: string): tf.Tensor {
  const v = inputs[name];
  if (!(v instanceof tf.Tensor)) {
    throw new Error(`${module.className}.forward: input '${name}' must be a tensor, got ${describe(v)}`);
  }
  return v;
}

/** A short description of a value for error messages: `tensor[2,8] float32`, `array(2)`, `null`, or its typeof. */
export function describe(v: unknown): string {
  if (v instanceof tf.Tensor) return `tensor[${v.shape.join(',')}] ${v.dtype}`;
  if (v === null) return 'null';
  if (Array.isArray(v)) return `array(${v.length})`;
  return typeof v;
}
