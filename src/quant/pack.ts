/**
 * Packing signed integer codes into int32 words, bit for bit as compressed-tensors'
 * `pack_to_int32` / `unpack_from_int32` (the `pack-quantized` format vLLM loads).
 *
 * A code v of b bits is stored unsigned, u = v + 2^(b−1) (int4: −8..7 → 0..15). pf = ⌊32/b⌋ codes
 * share one int32 word; the first of them sits in the least-significant bits, so along the
 * packed axis index pf·j + k lands in bits [b·k, b·k + b) of word j. The packed axis is padded
 * with zeros (u = 0) to a multiple of pf, and the word is read back as a two's-complement int32.
 *
 * @example
 * packToInt32(Int8Array.of(0, 1, 2, 3, 4, 5, 6, 7), 1, 8, 4); // Int32Array [-19088744] (0xFEDCBA98)
 */

/** Codes per int32 word: 8 for int4, 4 for int8. */
export function packFactor(numBits: number): number {
  checkBits(numBits, 'packFactor');
  return Math.floor(32 / numBits);
}

/**
 * Packs codes [rows, cols] (row-major) along columns → int32 [rows, ceil(cols/pf)].
 * Used for `weight_packed`.
 */
export function packToInt32(values: Int8Array | Int32Array, rows: number, cols: number, numBits: number): Int32Array {
  checkInput(values, rows, cols, numBits, 'packToInt32');
  const pf = packFactor(numBits);
  const offset = 1 << (numBits - 1);
  const wordsPerRow = Math.ceil(cols / pf);
  const out = new Int32Array(rows * wordsPerRow);
  for (let r = 0; r < rows; r++) {
    const src = r * cols;
    const dst = r * wordsPerRow;
    for (let c = 0; c < cols; c++) {
      const u = values[src + c] + offset;
      out[dst + Math.floor(c / pf)] |= u << (numBits * (c % pf));
    }
  }
  return out;
}

/** Inverse of `packToInt32`: int32 [rows, ceil(cols/pf)] → codes [rows, cols], padding dropped. */
export function unpackFromInt32(packed: Int32Array, rows: number, cols: number, numBits: number): Int8Array {
  const pf = packFactor(numBits);
  const wordsPerRow = Math.ceil(cols / pf);
  checkPacked(packed, rows * wordsPerRow, `[${rows}, ${wordsPerRow}]`, 'unpackFromInt32');
  const offset = 1 << (numBits - 1);
  const mask = (1 << numBits) - 1;
  const out = new Int8Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const word = packed[r * wordsPerRow + Math.floor(c / pf)];
      out[r * cols + c] = ((word >>> (numBits * (c % pf))) & mask) - offset;
    }
  }
  return out;
}

/**
 * Packs codes [rows, cols] along rows → int32 [ceil(rows/pf), cols] (compressed-tensors'
 * `packed_dim=0`). Used for asymmetric `weight_zero_point` of pack-quantized group/channel weights.
 */
export function packRowsToInt32(values: Int8Array | Int32Array, rows: number, cols: number, numBits: number): Int32Array {
  checkInput(values, rows, cols, numBits, 'packRowsToInt32');
  const pf = packFactor(numBits);
  const offset = 1 << (numBits - 1);
  const out = new Int32Array(Math.ceil(rows / pf) * cols);
  for (let r = 0; r < rows; r++) {
    const dst = Math.floor(r / pf) * cols;
    const shift = numBits * (r % pf);
    for (let c = 0; c < cols; c++) out[dst + c] |= (values[r * cols + c] + offset) << shift;
  }
  return out;
}

/** Inverse of `packRowsToInt32`: int32 [ceil(rows/pf), cols] → codes [rows, cols]. */
export function unpackRowsFromInt32(packed: Int32Array, rows: number, cols: number, numBits: number): Int8Array {
  const pf = packFactor(numBits);
  checkPacked(packed, Math.ceil(rows / pf) * cols, `[${Math.ceil(rows / pf)}, ${cols}]`, 'unpackRowsFromInt32');
  const offset = 1 << (numBits - 1);
  const mask = (1 << numBits) - 1;
  const out = new Int8Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const src = Math.floor(r / pf) * cols;
    const shift = numBits * (r % pf);
    for (let c = 0; c < cols; c++) out[r * cols + c] = ((packed[src + c] >>> shift) & mask) - offset;
  }
  return out;
}

function checkBits(numBits: number, fn: string): void {
  if (!Number.isInteger(numBits) || numBits < 1 || numBits > 8) {
    throw new Error(`${fn}: numBits must be an integer in 1..8 (compressed-tensors packs at most 8 bits), got ${numBits}`);
  }
}

function checkInput(values: ArrayLike<number>, rows: number, cols: number, numBits: number, fn: string): void {
  checkBits(numBits, fn);
  if (values.length !== rows * cols) {
    throw new Error(`${fn}: values has ${values.length} elements, expected rows·cols = ${rows}·${cols} = ${rows * cols}`);
  }
  const lo = -(1 << (numBits - 1));
  const hi = (1 << (numBits - 1)) - 1;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (!(v >= lo && v <= hi)) {
      throw new Error(
        `${fn}: value ${v} at index ${i} (row ${Math.floor(i / cols)}, column ${i % cols}) is outside the ` +
          `${numBits}-bit signed range [${lo}, ${hi}]; quantize (clamp) the codes before packing`,
      );
    }
  }
}

function checkPacked(packed: Int32Array, expected: number, shape: string, fn: string): void {
  if (packed.length !== expected) {
    throw new Error(`${fn}: packed has ${packed.length} words, expected ${expected} (shape ${shape})`);
  }
}
