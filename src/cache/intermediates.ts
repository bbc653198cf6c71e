/**
 * IntermediatesCache: the inputs of the current sequential layer, one record of named values per
 * calibration batch, held off the device between uses (llm-compressor `pipelines/cache.py`).
 *
 * - `update` copies every tensor to a host typed array (dtype and shape recorded); the caller keeps
 *   ownership of the tensors it passed. `fetch` uploads fresh device tensors; the caller owns them.
 * - Arrays (tuples such as `position_embeddings = [cos, sin]`), plain objects, numbers, strings,
 *   booleans, null and undefined keep their structure.
 * - Past `hostBytes` resident bytes, tensor data spills to files in a temporary directory (created
 *   on first spill under `spillDir`, default `os.tmpdir()`); `fetch` reads it back. `close()` removes
 *   the directory; pipelines call it in `finalize`, so it also runs on error and unsubscribe.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';

type HostArray = Float32Array | Int32Array | Uint8Array;
type CachedDtype = 'float32' | 'int32' | 'bool';
type Plain = null | undefined | number | string | boolean | bigint;

type Stored =
  | { kind: 'tensor'; dtype: CachedDtype; shape: number[]; bytes: number; data?: HostArray; file?: string }
  | { kind: 'array'; items: Stored[] }
  | { kind: 'object'; entries: [string, Stored][] }
  | { kind: 'plain'; value: Plain };

export interface IntermediatesCacheOptions {
  /** Resident host bytes before tensor data spills to disk. Default: no limit. */
  hostBytes?: number;
  /** Parent of the spill directory. Default: `os.tmpdir()`. */
  spillDir?: string;
}

const ARRAY_TYPES: Record<CachedDtype, new (b: ArrayBuffer) => HostArray> = {
  float32: Float32Array,
  int32: Int32Array,
  bool: Uint8Array,
};

/**
 * Per-batch named values off the device (see the file doc).
 *
 * @example
 * const cache = new IntermediatesCache({ hostBytes: 2 ** 30 });
 * const i = await cache.append({ hidden_states: h, attention_mask: m }); // caller still owns h, m
 * const inputs = await cache.fetch(i); // fresh device tensors; the caller disposes them
 */
export class IntermediatesCache {
  private readonly records: (Map<string, Stored> | undefined)[] = [];
  private readonly hostBudget: number;
  private readonly spillParent: string;
  private dirPromise?: Promise<string>;
  private dir?: string;
  private fileSeq = 0;
  private hostBytesHeld = 0;
  private diskBytesHeld = 0;
  private closed = false;

  constructor(options: IntermediatesCacheOptions = {}) {
    const budget = options.hostBytes ?? Infinity;
    if (!(budget >= 0)) {
      throw new Error(`IntermediatesCache: hostBytes must be a number >= 0, got ${String(options.hostBytes)}`);
    }
    this.hostBudget = budget;
    this.spillParent = options.spillDir ?? os.tmpdir();
  }

  /** Number of batch slots (highest index stored + 1). */
  get length(): number {
    return this.records.length;
  }

  /** Bytes of tensor data resident on the host. */
  size(): number {
    return this.hostBytesHeld;
  }

  /** Bytes of tensor data spilled to disk. */
  get diskBytes(): number {
    return this.diskBytesHeld;
  }

  /** The spill directory, once something spilled (removed again by `close`). */
  get spillDirectory(): string | undefined {
    return this.dir;
  }

  /** Names stored for batch `index`. */
  names(index: number): string[] {
    return [...(this.records[index]?.keys() ?? [])];
  }

  /**
   * Copies `values` off the device and merges them into batch `index`'s record (replacing names
   * already there). The caller still owns the tensors in `values`.
   */
  async update(index: number, values: Record<string, unknown>): Promise<void> {
    this.checkOpen('update');
    checkIndex(index, 'update');
    const incoming: [string, Stored][] = [];
    try {
      for (const [name, v] of Object.entries(values)) incoming.push([name, await this.offload(v, `'${name}'`)]);
    } catch (e) {
      for (const [, s] of incoming) this.free(s);
      this.checkOpen('update');
      throw e;
    }
    if (this.closed) {
      for (const [, s] of incoming) this.free(s);
      this.checkOpen('update');
    }
    const record = (this.records[index] ??= new Map());
    for (const [name, s] of incoming) {
      const old = record.get(name);
      if (old) this.free(old);
      record.set(name, s);
    }
  }

  /** Stores `values` as a new batch at the end; resolves to its index. */
  async append(values: Record<string, unknown>): Promise<number> {
    const index = this.records.length;
    this.records.push(undefined);
    await this.update(index, values);
    return index;
  }

  /**
   * Batch `index`'s values (all, or only `names`) with tensors uploaded to the device. The caller
   * owns the returned tensors. Tensors are created only after every spilled file was read, so a
   * failed read leaks nothing.
   */
  async fetch(index: number, names?: readonly string[]): Promise<Record<string, unknown>> {
    this.checkOpen('fetch');
    const record = this.records[index];
    if (!record) {
      throw new Error(`IntermediatesCache.fetch: no batch ${index} (the cache holds ${this.length} batch slots)`);
    }
    const wanted = names ?? [...record.keys()];
    const loaded: Map<Stored, HostArray> = new Map();
    for (const name of wanted) {
      const s = record.get(name);
      if (!s) {
        throw new Error(
          `IntermediatesCache.fetch: batch ${index} has no value '${name}' (it has ${[...record.keys()].join(', ')})`,
        );
      }
      await this.readTensors(s, loaded);
    }
    this.checkOpen('fetch');
    const out: Record<string, unknown> = {};
    for (const name of wanted) out[name] = restore(record.get(name)!, loaded);
    return out;
  }

