/**
 * The native accelerator: tfjs-wasm kernels replaced by calls into the system BLAS/LAPACK through
 * a small N-API addon (addon/, built by `npm install` when a compiler and a BLAS are present).
 *
 * The kernels sit behind tfjs' kernel registry, so model, pipeline and GPTQ code stay
 * backend-agnostic: `tf.matMul` on the wasm backend reaches OpenBLAS's sgemm in place on the wasm
 * heap (no copies), and src/linalg dispatches to the `Layerstream*` kernels when they are
 * registered for the active backend. `Transpose` is replaced too, for float32 transposes that
 * swap two blocks of axes (the stock one runs at about 1 GB/s, which would cost as much as the
 * accelerated x·Wᵀ it feeds). The stock kernels are kept and restored by
 * {@link disableAccelerator}; they remain the fallback (non-float32, unusual broadcasting) and the
 * reference the tests compare against.
 *
 * Safety rules every kernel here follows:
 * - heap views are built inside each call, after the output is allocated (heap growth detaches
 *   every older view; the addon throws RangeError on a detached or short view);
 * - results are written only into a fresh `backend.makeOutput(...)`, never into an input (tfjs
 *   lets tensors share memory after reshape or clone);
 * - outputs are ordinary wasm tensors, so device-byte accounting (src/tensor/memory.ts) sees them.
 *
 * Threads: OpenBLAS uses `LAYERSTREAM_THREADS`, else the `threads` option, else every core.
 * `OMP_WAIT_POLICY` defaults to PASSIVE (idle OpenMP workers sleep instead of spinning), measured
 * with bench/kernels.ts on 2 cores. With one core busy elsewhere, PASSIVE kept matMul 512² at 93
 * GFLOP/s and Cholesky 2048 at 45 ms, where ACTIVE gave 34 GFLOP/s and 76 ms, and a short spin
 * (GOMP_SPINCOUNT=10000) 80 GFLOP/s and 152 ms. On a quiet machine GEMMs are equal (190-200
 * GFLOP/s) and PASSIVE costs only the factorisations (Cholesky 43 against 24 ms, inverse 83
 * against 43 ms): set `OMP_WAIT_POLICY=ACTIVE` on a dedicated machine.
 */
import * as tf from '@tensorflow/tfjs-core';
import { availableParallelism } from 'node:os';
import { createRequire } from 'node:module';
import { NotPositiveDefiniteError } from '../linalg/errors.js';
import { CHOLESKY_INVERSE_KERNEL, CHOLESKY_KERNEL, GRAM_KERNEL } from '../linalg/kernels.js';

// The kernel names and contracts are src/linalg's, which dispatches to them when registered.
export { CHOLESKY_INVERSE_KERNEL, CHOLESKY_KERNEL, GRAM_KERNEL };

export interface AcceleratorInfo {
  /** True when the native kernels are registered for the wasm backend. */
  active: boolean;
  /** Names of the kernels now served by the accelerator. */
  kernels: string[];
  /** BLAS threads in use (0 when unknown or inactive). */
  threads: number;
  /** The BLAS library: its configuration string and path, or '' when inactive. */
  blas: string;
  /** Whether LAPACK (Cholesky and its inverse) is available. */
  lapack: boolean;
  /** Why the accelerator is not active. */
  reason?: string;
}

export interface AcceleratorOptions {
  /** BLAS threads; `LAYERSTREAM_THREADS` overrides it; default: the number of cores. */
  threads?: number;
}

/** The addon's surface (addon/blas.cc). All arrays are views the call does not keep. */
interface BlasAddon {
  sgemm(
    a: Float32Array, b: Float32Array, c: Float32Array,
    batch: number, m: number, n: number, k: number,
    transA: boolean, transB: boolean, strideA: number, strideB: number,
  ): void;
  transpose(src: Float32Array, dst: Float32Array, p: number, a: number, b: number, q: number): void;
  gram(x: Float32Array, h: Float32Array, rows: number, cols: number): void;
  cholesky(src: Float32Array, dst: Float32Array, n: number): number;
  choleskyInverse(src: Float32Array, dst: Float32Array, n: number): number;
  setThreads(n: number): number;
  info(): { library: string; config: string; parallel: string; threads: number; lapack: boolean };
}

