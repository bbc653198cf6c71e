/** `layerstream eval`: perplexity of a model directory (dense or compressed) on a dataset file. */
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import type { Command } from 'commander';
import { loadTokenizer, type TextTokenizer } from '../data/tokenizer.js';
import { loadModelForEval } from '../eval/load.js';
import { evaluatePerplexity } from '../eval/perplexity.js';
import { initBackend } from '../tensor/backend.js';
import { positiveInt } from './errors.js';
import { formatSeconds } from './format.js';
import type { CliIo } from './io.js';

export interface EvalCommandOptions {
  model: string;
  dataset: string;
  tokenizer?: string;
  maxSeqLength: number;
  stride?: number;
  maxTokens?: number;
  textColumn: string;
  backend?: string;
  json?: boolean;
  verbose?: boolean;
}

/** The tokenizer of `dir`, or undefined when it has no tokenizer.json (pre-tokenized data needs none). */
export async function optionalTokenizer(dir: string): Promise<TextTokenizer | undefined> {
  return existsSync(path.join(dir, 'tokenizer.json')) ? loadTokenizer(dir) : undefined;
}

/** `layerstream eval`: loads the model, measures perplexity on the dataset, prints it (or JSON). */
export async function runEval(options: EvalCommandOptions, io: CliIo): Promise<void> {
  const backend = await initBackend({ backend: options.backend, warn: (m) => io.stderr(`${m}\n`) });
  const model = await loadModelForEval(options.model);
  const tokenizer = await optionalTokenizer(options.tokenizer ?? options.model);
  let lastReport = performance.now();
  let progressShown = false;
  const result = await evaluatePerplexity({
    model,
    tokenizer,
    dataset: options.dataset,
    maxSeqLength: options.maxSeqLength,
    stride: options.stride,
    maxTokens: options.maxTokens,
    textColumn: options.textColumn,
    signal: io.signal,
    onProgress: ({ windows, tokens }) => {
      // a terminal gets one line rewritten in place; a pipe or file a line every 2 s
      const every = io.isTTY ? 200 : 2000;
      if (performance.now() - lastReport < every) return;
      lastReport = performance.now();
      io.stderr(`${io.isTTY ? '\r' : ''}eval: ${windows} windows, ${tokens} tokens scored${io.isTTY ? '' : '\n'}`);
      progressShown = true;
    },
  }).finally(() => {
    if (io.isTTY && progressShown) io.stderr('\n');
    model.releaseParameters();
  });
  if (options.json) {
    io.stdout(
      `${JSON.stringify({
        model: options.model,
        dataset: options.dataset,
        perplexity: result.perplexity,
        nll: result.nll,
        tokens: result.tokens,
        windows: result.windows,
        seconds: result.seconds,
        maxSeqLength: Math.min(options.maxSeqLength, model.config.max_position_embeddings),
        stride: options.stride ?? null,
        backend: backend.name,
      })}\n`,
    );
  } else {
    io.stdout(
      `perplexity ${result.perplexity.toFixed(3)} (nll ${result.nll.toFixed(4)} nats/token over ${result.tokens} tokens, ` +
        `${result.windows} windows, ${formatSeconds(result.seconds)} on ${backend.name})\n`,
    );
  }
}

/** Adds the `eval` command to `program`. */
export function registerEvalCommand(program: Command, io: CliIo): void {
  program
    .command('eval')
    .description('perplexity of a model (dense or compressed-tensors) on a .txt or .jsonl dataset')
    .requiredOption('--model <dir>', 'Hugging Face model directory (config.json + safetensors)')
    .requiredOption('--dataset <file>', 'evaluation data: .txt (one sample per line) or .jsonl (text / messages / input_ids)')
    .option('--tokenizer <dir>', 'directory with tokenizer.json (default: the model directory)')
    .option('--max-seq-length <n>', 'window length in tokens', positiveInt, 2048)
    .option('--stride <n>', 'distance between window starts (default: the window length, non-overlapping)', positiveInt)
    .option('--max-tokens <n>', 'stop after scoring about this many tokens', positiveInt)
    .option('--text-column <name>', 'JSON lines: the field holding the text', 'text')
    .option('--backend <name>', 'tensorflow, wasm or cpu (default: the best available)')
    .option('--json', 'print exactly one JSON object on stdout')
    .option('--verbose', 'print stack traces on errors')
    .action((options: EvalCommandOptions) => runEval(options, io));
}
