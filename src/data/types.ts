/**
 * One calibration or evaluation batch, held on the host (typed arrays) until a pipeline stage
 * uploads it. Row-major [batchSize, seqLen].
 */
export interface TokenBatch {
  inputIds: Int32Array;
  /** 1 for real tokens, 0 for padding; absent means all ones. */
  attentionMask?: Int32Array;
  batchSize: number;
  seqLen: number;
}
