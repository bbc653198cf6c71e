/**
 * Calibration and evaluation data from local files, read as a stream (one line at a time through
 * node:readline; a file is never read whole).
 *
 * Formats, chosen by extension (`.txt`; `.jsonl`/`.ndjson`) or else by the first non-empty line
 * (`{` means JSON lines):
 * - text: one sample per non-empty line;
 * - JSON lines, per record: `input_ids` (pre-tokenized, used as is), else `messages` (chat turns,
 *   rendered with the tokenizer's chat template), else the text column (`text` by default).
 *
 * Sampling with `shuffle` uses reservoir sampling (Algorithm R) with a seeded generator, then a
 * seeded shuffle of the reservoir: one pass over the file and memory for `numSamples` lines only;
 * the same seed gives the same samples in the same order. Only the chosen JSON lines are parsed,
 * so a malformed line that is not chosen goes unreported.
 */
import { createReadStream, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { collate } from './batching.js';
import { Reservoir, seededRandom, shuffleInPlace } from './random.js';
import type { ChatMessage, TextTokenizer } from './tokenizer.js';
import type { TokenBatch } from './types.js';

export type DatasetFormat = 'text' | 'jsonl';

/** One record of a dataset file; `source` is `file:line` for error messages. */
export type DatasetSample =
  | { kind: 'text'; text: string; source: string }
  | { kind: 'messages'; messages: ChatMessage[]; source: string }
  | { kind: 'input_ids'; inputIds: number[]; source: string };

export interface ReadSamplesOptions {
  path: string;
  /** Default: from the extension, else from the first non-empty line. */
  format?: DatasetFormat;
  /** JSON lines: the field holding plain text. Default 'text' (llm-compressor's `text_column`). */
  textColumn?: string;
  /** At most this many samples. Default: all. */
  numSamples?: number;
  /** Pick a seeded random subset in random order (see the module doc). Default false. */
  shuffle?: boolean;
  seed?: number;
}

interface Line {
  text: string;
  lineNo: number;
}

async function* readLines(file: string): AsyncGenerator<Line> {
  const stream = createReadStream(file, { encoding: 'utf8' });
  const rl = readline.createInterface({ input: stream, crlfDelay: Infinity });
  let lineNo = 0;
  try {
    for await (const text of rl) {
      lineNo++;
      if (text.trim() !== '') yield { text, lineNo };
    }
  } finally {
    rl.close();
    stream.destroy();
  }
}

/** Throws a clear error unless `file` is an existing regular file (call early, before heavy work). */
export async function checkDatasetFile(file: string): Promise<void> {
  const stat = await fsp.stat(file).catch(() => undefined);
  if (!stat) throw new Error(`dataset '${file}' does not exist. Pass a .txt or .jsonl file (--dataset FILE).`);
  if (!stat.isFile()) throw new Error(`dataset '${file}' is not a file. Pass a .txt or .jsonl file (--dataset FILE).`);
}

/** The format of a dataset file: by extension, else by the first non-empty line. */
export async function detectFormat(file: string): Promise<DatasetFormat> {
  const ext = path.extname(file).toLowerCase();
  if (ext === '.txt') return 'text';
  if (ext === '.jsonl' || ext === '.ndjson') return 'jsonl';
  for await (const line of readLines(file)) return line.text.trimStart().startsWith('{') ? 'jsonl' : 'text';
  return 'text';
}

function describeExpected(format: DatasetFormat, textColumn: string): string {
  return format === 'text'
    ? 'one text sample per non-empty line'
    : `one JSON object per line with '${textColumn}', 'messages' or 'input_ids'`;
}

/** Parses one JSON line into a sample, with errors that name `file:line` and the fix. */
export function parseRecord(line: string, source: string, textColumn = 'text'): DatasetSample {
  let record: unknown;
  try {
    record = JSON.parse(line);
  } catch (e) {
    throw new Error(
      `${source}: not valid JSON (${(e as Error).message}). Each line of a .jsonl file must hold one ` +
        `JSON object, e.g. {"${textColumn}": "..."}.`,
    );
  }
  if (typeof record !== 'object' || record === null || Array.isArray(record)) {
    throw new Error(`${source}: expected a JSON object per line, got ${Array.isArray(record) ? 'an array' : typeof record}.`);
  }
  const r = record as Record<string, unknown>;
  if ('input_ids' in r) {
    const ids = r.input_ids;
    if (!Array.isArray(ids) || !ids.every((v) => Number.isInteger(v))) {
      throw new Error(`${source}: 'input_ids' must be an array of integer token ids.`);
    }
    return { kind: 'input_ids', inputIds: ids as number[], source };
  }
  if ('messages' in r) {
    const m = r.messages;
    const ok = Array.isArray(m) && m.every((t) => t && typeof t === 'object' && typeof t.role === 'string' && typeof t.content === 'string');
    if (!ok) throw new Error(`${source}: 'messages' must be an array of {"role": string, "content": string} objects.`);
    return { kind: 'messages', messages: m as ChatMessage[], source };
  }
  if (textColumn in r) {
    if (typeof r[textColumn] !== 'string') {
      throw new Error(`${source}: '${textColumn}' must be a string, got ${Array.isArray(r[textColumn]) ? 'an array' : typeof r[textColumn]}.`);
    }
    return { kind: 'text', text: r[textColumn] as string, source };
  }
  const keys = Object.keys(r).map((k) => `'${k}'`).join(', ') || 'none';
  throw new Error(
    `${source}: the record has none of '${textColumn}', 'messages', 'input_ids' (keys found: ${keys}). ` +
      `If the text is in another field, name it with --text-column (textColumn).`,
  );
}

/**
 * Streams the samples of a dataset file, in file order or as a seeded random subset.
 * Throws if the file holds no sample.
 */
export async function* readSamples(options: ReadSamplesOptions): AsyncGenerator<DatasetSample> {
  const file = options.path;
  await checkDatasetFile(file);
  const format = options.format ?? (await detectFormat(file));
  const textColumn = options.textColumn ?? 'text';
  const limit = options.numSamples ?? Infinity;
  if (!(limit > 0)) throw new Error(`readSamples: numSamples must be a positive integer, got ${limit}.`);
  const toSample = (line: Line): DatasetSample => {
    const source = `${file}:${line.lineNo}`;
    return format === 'text' ? { kind: 'text', text: line.text, source } : parseRecord(line.text, source, textColumn);
  };
  const noSamples = () =>
    new Error(`dataset '${file}' has no samples: it is empty or blank, expected ${describeExpected(format, textColumn)}.`);

  if (options.shuffle) {
    const random = seededRandom(options.seed ?? 42);
    const reservoir = new Reservoir<Line>(Number.isFinite(limit) ? limit : Number.MAX_SAFE_INTEGER, random);
    for await (const line of readLines(file)) reservoir.offer(line);
    if (reservoir.items.length === 0) throw noSamples();
    for (const line of shuffleInPlace(reservoir.items, random)) yield toSample(line);
    return;
  }
  let count = 0;
  for await (const line of readLines(file)) {
    yield toSample(line);
    if (++count >= limit) return;
  }
  if (count === 0) throw noSamples();
}

export interface TokenizeSampleOptions {
  tokenizer?: TextTokenizer;
  /** Ids must lie in [0, vocabSize); default the tokenizer's size (pass the model's to be strict). */
  vocabSize?: number;
}

/**
 * Token ids of one sample: plain text with the tokenizer's special tokens (as transformers'
 * default), chat text with `addSpecialTokens: false` (the template writes BOS itself),
 * pre-tokenized ids checked against the vocabulary.
 */
export function tokenizeSample(sample: DatasetSample, options: TokenizeSampleOptions): number[] {
  const { tokenizer } = options;
  if (sample.kind === 'input_ids') {
    const vocab = options.vocabSize ?? tokenizer?.vocabSize;
    if (vocab !== undefined) {
      const bad = sample.inputIds.findIndex((id) => id < 0 || id >= vocab);
      if (bad >= 0) {
        throw new Error(
          `${sample.source}: input_ids[${bad}] = ${sample.inputIds[bad]} is outside the vocabulary [0, ${vocab}). ` +
            `The data was tokenized for another model; re-tokenize it with this model's tokenizer.`,
        );
      }
    }
    return sample.inputIds;
  }
  if (!tokenizer) {
    throw new Error(
      `${sample.source}: the sample is ${sample.kind === 'text' ? 'text' : 'chat messages'} but no tokenizer was given. ` +
        `Pass a tokenizer (the model directory needs tokenizer.json) or pre-tokenized input_ids.`,
    );
  }
  const ids =
    sample.kind === 'text'
      ? tokenizer.encode(sample.text, { addSpecialTokens: true })
      : tokenizer.encode(tokenizer.applyChatTemplate(sample.messages), { addSpecialTokens: false });
  if (options.vocabSize !== undefined) {
    const bad = ids.findIndex((id) => id >= options.vocabSize!);
    if (bad >= 0) {
      throw new Error(
        `${sample.source}: the tokenizer produced id ${ids[bad]}, outside the model's vocabulary [0, ${options.vocabSize}). ` +
          `The tokenizer in '${tokenizer.dir}' does not belong to this model.`,
      );
    }
  }
  return ids;
}

export interface CalibrationBatchesOptions extends ReadSamplesOptions, TokenizeSampleOptions {
  /** Default 512, as llm-compressor's `num_calibration_samples`. */
  numSamples?: number;
  /** Samples longer than this are truncated. Default 2048. */
  maxSeqLength?: number;
  /** Default true, as llm-compressor's `shuffle_calibration_samples`. */
  shuffle?: boolean;
  /** Default 42. */
  seed?: number;
  /** Samples per batch, padded to the longest. Default 1 (llm-compressor's default). */
  batchSize?: number;
}

/**
 * Tokenized, truncated, padded calibration batches from a dataset file. Samples that tokenize to
 * nothing are skipped. Lazy: nothing is read until the first batch is pulled.
 *
 * @example
 * const tokenizer = await loadTokenizer('models/brown-llama');
 * for await (const batch of calibrationBatches({ path: 'calib.txt', tokenizer, numSamples: 64, maxSeqLength: 256 })) {
 *   console.log(batch.batchSize, batch.seqLen);
 * }
 */
export async function* calibrationBatches(options: CalibrationBatchesOptions): AsyncGenerator<TokenBatch> {
  const maxSeqLength = options.maxSeqLength ?? 2048;
  const batchSize = options.batchSize ?? 1;
  if (!Number.isInteger(maxSeqLength) || maxSeqLength < 1) {
    throw new Error(`calibrationBatches: maxSeqLength must be a positive integer, got ${maxSeqLength}.`);
  }
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new Error(`calibrationBatches: batchSize must be a positive integer, got ${batchSize}.`);
  const tok = options.tokenizer;
  const padTokenId = tok?.padTokenId ?? tok?.eosTokenId ?? 0;
  const paddingSide = tok?.paddingSide ?? 'right';
  let pending: number[][] = [];
  let produced = 0;
  for await (const sample of readSamples({ ...options, numSamples: options.numSamples ?? 512, shuffle: options.shuffle ?? true, seed: options.seed ?? 42 })) {
    const ids = tokenizeSample(sample, options);
    if (ids.length === 0) continue;
    pending.push(ids.slice(0, maxSeqLength));
    if (pending.length === batchSize) {
      yield collate(pending, { padTokenId, paddingSide });
      produced++;
      pending = [];
    }
  }
  if (pending.length > 0) {
    yield collate(pending, { padTokenId, paddingSide });
    produced++;
  }
  if (produced === 0) throw new Error(`dataset '${options.path}' has no samples with tokens: every sample tokenized to an empty sequence.`);
}

/**
 * Every sample of a file, tokenized as in {@link calibrationBatches} but in file order and not
 * truncated: the token stream perplexity evaluation concatenates.
 */
export async function* tokenizedSamples(
  options: Omit<ReadSamplesOptions, 'shuffle' | 'seed'> & TokenizeSampleOptions,
): AsyncGenerator<number[]> {
  for await (const sample of readSamples({ ...options, shuffle: false })) yield tokenizeSample(sample, options);
}
