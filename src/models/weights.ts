/**
 * Where a model's parameters come from, and when they are on the device.
 *
 * - {@link SafetensorsSource}: a {@link TensorSource} over `model.safetensors` or a sharded set
 *   described by `model.safetensors.index.json` (`weight_map`). F32, F16 and BF16 are read as float32.
 * - {@link MemorySource}: the same over float32 arrays held in memory (tests, generated models).
 * - {@link ModelWeights}: a {@link WeightStore} that checks every key and shape against the set the
 *   config implies, then loads parameters by module-name prefix, releases the unmodified ones and
 *   offloads the modified ones to host memory.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import type { Module } from '../nn/module.js';
import { deviceBudget, liveDeviceBytes } from '../tensor/memory.js';
import { SafetensorsFile } from './safetensors.js';
import type { TensorSource, WeightStore } from './types.js';

const FLOAT_DTYPES = new Set(['F32', 'F16', 'BF16', 'F64']);

/** A {@link TensorSource} over one safetensors file or a sharded set with an index. */
export class SafetensorsSource implements TensorSource {
  private constructor(private readonly files: Map<string, SafetensorsFile>) {}

  /**
   * Opens `model.safetensors` in `dir`, else `model.safetensors.index.json` and every shard it
   * names; `dir` may also be a single `.safetensors` file. Headers are validated on open.
   */
  static async open(dir: string): Promise<SafetensorsSource> {
    if (dir.endsWith('.safetensors')) return SafetensorsSource.fromFiles([dir]);
    const single = path.join(dir, 'model.safetensors');
    const index = path.join(dir, 'model.safetensors.index.json');
    if (await exists(single)) return SafetensorsSource.fromFiles([single]);
    if (await exists(index)) return SafetensorsSource.fromIndex(index);
    throw new Error(
      `loadModel: no model.safetensors or model.safetensors.index.json in '${dir}'. ` +
        `layerstream reads safetensors only; convert a .bin checkpoint with transformers' save_pretrained.`,
    );
  }

  private static async fromFiles(files: string[], expectedKeys?: Map<string, string>): Promise<SafetensorsSource> {
    const map = new Map<string, SafetensorsFile>();
    for (const file of files) {
      const st = await SafetensorsFile.open(file);
      for (const key of st.keys()) {
        const owner = expectedKeys?.get(key);
        if (expectedKeys && owner !== file) {
          throw new Error(
            `loadModel: tensor '${key}' is in '${file}' but the index maps it to ` +
              `${owner ? `'${owner}'` : 'no file'}. Re-save the checkpoint so the index and shards agree.`,
          );
        }
        map.set(key, st);
      }
    }
    if (expectedKeys) {
      for (const [key, file] of expectedKeys) {
        if (!map.has(key)) {
          throw new Error(`loadModel: the index maps tensor '${key}' to '${file}', which does not contain it.`);
        }
      }
    }
    return new SafetensorsSource(map);
  }

  private static async fromIndex(indexFile: string): Promise<SafetensorsSource> {
    let index: { weight_map?: Record<string, string> };
    try {
      index = JSON.parse(await fsp.readFile(indexFile, 'utf8')) as typeof index;
    } catch (e) {
      throw new Error(`loadModel: cannot read '${indexFile}': ${(e as Error).message}`);
    }
    if (!index.weight_map || typeof index.weight_map !== 'object') {
      throw new Error(`loadModel: '${indexFile}' has no 'weight_map' object (tensor name → shard file).`);
    }
    const dir = path.dirname(indexFile);
    const owners = new Map<string, string>();
    for (const [key, shard] of Object.entries(index.weight_map)) owners.set(key, path.join(dir, shard));
    const shards = [...new Set(owners.values())];
    for (const shard of shards) {
      if (!(await exists(shard))) {
        throw new Error(`loadModel: shard '${shard}' named in '${indexFile}' does not exist (incomplete download?).`);
      }
    }
    return SafetensorsSource.fromFiles(shards, owners);
  }

