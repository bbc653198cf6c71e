/**
 * The layerstream demo (`npm run demo`): quantize the small Brown-corpus Llama in
 * examples/models/brown-llama to 4-bit weights (W4A16, group size 128) twice, with
 * round-to-nearest and with GPTQ, write both as compressed-tensors checkpoints, load them back
 * from disk and compare perplexities on held-out Brown text.
 *
 *   npm run demo -- [--samples 256] [--seq-len 256] [--eval-window 128] [--eval-tokens 0] [--scheme W4A16] [--out out/demo] [--backend wasm]
 *
 * The model is trained by `npx tsx examples/train/train.ts` (a few minutes on 2 cores).
 */
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createProgressRenderer } from '../src/cli/progress.js';
import { formatBytes, formatSeconds } from '../src/cli/format.js';
import { loadTokenizer, type TextTokenizer } from '../src/data/tokenizer.js';
import { loadModelForEval } from '../src/eval/load.js';
import { evaluatePerplexity, type PerplexityResult } from '../src/eval/perplexity.js';
import { oneshotAsync, type OneshotOptions, type OneshotResult } from '../src/oneshot.js';
import { initBackend } from '../src/tensor/backend.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const MODEL = path.join(ROOT, 'examples/models/brown-llama');
const CALIB = path.join(ROOT, 'examples/data/brown-calib.txt');
const EVAL = path.join(ROOT, 'examples/data/brown-eval.txt');

/** Round-to-nearest, as an llm-compressor recipe (the same YAML works with `oneshot(recipe=...)`). */
const rtnRecipe = (scheme: string) => `
quant_stage:
  quant_modifiers:
    QuantizationModifier:
      targets: [Linear]
      scheme: ${scheme}
      ignore: [lm_head]
`;

interface DemoOptions {
  samples: number;
  seqLen: number;
  /** Eval window: the length the model was trained on. */
  evalWindow: number;
  /** 0: the whole eval file. */
  evalTokens: number;
  out: string;
  /** A preset scheme for both runs: W4A16 (default), W4A16_ASYM, W8A16, ... */
  scheme: string;
  backend?: string;
}

function parseArgs(argv: string[]): DemoOptions {
  const o: DemoOptions = { samples: 256, seqLen: 256, evalWindow: 128, evalTokens: 0, out: path.join(ROOT, 'out/demo'), scheme: 'W4A16' };
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]];
    if (value === undefined) throw new Error(`demo: option ${flag} needs a value.`);
    if (flag === '--samples') o.samples = integerOption(flag, value, 1);
    else if (flag === '--seq-len') o.seqLen = integerOption(flag, value, 1);
    else if (flag === '--eval-window') o.evalWindow = integerOption(flag, value, 2);
    else if (flag === '--eval-tokens') o.evalTokens = integerOption(flag, value, 0);
    else if (flag === '--out') o.out = path.resolve(value);
    else if (flag === '--scheme') o.scheme = value;
    else if (flag === '--backend') o.backend = value;
    else throw new Error(`demo: unknown option '${flag}'. Options: --samples --seq-len --eval-window --eval-tokens --scheme --out --backend`);
  }
  return o;
}

function integerOption(flag: string, value: string, min: number): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new Error(`demo: ${flag} expects an integer >= ${min}, got '${value}'.`);
  return n;
}

async function perplexityOf(dir: string, tokenizer: TextTokenizer, o: DemoOptions): Promise<PerplexityResult> {
  const model = await loadModelForEval(dir);
  try {
    return await evaluatePerplexity({
      model,
      tokenizer,
      dataset: EVAL,
      maxSeqLength: o.evalWindow,
      maxTokens: o.evalTokens || undefined,
    });
  } finally {
    model.releaseParameters();
  }
}

async function compress(label: string, options: OneshotOptions): Promise<OneshotResult> {
  console.log(`\n== ${label}`);
  const renderer = createProgressRenderer({ tty: Boolean(process.stderr.isTTY), stream: process.stderr, write: (t) => process.stderr.write(t) });
  try {
    return await oneshotAsync({ ...options, overwrite: true }, (e) => renderer.onEvent(e));
  } finally {
    renderer.stop();
  }
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  if (!existsSync(path.join(MODEL, 'config.json'))) {
    throw new Error(`demo: no model in ${MODEL}. Train it first: npx tsx examples/train/train.ts`);
  }
  const backend = await initBackend({ backend: o.backend });
  console.log(`backend ${backend.name}${backend.acceleratedKernels.length ? ` + native BLAS (${backend.acceleratedKernels.join(', ')})` : ''}`);
  const tokenizer = await loadTokenizer(MODEL);

  console.log(`\n== perplexity of the original model on ${path.relative(ROOT, EVAL)}`);
  const original = await perplexityOf(MODEL, tokenizer, o);
  console.log(`perplexity ${original.perplexity.toFixed(3)} (${original.tokens} tokens, ${formatSeconds(original.seconds)})`);

  const tag = o.scheme.toLowerCase();
  const rtnDir = path.join(o.out, `brown-llama-rtn-${tag}`);
  const rtn = await compress(`round-to-nearest ${o.scheme} (QuantizationModifier, no calibration data)`, {
    model: MODEL,
    recipe: rtnRecipe(o.scheme),
    outputDir: rtnDir,
  });
  const gptqDir = path.join(o.out, `brown-llama-gptq-${tag}`);
  const gptq = await compress(`GPTQ ${o.scheme} (${o.samples} calibration samples of up to ${o.seqLen} tokens)`, {
    model: MODEL,
    dataset: CALIB,
    scheme: o.scheme,
    numCalibrationSamples: o.samples,
    maxSeqLength: o.seqLen,
    outputDir: gptqDir,
  });

  console.log('\n== perplexity of the checkpoints, loaded back from disk');
  const rtnPpl = await perplexityOf(rtnDir, tokenizer, o);
  const gptqPpl = await perplexityOf(gptqDir, tokenizer, o);

  const rows = [
    ['model', 'perplexity', 'vs original', 'compress time', 'checkpoint'],
    ['original (bf16)', original.perplexity.toFixed(3), '', '', ''],
    [`RTN ${o.scheme}`, rtnPpl.perplexity.toFixed(3), pct(rtnPpl.perplexity, original.perplexity), formatSeconds(rtn.seconds), formatBytes(rtn.outputBytes)],
    [`GPTQ ${o.scheme}`, gptqPpl.perplexity.toFixed(3), pct(gptqPpl.perplexity, original.perplexity), formatSeconds(gptq.seconds), formatBytes(gptq.outputBytes)],
  ];
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  console.log('');
  for (const r of rows) console.log(r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  '));
  const where = path.relative(ROOT, o.out);
  console.log(`\n${original.tokens} eval tokens in windows of ${o.evalWindow}; checkpoints in ${where.startsWith('..') ? o.out : where}/`);
}

function pct(x: number, base: number): string {
  const d = (100 * (x - base)) / base;
  return `${d >= 0 ? '+' : ''}${d.toFixed(2)}%`;
}

main().catch((e: Error) => {
  console.error(e.message);
  process.exit(1);
});
