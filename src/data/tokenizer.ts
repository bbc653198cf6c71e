/**
 * Tokenizers from a Hugging Face model directory: `tokenizer.json` (run by
 * `@huggingface/tokenizers`) plus `tokenizer_config.json` (special tokens, chat template).
 *
 * Special tokens follow transformers: `encode(text)` adds them (through tokenizer.json's
 * post-processor, or `add_bos_token`/`add_eos_token` in tokenizer_config.json when there is no
 * post-processor); chat text rendered by {@link TextTokenizer.applyChatTemplate} already holds
 * them, so it is encoded with `addSpecialTokens: false`, as llm-compressor's examples do.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { Template } from '@huggingface/jinja';

/** One chat turn, as in a `messages` dataset column. */
export interface ChatMessage {
  role: string;
  content: string;
  [key: string]: unknown;
}

export interface EncodeOptions {
  /** Add the tokenizer's special tokens (BOS for Llama). Default true, as in transformers. */
  addSpecialTokens?: boolean;
}

export interface ChatTemplateOptions {
  /** Append the assistant prompt header. Default false (calibration text is complete dialogues). */
  addGenerationPrompt?: boolean;
}

/** A loaded tokenizer; see {@link loadTokenizer}. */
export interface TextTokenizer {
  /** The directory the tokenizer was read from. */
  readonly dir: string;
  /** Number of ids the tokenizer can produce (base vocabulary plus added tokens). */
  readonly vocabSize: number;
  readonly bosTokenId: number | null;
  readonly eosTokenId: number | null;
  readonly padTokenId: number | null;
  /** 'right' (the default) or 'left', from tokenizer_config.json's `padding_side`. */
  readonly paddingSide: 'left' | 'right';
  readonly hasChatTemplate: boolean;
  encode(text: string, options?: EncodeOptions): number[];
  decode(ids: readonly number[], options?: { skipSpecialTokens?: boolean }): string;
  /** Renders messages through the chat template; throws if the model has none. */
  applyChatTemplate(messages: readonly ChatMessage[], options?: ChatTemplateOptions): string;
}

type Json = Record<string, unknown>;

async function readJson(file: string, what: string, fix: string): Promise<Json> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new Error(`${what}: '${file}' does not exist. ${fix}`);
    throw new Error(`${what}: cannot read '${file}': ${(e as Error).message}`);
  }
  try {
    const v = JSON.parse(text) as unknown;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('the top level is not an object');
    return v as Json;
  } catch (e) {
    throw new Error(`${what}: '${file}' is not valid JSON (${(e as Error).message}). Re-download or re-save it.`);
  }
}

/** tokenizer_config.json stores special tokens as strings or as serialised AddedToken objects. */
function tokenContent(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as Json).content === 'string') return (v as Json).content as string;
  return null;
}

/** `chat_template` may be a string or a list of named templates; the 'default' one is used. */
function pickTemplate(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (Array.isArray(v)) {
    const named = v as { name?: string; template?: string }[];
    return (named.find((t) => t.name === 'default') ?? named[0])?.template;
  }
  return undefined;
}

/**
 * Loads `dir/tokenizer.json` and `dir/tokenizer_config.json` (the latter optional) and the chat
 * template from tokenizer_config.json's `chat_template` or `dir/chat_template.jinja`.
 *
 * @example
 * const tok = await loadTokenizer('models/brown-llama');
 * tok.encode('The jury said'); // [1, 464, ...] (BOS first)
 */
