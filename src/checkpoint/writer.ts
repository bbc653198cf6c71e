/**
 * Saves a quantized model as a compressed-tensors checkpoint that vLLM serves (reference §5):
 * safetensors shards with packed int weights, `config.json` with the `quantization_config`
 * block, `recipe.yaml`, and the tokenizer files of the source model.
 *
 * Parameters are streamed one at a time: a parameter that is not in memory is loaded through
 * `model.weights`, written, and released again, so saving never needs the whole model resident.
 * Quantized weights must be in memory (they hold the modifier's dequantized values) or offloaded
 * to the host by `model.weights.offload` (they are uploaded, written and offloaded again).
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import type { CausalLM, TorchDtype } from '../models/types.js';
import { encodeFloat } from '../models/safetensors.js';
import type { QuantizationConfig, QuantizedModule } from '../quant/args.js';
import { matchesAny } from '../nn/match.js';
import type { Module } from '../nn/module.js';
import { throwIfAborted, writeDirAtomically } from './atomic.js';
import { compressLinear, type FloatDtype } from './compress.js';
import {
  buildQuantizationConfigBlock,
  groupFormat,
  mergeQuantizationConfigs,
  sortKeysDeep,
  toSortedJson,
  type IntCompressionFormat,
} from './format.js';
import { ShardedSafetensorsWriter } from './shards.js';

/** Tokenizer and generation files copied from `sourceDir` when present. */
export const COPIED_SOURCE_FILES = [
  'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'generation_config.json',
  'chat_template.jinja', 'chat_template.json', 'vocab.json', 'merges.txt', 'vocab.txt', 'tokenizer.model',
  'added_tokens.json',
];

/** Hugging Face's default shard limit (5 GB), so small models give one `model.safetensors`. */
export const DEFAULT_MAX_SHARD_BYTES = 5_000_000_000;

export interface WriteCompressedCheckpointOptions {
  model: CausalLM;
  /** What the modifiers recorded, by module name (`ModifierContext.quantized`). */
  quantized: Map<string, QuantizedModule>;
  /**
   * The applied config, or one per quantizing modifier (merged: identical schemes share a group).
   * Its `ignore` is recomputed from the model as compressed-tensors does: every module of a
   * quantized class (Linear) that was not quantized, so vLLM loads exactly those dense.
   */
  quantizationConfig: QuantizationConfig | QuantizationConfig[];
  outputDir: string;
  /** The source model directory, for tokenizer and generation files. */
  sourceDir?: string;
  /** Written as recipe.yaml. */
  recipeYaml?: string;
  /** Float dtype of unquantized tensors and scales; default the model's `torch_dtype`. */
  dtype?: TorchDtype;
  /** Largest data size of one shard; default 5 GB. */
  maxShardBytes?: number;
  /** Replace a non-empty `outputDir`. Default false (refuse). */
  overwrite?: boolean;
  /** Aborting stops the write and removes everything written. */
  signal?: AbortSignal;
}

export interface WriteCompressedCheckpointResult {
  /** Absolute paths of the files written, in writing order. */
  files: string[];
  /** Total size of those files. */
  bytes: number;
}

const SAFETENSORS_DTYPE: Record<TorchDtype, FloatDtype> = { float32: 'F32', float16: 'F16', bfloat16: 'BF16' };

/**
 * Writes the checkpoint atomically: into `<outputDir>.tmp-<random>`, renamed into place at the end.
 *
 * @example
 * await writeCompressedCheckpoint({
 *   model, quantized: ctx.quantized, quantizationConfig: gptq.quantizationConfig()!,
 *   outputDir: './out', sourceDir: './TinyLlama', recipeYaml,
 * });
 */
export async function writeCompressedCheckpoint(options: WriteCompressedCheckpointOptions): Promise<WriteCompressedCheckpointResult> {
  const { model, quantized, signal } = options;
  const torchDtype = options.dtype ?? model.config.torch_dtype;
  const dtype = SAFETENSORS_DTYPE[torchDtype];
  if (!dtype) throw new Error(`checkpoint: dtype '${torchDtype}' is not one of ${Object.keys(SAFETENSORS_DTYPE).join(', ')}`);
  const formats = planModules(options);
  const block = buildQuantizationConfigBlock(mergeQuantizationConfigs(options.quantizationConfig).config, ignoredModules(model, quantized));
  const config: Record<string, unknown> = { ...model.config.raw, quantization_config: block, torch_dtype: torchDtype };
  if ('dtype' in model.config.raw) config.dtype = torchDtype;

  const names = await writeDirAtomically(options.outputDir, { overwrite: options.overwrite, signal }, async (tmp) => {
    const shards = new ShardedSafetensorsWriter(tmp, options.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES);
    let written: string[];
    try {
      await writeTensors(model, quantized, formats, dtype, shards, signal);
      written = (await shards.finish()).files;
    } catch (e) {
      await shards.abort();
      throw e;
    }
    await fsp.writeFile(path.join(tmp, 'config.json'), toSortedJson(config));
    written.push('config.json');
    if (options.recipeYaml !== undefined) {
      await fsp.writeFile(path.join(tmp, 'recipe.yaml'), options.recipeYaml);
      written.push('recipe.yaml');
    }
    if (options.sourceDir) written.push(...(await copySourceFiles(options.sourceDir, tmp)));
    return written;
  });
  const outDir = path.resolve(options.outputDir);
  const files = names.map((n) => path.join(outDir, n));
  let bytes = 0;
  for (const f of files) bytes += (await fsp.stat(f)).size;
  return { files, bytes };
}