  private file(name: string): SafetensorsFile {
    const f = this.files.get(name);
    if (!f) throw new Error(`loadModel: no tensor '${name}' in the checkpoint`);
    return f;
  }
  keys(): string[] {
    return [...this.files.keys()];
  }
  has(name: string): boolean {
    return this.files.has(name);
  }
  shape(name: string): number[] {
    return this.file(name).info(name).shape;
  }
  dtype(name: string): string {
    return this.file(name).info(name).dtype;
  }
  async readFloat32(name: string): Promise<Float32Array> {
    const f = this.file(name);
    const dtype = f.info(name).dtype;
    if (!FLOAT_DTYPES.has(dtype)) {
      throw new Error(`loadModel: tensor '${name}' in ${f.file} is ${dtype}; expected a float dtype (F32, F16, BF16).`);
    }
    return (await f.readFloat32(name)).data;
  }
  describe(name: string): string {
    return this.files.get(name)?.file ?? '(no file)';
  }
}

/** A {@link TensorSource} over float32 arrays in memory; `label` stands for the file in messages. */
export class MemorySource implements TensorSource {
  constructor(
    private readonly tensors: Map<string, { shape: number[]; data: Float32Array }>,
    private readonly label = '(memory)',
  ) {}
  keys(): string[] {
    return [...this.tensors.keys()];
  }
  has(name: string): boolean {
    return this.tensors.has(name);
  }
  shape(name: string): number[] {
    return this.get(name).shape;
  }
  dtype(): string {
    return 'F32';
  }
  async readFloat32(name: string): Promise<Float32Array> {
    return this.get(name).data;
  }
  describe(): string {
    return this.label;
  }
  private get(name: string) {
    const t = this.tensors.get(name);
    if (!t) throw new Error(`MemorySource: no tensor '${name}'`);
    return t;
  }
}

async function exists(file: string): Promise<boolean> {
  return fsp.stat(file).then(
    () => true,
    () => false,
  );
}

/** True when `name` is `prefix` itself or lies below it (`model.layers.1` does not cover `model.layers.10`). */
export function underPrefix(name: string, prefix: string): boolean {
  return prefix === '' || name === prefix || name.startsWith(`${prefix}.`);
}

/** Checkpoint keys that are not parameters and are skipped (transformers' non-persistent buffers). */
const IGNORED_KEYS = [/(^|\.)rotary_emb\.inv_freq$/];

/**
 * Checks that `source` holds exactly the tensors `expected` names, with the same shapes.
 * `optional` keys may be present or absent (a tied `lm_head.weight` some exporters still write);
 * they are never loaded. Throws on the first problem, naming the tensor and file.
 */
export function checkTensors(
  source: TensorSource,
  expected: Map<string, number[]>,
  configFile = 'config.json',
  optional: ReadonlySet<string> = new Set(),
): void {
  for (const [name, shape] of expected) {
    if (!source.has(name)) {
      const sample = source.keys().slice(0, 3).join(', ');
      throw new Error(
        `loadModel: tensor '${name}' is missing from the checkpoint (${configFile} implies it; the checkpoint ` +
          `has ${source.keys().length} tensors, e.g. ${sample}). Is this the right model directory?`,
      );
    }
    const got = source.shape(name);
    if (got.length !== shape.length || got.some((d, i) => d !== shape[i])) {
      throw new Error(
        `loadModel: tensor '${name}' in ${source.describe(name)} has shape [${got.join(', ')}], ` +
          `${configFile} implies [${shape.join(', ')}]`,
      );
    }
  }
  for (const name of source.keys()) {
    if (expected.has(name) || optional.has(name) || IGNORED_KEYS.some((re) => re.test(name))) continue;
    throw new Error(
      `loadModel: unexpected tensor '${name}' in ${source.describe(name)}: ${configFile} implies no such ` +
        `parameter. The config and weights disagree (wrong num_hidden_layers, a bias flag, or another architecture).`,
    );
  }
}

