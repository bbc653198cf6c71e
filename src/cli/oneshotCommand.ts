/** `layerstream oneshot`: calibrate and compress a model, write a compressed-tensors checkpoint. */
import type { Command } from 'commander';
import type { OneshotOptions, OneshotResult } from '../oneshot.js';
import { UsageError, nonNegativeInt, positiveInt } from './errors.js';
import { formatBytes, formatModuleTable, formatSeconds } from './format.js';
import type { CliIo } from './io.js';
import { createProgressRenderer } from './progress.js';

export interface OneshotCommandOptions {
  model: string;
  dataset?: string;
  output: string;
  recipe?: string;
  scheme?: string;
  numCalibrationSamples: number;
  maxSeqLength: number;
  batchSize: number;
  shuffleCalibrationSamples: boolean;
  pipeline?: string;
  sequentialTargets?: string[];
  textColumn: string;
  tokenizer?: string;
  backend?: string;
  seed: number;
  overwrite?: boolean;
  json?: boolean;
  verbose?: boolean;
}

/** The --json document: one object, stable field names. */
export function resultJson(result: OneshotResult): Record<string, unknown> {
  return {
    backend: result.backend,
    pipeline: result.pipeline,
    seconds: result.seconds,
    peakDeviceBytes: result.peakDeviceBytes,
    outputDir: result.outputDir,
    outputBytes: result.outputBytes,
    modules: result.modules.map((m) => ({ name: m.name, modifier: m.modifier, samples: m.samples, loss: m.loss, seconds: m.seconds })),
  };
}

/** `layerstream oneshot`: runs {@link oneshot} with progress on stderr and a summary (or JSON) on stdout. */
export async function runOneshot(options: OneshotCommandOptions, io: CliIo): Promise<void> {
  if (options.recipe !== undefined && options.scheme !== undefined) {
    throw new UsageError('give either --recipe FILE or --scheme NAME, not both.');
  }
  if (options.recipe === undefined && options.scheme === undefined) {
    throw new UsageError('say how to compress: --scheme W4A16 (GPTQ on every Linear but lm_head) or --recipe FILE.');
  }
  const { oneshot } = await import('../oneshot.js');
  const request: OneshotOptions = {
    model: options.model,
    dataset: options.dataset,
    outputDir: options.output,
    overwrite: options.overwrite,
    recipe: options.recipe,
    scheme: options.scheme,
    numCalibrationSamples: options.numCalibrationSamples,
    maxSeqLength: options.maxSeqLength,
    batchSize: options.batchSize,
    shuffleCalibrationSamples: options.shuffleCalibrationSamples,
    pipeline: options.pipeline,
    sequentialTargets: options.sequentialTargets,
    textColumn: options.textColumn,
    tokenizer: options.tokenizer,
    backend: options.backend,
    seed: options.seed,
    signal: io.signal,
  };
  const renderer = createProgressRenderer({
    tty: io.isTTY,
    stream: io.progressStream,
    write: io.stderr,
    expectedBatches: Math.ceil(options.numCalibrationSamples / options.batchSize),
  });
  let result: OneshotResult;
  try {
    result = await new Promise<OneshotResult>((resolve, reject) => {
      oneshot(request).subscribe({
        next: (e) => (e.type === 'result' ? resolve(e) : renderer.onEvent(e)),
        error: reject,
      });
    });
  } finally {
    renderer.stop();
  }
  if (options.json) {
    io.stdout(`${JSON.stringify(resultJson(result))}\n`);
    return;
  }
  if (result.modules.length > 0) io.stdout(formatModuleTable(result.modules));
  io.stdout(
    `done in ${formatSeconds(result.seconds)} on ${result.backend} (${result.pipeline} pipeline), ` +
      `peak device memory ${formatBytes(result.peakDeviceBytes)}` +
      (result.outputDir ? `; checkpoint ${result.outputDir} (${formatBytes(result.outputBytes)})\n` : '\n'),
  );
}

/** Adds the `oneshot` command to `program`. */
export function registerOneshotCommand(program: Command, io: CliIo): void {
  program
    .command('oneshot')
    .description('calibrate and compress a model (GPTQ / round-to-nearest), writing a compressed-tensors checkpoint')
    .requiredOption('--model <dir>', 'Hugging Face model directory (config.json + safetensors + tokenizer.json)')
    .requiredOption('--output <dir>', 'where the compressed checkpoint is written (must not exist or be empty)')
    .option('--dataset <file>', 'calibration data: .txt (one sample per line) or .jsonl (text / messages / input_ids)')
    .option('--recipe <file>', 'llm-compressor recipe YAML')
    .option('--scheme <name>', 'shortcut for GPTQModifier(targets: [Linear], scheme, ignore: [lm_head]), e.g. W4A16')
    .option('--num-calibration-samples <n>', 'calibration samples', positiveInt, 512)
    .option('--max-seq-length <n>', 'samples are truncated to this many tokens', positiveInt, 2048)
    .option('--batch-size <n>', 'samples per calibration batch (padded)', positiveInt, 1)
    .option('--no-shuffle-calibration-samples', 'take the first samples of the file instead of a seeded random subset')
    .option('--pipeline <name>', 'layer_sequential, basic or datafree (default: inferred from the recipe)')
    .option('--sequential-targets <targets...>', 'modules calibrated one at a time (default: the decoder layer class)')
    .option('--text-column <name>', 'JSON lines: the field holding the text', 'text')
    .option('--tokenizer <dir>', 'directory with tokenizer.json (default: the model directory)')
    .option('--backend <name>', 'tensorflow, wasm or cpu (default: the best available)')
    .option('--seed <n>', 'seed of the calibration sample shuffle', nonNegativeInt, 42)
    .option('--overwrite', 'replace a non-empty --output directory')
    .option('--json', 'print exactly one JSON object on stdout (progress stays on stderr)')
    .option('--verbose', 'print stack traces on errors')
    .action((options: OneshotCommandOptions) => runOneshot(options, io));
}
