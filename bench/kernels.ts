/**
 * Per-kernel throughput, stock tfjs-wasm against the native accelerator, in one process.
 *
 *   npx tsx bench/kernels.ts              every case
 *   npx tsx bench/kernels.ts matmul-512   cases whose name contains the argument
 *   npx tsx bench/kernels.ts --oneshot [hidden layers samples seqLen]
 *       whole oneshot GPTQ W4A16 on a generated Llama (default 2048 4 32 512), run twice in child
 *       processes, LAYERSTREAM_ACCEL=0 then on; prints both times and compares the checkpoints
 *
 * Each case: one untimed warm-up, then timed calls until a time budget (at least 3, 1 for the
 * plain-JS factorisations), median reported. A call allocates its output and leaves it on the wasm
 * heap (no read-back). The stock side is what layerstream runs without the accelerator: rank-2
 * matMuls with explicit transposes (the fast XNNPACK path), batches split into rank-2 calls, and
 * src/linalg's blocked tfjs fallbacks for XᵀX, Cholesky and the inverse. Throughput for XᵀX
 * counts GEMM-equivalent flops (2·n·k²) although SYRK does half of them. `maxErr` is the largest
 * |accel − stock| over the outputs, relative to the largest |stock|. The machine load is printed
 * with the results: other processes on a small machine move these figures a lot.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { initBackend, tf } from '../src/tensor/backend.js';
import { acceleratorInfo, disableAccelerator, enableAccelerator } from '../src/tensor/accel.js';
import { cholesky, choleskyInverse, gram } from '../src/linalg/index.js';
import { generateRandomModel, mulberry32 } from '../src/models/random.js';
import { SafetensorsFile, toFloat32 } from '../src/models/safetensors.js';
import type { TokenBatch } from '../src/data/types.js';

export interface KernelRow {
  name: string;
  stockMs: number;
  accelMs?: number;
  stockGflops: number;
  accelGflops?: number;
  speedup?: number;
  maxErr?: number;
}

interface Case {
  name: string;
  flops: number;
  inputs: () => tf.Tensor[];
  stock: (t: tf.Tensor[]) => tf.Tensor;
  accel: (t: tf.Tensor[]) => tf.Tensor;
  /** Minimum timed calls for the stock side (plain-JS cases are slow). */
  stockMinCalls?: number;
}

const BUDGET_MS = 2000;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** Median ms per call, and the last call's output (the caller owns it). */
function time(fn: () => tf.Tensor, minCalls: number): { ms: number; out: tf.Tensor } {
  fn().dispose();
  const times: number[] = [];
  const start = performance.now();
  let out: tf.Tensor | undefined;
  while (times.length < minCalls || (performance.now() - start < BUDGET_MS && times.length < 20)) {
    out?.dispose();
    const t0 = performance.now();
    out = fn();
    times.push(performance.now() - t0);
  }
  return { ms: median(times), out: out! };
}

function relativeError(got: tf.Tensor, want: tf.Tensor): number {
  return tf.tidy(() => tf.div(tf.max(tf.abs(tf.sub(got, want))), tf.max(tf.abs(want))).dataSync()[0]);
}

function spd(n: number): tf.Tensor2D {
  return tf.tidy(() => {
    const g = tf.randomNormal([n, n], 0, 1, 'float32', 1);
    return tf.add(tf.div(tf.matMul(g, tf.transpose(g)), n), tf.eye(n)) as tf.Tensor2D;
  });
}

