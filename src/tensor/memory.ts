/**
 * Device-memory accounting. tfjs counts the bytes of every live tensor on the active backend
 * (`tf.memory().numBytes`); on `wasm` the heap stops at 4 GiB and an allocation past it silently
 * overwrites other tensors, so long-running work checks its budget before allocating big tensors.
 */
import * as tf from '@tensorflow/tfjs-core';

/** Default budget of live device bytes on wasm: well under the 4 GiB heap. */
export const WASM_DEVICE_BUDGET = 3.25 * 1024 ** 3;

/** Bytes held by live tensors on the active backend now. */
export function liveDeviceBytes(): number {
  return tf.memory().numBytes;
}

/** Live tensors on the active backend now (what no-leak checks compare). */
export function liveTensorCount(): number {
  return tf.memory().numTensors;
}

/** The budget that applies to the active backend (Infinity where the backend has no hard cap). */
export function deviceBudget(): number {
  const env = process.env.LAYERSTREAM_DEVICE_BUDGET;
  if (env) {
    const v = Number(env);
    if (!Number.isFinite(v) || v <= 0) {
      throw new Error(`LAYERSTREAM_DEVICE_BUDGET='${env}' is not a positive number of bytes.`);
    }
    return v;
  }
  return tf.getBackend() === 'wasm' ? WASM_DEVICE_BUDGET : Infinity;
}

/**
 * Throws before an allocation of `bytes` would push live device bytes past the budget.
 * `what` names the allocation in the message; `fix` replaces the generic advice with the knob that
 * applies to the caller.
 */
export function ensureDeviceRoom(
  bytes: number,
  what: string,
  fix = 'Lower --max-seq-length or the number of resident batches, or raise LAYERSTREAM_DEVICE_BUDGET.',
): void {
  const live = liveDeviceBytes();
  const budget = deviceBudget();
  if (live + bytes > budget) {
    const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
    throw new Error(
      `${what}: needs ${mib(bytes)} of device memory but ${mib(live)} are live and the budget on ` +
        `'${tf.getBackend()}' is ${mib(budget)} (the wasm heap corrupts memory silently past 4 GiB). ${fix}`,
    );
  }
}

/** Tracks the peak of live device bytes; call `sample()` at interesting points. */
export class PeakTracker {
  peakBytes = liveDeviceBytes();
  peakTensors = liveTensorCount();
  sample(): void {
    const m = tf.memory();
    if (m.numBytes > this.peakBytes) this.peakBytes = m.numBytes;
    if (m.numTensors > this.peakTensors) this.peakTensors = m.numTensors;
  }
}