/** The parts of tfjs-backend-wasm's BackendWasm that the kernels use. */
interface WasmBackend {
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  typedArrayFromHeap(t: tf.TensorInfo): tf.backend_util.TypedArray;
  disposeData(dataId: tf.DataId, force?: boolean): boolean;
}

const ADDON_PATH = '../../addon/build/Release/layerstream_blas.node';
const BACKEND = 'wasm';

let addon: BlasAddon | undefined;
let loadError: string | undefined;
/** Configs that were registered before the accelerator replaced them (undefined: none). */
const replaced = new Map<string, tf.KernelConfig | undefined>();
let state: AcceleratorInfo = inactive('not enabled (call enableAccelerator, or initBackend on wasm)');

function inactive(reason: string): AcceleratorInfo {
  return { active: false, kernels: [], threads: 0, blas: '', lapack: false, reason };
}

function loadAddon(): BlasAddon | undefined {
  if (addon || loadError) return addon;
  // OpenMP workers that spin after each BLAS call would compete with the JS thread and with
  // other processes on a small machine; sleeping workers cost little at the sizes layerstream
  // runs (bench/kernels.ts). Read by libgomp when it loads, so it must be set before require.
  process.env.OMP_WAIT_POLICY ??= 'PASSIVE';
  try {
    addon = createRequire(import.meta.url)(ADDON_PATH) as BlasAddon;
  } catch (e) {
    const code = (e as { code?: string }).code;
    loadError =
      code === 'MODULE_NOT_FOUND'
        ? 'addon not built: install a C++ toolchain and libopenblas-dev (macOS: Xcode command line ' +
          'tools), then run `node scripts/build-addon.mjs` (or `npm rebuild layerstream`)'
        : `addon failed to load: ${(e as Error).message.split('\n')[0]}`;
  }
  return addon;
}

function resolveThreads(options: AcceleratorOptions): number {
  const env = process.env.LAYERSTREAM_THREADS;
  const value = env !== undefined && env !== '' ? Number(env) : options.threads ?? availableParallelism();
  if (!Number.isInteger(value) || value < 1) {
    throw new Error(
      `${env !== undefined && env !== '' ? `LAYERSTREAM_THREADS='${env}'` : `threads option ${value}`}: ` +
        `expected a positive integer number of BLAS threads. Unset it to use every core.`,
    );
  }
  return value;
}

function heap(backend: WasmBackend, t: tf.TensorInfo): Float32Array {
  return backend.typedArrayFromHeap(t) as Float32Array;
}

/** Allocates the output, runs `fill` on fresh views, and frees the output if `fill` throws. */
function withOutput(
  backend: WasmBackend, shape: number[], fill: (out: tf.TensorInfo) => void,
): tf.TensorInfo {
  const out = backend.makeOutput(shape, 'float32');
  try {
    fill(out);
  } catch (e) {
    backend.disposeData(out.dataId, true);
    throw e;
  }
  return out;
}

function requireFloat32(kernel: string, name: string, t: tf.TensorInfo, rank: number, square = false) {
  if (t.dtype !== 'float32' || t.shape.length !== rank || (square && t.shape[0] !== t.shape[1])) {
    const want = square ? 'a square float32 matrix [n, n]' : `a float32 tensor of rank ${rank}`;
    throw new Error(
      `${kernel}: input '${name}' must be ${want}, got ${t.dtype} [${t.shape.join(', ')}]. ` +
        `Cast with tf.cast(x, 'float32') and reshape to the expected rank.`,
    );
  }
}

