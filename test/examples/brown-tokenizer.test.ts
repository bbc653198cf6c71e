import { describe, expect, it } from 'vitest';
import { Tokenizer } from '@huggingface/tokenizers';
import { Template } from '@huggingface/jinja';
import { detokenize, parseBrownFile, splitBrown, splitTagged, type BrownDocument } from '../../examples/train/corpus.js';
import { bytesToUnicode, pretokenize, SPECIAL_TOKENS, tokenizerFiles, trainBpe } from '../../examples/train/tokenizer.js';

const TEXT = [
  'The jury said the election was conducted well.',
  'The jury further said that the city deserves praise.',
  'Hughes said Monday, "It is the apparent intention of the party."',
  'Mitchell was for using it; Jones was against it (and said so).',
  'Numbers like 1961 and 3.5 percent appear in the text.',
];

/** Reference BPE: recounts every pair after each merge; same tie-break (merged string first). */
function naiveMerges(lines: string[], n: number): string[] {
  let words = lines.flatMap(pretokenize).map((w) => Array.from(w));
  const merges: string[] = [];
  while (merges.length < n) {
    const counts = new Map<string, number>();
    for (const w of words) for (let i = 0; i + 1 < w.length; i++) {
      const k = `${w[i]} ${w[i + 1]}`;
      counts.set(k, (counts.get(k) ?? 0) + 1);
    }
    const [best] = [...counts].sort(([ka, a], [kb, b]) => b - a || (ka.replace(' ', '') < kb.replace(' ', '') ? -1 : 1))[0];
    merges.push(best);
    const [l, r] = best.split(' ');
    words = words.map((w) => {
      const out: string[] = [];
      for (let i = 0; i < w.length; i++) {
        if (w[i] === l && w[i + 1] === r) out.push(l + w[++i]);
        else out.push(w[i]);
      }
      return out;
    });
  }
  return merges;
}

describe('Brown corpus preparation', () => {
  it('splits word/tag on the last slash', () => {
    expect(splitTagged('1/2/cd')).toEqual({ word: '1/2', tag: 'cd' });
    expect(splitTagged("Atlanta's/np$")).toEqual({ word: "Atlanta's", tag: 'np$' });
  });

  it('detokenizes punctuation and quotes', () => {
    expect(detokenize(['``', 'Yes', "''", ',', 'he', 'said', '.'])).toBe('"Yes," he said.');
    expect(detokenize(['a', '(', 'b', ')', ';', 'c', '?'])).toBe('a (b); c?');
    expect(detokenize(['the', "'", 'Met', "'", 'again'])).toBe("the 'Met' again");
    expect(detokenize(['pay', '$', '5', 'now', '--', 'or', 'not', '!'])).toBe('pay $5 now -- or not!');
  });

  it('parses paragraphs and keeps headlines on their own line', () => {
    const file =
      '\n\n\tThe/at jury/nn said/vbd ./.\nIt/pps agreed/vbd ./.\n\n\n' +
      'Merger/nn-hl proposed/vbn-hl\nHowever/wrb ,/, it/pps did/dod ./.\n\n';
    expect(parseBrownFile(file)).toEqual(['The jury said. It agreed.', 'Merger proposed', 'However, it did.']);
  });

  it('splits documents deterministically and disjointly', () => {
    const docs: BrownDocument[] = Array.from({ length: 500 }, (_, i) => ({ id: `d${i}`, category: 'x', paragraphs: [] }));
    const s = splitBrown(docs);
    expect([s.train.length, s.calib.length, s.eval.length]).toEqual([466, 17, 17]);
    const ids = new Set([...s.train, ...s.calib, ...s.eval].map((d) => d.id));
    expect(ids.size).toBe(500);
    expect(splitBrown(docs).eval.map((d) => d.id)).toEqual(s.eval.map((d) => d.id));
  });
});

describe('byte-level BPE training', () => {
  it('maps all 256 bytes to distinct printable characters', () => {
    const table = bytesToUnicode();
    expect(new Set(table).size).toBe(256);
    expect(table[32]).toBe('Ġ');
    expect(pretokenize('Hi there')).toEqual(['Hi', 'Ġthere']);
  });

  it('trains a deterministic vocabulary of the requested size with consistent merges', () => {
    const a = trainBpe(TEXT, { vocabSize: 300, minFrequency: 1 });
    const b = trainBpe(TEXT, { vocabSize: 300, minFrequency: 1 });
    expect(a).toEqual(b);
    expect(Object.keys(a.vocab)).toHaveLength(300);
    SPECIAL_TOKENS.forEach((t, i) => expect(a.vocab[t]).toBe(i));
    a.merges.forEach((m, i) => {
      const [l, r] = m.split(' ');
      expect(a.vocab[l]).toBeLessThan(SPECIAL_TOKENS.length + 256 + i);
      expect(a.vocab[r]).toBeLessThan(SPECIAL_TOKENS.length + 256 + i);
      expect(a.vocab[l + r]).toBe(SPECIAL_TOKENS.length + 256 + i);
    });
    expect(a.merges).toEqual(naiveMerges(TEXT, a.merges.length));
  });

  it('rejects a vocabulary too small for the bytes', () => {
    expect(() => trainBpe(TEXT, { vocabSize: 100 })).toThrow(/vocabSize must be an integer in \[260, 65536\]/);
  });

  it('writes files that @huggingface/tokenizers loads, with <s> prepended and lossless decoding', () => {
    const files = tokenizerFiles(trainBpe(TEXT, { vocabSize: 320, minFrequency: 1 }), 512);
    const tok = new Tokenizer(files.tokenizer, files.tokenizerConfig);
    for (const text of [...TEXT, 'café ☕ — unseen bytes\tand tabs']) {
      const { ids } = tok.encode(text);
      expect(ids[0]).toBe(1);
      expect(ids.slice(1)).not.toContain(0);
      expect(tok.decode(ids, { skip_special_tokens: true })).toBe(text);
    }
    expect(tok.encode('The jury').tokens).toEqual(['<s>', 'The', 'Ġjury']);
  });

  it('has a chat template that renders bos and role: content lines', () => {
    const files = tokenizerFiles(trainBpe(TEXT, { vocabSize: 270 }), 512);
    const rendered = new Template(files.tokenizerConfig.chat_template as string).render({
      messages: [{ role: 'user', content: 'Hello' }],
      bos_token: '<s>',
      add_generation_prompt: true,
    });
    expect(rendered).toBe('<s>user: Hello\nassistant: ');
  });
});
