/**
 * The datafree pipeline (llm-compressor `datafree`): calibration start, then calibration end; for
 * modifiers that need no data (weight-only round-to-nearest quantization).
 */
import { EMPTY, type Observable } from 'rxjs';
import type { PipelineEvent } from './events.js';
import { calibrationRun } from './lifecycle.js';
import type { PipelineOptions } from './types.js';

/**
 * @example
 * await lastValueFrom(datafreePipeline({ model, modifiers: [rtn] }));
 */
export function datafreePipeline(options: PipelineOptions): Observable<PipelineEvent> {
  return calibrationRun('datafree', 0, options, () => EMPTY);
}