function batchMatMulKernel(stock: tf.KernelConfig): tf.KernelFunc {
  return (args) => {
    const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
    const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean };
    const backend = args.backend as unknown as WasmBackend;
    const ra = a.shape.length, rb = b.shape.length;
    const k = transposeA ? a.shape[ra - 2] : a.shape[ra - 1];
    const m = transposeA ? a.shape[ra - 1] : a.shape[ra - 2];
    const n = transposeB ? b.shape[rb - 2] : b.shape[rb - 1];
    const kB = transposeB ? b.shape[rb - 1] : b.shape[rb - 2];
    if (a.dtype !== 'float32' || b.dtype !== 'float32' || ra < 2 || rb < 2 || k !== kB) {
      return stock.kernelFunc(args); // the stock kernel throws tfjs' own messages
    }
    const outer = tf.backend_util.assertAndGetBroadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2));
    const batch = tf.util.sizeFromShape(outer);
    const batchA = tf.util.sizeFromShape(a.shape.slice(0, -2));
    const batchB = tf.util.sizeFromShape(b.shape.slice(0, -2));
    // Equal batches, or one side broadcast whole; other broadcasts (say [2,1] against [1,2]) are rare.
    if ((batchA !== batch && batchA !== 1) || (batchB !== batch && batchB !== 1)) {
      return stock.kernelFunc(args);
    }
    return withOutput(backend, [...outer, m, n], (out) => {
      addon!.sgemm(
        heap(backend, a), heap(backend, b), heap(backend, out),
        batch, m, n, k, transposeA, transposeB,
        batchA === 1 ? 0 : m * k, batchB === 1 ? 0 : k * n,
      );
    });
  };
}

/**
 * `x.shape` and `perm` reduced to `[P, A, B, Q] → [P, B, A, Q]` (swap two adjacent blocks of
 * axes), or undefined when the permutation has another form (or is a no-op). Size-1 axes are
 * dropped and output axes that stay neighbours in the input are merged first; every transpose
 * layerstream runs (2-D weights, attention heads [B,T,nh,hs] ↔ [B,nh,T,hs]) reduces this way.
 */
export function blockSwap(shape: number[], perm: number[]): [number, number, number, number] | undefined {
  const axes = perm.filter((axis) => shape[axis] !== 1);
  // Runs of output axes that are consecutive input axes: one merged axis each.
  const groups: number[][] = [];
  for (const axis of axes) {
    const last = groups[groups.length - 1];
    if (last && last[last.length - 1] === axis - 1) last.push(axis);
    else groups.push([axis]);
  }
  const size = (g: number[]) => g.reduce((acc, axis) => acc * shape[axis], 1);
  const inputOrder = [...groups].sort((g, h) => g[0] - h[0]);
  const reduced = groups.map((g) => inputOrder.indexOf(g)); // output axis → merged input axis
  const dims = inputOrder.map(size);
  const is = (want: number[]) => reduced.length === want.length && want.every((v, i) => reduced[i] === v);
  if (is([1, 0])) return [1, dims[0], dims[1], 1];
  if (is([0, 2, 1])) return [dims[0], dims[1], dims[2], 1];
  if (is([1, 0, 2])) return [1, dims[0], dims[1], dims[2]];
  if (is([0, 2, 1, 3])) return [dims[0], dims[1], dims[2], dims[3]];
  return undefined;
}

function transposeKernel(stock: tf.KernelConfig): tf.KernelFunc {
  return (args) => {
    const { x } = args.inputs as { x: tf.TensorInfo };
    const { perm } = args.attrs as { perm: number[] };
    const backend = args.backend as unknown as WasmBackend;
    const swap = x.dtype === 'float32' ? blockSwap(x.shape, perm) : undefined;
    if (!swap) return stock.kernelFunc(args);
    return withOutput(backend, perm.map((axis) => x.shape[axis]), (out) => {
      addon!.transpose(heap(backend, x), heap(backend, out), ...swap);
    });
  };
}

const gramKernel: tf.KernelFunc = (args) => {
  const { x } = args.inputs as { x: tf.TensorInfo };
  const backend = args.backend as unknown as WasmBackend;
  requireFloat32(GRAM_KERNEL, 'x', x, 2);
  const [rows, cols] = x.shape;
  return withOutput(backend, [cols, cols], (out) => {
    addon!.gram(heap(backend, x), heap(backend, out), rows, cols);
  });
};