/** Tensor reads in flight at once during `load`: enough to overlap disk and upload, few enough to bound host memory. */
const LOAD_CONCURRENCY = 4;

interface Slot {
  module: Module;
  param: string;
  shape: number[];
}

/**
 * Loads a model's parameters from a {@link TensorSource} by module-name prefix.
 *
 * Ownership: a loaded tensor is owned by its module (Module.setParameter). The store remembers which
 * tensor it put in each slot, so `release` disposes only parameters still holding that tensor; a
 * parameter replaced after loading (e.g. by GPTQ) is the caller's result and is kept.
 *
 * `offload` moves such a result to host memory instead: its values become an override that later
 * loads upload in place of the source, so a layer's compressed weights need not stay on the device
 * until the checkpoint is written.
 */
export class ModelWeights implements WeightStore {
  private readonly slots = new Map<string, Slot>();
  /** The tensor read from the source into each slot. */
  private readonly loaded = new Map<string, tf.Tensor>();
  /** Host copies of offloaded modified parameters; they win over the source. */
  private readonly overrides = new Map<string, Float32Array>();
  /** The tensor uploaded from an override into each slot (its values are still in `overrides`). */
  private readonly restored = new Map<string, tf.Tensor>();
  private readonly inFlight = new Map<string, Promise<void>>();

  /**
   * @param root the model; every parameter slot below it must be in `expected`, and vice versa.
   * @param expected tensor name → shape, as the config implies.
   * @param optional names allowed in the source that are not loaded.
   */
  constructor(
    root: Module,
    readonly source: TensorSource,
    expected: Map<string, number[]>,
    configFile = 'config.json',
    optional: ReadonlySet<string> = new Set(),
  ) {
    checkTensors(source, expected, configFile, optional);
    for (const [name, , module, param] of root.namedParameters()) {
      const shape = expected.get(name);
      if (!shape) throw new Error(`ModelWeights: model parameter '${name}' has no expected shape (architecture bug)`);
      this.slots.set(name, { module, param, shape });
    }
    for (const name of expected.keys()) {
      if (!this.slots.has(name)) throw new Error(`ModelWeights: expected tensor '${name}' has no parameter slot (architecture bug)`);
    }
  }

  /** Parameter names under `prefix`, in model order. */
  names(prefix = ''): string[] {
    return [...this.slots.keys()].filter((n) => underPrefix(n, prefix));
  }

  /**
   * Loads the parameters under `prefix`, a few reads at a time so host memory stays bounded.
   * Refuses up front when they would not fit the device budget (the wasm heap corrupts past 4 GiB).
   */
  async load(prefix = ''): Promise<void> {
    const names = this.names(prefix);
    if (names.length === 0) {
      throw new Error(`WeightStore.load: no parameters under '${prefix}' (expected a module name such as 'model.layers.0')`);
    }
    const pending = names.filter((n) => !this.slots.get(n)!.module.hasParameter(this.slots.get(n)!.param));
    const bytes = pending.reduce((a, n) => a + 4 * this.slots.get(n)!.shape.reduce((x, d) => x * d, 1), 0);
    const live = liveDeviceBytes();
    if (live + bytes > deviceBudget()) {
      const gib = (b: number) => `${(b / 2 ** 30).toFixed(2)} GiB`;
      throw new Error(
        `WeightStore.load('${prefix}'): the parameters need ${gib(bytes)} as float32 but ${gib(live)} are live and ` +
          `the device budget is ${gib(deviceBudget())}. Load the model with { lazy: true } so layers are loaded one ` +
          `at a time, or raise LAYERSTREAM_DEVICE_BUDGET.`,
      );
    }
    const queue = [...pending];
    const worker = async () => {
      for (let n = queue.shift(); n !== undefined; n = queue.shift()) await this.loadOne(n);
    };
    await Promise.all(Array.from({ length: Math.min(LOAD_CONCURRENCY, queue.length) }, worker));
  }

