/**
 * Gradient registrations for training on tfjs-wasm.
 *
 * tfjs-core's Node entry point registers kernels but no gradients (the `@tensorflow/tfjs` union
 * package does that); {@link registerTrainingGradients} loads tfjs-core's own gradient
 * registrations, then replaces two of them process-wide, so only the training script installs them:
 *
 * - GatherV2 (the embedding lookup): the stock gradient calls `unsortedSegmentSum`, which the wasm
 *   backend has no kernel for. Here the rows of dy are scatter-added on the host: dy is
 *   [B·T, H] floats (2 MiB for the demo), read and uploaded once per step.
 * - BatchMatMul, rank 2: the stock gradient uses `matMul` with transpose flags, which stock wasm
 *   runs 10-60x slower than a plain matMul. Here the operands are transposed explicitly first. Not
 *   needed when the native accelerator serves BatchMatMul (it takes the flags at full speed).
 */
import * as tf from '@tensorflow/tfjs-core';
import { createRequire } from 'node:module';

type Grads = Record<string, () => tf.Tensor>;

/** dx for `gather(x, indices, 0)`: rows of dy added into a zero [x.shape] at `indices`. */
export function gatherRowsGrad(dy: tf.Tensor, indices: tf.Tensor, xShape: number[]): tf.Tensor {
  const width = xShape.slice(1).reduce((a, d) => a * d, 1);
  const ids = indices.dataSync();
  const g = dy.dataSync() as Float32Array;
  if (g.length !== ids.length * width) {
    throw new Error(`gatherRowsGrad: dy has ${g.length} values, expected ${ids.length} indices × ${width}`);
  }
  const out = new Float32Array(xShape[0] * width);
  for (let i = 0; i < ids.length; i++) {
    const src = i * width;
    const dst = ids[i] * width;
    for (let j = 0; j < width; j++) out[dst + j] += g[src + j];
  }
  return tf.tensor(out, xShape, 'float32');
}

/** da, db (computed when called) for C = op(a)·op(b), rank 2, with every matMul flag-free. */
export function matMulGrads(dy: tf.Tensor2D, a: tf.Tensor2D, b: tf.Tensor2D, transposeA: boolean, transposeB: boolean): Grads {
  const T = (x: tf.Tensor2D) => tf.transpose(x);
  if (!transposeA && !transposeB) return { a: () => tf.matMul(dy, T(b)), b: () => tf.matMul(T(a), dy) };
  if (!transposeA && transposeB) return { a: () => tf.matMul(dy, b), b: () => tf.matMul(T(dy), a) };
  if (transposeA && !transposeB) return { a: () => tf.matMul(b, T(dy)), b: () => tf.matMul(a, dy) };
  return { a: () => tf.matMul(T(b), T(dy)), b: () => tf.matMul(T(dy), T(a)) };
}

/**
 * Installs the replacements. `matMul: false` keeps the stock BatchMatMul gradient (use it when a
 * native matMul kernel handles transpose flags). Cases outside the fast paths (gather on another
 * axis, batched matMul) go to the stock gradient.
 */
export function registerTrainingGradients(options: { matMul: boolean }): void {
  if (!tf.getGradient(tf.Neg)) {
    // The ESM sources import './gradients', both a file and a folder, which Node's ESM resolver
    // refuses; require() resolves it to the file (under tsx, which compiles the ESM syntax). The
    // registry is global, so the registrations reach the engine this process already uses.
    try {
      createRequire(import.meta.url)('@tensorflow/tfjs-core/dist/register_all_gradients');
    } catch (e) {
      throw new Error(
        `registerTrainingGradients: cannot load tfjs-core's gradients (${(e as Error).message}). ` +
          `Run the training script with tsx: 'npx tsx examples/train/train.ts'.`,
      );
    }
  }
  const stockGather = tf.getGradient(tf.GatherV2);
  tf.registerGradient({
    kernelName: tf.GatherV2,
    inputsToSave: ['x', 'indices'],
    gradFunc: (dy, saved, attrs): Grads => {
      const [x, indices] = saved;
      const { axis, batchDims } = attrs as unknown as { axis: number; batchDims: number };
      if ((axis !== 0 && axis !== -x.rank) || batchDims !== 0) return stockGather.gradFunc(dy, saved, attrs) as Grads;
      return { x: () => gatherRowsGrad(dy as tf.Tensor, indices, x.shape), indices: () => indices };
    },
  });
  if (!options.matMul) return;
  const stockMatMul = tf.getGradient(tf.BatchMatMul);
  tf.registerGradient({
    kernelName: tf.BatchMatMul,
    inputsToSave: ['a', 'b'],
    gradFunc: (dy, saved, attrs): Grads => {
      const [a, b] = saved;
      if (a.rank !== 2 || b.rank !== 2) return stockMatMul.gradFunc(dy, saved, attrs) as Grads;
      const { transposeA, transposeB } = attrs as unknown as { transposeA: boolean; transposeB: boolean };
      return matMulGrads(dy as tf.Tensor2D, a as tf.Tensor2D, b as tf.Tensor2D, transposeA, transposeB);
    },
  });
}
