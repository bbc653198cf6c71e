/**
 * Streams tensors into safetensors shards without holding a shard in memory: each tensor's bytes
 * are appended to a data file as they come; when a shard closes, its file is assembled as header +
 * data (a sequential copy), since the header must precede data whose shapes are only known at the end.
 *
 * Shards follow Hugging Face: one `model.safetensors`, or `model-0000k-of-0000N.safetensors` and
 * `model.safetensors.index.json` (`metadata.total_size`, `weight_map`) when the data exceeds the
 * shard limit. A tensor larger than the limit gets a shard of its own.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import type { SafetensorsDtype, WritableTensor } from '../models/safetensors.js';
import { toSortedJson } from './format.js';

const DTYPE_BYTES: Record<SafetensorsDtype, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1,
};
const COPY_CHUNK = 8 * 1024 * 1024;

interface Entry {
  dtype: SafetensorsDtype;
  shape: number[];
  dataOffsets: [number, number];
}

interface Shard {
  dataFile: string;
  handle: fsp.FileHandle;
  entries: Map<string, Entry>;
  bytes: number;
}

export interface ShardedWriteResult {
  /** File names written, relative to the directory. */
  files: string[];
  /** Sum of tensor data bytes (the index's `metadata.total_size`). */
  totalSize: number;
}

/** See the file doc: `add` tensors in order, then `finish` (or `abort` to release file handles after a failure). */
export class ShardedSafetensorsWriter {
  private readonly closed: { file: string; entries: Map<string, Entry> }[] = [];
  private current: Shard | undefined;
  private readonly names = new Set<string>();

  /** Writes into `dir` (which must exist); shards hold at most `maxShardBytes` of data each. */
  constructor(
    private readonly dir: string,
    private readonly maxShardBytes: number,
  ) {
    if (!(maxShardBytes > 0)) throw new Error(`ShardedSafetensorsWriter: maxShardBytes must be positive, got ${maxShardBytes}`);
  }

  /** Appends one tensor. The writer copies nothing: `tensor.data` may be reused once this resolves. */
  async add(name: string, tensor: WritableTensor): Promise<void> {
    if (this.names.has(name)) throw new Error(`checkpoint: tensor '${name}' was written twice`);
    const bytes = tensor.shape.reduce((a, d) => a * d, 1) * DTYPE_BYTES[tensor.dtype];
    if (tensor.data.byteLength !== bytes) {
      throw new Error(`checkpoint: tensor '${name}' (${tensor.dtype} [${tensor.shape.join(', ')}]) needs ${bytes} bytes, data has ${tensor.data.byteLength}`);
    }
    if (this.current && this.current.bytes > 0 && this.current.bytes + bytes > this.maxShardBytes) await this.closeShard();
    const shard = this.current ?? (this.current = await this.openShard());
    await writeAll(shard.handle, new Uint8Array(tensor.data.buffer, tensor.data.byteOffset, bytes));
    shard.entries.set(name, { dtype: tensor.dtype, shape: [...tensor.shape], dataOffsets: [shard.bytes, shard.bytes + bytes] });
    shard.bytes += bytes;
    this.names.add(name);
  }

  /** Closes the last shard, names the files and writes the index when there are several shards. */
  async finish(): Promise<ShardedWriteResult> {
    if (this.current || this.closed.length === 0) await this.closeShard();
    const n = this.closed.length;
    const pad = (i: number) => String(i).padStart(5, '0');
    const files: string[] = [];
    const weightMap: Record<string, string> = {};
    let totalSize = 0;
    for (const [i, shard] of this.closed.entries()) {
      const name = n === 1 ? 'model.safetensors' : `model-${pad(i + 1)}-of-${pad(n)}.safetensors`;
      await fsp.rename(shard.file, path.join(this.dir, name));
      files.push(name);
      for (const [tensor, e] of shard.entries) {
        weightMap[tensor] = name;
        totalSize += e.dataOffsets[1] - e.dataOffsets[0];
      }
    }
    if (n > 1) {
      const index = { metadata: { total_size: totalSize }, weight_map: weightMap };
      await fsp.writeFile(path.join(this.dir, 'model.safetensors.index.json'), toSortedJson(index) + '\n');
      files.push('model.safetensors.index.json');
    }
    return { files, totalSize };
  }

  /** Releases open file handles after a failure (the caller removes the directory). */
  async abort(): Promise<void> {
    await this.current?.handle.close().catch(() => undefined);
    this.current = undefined;
  }

  private async openShard(): Promise<Shard> {
    const dataFile = path.join(this.dir, `.shard-${this.closed.length}.data`);
    return { dataFile, handle: await fsp.open(dataFile, 'w'), entries: new Map(), bytes: 0 };
  }

  private async closeShard(): Promise<void> {
    const shard = this.current ?? (await this.openShard());
    this.current = undefined;
    await shard.handle.close();
    const file = path.join(this.dir, `.shard-${this.closed.length}.safetensors`);
    await assemble(file, shard);
    await fsp.rm(shard.dataFile);
    this.closed.push({ file, entries: shard.entries });
  }
}

/** Header (keys sorted, padded to 8 bytes like `writeSafetensors`) followed by the shard's data. */
async function assemble(file: string, shard: Shard): Promise<void> {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  for (const name of [...shard.entries.keys()].sort()) {
    const e = shard.entries.get(name)!;
    header[name] = { dtype: e.dtype, shape: e.shape, data_offsets: e.dataOffsets };
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const hbuf = Buffer.from(json, 'utf8');
  const lenBuf = Buffer.alloc(8);
  lenBuf.writeBigUInt64LE(BigInt(hbuf.length));
  const out = await fsp.open(file, 'w');
  const src = await fsp.open(shard.dataFile, 'r');
  try {
    await writeAll(out, lenBuf);
    await writeAll(out, hbuf);
    const chunk = Buffer.alloc(Math.min(COPY_CHUNK, Math.max(shard.bytes, 1)));
    for (let pos = 0; pos < shard.bytes; ) {
      const { bytesRead } = await src.read(chunk, 0, chunk.length, pos);
      if (bytesRead === 0) throw new Error(`checkpoint: shard data file '${shard.dataFile}' ended early at byte ${pos} of ${shard.bytes}`);
      await writeAll(out, chunk.subarray(0, bytesRead));
      pos += bytesRead;
    }
  } finally {
    await src.close();
    await out.close();
  }
}

/** One write(2) moves at most ~2 GiB on Linux, so big tensors are written in a loop. */
async function writeAll(handle: fsp.FileHandle, bytes: Uint8Array): Promise<void> {
  for (let done = 0; done < bytes.length; ) {
    const { bytesWritten } = await handle.write(bytes, done, Math.min(bytes.length - done, 1 << 30));
    done += bytesWritten;
  }
}
