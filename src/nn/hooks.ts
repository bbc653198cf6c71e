/**
 * The hook registry: every hook a modifier or pipeline attaches goes through one of these, so that
 * "hooks off" really means off and removal on cancel is total. One registry per run: there is no
 * process-wide state, so two runs in one service never see each other's hooks.
 */
import type { ForwardHook, ForwardPreHook, Module, RemovableHandle } from './module.js';

/**
 * Registers forward and pre-forward hooks on modules, and removes or disables them all at once.
 *
 * @example
 * const hooks = new HookRegistry();
 * hooks.registerForwardHook(layer.q_proj, (_m, args) => { record(args[0]); return undefined; });
 * hooks.disableHooks(() => layer.call([], inputs)); // runs with every hook off
 */
export class HookRegistry {
  private readonly handles = new Map<number, RemovableHandle>();
  private disabledDepth = 0;
  private keep = new Set<number>();

  /** True while inside {@link disableHooks}. */
  get disabled(): boolean {
    return this.disabledDepth > 0;
  }

  /** Number of hooks currently registered through this registry. */
  get size(): number {
    return this.handles.size;
  }

  private active(id: number): boolean {
    return this.disabledDepth === 0 || this.keep.has(id);
  }

  registerForwardPreHook(module: Module, hook: ForwardPreHook): RemovableHandle {
    let id = 0;
    const h = module.registerForwardPreHook((m, a, k) => (this.active(id) ? hook(m, a, k) : undefined));
    id = h.id;
    return this.track(h);
  }

  registerForwardHook(module: Module, hook: ForwardHook): RemovableHandle {
    let id = 0;
    const h = module.registerForwardHook((m, a, k, o) => (this.active(id) ? hook(m, a, k, o) : undefined));
    id = h.id;
    return this.track(h);
  }

  private track(h: RemovableHandle): RemovableHandle {
    const handle: RemovableHandle = {
      id: h.id,
      remove: () => {
        h.remove();
        this.handles.delete(h.id);
      },
    };
    this.handles.set(h.id, handle);
    return handle;
  }

  /**
   * Runs `body` with every hook of this registry disabled except those in `keep`; nested calls
   * union their keep sets. State is restored when `body` returns, throws, or its promise settles.
   */
  disableHooks<T>(body: () => T, keep: Iterable<RemovableHandle> = []): T {
    const savedKeep = this.keep;
    this.keep = new Set([...savedKeep, ...[...keep].map((h) => h.id)]);
    this.disabledDepth++;
    const restore = () => {
      this.disabledDepth--;
      this.keep = savedKeep;
    };
    let result: T;
    try {
      result = body();
    } catch (e) {
      restore();
      throw e;
    }
    if (result instanceof Promise) {
      return result.finally(restore) as T;
    }
    restore();
    return result;
  }

  /** Removes the given handles, or every hook this registry registered. */
  removeAll(handles?: Iterable<RemovableHandle>): void {
    for (const h of handles ? [...handles] : [...this.handles.values()]) h.remove();
  }
}