function cases(): Case[] {
  const square = (n: number): Case => ({
    name: `matmul-${n}²`,
    flops: 2 * n ** 3,
    inputs: () => [tf.randomNormal([n, n]), tf.randomNormal([n, n])],
    stock: ([a, b]) => tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D),
    accel: ([a, b]) => tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D),
  });
  return [
    square(512),
    square(1024),
    square(2048),
    {
      name: 'matmul-512x2048@2048²',
      flops: 2 * 512 * 2048 * 2048,
      inputs: () => [tf.randomNormal([512, 2048]), tf.randomNormal([2048, 2048])],
      stock: ([a, b]) => tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D),
      accel: ([a, b]) => tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D),
    },
    {
      // What src/nn/layers.ts runs: the same expression on both sides.
      name: 'x·transpose(W)-512x2048·2048²',
      flops: 2 * 512 * 2048 * 2048,
      inputs: () => [tf.randomNormal([512, 2048]), tf.randomNormal([2048, 2048])],
      stock: ([x, w]) => tf.tidy(() => tf.matMul(x as tf.Tensor2D, tf.transpose(w as tf.Tensor2D))),
      accel: ([x, w]) => tf.tidy(() => tf.matMul(x as tf.Tensor2D, tf.transpose(w as tf.Tensor2D))),
    },
    {
      name: 'x·Wᵀ-transposeB-512x2048·2048²',
      flops: 2 * 512 * 2048 * 2048,
      inputs: () => [tf.randomNormal([512, 2048]), tf.randomNormal([2048, 2048])],
      stock: ([x, w]) => tf.tidy(() => tf.matMul(x as tf.Tensor2D, tf.transpose(w as tf.Tensor2D))),
      accel: ([x, w]) => tf.matMul(x as tf.Tensor2D, w as tf.Tensor2D, false, true),
    },
    {
      // Bytes moved, not flops: the GFLOP/s column reads as GB/s of input.
      name: 'transpose-5632x2048 (GB/s)',
      flops: 5632 * 2048 * 4,
      inputs: () => [tf.randomNormal([5632, 2048])],
      stock: ([w]) => tf.transpose(w),
      accel: ([w]) => tf.transpose(w),
    },
    {
      name: 'XᵀX-4096x2048',
      flops: 2 * 4096 * 2048 * 2048,
      inputs: () => [tf.randomNormal([4096, 2048])],
      stock: ([x]) => gram(x as tf.Tensor2D),
      accel: ([x]) => gram(x as tf.Tensor2D),
    },
    {
      name: 'batched-[16,512,128]@[16,128,512]',
      flops: 2 * 16 * 512 * 128 * 512,
      inputs: () => [tf.randomNormal([16, 512, 128]), tf.randomNormal([16, 128, 512])],
      stock: ([a, b]) =>
        tf.tidy(() => {
          const as = tf.unstack(a), bs = tf.unstack(b);
          return tf.stack(as.map((ai, i) => tf.matMul(ai as tf.Tensor2D, bs[i] as tf.Tensor2D)));
        }),
      accel: ([a, b]) => tf.matMul(a as tf.Tensor3D, b as tf.Tensor3D),
    },
    {
      name: 'cholesky-2048',
      flops: 2048 ** 3 / 3,
      stockMinCalls: 1,
      inputs: () => [spd(2048)],
      stock: ([a]) => cholesky(a as tf.Tensor2D),
      accel: ([a]) => cholesky(a as tf.Tensor2D),
    },
    {
      name: 'cholesky-inverse-2048',
      flops: (2 * 2048 ** 3) / 3,
      stockMinCalls: 1,
      // A well-conditioned lower factor: unit diagonal plus a small random lower part.
      inputs: () => [
        tf.tidy(() =>
          tf.add(tf.mul(tf.linalg.bandPart(tf.randomUniform([2048, 2048], -1, 1, 'float32', 2), -1, 0), 0.01), tf.eye(2048)),
        ),
      ],
      stock: ([l]) => choleskyInverse(l as tf.Tensor2D),
      accel: ([l]) => choleskyInverse(l as tf.Tensor2D),
    },
  ];
}