export async function loadTokenizer(dir: string): Promise<TextTokenizer> {
  const tokenizerJson = await readJson(
    path.join(dir, 'tokenizer.json'),
    'loadTokenizer',
    `A Hugging Face "fast" tokenizer file is needed; save one with tokenizer.save_pretrained('${dir}') ` +
      `or pass pre-tokenized data (a .jsonl with input_ids).`,
  );
  const configFile = path.join(dir, 'tokenizer_config.json');
  const config = await readJson(configFile, 'loadTokenizer', '').catch((e: Error) => {
    if (/does not exist/.test(e.message)) return {} as Json;
    throw e;
  });
  let template = pickTemplate(config.chat_template);
  if (template === undefined) {
    template = await fsp.readFile(path.join(dir, 'chat_template.jinja'), 'utf8').catch(() => undefined);
  }
  let tokenizer: Tokenizer;
  try {
    tokenizer = new Tokenizer(tokenizerJson, config);
  } catch (e) {
    throw new Error(
      `loadTokenizer: '${path.join(dir, 'tokenizer.json')}' could not be loaded by @huggingface/tokenizers: ` +
        `${(e as Error).message}.`,
    );
  }
  return new HfTextTokenizer(dir, tokenizer, tokenizerJson, config, template);
}

class HfTextTokenizer implements TextTokenizer {
  readonly vocabSize: number;
  readonly bosTokenId: number | null;
  readonly eosTokenId: number | null;
  readonly padTokenId: number | null;
  readonly paddingSide: 'left' | 'right';
  private readonly bosToken: string | null;
  private readonly eosToken: string | null;
  private readonly specialTokens: Record<string, string | null>;
  /** Only used without a post-processor: transformers' slow-tokenizer flags. */
  private readonly addBos: boolean;
  private readonly addEos: boolean;
  private compiled?: Template;

  constructor(
    readonly dir: string,
    private readonly tokenizer: Tokenizer,
    tokenizerJson: Json,
    config: Json,
    private readonly template: string | undefined,
  ) {
    const id = (t: string | null) => (t === null ? null : (tokenizer.token_to_id(t) ?? null));
    this.bosToken = tokenContent(config.bos_token);
    this.eosToken = tokenContent(config.eos_token);
    this.specialTokens = {
      bos_token: this.bosToken,
      eos_token: this.eosToken,
      pad_token: tokenContent(config.pad_token),
      unk_token: tokenContent(config.unk_token),
    };
    this.bosTokenId = id(this.bosToken);
    this.eosTokenId = id(this.eosToken);
    this.padTokenId = id(this.specialTokens.pad_token);
    this.paddingSide = config.padding_side === 'left' ? 'left' : 'right';
    this.vocabSize = tokenizer.get_vocab(true).size;
    const hasPostProcessor = tokenizerJson.post_processor != null;
    this.addBos = !hasPostProcessor && config.add_bos_token === true && this.bosTokenId !== null;
    this.addEos = !hasPostProcessor && config.add_eos_token === true && this.eosTokenId !== null;
  }

  get hasChatTemplate(): boolean {
    return this.template !== undefined;
  }

  encode(text: string, options: EncodeOptions = {}): number[] {
    const add = options.addSpecialTokens ?? true;
    const ids = this.tokenizer.encode(text, { add_special_tokens: add }).ids;
    if (add && this.addBos) ids.unshift(this.bosTokenId!);
    if (add && this.addEos) ids.push(this.eosTokenId!);
    return ids;
  }

  decode(ids: readonly number[], options: { skipSpecialTokens?: boolean } = {}): string {
    if (ids.length === 0) return '';
    return this.tokenizer.decode([...ids], { skip_special_tokens: options.skipSpecialTokens ?? false });
  }

  applyChatTemplate(messages: readonly ChatMessage[], options: ChatTemplateOptions = {}): string {
    if (this.template === undefined) {
      throw new Error(
        `applyChatTemplate: the tokenizer in '${this.dir}' has no chat template (no 'chat_template' in ` +
          `tokenizer_config.json and no chat_template.jinja), but the dataset has chat 'messages'. ` +
          `Use a chat model's tokenizer, add a chat_template, or give plain 'text' records instead.`,
      );
    }
    this.compiled ??= new Template(this.template);
    try {
      // @huggingface/jinja defines raise_exception itself (it throws an Error with the message)
      return this.compiled.render({
        messages,
        add_generation_prompt: options.addGenerationPrompt ?? false,
        ...this.specialTokens,
      });
    } catch (e) {
      throw new Error(`chat template of '${this.dir}' refused the messages: ${(e as Error).message}`);
    }
  }
}
