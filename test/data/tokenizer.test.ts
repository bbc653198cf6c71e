import { mkdirSync, mkdtempSync, writeFileSync, copyFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadTokenizer } from '../../src/data/tokenizer.js';

const FIXTURE = path.join(import.meta.dirname, '../fixtures/tokenizer');
const tmp = mkdtempSync(path.join(tmpdir(), 'ls-tok-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('loadTokenizer', () => {
  it('encodes with BOS by default and round-trips through decode', async () => {
    const tok = await loadTokenizer(FIXTURE);
    expect(tok.bosTokenId).toBe(0);
    expect(tok.eosTokenId).toBe(1);
    expect(tok.padTokenId).toBe(2);
    expect(tok.vocabSize).toBe(6 + 256 + 8);
    const ids = tok.encode('the cat sat on the mat');
    expect(ids[0]).toBe(0);
    // 'Ġthe' is a merge of the fixture (id 264), so the second 'the' is one token
    expect(ids).toContain(264);
    expect(tok.encode('the cat', { addSpecialTokens: false })[0]).not.toBe(0);
    expect(tok.decode(ids, { skipSpecialTokens: true })).toBe('the cat sat on the mat');
    expect(tok.decode([])).toBe('');
  });

  it('renders the chat template with bos/eos tokens and the generation prompt', async () => {
    const tok = await loadTokenizer(FIXTURE);
    expect(tok.hasChatTemplate).toBe(true);
    const messages = [
      { role: 'user', content: 'hi' },
      { role: 'assistant', content: 'hello' },
    ];
    expect(tok.applyChatTemplate(messages)).toBe('<s><|user|>\nhi</s>\n<|assistant|>\nhello</s>\n');
    expect(tok.applyChatTemplate(messages.slice(0, 1), { addGenerationPrompt: true })).toBe(
      '<s><|user|>\nhi</s>\n<|assistant|>\n',
    );
    // special tokens in rendered text map to their ids
    const ids = tok.encode(tok.applyChatTemplate(messages.slice(0, 1)), { addSpecialTokens: false });
    expect(ids.slice(0, 2)).toEqual([0, 4]);
  });

  it('surfaces raise_exception from the template', async () => {
    const tok = await loadTokenizer(FIXTURE);
    expect(() => tok.applyChatTemplate([{ role: 'robot', content: 'x' }])).toThrow(/refused the messages: .*robot/);
  });

  it('says clearly when tokenizer.json is missing', async () => {
    await expect(loadTokenizer(path.join(tmp, 'nowhere'))).rejects.toThrow(/tokenizer\.json' does not exist/);
  });

  it('says clearly when chat data meets a tokenizer without a template, and reads chat_template.jinja', async () => {
    const dir = path.join(tmp, 'plain');
    mkdirSync(dir);
    copyFileSync(path.join(FIXTURE, 'tokenizer.json'), path.join(dir, 'tokenizer.json'));
    writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ bos_token: { content: '<s>' }, eos_token: '</s>' }));
    const tok = await loadTokenizer(dir);
    expect(tok.bosTokenId).toBe(0);
    expect(tok.padTokenId).toBeNull();
    expect(() => tok.applyChatTemplate([{ role: 'user', content: 'x' }])).toThrow(/has no chat template.*messages/);
    writeFileSync(path.join(dir, 'chat_template.jinja'), '{% for m in messages %}[{{ m.content }}]{% endfor %}');
    const withJinja = await loadTokenizer(dir);
    expect(withJinja.applyChatTemplate([{ role: 'user', content: 'x' }])).toBe('[x]');
  });
});
