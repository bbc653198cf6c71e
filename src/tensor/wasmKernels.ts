/**
 * Faster SplitV and Unpack kernels for tfjs-wasm, registered by `initBackend` on wasm.
 *
 * The stock kernels slice once per output, and each slice copies the whole input out of the wasm
 * heap (`readSync`), so splitting a tensor into n pieces copies it n times: the attention's
 * per-head split was half of a training step. These read the input in place and copy each piece
 * once. Same results, same dtypes; strings go to the stock kernel.
 */
import * as tf from '@tensorflow/tfjs-core';

/** The parts of tfjs-backend-wasm's BackendWasm used here. */
interface WasmBackend {
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  typedArrayFromHeap(t: tf.TensorInfo): tf.backend_util.TypedArray;
}

/** Splits `x` along `axis` into pieces of `sizes`; each output is [..., size, ...]. */
function splitInPlace(backend: WasmBackend, x: tf.TensorInfo, axis: number, sizes: number[], dropAxis: boolean): tf.TensorInfo[] {
  const outer = x.shape.slice(0, axis).reduce((a, d) => a * d, 1);
  const inner = x.shape.slice(axis + 1).reduce((a, d) => a * d, 1);
  const D = x.shape[axis];
  const outs = sizes.map((s) => {
    const shape = x.shape.slice();
    if (dropAxis) shape.splice(axis, 1);
    else shape[axis] = s;
    return backend.makeOutput(shape, x.dtype);
  });
  // views only after every allocation: a heap growth detaches older views
  const src = backend.typedArrayFromHeap(x);
  let offset = 0;
  sizes.forEach((s, k) => {
    const dst = backend.typedArrayFromHeap(outs[k]);
    const run = s * inner;
    for (let i = 0; i < outer; i++) {
      const from = (i * D + offset) * inner;
      dst.set(src.subarray(from, from + run), i * run);
    }
    offset += s;
  });
  return outs;
}

let stock: { split: tf.KernelConfig; unpack: tf.KernelConfig } | undefined;

/**
 * Replaces the wasm SplitV and Unpack kernels (for this process); idempotent. Attention splits
 * its heads with them, and the stock kernels copied the whole input once per head.
 */
export function registerWasmSplitKernels(): void {
  if (stock) return;
  const stockSplit = tf.getKernel(tf.SplitV, 'wasm');
  const stockUnpack = tf.getKernel(tf.Unpack, 'wasm');
  if (!stockSplit || !stockUnpack) throw new Error('registerWasmSplitKernels: import @tensorflow/tfjs-backend-wasm first');
  stock = { split: stockSplit, unpack: stockUnpack };
  tf.unregisterKernel(tf.SplitV, 'wasm');
  tf.registerKernel({
    ...stockSplit,
    kernelFunc: (args) => {
      const x = args.inputs.x as tf.TensorInfo;
      if (x.dtype === 'string') return stockSplit.kernelFunc(args);
      const { numOrSizeSplits, axis } = args.attrs as unknown as { numOrSizeSplits: number | number[]; axis: number };
      const $axis = tf.util.parseAxisParam(axis, x.shape)[0];
      const sizes = tf.backend_util.prepareSplitSize(x as tf.Tensor, numOrSizeSplits, $axis);
      return splitInPlace(args.backend as unknown as WasmBackend, x, $axis, sizes, false);
    },
  });
  tf.unregisterKernel(tf.Unpack, 'wasm');
  tf.registerKernel({
    ...stockUnpack,
    kernelFunc: (args) => {
      const x = args.inputs.value as tf.TensorInfo;
      if (x.dtype === 'string') return stockUnpack.kernelFunc(args);
      const { axis } = args.attrs as unknown as { axis: number };
      const $axis = axis < 0 ? axis + x.shape.length : axis;
      const sizes = new Array<number>(x.shape[$axis]).fill(1);
      return splitInPlace(args.backend as unknown as WasmBackend, x, $axis, sizes, true);
    },
  });
}

/** Puts the stock SplitV and Unpack kernels back (tests compare both). */
export function unregisterWasmSplitKernels(): void {
  if (!stock) return;
  for (const k of [stock.split, stock.unpack]) {
    tf.unregisterKernel(k.kernelName, 'wasm');
    tf.registerKernel(k);
  }
  stock = undefined;
}
