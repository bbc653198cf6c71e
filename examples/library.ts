/**
 * layerstream as a library: GPTQ-quantize a model with an Observable of progress events, then
 * measure the checkpoint's perplexity.
 *
 *   npx tsx examples/library.ts [MODEL_DIR] [CALIB.txt] [EVAL.txt]
 *
 * Defaults to the demo model (train it with `npx tsx examples/train/train.ts`).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { filter, tap } from 'rxjs';
import { loadTokenizer } from '../src/data/tokenizer.js';
import { loadModelForEval } from '../src/eval/load.js';
import { evaluatePerplexity } from '../src/eval/perplexity.js';
import { oneshot, type OneshotResult } from '../src/oneshot.js';

const [modelDir = 'examples/models/brown-llama', calib = 'examples/data/brown-calib.txt', evalFile = 'examples/data/brown-eval.txt'] =
  process.argv.slice(2);
const outputDir = path.join(await mkdtemp(path.join(tmpdir(), 'layerstream-')), 'gptq-w4a16');

// 1. Compress. Events are typed data: print the phases, keep the result.
const result = await new Promise<OneshotResult>((resolve, reject) => {
  oneshot({ model: modelDir, dataset: calib, scheme: 'W4A16', outputDir, numCalibrationSamples: 64, maxSeqLength: 256 })
    .pipe(
      tap((e) => {
        if (e.type === 'layer_done') console.log(`layer ${e.layer + 1}/${e.layers} done in ${e.seconds.toFixed(2)} s`);
        if (e.type === 'warning') console.warn(`warning: ${e.message}`);
      }),
      filter((e): e is OneshotResult => e.type === 'result'),
    )
    .subscribe({ next: resolve, error: reject });
});
const worst = [...result.modules].sort((a, b) => b.loss - a.loss)[0];
console.log(`${result.modules.length} modules in ${result.seconds.toFixed(1)} s on ${result.backend}; largest GPTQ loss ${worst?.name} ${worst?.loss.toPrecision(3)}`);

// 2. Evaluate the checkpoint, read back from disk (dequantized on load).
const model = await loadModelForEval(outputDir);
const tokenizer = await loadTokenizer(outputDir);
const { perplexity, tokens } = await evaluatePerplexity({ model, tokenizer, dataset: evalFile, maxSeqLength: 128, maxTokens: 8192 });
console.log(`perplexity ${perplexity.toFixed(3)} over ${tokens} tokens`);
model.releaseParameters();
await rm(path.dirname(outputDir), { recursive: true, force: true });
