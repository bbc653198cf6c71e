/**
 * Collation of tokenized samples into {@link TokenBatch}es: pad to the longest sample in the
 * batch and mark real tokens in `attentionMask`.
 */
import type { TokenBatch } from './types.js';

export interface CollateOptions {
  /** Id written into padded positions (masked out, so its value only matters for embedding lookup). */
  padTokenId: number;
  /** Where the padding goes; transformers' default is 'right'. */
  paddingSide?: 'left' | 'right';
}

/**
 * Stacks samples row-major into one batch. `attentionMask` is present only when some row is
 * padded (an absent mask means all ones, per the TokenBatch contract).
 *
 * @example
 * collate([[1, 5, 6], [1, 7]], { padTokenId: 0 });
 * // { inputIds: [1,5,6, 1,7,0], attentionMask: [1,1,1, 1,1,0], batchSize: 2, seqLen: 3 }
 */
export function collate(samples: readonly (readonly number[])[], options: CollateOptions): TokenBatch {
  if (samples.length === 0) throw new Error('collate: got no samples; a batch needs at least one.');
  const seqLen = Math.max(...samples.map((s) => s.length));
  if (seqLen === 0) throw new Error('collate: every sample is empty; a batch needs at least one token.');
  const batchSize = samples.length;
  const inputIds = new Int32Array(batchSize * seqLen).fill(options.padTokenId);
  const mask = new Int32Array(batchSize * seqLen);
  let padded = false;
  samples.forEach((s, b) => {
    const offset = b * seqLen + (options.paddingSide === 'left' ? seqLen - s.length : 0);
    inputIds.set(s, offset);
    mask.fill(1, offset, offset + s.length);
    if (s.length < seqLen) padded = true;
  });
  return padded ? { inputIds, attentionMask: mask, batchSize, seqLen } : { inputIds, batchSize, seqLen };
}
