/**
 * Backend selection. The order is: `tensorflow` (from `@tensorflow/tfjs-node-gpu` or
 * `@tensorflow/tfjs-node`, when one of them installed), else `wasm` (the embedded default),
 * else `cpu` with a loud warning: its matmul runs at under 1 GFLOP/s.
 *
 * The choice can be forced with the `backend` option (`--backend` on the CLI) or the
 * `LAYERSTREAM_BACKEND` environment variable.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import { createRequire } from 'node:module';
import { disableAccelerator, enableAccelerator } from './accel.js';
import { registerWasmSplitKernels } from './wasmKernels.js';

/** tfjs backends layerstream runs on: tfjs-node ('tensorflow', when installed), 'wasm', 'cpu'. */
export type BackendName = 'tensorflow' | 'wasm' | 'cpu';
/** Every {@link BackendName}, in the order `initBackend` prefers them. */
export const BACKEND_NAMES: readonly BackendName[] = ['tensorflow', 'wasm', 'cpu'];

export interface BackendInfo {
  name: BackendName;
  /** Which npm package supplied the backend. */
  package: string;
  simd?: boolean;
  /** Threads the heavy kernels use: the accelerator's BLAS threads when it is active. */
  threads?: number;
  /** Kernels replaced by the native accelerator, if it is active (see src/tensor/accel.ts). */
  acceleratedKernels: string[];
  versions: Record<string, string>;
  warnings: string[];
}

export interface InitBackendOptions {
  /** Force a backend; default from LAYERSTREAM_BACKEND, else the best available. */
  backend?: string;
  /** Called with warnings (e.g. the slow cpu fallback). Default: console.warn. */
  warn?: (message: string) => void;
  /**
   * Use the native accelerator on wasm when it is built (src/tensor/accel.ts). Default true;
   * `LAYERSTREAM_ACCEL=0` turns it off.
   */
  accelerate?: boolean;
}

let current: BackendInfo | undefined;
const requireHere = createRequire(import.meta.url);

function packageVersion(name: string): string | undefined {
  try {
    return (requireHere(`${name}/package.json`) as { version: string }).version;
  } catch {
    return undefined;
  }
}

async function tryLoadNode(): Promise<string | undefined> {
  for (const pkg of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
    try {
      await import(pkg);
      if (tf.findBackend('tensorflow')) return pkg;
    } catch {
      // not installed (the usual case without internet access at install time)
    }
  }
  return undefined;
}

function parseBackendName(value: string, source: string): BackendName {
  if ((BACKEND_NAMES as readonly string[]).includes(value)) return value as BackendName;
  throw new Error(
    `${source}: unknown backend '${value}'. Expected one of ${BACKEND_NAMES.join(', ')}. ` +
      `Unset it to pick the best available backend automatically.`,
  );
}

/**
 * Chooses and initialises the tfjs backend once per process. Calling again with the same
 * (or no) request returns the active backend; asking for a different one switches.
 */
export async function initBackend(options: InitBackendOptions = {}): Promise<BackendInfo> {
  // Concurrent runs in one process (a service) each call this: they take turns, so a second
  // caller never sees a half-initialised backend (tfjs' setBackend then fails and would fall back).
  while (initializing) await initializing.catch(() => undefined);
  const attempt = initBackendNow(options);
  initializing = attempt;
  try {
    return await attempt;
  } finally {
    if (initializing === attempt) initializing = undefined;
  }
}

let initializing: Promise<BackendInfo> | undefined;

async function initBackendNow(options: InitBackendOptions): Promise<BackendInfo> {
  const warn = options.warn ?? ((m: string) => console.warn(m));
  const envValue = process.env.LAYERSTREAM_BACKEND;
  const requested = options.backend
    ? parseBackendName(options.backend, '--backend')
    : envValue
      ? parseBackendName(envValue, 'LAYERSTREAM_BACKEND')
      : undefined;
  if (current && (!requested || requested === current.name) && tf.getBackend() === current.name) {
    return current;
  }

  const warnings: string[] = [];
  let name: BackendName;
  let pkg: string;
  if (requested === 'tensorflow' || requested === undefined) {
    const nodePkg = await tryLoadNode();
    if (nodePkg) {
      name = 'tensorflow';
      pkg = nodePkg;
    } else if (requested === 'tensorflow') {
      throw new Error(
        `backend 'tensorflow' was requested but neither @tensorflow/tfjs-node-gpu nor @tensorflow/tfjs-node ` +
          `is installed. Install one (it downloads libtensorflow at install time: ` +
          `'npm install @tensorflow/tfjs-node-gpu' on a machine with CUDA), or use --backend wasm.`,
      );
    } else {
      name = 'wasm';
      pkg = '@tensorflow/tfjs-backend-wasm';
    }
  } else {
    name = requested;
    pkg = requested === 'wasm' ? '@tensorflow/tfjs-backend-wasm' : '@tensorflow/tfjs-backend-cpu';
  }

  let ok = await tf.setBackend(name).catch(() => false);
  if (!ok && name === 'wasm' && requested !== 'wasm') {
    name = 'cpu';
    pkg = '@tensorflow/tfjs-backend-cpu';
    ok = await tf.setBackend('cpu');
  }
  if (!ok) throw new Error(`backend '${name}' failed to initialise (package ${pkg}).`);
  await tf.ready();
  if (name === 'cpu') {
    const msg =
      `layerstream: running on the 'cpu' backend (plain JavaScript, about 1 GFLOP/s, 30x slower than wasm). ` +
      `Use --backend wasm, or install @tensorflow/tfjs-node-gpu for the native path.`;
    warnings.push(msg);
    warn(msg);
  }

  const versions: Record<string, string> = { node: process.versions.node };
  for (const p of ['@tensorflow/tfjs-core', pkg]) {
    const v = packageVersion(p);
    if (v) versions[p] = v;
  }
  const info: BackendInfo = { name, package: pkg, acceleratedKernels: [], versions, warnings };
  if (name === 'wasm') {
    info.simd = tf.env().getBool('WASM_HAS_SIMD_SUPPORT');
    info.threads = tf.env().getBool('WASM_HAS_MULTITHREAD_SUPPORT') ? 2 : 1;
    registerWasmSplitKernels();
    if (options.accelerate === false) {
      disableAccelerator('turned off by initBackend({ accelerate: false })');
    } else if (process.env.LAYERSTREAM_ACCEL === '0') {
      disableAccelerator('turned off by LAYERSTREAM_ACCEL=0');
    } else {
      const accel = enableAccelerator();
      if (accel.active) {
        info.acceleratedKernels = accel.kernels;
        info.threads = accel.threads;
      }
    }
  }
  current = info;
  return info;
}

/** The active backend as chosen by {@link initBackend}, or undefined before it ran. */
export function backendInfo(): BackendInfo | undefined {
  return current;
}

export { tf };