/** Checks every QuantizedModule against the model and the config; returns each one's format. */
function planModules(options: WriteCompressedCheckpointOptions): Map<string, IntCompressionFormat> {
  const { model, quantized } = options;
  const merged = mergeQuantizationConfigs(options.quantizationConfig);
  const formats = new Map<string, IntCompressionFormat>();
  for (const [name, qm] of quantized) {
    const where = `checkpoint: quantized module '${name}'`;
    let module: Module;
    try {
      module = model.getSubmodule(name);
    } catch {
      throw new Error(`${where} is not a module of the model; record quantized modules under their dotted names`);
    }
    if (name === 'lm_head' && model.config.tie_word_embeddings) {
      throw new Error(`${where}: lm_head is tied to the embeddings (tie_word_embeddings: true) and cannot be quantized on its own; add 'lm_head' to ignore`);
    }
    if (!module.parameterNames().includes('weight')) throw new Error(`${where} has no 'weight' parameter`);
    const offloaded = !module.hasParameter('weight') && model.weights.isOffloaded?.(`${name}.weight`) === true;
    if (!module.hasParameter('weight') && !offloaded) {
      throw new Error(
        `${where}: its dequantized weight is neither in memory nor offloaded (released before saving?); keep quantized ` +
          `weights loaded until the checkpoint is written, or offload them with model.weights.offload`,
      );
    }
    // an offloaded weight has the shape it was loaded with; its rank is checked when it is written
    if (!offloaded && module.param('weight').shape.length !== 2) {
      throw new Error(`${where}: weight has shape [${module.param('weight').shape.join(', ')}], expected [out_features, in_features]`);
    }
    const sameWeights = (merged.renamed.get(qm.group) ?? []).filter(
      (g) => JSON.stringify(sortKeysDeep(merged.config.config_groups[g].weights)) === JSON.stringify(sortKeysDeep(qm.args)),
    );
    // two modifiers may both call their group 'group_0' with equal weight args (W4A16 and W4A8):
    // the group whose targets match the module decides
    const group = sameWeights.find((g) => matchesAny(name, module, merged.config.config_groups[g].targets)) ?? sameWeights[0];
    if (!group) {
      throw new Error(
        `${where} belongs to group '${qm.group}', but no config group of that name has the same weight args ` +
          `(groups: ${Object.keys(merged.config.config_groups).join(', ') || 'none'}); pass the quantizationConfig of the modifier that quantized it`,
      );
    }
    formats.set(name, groupFormat(group, merged.config.config_groups[group]));
  }
  return formats;
}

/** compressed-tensors' ignore list: modules of a quantized class (e.g. Linear) left unquantized. */
function ignoredModules(model: CausalLM, quantized: Map<string, QuantizedModule>): string[] {
  const classes = new Set([...quantized.keys()].map((n) => model.getSubmodule(n).className));
  const ignore: string[] = [];
  for (const [name, m] of model.namedModules()) {
    if (!quantized.has(name) && m.classNames().some((c) => classes.has(c))) ignore.push(name);
  }
  return ignore;
}

async function writeTensors(
  model: CausalLM,
  quantized: Map<string, QuantizedModule>,
  formats: Map<string, IntCompressionFormat>,
  dtype: FloatDtype,
  shards: ShardedSafetensorsWriter,
  signal: AbortSignal | undefined,
): Promise<void> {
  for (const [fullName, tensor, module, pname] of model.namedParameters()) {
    throwIfAborted(signal, 'writing the checkpoint');
    if (fullName === 'lm_head.weight' && model.config.tie_word_embeddings) continue;
    const moduleName = fullName.slice(0, Math.max(0, fullName.length - pname.length - 1));
    const qm = pname === 'weight' ? quantized.get(moduleName) : undefined;
    if (qm) {
      // an offloaded weight comes back to the device for this module only, so one tensor is resident
      const offloaded = tensor === undefined;
      if (offloaded) await model.weights.load(fullName);
      try {
        const t = module.param(pname);
        if (t.shape.length !== 2) {
          throw new Error(`checkpoint: quantized module '${moduleName}': weight has shape [${t.shape.join(', ')}], expected [out_features, in_features]`);
        }
        const [rows, cols] = t.shape;
        const weight = Float32Array.from(await t.data());
        const parts = compressLinear({ prefix: moduleName, weight, rows, cols, module: qm, format: formats.get(moduleName)!, dtype });
        for (const [name, part] of parts) await shards.add(name, part);
      } finally {
        if (offloaded) await (model.weights.offload ? model.weights.offload(fullName) : model.weights.release(fullName));
      }
      continue;
    }
    const loadedHere = tensor === undefined;
    if (loadedHere) await model.weights.load(fullName);
    try {
      const t = module.param(pname);
      const values = await t.data();
      const f32 = values instanceof Float32Array ? values : Float32Array.from(values as ArrayLike<number>);
      await shards.add(fullName, { dtype, shape: [...t.shape], data: encodeFloat(f32, dtype) });
    } finally {
      if (loadedHere) model.weights.release(fullName);
    }
  }
}

async function copySourceFiles(sourceDir: string, dest: string): Promise<string[]> {
  const copied: string[] = [];
  for (const name of COPIED_SOURCE_FILES) {
    try {
      await fsp.copyFile(path.join(sourceDir, name), path.join(dest, name));
      copied.push(name);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  }
  return copied;
}
