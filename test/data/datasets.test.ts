import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collate } from '../../src/data/batching.js';
import { calibrationBatches, readSamples, tokenizedSamples, type DatasetSample } from '../../src/data/datasets.js';
import { loadTokenizer, type TextTokenizer } from '../../src/data/tokenizer.js';
import type { TokenBatch } from '../../src/data/types.js';

const FIX = path.join(import.meta.dirname, '../fixtures');
const tmp = mkdtempSync(path.join(tmpdir(), 'ls-data-'));
let tok: TextTokenizer;
beforeAll(async () => {
  tok = await loadTokenizer(path.join(FIX, 'tokenizer'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const p = path.join(tmp, name);
  writeFileSync(p, text);
  return p;
}
async function all<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}
const texts = (samples: DatasetSample[]) => samples.map((s) => (s.kind === 'text' ? s.text : s.kind));
const rows = (b: TokenBatch) =>
  Array.from({ length: b.batchSize }, (_, i) => [...b.inputIds.subarray(i * b.seqLen, (i + 1) * b.seqLen)]);

describe('readSamples', () => {
  it('reads one sample per non-empty line of a .txt file, with line numbers', async () => {
    const samples = await all(readSamples({ path: path.join(FIX, 'data/lines.txt') }));
    expect(texts(samples)).toEqual(['the cat sat on the mat', 'a dog ran in the park', 'the sun is hot']);
    expect(samples[1].source).toMatch(/lines\.txt:3$/);
  });

  it('reads text, messages and input_ids records from .jsonl', async () => {
    const samples = await all(readSamples({ path: path.join(FIX, 'data/records.jsonl') }));
    expect(samples.map((s) => s.kind)).toEqual(['text', 'messages', 'input_ids']);
  });

  it('honours textColumn and detects JSON lines without the extension', async () => {
    const p = file('prompts.data', '{"prompt": "hello there"}\n{"prompt": "general kenobi"}\n');
    expect(texts(await all(readSamples({ path: p, textColumn: 'prompt' })))).toEqual(['hello there', 'general kenobi']);
  });

  it('stops after numSamples without shuffling', async () => {
    const p = file('many.txt', Array.from({ length: 100 }, (_, i) => `line ${i}`).join('\n'));
    expect(texts(await all(readSamples({ path: p, numSamples: 3 })))).toEqual(['line 0', 'line 1', 'line 2']);
  });

  it('shuffles deterministically by seed, and a different seed changes the order', async () => {
    const p = file('many2.txt', Array.from({ length: 200 }, (_, i) => `line ${i}`).join('\n'));
    const a = texts(await all(readSamples({ path: p, numSamples: 20, shuffle: true, seed: 42 })));
    const b = texts(await all(readSamples({ path: p, numSamples: 20, shuffle: true, seed: 42 })));
    const c = texts(await all(readSamples({ path: p, numSamples: 20, shuffle: true, seed: 7 })));
    expect(a).toEqual(b);
    expect(a).not.toEqual(c);
    expect(new Set(a).size).toBe(20);
    // a random subset, not the first 20 lines
    expect(a.some((t) => Number(t.split(' ')[1]) >= 20)).toBe(true);
    // fewer lines than asked: all of them, in a shuffled order
    const everything = texts(await all(readSamples({ path: p, numSamples: 1000, shuffle: true, seed: 1 })));
    expect([...everything].sort()).toEqual(Array.from({ length: 200 }, (_, i) => `line ${i}`).sort());
    expect(everything.slice(0, 10)).not.toEqual(Array.from({ length: 10 }, (_, i) => `line ${i}`));
  });

  it('names the file and what was expected when it has no samples', async () => {
    await expect(all(readSamples({ path: file('empty.txt', '\n  \n') }))).rejects.toThrow(
      /dataset '.*empty\.txt' has no samples.*one text sample per non-empty line/,
    );
    await expect(all(readSamples({ path: file('empty.jsonl', ''), shuffle: true }))).rejects.toThrow(/no samples.*JSON object/);
    await expect(all(readSamples({ path: path.join(tmp, 'missing.txt') }))).rejects.toThrow(/'.*missing\.txt' does not exist/);
  });

  it('reports malformed JSON with file:line', async () => {
    const p = file('bad.jsonl', '{"text": "ok"}\n\n{"text": "oops"\n');
    await expect(all(readSamples({ path: p }))).rejects.toThrow(/bad\.jsonl:3: not valid JSON/);
  });

  it('names the keys found when a record has no text, messages or input_ids', async () => {
    const p = file('keys.jsonl', '{"prompt": "a", "answer": "b"}\n');
    await expect(all(readSamples({ path: p }))).rejects.toThrow(
      /keys\.jsonl:1: the record has none of 'text', 'messages', 'input_ids' \(keys found: 'prompt', 'answer'\).*--text-column/,
    );
  });
});

describe('calibrationBatches', () => {
  it('tokenizes text with BOS, chat without a second BOS, and passes input_ids through', async () => {
    const batches = await all(calibrationBatches({ path: path.join(FIX, 'data/records.jsonl'), tokenizer: tok, shuffle: false }));
    expect(batches).toHaveLength(3);
    expect(rows(batches[0])[0]).toEqual(tok.encode('the cat sat on the mat'));
    const chat = rows(batches[1])[0];
    expect(chat[0]).toBe(0);
    expect(chat[1]).toBe(4); // <|user|>, not a second <s>
    expect(rows(batches[2])[0]).toEqual([0, 7, 8, 9]);
  });

  it('renders chat records through the template, system turn included', async () => {
    const [batch] = await all(calibrationBatches({ path: path.join(FIX, 'data/chat.jsonl'), tokenizer: tok }));
    const text = '<s><|system|>\nbe brief</s>\n<|user|>\nhi</s>\n<|assistant|>\nhello</s>\n';
    expect(rows(batch)[0]).toEqual(tok.encode(text, { addSpecialTokens: false }));
    expect(tok.decode(rows(batch)[0])).toBe(text);
  });

  it('truncates to maxSeqLength and pads within a batch with an attention mask', async () => {
    const batches = await all(
      calibrationBatches({ path: path.join(FIX, 'data/lines.txt'), tokenizer: tok, shuffle: false, batchSize: 2, maxSeqLength: 8 }),
    );
    expect(batches.map((b) => b.batchSize)).toEqual([2, 1]);
    const [b0] = batches;
    const lens = ['the cat sat on the mat', 'a dog ran in the park'].map((t) => Math.min(8, tok.encode(t).length));
    expect(b0.seqLen).toBe(Math.max(...lens));
    expect(b0.attentionMask === undefined).toBe(lens[0] === lens[1]);
    expect(rows(b0)[0]).toEqual(tok.encode('the cat sat on the mat').slice(0, 8));
    const short = path.join(FIX, 'data/lines.txt');
    const [padded] = await all(calibrationBatches({ path: short, tokenizer: tok, shuffle: false, batchSize: 3, numSamples: 3 }));
    const n = tok.encode('the sun is hot').length;
    const mask = [...padded.attentionMask!.subarray(2 * padded.seqLen, 3 * padded.seqLen)];
    expect(mask).toEqual([...Array(n).fill(1), ...Array(padded.seqLen - n).fill(0)]);
    expect(rows(padded)[2].slice(n)).toEqual(Array(padded.seqLen - n).fill(tok.padTokenId));
  });

  it('defaults to 512 seeded-shuffled samples with batch size 1', async () => {
    const p = file('six.txt', 'a\nb\nc\nd\ne\nf\n');
    const a = (await all(calibrationBatches({ path: p, tokenizer: tok }))).map((b) => tok.decode([...b.inputIds], { skipSpecialTokens: true }));
    const b = (await all(calibrationBatches({ path: p, tokenizer: tok }))).map((b) => tok.decode([...b.inputIds], { skipSpecialTokens: true }));
    expect(a).toEqual(b);
    expect([...a].sort()).toEqual(['a', 'b', 'c', 'd', 'e', 'f']);
  });

  it('rejects token ids outside the vocabulary, naming file:line and index', async () => {
    const p = file('ids.jsonl', '{"input_ids": [1, 2]}\n{"input_ids": [3, 999]}\n');
    await expect(all(calibrationBatches({ path: p, tokenizer: tok, shuffle: false }))).rejects.toThrow(
      /ids\.jsonl:2: input_ids\[1\] = 999 is outside the vocabulary \[0, 270\)/,
    );
    await expect(all(calibrationBatches({ path: p, vocabSize: 3, shuffle: false }))).rejects.toThrow(/ids\.jsonl:2: input_ids\[0\] = 3 .*\[0, 3\)/);
  });

  it('needs a tokenizer for text, not for input_ids', async () => {
    await expect(all(calibrationBatches({ path: path.join(FIX, 'data/lines.txt') }))).rejects.toThrow(/no tokenizer was given/);
    const p = file('ids2.jsonl', '{"input_ids": [1, 2, 3]}\n');
    expect(rows((await all(calibrationBatches({ path: p })))[0])).toEqual([[1, 2, 3]]);
  });

  it('tokenizedSamples streams every sample in file order', async () => {
    const all3 = await all(tokenizedSamples({ path: path.join(FIX, 'data/lines.txt'), tokenizer: tok }));
    expect(all3).toEqual(['the cat sat on the mat', 'a dog ran in the park', 'the sun is hot'].map((t) => tok.encode(t)));
  });
});

describe('collate', () => {
  it('pads right by default and left on request', () => {
    const r = collate([[1, 5, 6], [1, 7]], { padTokenId: 9 });
    expect([...r.inputIds]).toEqual([1, 5, 6, 1, 7, 9]);
    expect([...r.attentionMask!]).toEqual([1, 1, 1, 1, 1, 0]);
    const l = collate([[1, 5, 6], [1, 7]], { padTokenId: 9, paddingSide: 'left' });
    expect([...l.inputIds]).toEqual([1, 5, 6, 9, 1, 7]);
    expect([...l.attentionMask!]).toEqual([1, 1, 1, 0, 1, 1]);
    expect(collate([[1, 2]], { padTokenId: 0 }).attentionMask).toBeUndefined();
  });
});