  private loadOne(name: string): Promise<void> {
    const slot = this.slots.get(name)!;
    if (slot.module.hasParameter(slot.param)) return Promise.resolve();
    let p = this.inFlight.get(name);
    if (!p) {
      p = (async () => {
        const override = this.overrides.get(name);
        const data = override ?? (await this.source.readFloat32(name));
        // another writer (setParameter) may have filled the slot while we read
        if (slot.module.hasParameter(slot.param)) return;
        const t = tf.tensor(data, slot.shape, 'float32');
        slot.module.setParameter(slot.param, t);
        (override ? this.restored : this.loaded).set(name, t);
      })().finally(() => this.inFlight.delete(name));
      this.inFlight.set(name, p);
    }
    return p;
  }

  /**
   * Disposes the parameters under `prefix` that still hold what the store put there: the source's
   * tensor, or an override's (whose values stay on the host). Modified parameters are kept.
   */
  release(prefix = ''): void {
    for (const name of this.names(prefix)) {
      const slot = this.slots.get(name)!;
      for (const mine of [this.loaded, this.restored]) {
        const t = mine.get(name);
        if (!t) continue;
        mine.delete(name);
        if (slot.module.hasParameter(slot.param) && slot.module.param(slot.param) === t) {
          slot.module.setParameter(slot.param, undefined);
        }
      }
    }
  }

  /**
   * Empties every parameter slot under `prefix`: modified values are copied to host memory first
   * (later loads upload them, not the source's), unmodified ones are simply released. Device memory
   * then holds none of the prefix's parameters; host memory holds its modified ones as float32.
   */
  offload(prefix = ''): void {
    for (const name of this.names(prefix)) {
      const slot = this.slots.get(name)!;
      if (!slot.module.hasParameter(slot.param)) continue;
      const t = slot.module.param(slot.param);
      if (t !== this.loaded.get(name) && t !== this.restored.get(name)) {
        // dataSync: the values must be on the host before the tensor is disposed, and offloading
        // synchronously lets the pipeline free a layer before the next one allocates
        this.overrides.set(name, toFloat32(t.dataSync()));
      }
      this.loaded.delete(name);
      this.restored.delete(name);
      slot.module.setParameter(slot.param, undefined);
    }
  }

  /** True when the parameter has modified values offloaded to host memory. */
  isOffloaded(name: string): boolean {
    if (!this.slots.has(name)) throw new Error(`WeightStore: no parameter '${name}'`);
    return this.overrides.has(name);
  }

  /**
   * True when the parameter holds values other than the source's: a tensor other than the one
   * loaded from the source, or an offloaded override (on the host or uploaded again).
   */
  isModified(name: string): boolean {
    const slot = this.slots.get(name);
    if (!slot) throw new Error(`WeightStore: no parameter '${name}'`);
    if (!slot.module.hasParameter(slot.param)) return this.overrides.has(name);
    return slot.module.param(slot.param) !== this.loaded.get(name);
  }

  /** A parameter's current values: from the module if loaded, else an offloaded override, else the source. */
  async readFloat32(name: string): Promise<Float32Array> {
    const slot = this.slots.get(name);
    if (!slot) throw new Error(`WeightStore: no parameter '${name}'`);
    if (slot.module.hasParameter(slot.param)) return toFloat32(await slot.module.param(slot.param).data());
    return this.overrides.get(name) ?? this.source.readFloat32(name);
  }

  /** The shape the config implies for a parameter. */
  shape(name: string): number[] {
    const slot = this.slots.get(name);
    if (!slot) throw new Error(`WeightStore: no parameter '${name}'`);
    return slot.shape;
  }
}

function toFloat32(values: tf.TypedArray | string[] | Uint8Array[]): Float32Array {
  if (values instanceof Float32Array) return values;
  return Float32Array.from(values as ArrayLike<number>);
}

/** The store of a model built without a source: every parameter is set by hand. */
export const NO_WEIGHTS: WeightStore = {
  async load() {},
  release() {},
};
