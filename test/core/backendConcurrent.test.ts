import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../../src/tensor/backend.js';

// Its own file, so the wasm backend is initialised here for the first time in this process.
describe('initBackend called concurrently', () => {
  it('initialises once and gives every caller the same working backend (no fallback to cpu)', async () => {
    delete process.env.LAYERSTREAM_BACKEND;
    const warnings: string[] = [];
    // several runs of a service starting at once, none asking for a backend
    const infos = await Promise.all([1, 2, 3, 4].map(() => initBackend({ warn: (m) => warnings.push(m) })));
    expect(warnings).toEqual([]);
    expect(new Set(infos.map((i) => i.name)).size).toBe(1);
    expect(tf.getBackend()).toBe(infos[0].name);
    const x = tf.tensor2d([[1, 2]]);
    const y = tf.matMul(x, x, false, true);
    expect(Array.from(y.dataSync())).toEqual([5]);
    tf.dispose([x, y]);
  });
});
