/**
 * Throughput and memory of the layer-sequential pipeline with a no-op modifier: only the
 * pipeline's own work (capture, calibration pass, propagation pass, cache traffic) is measured.
 *
 *   npx tsx bench/pipeline.ts                       32, 128 and 512 samples of 64 tokens
 *   npx tsx bench/pipeline.ts 32,128 64             sample counts, tokens per sample
 *
 * The model is a generated random Llama (hidden 128, intermediate 256, 4 layers, 4 heads, vocab
 * 512), one sample per batch as llm-compressor's default. `tokens/s` counts calibration tokens
 * through the whole run (every layer calibrated, every layer but the last propagated);
 * `layer-tok/s` counts token × layer forwards (2N − 1 per token). Device bytes are live tfjs bytes
 * at the stages' high-water points, weights included; host bytes are the intermediates cache.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { lastValueFrom, tap } from 'rxjs';
import type { TokenBatch } from '../src/data/types.js';
import { generateRandomModel, mulberry32 } from '../src/models/random.js';
import { loadModel } from '../src/models/registry.js';
import type { Modifier } from '../src/modifiers/modifier.js';
import type { PipelineEvent } from '../src/pipelines/events.js';
import { layerSequentialPipeline } from '../src/pipelines/layerSequential.js';
import { initBackend, tf } from '../src/tensor/backend.js';

export interface PipelineBenchRow {
  samples: number;
  tokens: number;
  seconds: number;
  tokensPerSecond: number;
  layerTokensPerSecond: number;
  weightBytes: number;
  peakDeviceBytes: number;
  peakHostCacheBytes: number;
}

const NO_OP: Modifier = {
  type: 'NoOpModifier',
  sequential: true,
  requiresCalibrationData: () => true,
  onCalibrationStart: () => {},
  onSequentialEpochEnd: () => {},
  onCalibrationEnd: () => {},
  toRecipe: () => ({}),
};

function* samples(count: number, seqLen: number, vocab: number, seed: number): Generator<TokenBatch> {
  const next = mulberry32(seed);
  for (let i = 0; i < count; i++) {
    const inputIds = Int32Array.from({ length: seqLen }, () => 1 + Math.floor(next() * (vocab - 1)));
    yield { inputIds, batchSize: 1, seqLen };
  }
}

export async function main(argv = process.argv.slice(2)): Promise<PipelineBenchRow[]> {
  const counts = (argv[0] ?? '32,128,512').split(',').map(Number);
  const seqLen = Number(argv[1] ?? 64);
  const backend = await initBackend({ warn: () => {} });
  const dir = await mkdtemp(join(tmpdir(), 'layerstream-bench-pipeline-'));
  const rows: PipelineBenchRow[] = [];
  try {
    const layers = 4;
    const vocab = 512;
    await generateRandomModel(dir, { modelType: 'llama', hiddenSize: 128, intermediateSize: 256, numLayers: layers, numHeads: 4, vocabSize: vocab, seed: 1 });
    const model = await loadModel(dir);
    const weightBytes = tf.memory().numBytes;
    // one untimed warm-up run so the first row does not pay for kernel setup
    await lastValueFrom(layerSequentialPipeline({ model, modifiers: [NO_OP], dataset: samples(4, seqLen, vocab, 0) }));
    for (const count of counts) {
      let end: Extract<PipelineEvent, { type: 'calibration_end' }> | undefined;
      const started = performance.now();
      await lastValueFrom(
        layerSequentialPipeline({ model, modifiers: [NO_OP], dataset: samples(count, seqLen, vocab, count) }).pipe(
          tap((e) => e.type === 'calibration_end' && (end = e)),
        ),
      );
      const seconds = (performance.now() - started) / 1000;
      const tokens = count * seqLen;
      rows.push({
        samples: count,
        tokens,
        seconds,
        tokensPerSecond: tokens / seconds,
        layerTokensPerSecond: (tokens * (2 * layers - 1)) / seconds,
        weightBytes,
        peakDeviceBytes: end!.peakDeviceBytes,
        peakHostCacheBytes: end!.peakHostCacheBytes ?? 0,
      });
    }
    const kib = (b: number) => `${(b / 1024).toFixed(0)} KiB`;
    console.log(
      `layer-sequential pipeline, no-op modifier; backend ${backend.name}` +
        `${backend.acceleratedKernels.length ? ' (native accelerator)' : ''}; Llama hidden 128, 4 layers; ` +
        `${seqLen} tokens per sample, 1 sample per batch; load ${loadavg()[0].toFixed(2)}\n`,
    );
    console.log('| samples | tokens | seconds | tokens/s | layer-tok/s | peak device (weights) | peak host cache |');
    console.log('|---:|---:|---:|---:|---:|---:|---:|');
    for (const r of rows) {
      console.log(
        `| ${r.samples} | ${r.tokens} | ${r.seconds.toFixed(2)} | ${r.tokensPerSecond.toFixed(0)} | ` +
          `${r.layerTokensPerSecond.toFixed(0)} | ${kib(r.peakDeviceBytes)} (${kib(r.weightBytes)}) | ${kib(r.peakHostCacheBytes)} |`,
      );
    }
    (model as unknown as { dispose(): void }).dispose();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  return rows;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
