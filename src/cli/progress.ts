/**
 * Rendering a oneshot run's event stream for people: cli-progress bars on a terminal (a layer bar
 * and a batch bar labelled like llm-compressor's `(3/22): Calibrating`, with ETA), plain lines
 * when stderr is a pipe or a file (one per finished phase). The library emits typed events only;
 * this is the one place cli-progress is used.
 */
import cliProgress from 'cli-progress';
import type { OneshotEvent } from '../oneshot.js';
import { formatBytes, formatSeconds } from './format.js';

export interface ProgressRenderer {
  onEvent(event: OneshotEvent): void;
  /** Stops the bars (idempotent); call on completion, error and interrupt. */
  stop(): void;
}

export interface ProgressOptions {
  tty: boolean;
  stream: NodeJS.WritableStream;
  /** For plain lines (non-TTY). */
  write: (text: string) => void;
  /**
   * The number of batches to show before the pipeline knows it (it learns it at the end of the
   * first layer's calibration pass): e.g. numCalibrationSamples / batchSize.
   */
  expectedBatches?: number;
}

/** Bars on a terminal, plain lines otherwise; feed it every oneshot event, then `stop()`. */
export function createProgressRenderer(options: ProgressOptions): ProgressRenderer {
  return options.tty ? barRenderer(options.stream, options.expectedBatches) : lineRenderer(options.write);
}

function barRenderer(stream: NodeJS.WritableStream, expectedBatches = 0): ProgressRenderer {
  const multibar = new cliProgress.MultiBar(
    {
      stream: stream as NodeJS.WriteStream,
      hideCursor: true,
      clearOnComplete: false,
      stopOnComplete: false,
      etaBuffer: 20,
      // Ctrl-C is the CLI's to handle (it cancels the run, then stops the bars)
      gracefulExit: false,
      format: '{label} |{bar}| {value}/{total} {unit} | {duration_formatted} | ETA {eta_formatted}',
    },
    cliProgress.Presets.shades_classic,
  );
  let layers: cliProgress.SingleBar | undefined;
  let batches: cliProgress.SingleBar | undefined;
  let phaseKey = '';
  let stopped = false;
  // MultiBar.log only flushes on a redraw, and there is none before the first bar exists
  const log = (text: string) => {
    if (!layers && !batches) {
      stream.write(text);
      return;
    }
    multibar.log(text);
    multibar.update();
  };
  return {
    onEvent(e) {
      if (stopped) return;
      switch (e.type) {
        case 'stage':
          log(`${e.message}\n`);
          break;
        case 'calibration_start':
          layers = multibar.create(e.layers, 0, { label: 'Layers'.padEnd(18), unit: 'layers' });
          break;
        case 'layer_progress': {
          const key = `${e.layer}:${e.phase}`;
          const total = e.batches ?? Math.max(e.batch, expectedBatches, 1);
          if (!batches) batches = multibar.create(total, 0, { label: e.label.padEnd(18), unit: 'batches' });
          if (key !== phaseKey) {
            phaseKey = key;
            // a new phase restarts the batch bar so its ETA is per phase
            batches.start(total, 0, { label: e.label.padEnd(18), unit: 'batches' });
          }
          if (batches.getTotal() !== total) batches.setTotal(total);
          batches.update(e.batch);
          break;
        }
        case 'layer_done':
          layers?.update(e.layer + 1);
          break;
        case 'warning':
          log(`warning: ${e.message}\n`);
          break;
        case 'result':
          this.stop();
          break;
        default:
          break;
      }
    },
    stop() {
      if (stopped) return;
      stopped = true;
      multibar.stop();
    },
  };
}

function lineRenderer(write: (text: string) => void): ProgressRenderer {
  let current: { label: string; batch: number; started: number } | undefined;
  const finishPhase = () => {
    if (!current) return;
    write(`${current.label}: ${current.batch} batches, ${formatSeconds((performance.now() - current.started) / 1000)}\n`);
    current = undefined;
  };
  return {
    onEvent(e) {
      switch (e.type) {
        case 'stage':
          write(`${e.message}\n`);
          break;
        case 'calibration_start':
          write(`${e.pipeline} pipeline: ${e.layers} layers, modifiers ${e.modifiers.join(', ')}\n`);
          break;
        case 'layer_progress':
          if (current && current.label !== e.label) finishPhase();
          current ??= { label: e.label, batch: 0, started: performance.now() };
          current.batch = e.batch;
          break;
        case 'layer_done':
          finishPhase();
          break;
        case 'warning':
          write(`warning: ${e.message}\n`);
          break;
        case 'calibration_end':
          finishPhase();
          write(`calibration: ${e.batches} batches, ${formatSeconds(e.seconds)}, peak device memory ${formatBytes(e.peakDeviceBytes)}\n`);
          break;
        default:
          break;
      }
    },
    stop: finishPhase,
  };
}
