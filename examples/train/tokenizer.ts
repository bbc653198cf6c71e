/**
 * A byte-level BPE tokenizer trainer (GPT-2 style), written out as Hugging Face files:
 * `tokenizer.json` (BPE model, ByteLevel pre-tokenizer and decoder, a TemplateProcessing
 * post-processor that prepends `<s>`), `tokenizer_config.json` and `special_tokens_map.json`.
 *
 * Training follows the usual recipe: pre-tokenize with the GPT-2 regex (the one ByteLevel uses
 * at encode time, so training and encoding split text the same way), map bytes to printable
 * characters, count word types, then repeatedly merge the most frequent adjacent pair.
 * Ties go to the pair whose merged string sorts first, so a run is deterministic.
 *
 * Run `npx tsx examples/train/tokenizer.ts [--vocab 4096] [--out DIR]` to train on the Brown
 * training split and write the files (train.ts does the same before training the model).
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { paragraphsOf, readBrown, REPO_ROOT, splitBrown } from './corpus.js';

/** The ByteLevel pre-tokenizer's split pattern (GPT-2), as @huggingface/tokenizers uses it. */
export const BYTE_LEVEL_PATTERN = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

/** Special tokens, in id order: ids 0..3. */
export const SPECIAL_TOKENS = ['<unk>', '<s>', '</s>', '<pad>'] as const;

/** GPT-2's byte → printable character table (`bytes_to_unicode`). */
export function bytesToUnicode(): string[] {
  const table: string[] = new Array(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    table[b] = String.fromCodePoint(printable ? b : 256 + extra++);
  }
  return table;
}

const BYTE_CHARS = bytesToUnicode();
const utf8 = new TextEncoder();

/** Splits text as the ByteLevel pre-tokenizer does, each piece in byte-level characters. */
export function pretokenize(text: string): string[] {
  return (text.match(BYTE_LEVEL_PATTERN) ?? []).map((piece) =>
    Array.from(utf8.encode(piece), (b) => BYTE_CHARS[b]).join(''),
  );
}

export interface BpeModel {
  /** Token → id: special tokens first, then the 256 byte characters, then one per merge. */
  vocab: Record<string, number>;
  /** Merges in rank order, `"left right"` (byte-level tokens never contain a space). */
  merges: string[];
}

export interface TrainBpeOptions {
  /** Total vocabulary size, special tokens included. */
  vocabSize: number;
  /** Stop early when the best pair occurs fewer times than this. Default 2. */
  minFrequency?: number;
}

/** Trains byte-level BPE on lines of text. */
export function trainBpe(lines: Iterable<string>, options: TrainBpeOptions): BpeModel {
  const { vocabSize, minFrequency = 2 } = options;
  const base = SPECIAL_TOKENS.length + 256;
  if (!Number.isInteger(vocabSize) || vocabSize < base || vocabSize > 65536) {
    throw new Error(`trainBpe: vocabSize must be an integer in [${base}, 65536] (specials + 256 bytes), got ${vocabSize}`);
  }
  const counts = new Map<string, number>();
  for (const line of lines) for (const w of pretokenize(line)) counts.set(w, (counts.get(w) ?? 0) + 1);

  // Symbols are numbered by their future vocabulary id.
  const symbols: string[] = [...SPECIAL_TOKENS, ...BYTE_CHARS];
  const byteId = new Map(BYTE_CHARS.map((c, i) => [c, SPECIAL_TOKENS.length + i]));
  const words: number[][] = [];
  const freqs: number[] = [];
  for (const [w, f] of counts) {
    words.push(Array.from(w, (c) => byteId.get(c)!));
    freqs.push(f);
  }

  const key = (a: number, b: number) => a * 65536 + b;
  const pairCount = new Map<number, number>();
  const pairWords = new Map<number, Set<number>>();
  const addPairs = (wi: number, sign: 1 | -1) => {
    const w = words[wi];
    for (let i = 0; i + 1 < w.length; i++) {
      const k = key(w[i], w[i + 1]);
      const c = (pairCount.get(k) ?? 0) + sign * freqs[wi];
      if (c === 0) pairCount.delete(k);
      else pairCount.set(k, c);
      if (sign > 0) {
        let s = pairWords.get(k);
        if (!s) pairWords.set(k, (s = new Set()));
        s.add(wi);
      }
    }
  };
  words.forEach((_, wi) => addPairs(wi, 1));

  const merges: string[] = [];
  while (symbols.length < vocabSize) {
    let best = -1;
    let bestCount = 0;
    let bestText = '';
    for (const [k, c] of pairCount) {
      if (c < bestCount) continue;
      const text = symbols[Math.floor(k / 65536)] + symbols[k % 65536];
      if (c > bestCount || text < bestText) [best, bestCount, bestText] = [k, c, text];
    }
    if (best < 0 || bestCount < minFrequency) break;
    const a = Math.floor(best / 65536);
    const b = best % 65536;
    const id = symbols.length;
    symbols.push(bestText);
    merges.push(`${symbols[a]} ${symbols[b]}`);
    // pairWords may list words that no longer hold the pair; merging finds nothing there.
    for (const wi of pairWords.get(best) ?? []) {
      const w = words[wi];
      if (!w.some((s, i) => s === a && w[i + 1] === b)) continue;
      addPairs(wi, -1);
      const merged: number[] = [];
      for (let i = 0; i < w.length; i++) {
        if (w[i] === a && w[i + 1] === b) {
          merged.push(id);
          i++;
        } else merged.push(w[i]);
      }
      words[wi] = merged;
      addPairs(wi, 1);
    }
    pairWords.delete(best);
  }
  return { vocab: Object.fromEntries(symbols.map((s, i) => [s, i])), merges };
}

