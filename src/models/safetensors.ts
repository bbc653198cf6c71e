/**
 * Reading and writing .safetensors files: an 8-byte little-endian header length, a JSON header
 * `{name: {dtype, shape, data_offsets: [begin, end]}, __metadata__?}`, then raw little-endian data.
 *
 * Reading is lazy: `SafetensorsFile.open` parses only the header; each tensor's bytes are read
 * from disk when asked for, so a model can be streamed layer by layer.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';

export type SafetensorsDtype = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

const DTYPE_BYTES: Record<SafetensorsDtype, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1,
};

export interface TensorInfo {
  dtype: SafetensorsDtype;
  shape: number[];
  /** Byte range relative to the start of the data section. */
  dataOffsets: [number, number];
}

/** Raw tensor read from a file. `data` holds the values in the file's dtype (or widened). */
export interface RawTensor {
  dtype: SafetensorsDtype;
  shape: number[];
  data: Float32Array | Float64Array | Int32Array | BigInt64Array | Int16Array | Int8Array | Uint8Array | Uint16Array;
}

const MAX_HEADER = 100 * 1024 * 1024;

/** One .safetensors file opened lazily: the header is parsed by `open`, tensor bytes are read on demand. */
export class SafetensorsFile {
  private constructor(
    readonly file: string,
    readonly tensors: Map<string, TensorInfo>,
    readonly metadata: Record<string, string>,
    private readonly dataStart: number,
    readonly fileSize: number,
  ) {}

  /** Opens a file and validates its header (dtypes, shapes, offsets within the file). */
  static async open(file: string): Promise<SafetensorsFile> {
    let handle: fsp.FileHandle;
    try {
      handle = await fsp.open(file, 'r');
    } catch (e) {
      throw new Error(`safetensors: cannot open '${file}': ${(e as Error).message}`);
    }
    try {
      const { size } = await handle.stat();
      const bad = (what: string) =>
        new Error(`safetensors: '${file}' has a corrupt header: ${what}. Re-download or re-save the file.`);
      if (size < 8) throw bad(`the file is ${size} bytes, shorter than the 8-byte header length`);
      const lenBuf = Buffer.alloc(8);
      await handle.read(lenBuf, 0, 8, 0);
      const headerLen = Number(lenBuf.readBigUInt64LE(0));
      if (headerLen <= 0 || headerLen > MAX_HEADER || 8 + headerLen > size) {
        throw bad(`header length ${headerLen} does not fit in a file of ${size} bytes`);
      }
      const hbuf = Buffer.alloc(headerLen);
      await handle.read(hbuf, 0, headerLen, 8);
      let header: Record<string, unknown>;
      try {
        header = JSON.parse(hbuf.toString('utf8')) as Record<string, unknown>;
      } catch (e) {
        throw bad(`the JSON header does not parse (${(e as Error).message})`);
      }
      if (typeof header !== 'object' || header === null || Array.isArray(header)) throw bad('the header is not an object');
      const dataStart = 8 + headerLen;
      const dataSize = size - dataStart;
      const tensors = new Map<string, TensorInfo>();
      let metadata: Record<string, string> = {};
      for (const [name, raw] of Object.entries(header)) {
        if (name === '__metadata__') {
          metadata = (raw ?? {}) as Record<string, string>;
          continue;
        }
        const info = raw as { dtype?: string; shape?: number[]; data_offsets?: [number, number] };
        if (!info || typeof info.dtype !== 'string' || !(info.dtype in DTYPE_BYTES)) {
          throw bad(`tensor '${name}' has unsupported dtype '${info?.dtype}' (expected one of ${Object.keys(DTYPE_BYTES).join(', ')})`);
        }
        if (!Array.isArray(info.shape) || !Array.isArray(info.data_offsets) || info.data_offsets.length !== 2) {
          throw bad(`tensor '${name}' lacks a shape or data_offsets`);
        }
        const [b, e] = info.data_offsets;
        const dtype = info.dtype as SafetensorsDtype;
        const expected = info.shape.reduce((a, d) => a * d, 1) * DTYPE_BYTES[dtype];
        if (e - b !== expected) {
          throw bad(`tensor '${name}' (${dtype} [${info.shape.join(', ')}]) needs ${expected} bytes but its data_offsets span ${e - b}`);
        }
        if (b < 0 || e > dataSize) {
          throw bad(`tensor '${name}' data [${b}, ${e}) lies past the end of the data section (${dataSize} bytes; is the file truncated?)`);
        }
        tensors.set(name, { dtype, shape: info.shape, dataOffsets: [b, e] });
      }
      return new SafetensorsFile(file, tensors, metadata, dataStart, size);
    } finally {
      await handle.close();
    }
  }

  keys(): string[] {
    return [...this.tensors.keys()];
  }

  info(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (!t) throw new Error(`safetensors: '${this.file}' has no tensor '${name}'`);
    return t;
  }

  /** Reads one tensor's raw values. */
  async read(name: string): Promise<RawTensor> {
    const info = this.info(name);
    const [b, e] = info.dataOffsets;
    const buf = new ArrayBuffer(e - b);
    const handle = await fsp.open(this.file, 'r');
    try {
      const { bytesRead } = await handle.read(new Uint8Array(buf), 0, e - b, this.dataStart + b);
      if (bytesRead !== e - b) {
        throw new Error(`safetensors: '${this.file}' is truncated: tensor '${name}' needs ${e - b} bytes, read ${bytesRead}`);
      }
    } finally {
      await handle.close();
    }
    return { dtype: info.dtype, shape: info.shape, data: view(info.dtype, buf) };
  }

