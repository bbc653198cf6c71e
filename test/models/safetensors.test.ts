import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { mkdtemp, rm, readFile, writeFile, truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { SafetensorsFile, encodeFloat, writeSafetensors, f16ToF32, bf16ToF32 } from '../../src/models/safetensors.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ls-st-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const values = new Float32Array([0, 1, -2.5, 3.140625, 1e-3, -65504, 0.1, 7]);

describe('safetensors round trip', () => {
  for (const dtype of ['F32', 'F16', 'BF16'] as const) {
    it(`writes and reads ${dtype}`, async () => {
      const file = path.join(dir, `rt-${dtype}.safetensors`);
      await writeSafetensors(file, { 'b.weight': { dtype, shape: [2, 4], data: encodeFloat(values, dtype) }, 'a.bias': { dtype, shape: [1], data: encodeFloat(new Float32Array([5]), dtype) } });
      const st = await SafetensorsFile.open(file);
      expect(st.keys()).toEqual(['a.bias', 'b.weight']);
      expect(st.info('b.weight')).toMatchObject({ dtype, shape: [2, 4] });
      const { data } = await st.readFloat32('b.weight');
      // the expected value is the input rounded to the storage dtype
      const rounded = dtype === 'F32' ? values : dtype === 'F16' ? f16ToF32(encodeFloat(values, 'F16') as Uint16Array) : bf16ToF32(encodeFloat(values, 'BF16') as Uint16Array);
      expect([...data]).toEqual([...rounded]);
      const tol = dtype === 'F32' ? 0 : dtype === 'F16' ? 1e-3 : 1e-2;
      values.forEach((v, i) => expect(Math.abs(data[i] - v)).toBeLessThanOrEqual(tol * Math.max(1, Math.abs(v))));
      // data is 8-byte aligned: the header is padded with spaces
      const len = Number((await readFile(file)).readBigUInt64LE(0));
      expect(len % 8).toBe(0);
    });
  }
});

describe('safetensors errors', () => {
  it('names a truncated file', async () => {
    const file = path.join(dir, 'trunc.safetensors');
    await writeSafetensors(file, { w: { dtype: 'F32', shape: [8], data: values } });
    await truncate(file, (await readFile(file)).length - 4);
    await expect(SafetensorsFile.open(file)).rejects.toThrow(/corrupt header.*'w'.*past the end of the data section.*truncated/);
  });
  it('names a corrupt header', async () => {
    const file = path.join(dir, 'corrupt.safetensors');
    const buf = Buffer.alloc(8 + 16);
    buf.writeBigUInt64LE(16n);
    buf.write('{"w": not json  ', 8);
    await writeFile(file, buf);
    await expect(SafetensorsFile.open(file)).rejects.toThrow(/corrupt header: the JSON header does not parse/);
  });
  it('names an impossible header length and a too-short file', async () => {
    const file = path.join(dir, 'len.safetensors');
    const buf = Buffer.alloc(16);
    buf.writeBigUInt64LE(1000n);
    await writeFile(file, buf);
    await expect(SafetensorsFile.open(file)).rejects.toThrow(/header length 1000 does not fit in a file of 16 bytes/);
    await writeFile(file, Buffer.alloc(3));
    await expect(SafetensorsFile.open(file)).rejects.toThrow(/shorter than the 8-byte header length/);
  });
  it('names a missing file', async () => {
    await expect(SafetensorsFile.open(path.join(dir, 'nope.safetensors'))).rejects.toThrow(/cannot open .*nope.safetensors/);
  });
});