/** The three Hugging Face tokenizer files, as JSON-ready objects. */
export interface TokenizerFiles {
  tokenizer: Record<string, unknown>;
  tokenizerConfig: Record<string, unknown>;
  specialTokensMap: Record<string, unknown>;
}

/**
 * A minimal chat template: `<s>` then `role: content` lines, and `assistant:` as the generation
 * prompt. The demo model is not chat-tuned; the template exists so chat-style calibration data
 * can be rendered.
 */
export const CHAT_TEMPLATE =
  "{{ bos_token }}{% for message in messages %}{{ message['role'] + ': ' + message['content'] + '\\n' }}" +
  "{% endfor %}{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}";

/** Builds tokenizer.json, tokenizer_config.json and special_tokens_map.json for a trained model. */
export function tokenizerFiles(model: BpeModel, modelMaxLength: number): TokenizerFiles {
  const special = (content: string) => ({
    id: model.vocab[content],
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  });
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  const tokenizer = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: SPECIAL_TOKENS.map(special),
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [
        { SpecialToken: { id: '<s>', type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: '<s>', type_id: 1 } },
        { Sequence: { id: 'B', type_id: 1 } },
      ],
      special_tokens: { '<s>': { id: '<s>', ids: [model.vocab['<s>']], tokens: ['<s>'] } },
    },
    decoder: byteLevel,
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: '<unk>',
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab: model.vocab,
      merges: model.merges,
    },
  };
  const names = { bos_token: '<s>', eos_token: '</s>', unk_token: '<unk>', pad_token: '<pad>' };
  const tokenizerConfig = {
    add_bos_token: true,
    add_eos_token: false,
    ...names,
    added_tokens_decoder: Object.fromEntries(
      SPECIAL_TOKENS.map((t) => {
        const { id, ...rest } = special(t);
        return [String(id), rest];
      }),
    ),
    chat_template: CHAT_TEMPLATE,
    clean_up_tokenization_spaces: false,
    model_max_length: modelMaxLength,
    tokenizer_class: 'PreTrainedTokenizerFast',
  };
  return { tokenizer, tokenizerConfig, specialTokensMap: names };
}

/** Writes the tokenizer files into `dir` (created if missing). */
export async function writeTokenizerFiles(dir: string, files: TokenizerFiles): Promise<void> {
  await fsp.mkdir(dir, { recursive: true });
  const write = (name: string, obj: unknown) => fsp.writeFile(path.join(dir, name), JSON.stringify(obj, null, 2) + '\n');
  await write('tokenizer.json', files.tokenizer);
  await write('tokenizer_config.json', files.tokenizerConfig);
  await write('special_tokens_map.json', files.specialTokensMap);
}

/** Trains the demo tokenizer on the Brown training split. */
export async function trainBrownTokenizer(vocabSize: number, modelMaxLength: number): Promise<{ model: BpeModel; files: TokenizerFiles }> {
  const { train } = splitBrown(await readBrown());
  const model = trainBpe(paragraphsOf(train), { vocabSize });
  return { model, files: tokenizerFiles(model, modelMaxLength) };
}

function argValue(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const vocabSize = Number(argValue(args, '--vocab') ?? 4096);
  const out = path.resolve(argValue(args, '--out') ?? path.join(REPO_ROOT, 'examples', 'models', 'brown-llama'));
  const t0 = performance.now();
  const { model, files } = await trainBrownTokenizer(vocabSize, 512);
  await writeTokenizerFiles(out, files);
  const s = ((performance.now() - t0) / 1000).toFixed(1);
  console.log(`trained ${Object.keys(model.vocab).length} tokens (${model.merges.length} merges) in ${s} s → ${out}`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await main();
}