  /** Reads one tensor as float32 (F16 and BF16 are widened; integers converted). */
  async readFloat32(name: string): Promise<{ shape: number[]; data: Float32Array }> {
    const raw = await this.read(name);
    return { shape: raw.shape, data: toFloat32(raw) };
  }
}

function view(dtype: SafetensorsDtype, buf: ArrayBuffer): RawTensor['data'] {
  switch (dtype) {
    case 'F64': return new Float64Array(buf);
    case 'F32': return new Float32Array(buf);
    case 'F16': case 'BF16': return new Uint16Array(buf);
    case 'I64': return new BigInt64Array(buf);
    case 'I32': return new Int32Array(buf);
    case 'I16': return new Int16Array(buf);
    case 'I8': return new Int8Array(buf);
    case 'U8': case 'BOOL': return new Uint8Array(buf);
  }
}

/** bf16 bits → float32 (exact). */
export function bf16ToF32(bits: Uint16Array): Float32Array {
  const out = new Uint32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = bits[i] << 16;
  return new Float32Array(out.buffer);
}

/** float32 → bf16 bits, round to nearest even (NaN kept as NaN). */
export function f32ToBf16(values: Float32Array): Uint16Array {
  const u = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < u.length; i++) {
    const x = u[i];
    if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff) !== 0) {
      out[i] = (x >>> 16) | 0x40;
    } else {
      out[i] = (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
    }
  }
  return out;
}

/** IEEE half bits → float32. */
export function f16ToF32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) {
    const h = bits[i];
    const s = h & 0x8000 ? -1 : 1;
    const e = (h >> 10) & 0x1f;
    const f = h & 0x3ff;
    if (e === 0) out[i] = s * f * 2 ** -24;
    else if (e === 31) out[i] = f ? NaN : s * Infinity;
    else out[i] = s * (1 + f / 1024) * 2 ** (e - 15);
  }
  return out;
}

/** float32 → IEEE half bits, round to nearest even. */
export function f32ToF16(values: Float32Array): Uint16Array {
  const out = new Uint16Array(values.length);
  const f32 = new Float32Array(1);
  const u32 = new Uint32Array(f32.buffer);
  for (let i = 0; i < values.length; i++) {
    f32[0] = values[i];
    const x = u32[0];
    const sign = (x >>> 16) & 0x8000;
    const exp = (x >>> 23) & 0xff;
    let mant = x & 0x7fffff;
    if (exp === 0xff) { out[i] = sign | 0x7c00 | (mant ? 0x200 : 0); continue; }
    let e = exp - 127 + 15;
    if (e >= 31) { out[i] = sign | 0x7c00; continue; }
    if (e <= 0) {
      if (e < -10) { out[i] = sign; continue; }
      mant |= 0x800000;
      const shift = 14 - e;
      let h = mant >>> shift;
      const rem = mant & ((1 << shift) - 1);
      const half = 1 << (shift - 1);
      if (rem > half || (rem === half && (h & 1))) h++;
      out[i] = sign | h;
      continue;
    }
    let h = (e << 10) | (mant >>> 13);
    const rem = mant & 0x1fff;
    if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++;
    out[i] = sign | h;
  }
  return out;
}

/** A raw tensor's values as float32 (F32 returned as is, without a copy; BF16/F16/ints widened). */
export function toFloat32(raw: RawTensor): Float32Array {
  switch (raw.dtype) {
    case 'F32': return raw.data as Float32Array;
    case 'BF16': return bf16ToF32(raw.data as Uint16Array);
    case 'F16': return f16ToF32(raw.data as Uint16Array);
    case 'I64': return Float32Array.from(raw.data as BigInt64Array, (v) => Number(v));
    default: return Float32Array.from(raw.data as ArrayLike<number>);
  }
}

/** A tensor to write: values already in the target dtype's array type. */
export interface WritableTensor {
  dtype: SafetensorsDtype;
  shape: number[];
  data: ArrayBufferView;
}

/** Converts float32 values to the array a safetensors dtype stores (F32, F16 or BF16). */
export function encodeFloat(values: Float32Array, dtype: 'F32' | 'F16' | 'BF16'): ArrayBufferView {
  if (dtype === 'F32') return values;
  return dtype === 'BF16' ? f32ToBf16(values) : f32ToF16(values);
}

/**
 * Writes tensors to one .safetensors file (keys sorted, as the Python library does). The header
 * is padded with spaces to a multiple of 8 bytes so the data is aligned.
 */
export async function writeSafetensors(
  file: string,
  tensors: Map<string, WritableTensor> | Record<string, WritableTensor>,
  metadata: Record<string, string> = { format: 'pt' },
): Promise<void> {
  const entries = [...(tensors instanceof Map ? tensors.entries() : Object.entries(tensors))].sort(([a], [b]) =>
    a < b ? -1 : a > b ? 1 : 0,
  );
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const [name, t] of entries) {
    const n = t.shape.reduce((a, d) => a * d, 1);
    const bytes = n * DTYPE_BYTES[t.dtype];
    if (t.data.byteLength !== bytes) {
      throw new Error(`writeSafetensors: tensor '${name}' (${t.dtype} [${t.shape.join(', ')}]) needs ${bytes} bytes, data has ${t.data.byteLength}`);
    }
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const hbuf = Buffer.from(json, 'utf8');
  const lenBuf = Buffer.alloc(8);
  lenBuf.writeBigUInt64LE(BigInt(hbuf.length));
  await fsp.mkdir(path.dirname(file), { recursive: true });
  const handle = await fsp.open(file, 'w');
  try {
    await handle.write(lenBuf);
    await handle.write(hbuf);
    for (const [, t] of entries) {
      await handle.write(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
    }
  } finally {
    await handle.close();
  }
}
