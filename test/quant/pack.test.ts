import { describe, expect, it } from 'vitest';
import { packFactor, packRowsToInt32, packToInt32, unpackFromInt32, unpackRowsFromInt32 } from '../../src/quant/pack.js';
import { mulberry32 } from '../../src/models/random.js';

function randomCodes(n: number, bits: number, seed: number): Int8Array {
  const rand = mulberry32(seed);
  const lo = -(2 ** (bits - 1));
  return Int8Array.from({ length: n }, () => lo + Math.floor(rand() * 2 ** bits));
}

describe('packToInt32 (compressed-tensors reference vectors, §5.2)', () => {
  it('int4 [0..7] → 0xFEDCBA98 = -19088744 (column 8j in the least-significant nibble)', () => {
    expect(Array.from(packToInt32(Int8Array.of(0, 1, 2, 3, 4, 5, 6, 7), 1, 8, 4))).toEqual([-19088744]);
  });
  it('int4 [-8,-1,0,7,3,-3,1,-5] → 0x395BF870 = 962328688', () => {
    expect(Array.from(packToInt32(Int32Array.of(-8, -1, 0, 7, 3, -3, 1, -5), 1, 8, 4))).toEqual([962328688]);
  });
  it('int8 [1, 2] padded with zero codes → 33409', () => {
    expect(Array.from(packToInt32(Int8Array.of(1, 2), 1, 2, 8))).toEqual([33409]);
  });
  it('pads each row separately: [2, 10] int4 → [2, 2] words', () => {
    const codes = Int8Array.from({ length: 20 }, (_, i) => (i % 16) - 8);
    const packed = packToInt32(codes, 2, 10, 4);
    expect(packed.length).toBe(4);
    // row 1 starts at code index 10 = value 2 → u = 10 in the lowest nibble of word 2
    expect(packed[2] & 0xf).toBe(10);
    // the padding of row 0's second word is u = 0
    expect(packed[1] >>> 8).toBe(0);
  });
  it('pack factor is 8 for int4, 4 for int8, 10 for int3', () => {
    expect([packFactor(4), packFactor(8), packFactor(3), packFactor(2)]).toEqual([8, 4, 10, 16]);
  });
});

describe('packing errors', () => {
  it('refuses codes outside the signed range, naming the position', () => {
    expect(() => packToInt32(Int8Array.of(0, 8), 1, 2, 4)).toThrow(/value 8 at index 1 \(row 0, column 1\).*\[-8, 7\]/);
  });
  it('refuses a wrong element count and bad bit widths', () => {
    expect(() => packToInt32(new Int8Array(5), 2, 3, 4)).toThrow(/5 elements, expected rows·cols = 2·3 = 6/);
    expect(() => packToInt32(new Int8Array(2), 1, 2, 16)).toThrow(/numBits must be an integer in 1..8/);
    expect(() => unpackFromInt32(new Int32Array(3), 2, 9, 4)).toThrow(/3 words, expected 4/);
  });
});

describe('round trips', () => {
  for (const bits of [2, 3, 4, 8]) {
    for (const [rows, cols] of [[1, 1], [3, 7], [5, 33], [17, 64]] as const) {
      it(`${bits}-bit [${rows}, ${cols}] along columns and along rows`, () => {
        const codes = randomCodes(rows * cols, bits, rows * 100 + cols + bits);
        const packed = packToInt32(codes, rows, cols, bits);
        expect(packed.length).toBe(rows * Math.ceil(cols / packFactor(bits)));
        expect(unpackFromInt32(packed, rows, cols, bits)).toEqual(codes);
        const byRows = packRowsToInt32(codes, rows, cols, bits);
        expect(byRows.length).toBe(Math.ceil(rows / packFactor(bits)) * cols);
        expect(unpackRowsFromInt32(byRows, rows, cols, bits)).toEqual(codes);
      });
    }
  }
  it('row packing is column packing of the transpose', () => {
    const rows = 11;
    const cols = 3;
    const codes = randomCodes(rows * cols, 4, 7);
    const t = new Int8Array(rows * cols);
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = codes[r * cols + c];
    const byRows = packRowsToInt32(codes, rows, cols, 4); // [2, 3]
    const byCols = packToInt32(t, cols, rows, 4); // [3, 2]
    for (let j = 0; j < 2; j++) for (let c = 0; c < cols; c++) expect(byRows[j * cols + c]).toBe(byCols[c * 2 + j]);
  });
});