/** Runs the cases whose name contains `filter` and prints one line each; returns the rows. */
export async function main(filter = ''): Promise<KernelRow[]> {
  await initBackend({ backend: 'wasm' });
  const accel = enableAccelerator();
  const load = loadavg().map((x) => x.toFixed(2)).join(', ');
  console.log(`load average: ${load}; accelerator: ${accel.active ? `${accel.threads} threads, ${accel.blas}` : accel.reason}`);
  const rows: KernelRow[] = [];
  for (const c of cases().filter((k) => k.name.includes(filter))) {
    const inputs = c.inputs();
    disableAccelerator();
    const stock = time(() => c.stock(inputs), c.stockMinCalls ?? 3);
    const row: KernelRow = { name: c.name, stockMs: stock.ms, stockGflops: c.flops / stock.ms / 1e6 };
    if (enableAccelerator().active) {
      const accel = time(() => c.accel(inputs), 3);
      row.accelMs = accel.ms;
      row.accelGflops = c.flops / accel.ms / 1e6;
      row.speedup = stock.ms / accel.ms;
      row.maxErr = relativeError(accel.out, stock.out);
      accel.out.dispose();
    }
    stock.out.dispose();
    tf.dispose(inputs);
    rows.push(row);
    const fmt = (ms: number | undefined, g: number | undefined) =>
      ms === undefined ? '–' : `${ms.toFixed(1)} ms (${g!.toFixed(1)} GFLOP/s)`;
    console.log(
      `${c.name.padEnd(36)} stock ${fmt(row.stockMs, row.stockGflops).padEnd(28)} accel ${fmt(row.accelMs, row.accelGflops).padEnd(28)}` +
        (row.speedup ? ` ${row.speedup.toFixed(1)}x  maxErr ${row.maxErr!.toExponential(1)}` : ''),
    );
  }
  console.log(`load average after: ${loadavg().map((x) => x.toFixed(2)).join(', ')}; ${JSON.stringify(acceleratorInfo().kernels)}`);
  return rows;
}

export interface OneshotComparison {
  stockSeconds: number;
  accelSeconds: number;
  speedup: number;
  /** Largest |accel − stock| / max|stock| over the checkpoints' float tensors. */
  maxFloatErr: number;
  /** Fraction of integer (packed code) elements that differ. */
  intMismatch: number;
  /** Sum of the GPTQ losses of all modules, stock and accelerated. */
  stockLoss: number;
  accelLoss: number;
}

const VOCAB = 4096;

/** Seeded random token ids: the oneshot timing does not depend on the text. */
function calibrationBatches(samples: number, seqLen: number): TokenBatch[] {
  const uniform = mulberry32(1234);
  return Array.from({ length: samples }, () => ({
    inputIds: Int32Array.from({ length: seqLen }, () => Math.floor(uniform() * VOCAB)),
    batchSize: 1,
    seqLen,
  }));
}

/** Child side: one oneshot run; prints its result as the last stdout line. */
async function oneshotChild(modelDir: string, outDir: string, samples: number, seqLen: number): Promise<void> {
  const { oneshotAsync } = await import('../src/oneshot.js');
  const result = await oneshotAsync({
    model: modelDir,
    dataset: calibrationBatches(samples, seqLen),
    scheme: 'W4A16',
    outputDir: outDir,
    overwrite: true,
    numCalibrationSamples: samples,
    maxSeqLength: seqLen,
    backend: 'wasm',
  });
  const accel = acceleratorInfo();
  const loss = result.modules.reduce((sum, m) => sum + m.loss, 0);
  console.log(JSON.stringify({ seconds: result.seconds, accel: accel.active, threads: accel.threads, loss }));
}

async function compareCheckpoints(a: string, b: string): Promise<{ maxFloatErr: number; intMismatch: number }> {
  let maxFloatErr = 0, mismatched = 0, ints = 0;
  for (const file of readdirSync(a).filter((f) => f.endsWith('.safetensors'))) {
    const fa = await SafetensorsFile.open(join(a, file)), fb = await SafetensorsFile.open(join(b, file));
    for (const name of fa.tensors.keys()) {
      const ra = await fa.read(name), rb = await fb.read(name);
      if (['F32', 'F16', 'BF16', 'F64'].includes(ra.dtype)) {
        const va = toFloat32(ra), vb = toFloat32(rb);
        let diff = 0, scale = 0;
        for (let i = 0; i < va.length; i++) {
          diff = Math.max(diff, Math.abs(va[i] - vb[i]));
          scale = Math.max(scale, Math.abs(va[i]));
        }
        maxFloatErr = Math.max(maxFloatErr, scale > 0 ? diff / scale : diff);
      } else {
        const va = ra.data, vb = rb.data;
        ints += va.length;
        for (let i = 0; i < va.length; i++) if (va[i] !== vb[i]) mismatched++;
      }
    }
  }
  return { maxFloatErr, intMismatch: ints ? mismatched / ints : 0 };
}