  /** Drops the given names of batch `index` (all of them if `names` is omitted). */
  delete(index: number, names?: readonly string[]): void {
    const record = this.records[index];
    if (!record) return;
    for (const name of names ?? [...record.keys()]) {
      const s = record.get(name);
      if (s) this.free(s);
      record.delete(name);
    }
  }

  /** Drops every record and removes the spill directory. Safe to call more than once. */
  close(): void {
    this.closed = true;
    this.records.length = 0;
    this.hostBytesHeld = 0;
    this.diskBytesHeld = 0;
    if (this.dir) fs.rmSync(this.dir, { recursive: true, force: true });
  }

  private checkOpen(what: string): void {
    if (this.closed) throw new Error(`IntermediatesCache.${what}: the cache is closed (the run ended or was cancelled)`);
  }

  private async offload(v: unknown, where: string): Promise<Stored> {
    if (v instanceof tf.Tensor) {
      if (!(v.dtype in ARRAY_TYPES)) {
        throw new Error(`IntermediatesCache.update: ${where} is a ${v.dtype} tensor; only float32, int32 and bool are cached. Cast it first (tf.cast(x, 'float32')).`);
      }
      const data = (await v.data()) as HostArray;
      const stored: Stored = { kind: 'tensor', dtype: v.dtype as CachedDtype, shape: [...v.shape], bytes: data.byteLength };
      if (this.hostBytesHeld + data.byteLength <= this.hostBudget) {
        stored.data = data;
        this.hostBytesHeld += data.byteLength;
      } else {
        stored.file = await this.spill(data);
        this.diskBytesHeld += data.byteLength;
      }
      return stored;
    }
    if (Array.isArray(v)) {
      const items: Stored[] = [];
      for (let i = 0; i < v.length; i++) items.push(await this.offload(v[i], `${where}[${i}]`));
      return { kind: 'array', items };
    }
    if (v !== null && typeof v === 'object') {
      const proto = Object.getPrototypeOf(v);
      if (proto !== Object.prototype && proto !== null) {
        throw new Error(
          `IntermediatesCache.update: ${where} is a ${v.constructor?.name ?? 'object'}; the cache stores tensors, ` +
            `arrays, plain objects, numbers, strings, booleans and null. Pass the data as one of those.`,
        );
      }
      const entries: [string, Stored][] = [];
      for (const [k, x] of Object.entries(v)) entries.push([k, await this.offload(x, `${where}.${k}`)]);
      return { kind: 'object', entries };
    }
    if (typeof v === 'function' || typeof v === 'symbol') {
      throw new Error(`IntermediatesCache.update: ${where} is a ${typeof v}, which cannot be cached`);
    }
    return { kind: 'plain', value: v as Plain };
  }

  private async spill(data: HostArray): Promise<string> {
    const dir = await (this.dirPromise ??= this.makeDir());
    const file = path.join(dir, `${this.fileSeq++}.bin`);
    await fs.promises.writeFile(file, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    return file;
  }

  private async makeDir(): Promise<string> {
    fs.mkdirSync(this.spillParent, { recursive: true });
    const dir = await fs.promises.mkdtemp(path.join(this.spillParent, 'layerstream-cache-'));
    this.dir = dir;
    // close() may have run while mkdtemp was in flight; it could not see the directory then
    if (this.closed) fs.rmSync(dir, { recursive: true, force: true });
    return dir;
  }

  private async readTensors(s: Stored, loaded: Map<Stored, HostArray>): Promise<void> {
    if (s.kind === 'tensor') {
      if (s.data) loaded.set(s, s.data);
      else {
        const buf = await fs.promises.readFile(s.file!);
        const copy = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) as ArrayBuffer;
        loaded.set(s, new ARRAY_TYPES[s.dtype](copy));
      }
    } else if (s.kind === 'array') for (const x of s.items) await this.readTensors(x, loaded);
    else if (s.kind === 'object') for (const [, x] of s.entries) await this.readTensors(x, loaded);
  }

  private free(s: Stored): void {
    if (this.closed) return; // close() already dropped the counts and the directory
    if (s.kind === 'tensor') {
      if (s.data) this.hostBytesHeld -= s.bytes;
      if (s.file) {
        this.diskBytesHeld -= s.bytes;
        fs.rmSync(s.file, { force: true });
      }
    } else if (s.kind === 'array') s.items.forEach((x) => this.free(x));
    else if (s.kind === 'object') s.entries.forEach(([, x]) => this.free(x));
  }
}

function checkIndex(index: number, what: string): void {
  if (!Number.isInteger(index) || index < 0) {
    throw new Error(`IntermediatesCache.${what}: batch index must be an integer >= 0, got ${index}`);
  }
}

function restore(s: Stored, loaded: Map<Stored, HostArray>): unknown {
  switch (s.kind) {
    case 'tensor':
      return tf.tensor(loaded.get(s)!, s.shape, s.dtype);
    case 'array':
      return s.items.map((x) => restore(x, loaded));
    case 'object':
      return Object.fromEntries(s.entries.map(([k, x]) => [k, restore(x, loaded)]));
    case 'plain':
      return s.value;
  }
}
