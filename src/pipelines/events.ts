/**
 * The typed progress events a pipeline run emits. The library prints nothing; the CLI and the
 * examples render these (cli-progress bars labelled like `(3/22): Calibrating`).
 */

/** The two passes over each sequential layer. */
export type LayerPhase = 'calibrating' | 'propagating';

/** One progress event of a pipeline run, discriminated by `type`. */
export type PipelineEvent =
  | { type: 'calibration_start'; pipeline: string; layers: number; modifiers: string[] }
  | {
      type: 'layer_progress';
      /** 0-based layer index. */
      layer: number;
      layers: number;
      phase: LayerPhase;
      /** Batches processed so far in this phase (1-based after the first). */
      batch: number;
      /** Number of batches, once known (after the first layer's calibration pass). */
      batches?: number;
      /** `(i+1/N): Calibrating` as the reference prints it. */
      label: string;
    }
  | { type: 'module_result'; modifier: string; module: string; layer?: number; samples: number; loss: number; seconds: number }
  | { type: 'layer_done'; layer: number; layers: number; seconds: number }
  | { type: 'warning'; message: string }
  | {
      type: 'calibration_end';
      seconds: number;
      batches: number;
      peakDeviceBytes: number;
      /** Layer-sequential only: the most bytes the intermediates cache held on the host (and on disk). */
      peakHostCacheBytes?: number;
      peakDiskCacheBytes?: number;
    };

/** The progress label llm-compressor prints: `layerLabel(2, 22, 'calibrating')` → `(3/22): Calibrating`. */
export function layerLabel(layer: number, layers: number, phase: LayerPhase): string {
  return `(${layer + 1}/${layers}): ${phase === 'calibrating' ? 'Calibrating' : 'Propagating'}`;
}