function factorKernel(kernel: string, inverse: boolean): tf.KernelFunc {
  return (args) => {
    const { x } = args.inputs as { x: tf.TensorInfo };
    const backend = args.backend as unknown as WasmBackend;
    requireFloat32(kernel, 'x', x, 2, true);
    const n = x.shape[0];
    return withOutput(backend, [n, n], (out) => {
      const src = heap(backend, x), dst = heap(backend, out);
      const info = inverse ? addon!.choleskyInverse(src, dst, n) : addon!.cholesky(src, dst, n);
      if (info > 0) {
        throw new NotPositiveDefiniteError(info - 1, inverse ? 'the matrix behind this Cholesky factor' : 'matrix');
      }
      if (info < 0) throw new Error(`${kernel}: LAPACK rejected argument ${-info} for n = ${n}`);
    });
  };
}

function register(config: tf.KernelConfig): void {
  const existing = tf.getKernel(config.kernelName, BACKEND);
  if (!replaced.has(config.kernelName)) replaced.set(config.kernelName, existing);
  if (existing) tf.unregisterKernel(config.kernelName, BACKEND);
  tf.registerKernel(config);
}

/**
 * Registers the native kernels for the wasm backend if the addon loads; otherwise leaves the
 * stock kernels alone and says why in `reason`. Calling it again only updates the thread count.
 *
 * @example
 * const info = enableAccelerator({ threads: 2 });
 * if (!info.active) console.log(`stock wasm kernels: ${info.reason}`);
 */
export function enableAccelerator(options: AcceleratorOptions = {}): AcceleratorInfo {
  const threadsWanted = resolveThreads(options);
  const native = loadAddon();
  if (!native) {
    state = inactive(loadError!);
    return acceleratorInfo();
  }
  const threads = native.setThreads(threadsWanted);
  const lib = native.info();
  if (!state.active) {
    const stock = tf.getKernel(tf.BatchMatMul, BACKEND);
    if (!stock) {
      state = inactive(`no stock '${tf.BatchMatMul}' kernel for '${BACKEND}': import @tensorflow/tfjs-backend-wasm first`);
      return acceleratorInfo();
    }
    // The stock setupFunc travels along: if the wasm backend initialises later, it binds the
    // stock kernel that the override falls back to.
    register({ ...stock, kernelFunc: batchMatMulKernel(stock) });
    const stockTranspose = tf.getKernel(tf.Transpose, BACKEND);
    if (stockTranspose) register({ ...stockTranspose, kernelFunc: transposeKernel(stockTranspose) });
    register({ kernelName: GRAM_KERNEL, backendName: BACKEND, kernelFunc: gramKernel });
    if (lib.lapack) {
      register({ kernelName: CHOLESKY_KERNEL, backendName: BACKEND, kernelFunc: factorKernel(CHOLESKY_KERNEL, false) });
      register({
        kernelName: CHOLESKY_INVERSE_KERNEL,
        backendName: BACKEND,
        kernelFunc: factorKernel(CHOLESKY_INVERSE_KERNEL, true),
      });
    }
  }
  state = {
    active: true,
    kernels: [...replaced.keys()],
    threads: threads || threadsWanted,
    blas: `${lib.config || 'BLAS'} (${lib.library || 'linked'})`,
    lapack: lib.lapack,
  };
  return acceleratorInfo();
}

/**
 * Restores the kernels that were registered before {@link enableAccelerator}. `reason` is what
 * {@link acceleratorInfo} reports afterwards.
 */
export function disableAccelerator(reason = 'disabled'): void {
  for (const [name, previous] of replaced) {
    if (tf.getKernel(name, BACKEND)) tf.unregisterKernel(name, BACKEND);
    if (previous) tf.registerKernel(previous);
  }
  replaced.clear();
  state = inactive(reason);
}

/** True when the native BatchMatMul kernel is registered (transpose flags then cost nothing). */
export function acceleratorActive(): boolean {
  return state.active;
}

/** The accelerator's current state (a copy). */
export function acceleratorInfo(): AcceleratorInfo {
  return { ...state, kernels: [...state.kernels] };
}