/**
 * Whole oneshot GPTQ W4A16, stock wasm against the accelerator, each in its own process so that
 * neither run inherits the other's kernels or heap.
 */
export async function oneshotComparison(hidden = 2048, layers = 4, samples = 32, seqLen = 512): Promise<OneshotComparison> {
  const root = join(tmpdir(), 'layerstream-bench');
  const modelDir = join(root, `llama-h${hidden}-l${layers}`);
  if (!existsSync(join(modelDir, 'config.json'))) {
    // Llama-style proportions (TinyLlama: 32 heads, 4 key/value heads, MLP 2.75x hidden).
    await generateRandomModel(modelDir, {
      modelType: 'llama', hiddenSize: hidden, intermediateSize: Math.round((hidden * 2.75) / 64) * 64,
      numLayers: layers, numHeads: Math.max(1, hidden / 64), numKvHeads: Math.max(1, hidden / 512), vocabSize: VOCAB, seed: 0,
    });
  }
  const here = new URL(import.meta.url).pathname;
  const seconds: number[] = [], losses: number[] = [];
  for (const accel of ['0', '1']) {
    console.log(`oneshot h${hidden} l${layers} ${samples}x${seqLen}, LAYERSTREAM_ACCEL=${accel}; load ${loadavg()[0].toFixed(2)}`);
    const child = spawnSync(
      process.execPath,
      [...process.execArgv, here, '--oneshot-child', modelDir, join(root, `out-accel${accel}`), String(samples), String(seqLen)],
      { env: { ...process.env, LAYERSTREAM_ACCEL: accel }, stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' },
    );
    if (child.status !== 0) throw new Error(`oneshot child (LAYERSTREAM_ACCEL=${accel}) exited with ${child.status}`);
    const last = JSON.parse(child.stdout.trim().split('\n').pop()!) as { seconds: number; accel: boolean; threads: number; loss: number };
    console.log(`  ${last.seconds.toFixed(1)} s (accelerator ${last.accel ? `on, ${last.threads} threads` : 'off'}), GPTQ loss ${last.loss.toPrecision(6)}`);
    seconds.push(last.seconds);
    losses.push(last.loss);
  }
  const diff = await compareCheckpoints(join(root, 'out-accel0'), join(root, 'out-accel1'));
  const out = {
    stockSeconds: seconds[0], accelSeconds: seconds[1], speedup: seconds[0] / seconds[1],
    stockLoss: losses[0], accelLoss: losses[1], ...diff,
  };
  console.log(
    `oneshot: stock ${out.stockSeconds.toFixed(1)} s, accelerated ${out.accelSeconds.toFixed(1)} s, ${out.speedup.toFixed(1)}x; ` +
      `checkpoints: max float diff ${out.maxFloatErr.toExponential(1)} (relative), ${(out.intMismatch * 100).toFixed(3)}% of packed ints differ; ` +
      `GPTQ loss accel/stock ${(out.accelLoss / out.stockLoss).toFixed(4)}`,
  );
  return out;
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  const [mode, ...rest] = process.argv.slice(2);
  if (mode === '--oneshot-child') {
    await oneshotChild(rest[0], rest[1], Number(rest[2]), Number(rest[3]));
  } else if (mode === '--oneshot') {
    const [hidden, layers, samples, seqLen] = rest.map(Number);
    await oneshotComparison(hidden || undefined, layers || undefined, samples || undefined, seqLen || undefined);
  } else {
    await main(mode ?? '');
  }
}
