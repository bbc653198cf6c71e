/**
 * GPTQ cost per module: a square Linear [C, C] calibrated on 2048 tokens (4 sequences of 512),
 * W4A16 (int4, group 128, actorder static). Hessian accumulation and the solve are timed apart,
 * the solve broken down into observe (qparams), Cholesky, inverse and the column block loop; then
 * the linear algebra alone at n = 1024 and 2048.
 *
 *   npx tsx bench/gptq.ts                 hidden sizes 256, 1024, 2048
 *   npx tsx bench/gptq.ts 512 4096        other sizes
 *   LAYERSTREAM_ACCEL=0 npx tsx bench/gptq.ts   without the native accelerator
 */
import { loadavg } from 'node:os';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { initBackend, tf } from '../src/tensor/backend.js';
import { accumulateHessian, quantizeWeight, type GPTQTimings } from '../src/modifiers/gptq/gptqQuantize.js';
import { presetScheme } from '../src/quant/presets.js';
import {
  cholesky,
  choleskyBlocked,
  choleskyInverse,
  choleskyInverseBlocked,
  inverseUpperCholesky,
  inverseUpperCholeskyReversed,
} from '../src/linalg/index.js';

export interface GptqBenchRow {
  hidden: number;
  tokens: number;
  hessianS: number;
  solveS: number;
  /** CPU seconds of this process during the solve (user + system, all threads). */
  solveCpuS: number;
  observeS: number;
  choleskyS: number;
  inverseS: number;
  loopS: number;
  loss: number;
}

export interface LinalgBenchRow {
  n: number;
  op: string;
  seconds: number;
}

const SEQUENCES = 4;
const SEQ_LEN = 512;

function randomNormal(shape: number[], seed: number): tf.Tensor {
  return tf.randomNormal(shape, 0, 1, 'float32', seed);
}

function gptqRow(hidden: number): GptqBenchRow {
  const args = presetScheme('W4A16', ['Linear']).weights!;
  args.actorder = 'static';
  if (hidden < 128) args.group_size = hidden;
  const W = randomNormal([hidden, hidden], 1) as tf.Tensor2D;
  const batches = Array.from({ length: SEQUENCES }, (_, i) => randomNormal([1, SEQ_LEN, hidden], 10 + i));

  let t0 = performance.now();
  let acc: { H: tf.Tensor2D; nSamples: number } | null = null;
  for (const x of batches) {
    const next = accumulateHessian(acc?.H ?? null, acc?.nSamples ?? 0, x);
    acc?.H.dispose();
    acc = next;
  }
  acc!.H.dataSync();
  const hessianS = (performance.now() - t0) / 1000;

  const timings: GPTQTimings = { observe: 0, cholesky: 0, inverse: 0, loop: 0 };
  t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const res = quantizeWeight(W, acc!.H, args, { timings });
  res.weight.dataSync();
  const solveS = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  tf.dispose([W, acc!.H, res.weight, ...batches]);
  return {
    hidden,
    tokens: SEQUENCES * SEQ_LEN,
    hessianS,
    solveS,
    solveCpuS: (cpu.user + cpu.system) / 1e6,
    observeS: timings.observe / 1000,
    choleskyS: timings.cholesky / 1000,
    inverseS: timings.inverse / 1000,
    loopS: timings.loop / 1000,
    loss: res.loss,
  };
}

function timeOp(fn: () => tf.Tensor): number {
  const t0 = performance.now();
  const out = fn();
  out.dataSync();
  out.dispose();
  return (performance.now() - t0) / 1000;
}

function linalgRows(n: number): LinalgBenchRow[] {
  const H = tf.tidy(() => {
    const G = randomNormal([2 * n, n], 3) as tf.Tensor2D;
    return tf.add(tf.div(tf.matMul(tf.transpose(G), G), 2 * n), tf.mul(tf.eye(n), 0.01)) as tf.Tensor2D;
  });
  const L = cholesky(H);
  const rows: LinalgBenchRow[] = [
    { n, op: 'cholesky (dispatch)', seconds: timeOp(() => cholesky(H)) },
    { n, op: 'cholesky (blocked tfjs)', seconds: timeOp(() => choleskyBlocked(H)) },
    { n, op: 'choleskyInverse (dispatch)', seconds: timeOp(() => choleskyInverse(L)) },
    { n, op: 'choleskyInverse (blocked tfjs)', seconds: timeOp(() => choleskyInverseBlocked(L)) },
    { n, op: 'upper chol of H⁻¹ (dispatch)', seconds: timeOp(() => inverseUpperCholesky(H)) },
    { n, op: 'upper chol of H⁻¹ (reversal identity)', seconds: timeOp(() => inverseUpperCholeskyReversed(H)) },
  ];
  tf.dispose([H, L]);
  return rows;
}

const f = (s: number) => s.toFixed(3);

/** Runs the benchmark and prints markdown tables; returns the rows. */
export async function main(sizes: number[] = [256, 1024, 2048]): Promise<{ gptq: GptqBenchRow[]; linalg: LinalgBenchRow[] }> {
  const info = await initBackend();
  console.log(
    `backend ${info.name}${info.acceleratedKernels.length ? ` + native kernels (${info.acceleratedKernels.join(', ')})` : ''}, ` +
      `load ${loadavg().map((l) => l.toFixed(2)).join(' ')}\n`,
  );
  // warm-up: first calls compile kernels
  gptqRow(64);

  const gptq = sizes.map(gptqRow);
  console.log(`GPTQ W4A16 (group 128, actorder static), one square Linear, ${SEQUENCES}×${SEQ_LEN} tokens; seconds\n`);
  console.log('| hidden | Hessian | solve | solve (CPU s) | observe | cholesky | inverse | block loop | loss |');
  console.log('|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of gptq) {
    console.log(
      `| ${r.hidden} | ${f(r.hessianS)} | ${f(r.solveS)} | ${f(r.solveCpuS)} | ${f(r.observeS)} | ${f(r.choleskyS)} | ${f(r.inverseS)} | ${f(r.loopS)} | ${r.loss.toFixed(1)} |`,
    );
  }

  const linalg = [1024, 2048].flatMap(linalgRows);
  console.log('\nLinear algebra alone; seconds\n');
  console.log('| op | n = 1024 | n = 2048 |');
  console.log('|---|---:|---:|');
  for (const op of [...new Set(linalg.map((r) => r.op))]) {
    const at = (n: number) => f(linalg.find((r) => r.op === op && r.n === n)!.seconds);
    console.log(`| ${op} | ${at(1024)} | ${at(2048)} |`);
  }
  return { gptq, linalg };
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  const sizes = process.argv.slice(2).map(Number).filter((n) => Number.isInteger(n) && n > 0);
  await main(sizes.length ? sizes : undefined);
}
