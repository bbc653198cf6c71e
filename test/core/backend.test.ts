import { afterEach, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../../src/tensor/backend.js';

describe('initBackend', () => {
  const saved = process.env.LAYERSTREAM_BACKEND;
  afterEach(() => {
    if (saved === undefined) delete process.env.LAYERSTREAM_BACKEND;
    else process.env.LAYERSTREAM_BACKEND = saved;
  });

  it('falls back to wasm, the embedded default, when tfjs-node is not installed', async () => {
    delete process.env.LAYERSTREAM_BACKEND;
    const info = await initBackend();
    // tfjs-node-gpu cannot install without internet access to libtensorflow; where it did, it wins.
    expect(['tensorflow', 'wasm']).toContain(info.name);
    expect(tf.getBackend()).toBe(info.name);
    if (info.name === 'wasm') expect(info.simd).toBe(true);
    expect(info.versions['@tensorflow/tfjs-core']).toBe('4.22.0');
  });

  it('warns loudly when cpu is chosen', async () => {
    const warnings: string[] = [];
    const info = await initBackend({ backend: 'cpu', warn: (m) => warnings.push(m) });
    expect(info.name).toBe('cpu');
    expect(warnings.join('\n')).toMatch(/cpu.*backend.*GFLOP/);
    await initBackend({ backend: 'wasm' });
    expect(tf.getBackend()).toBe('wasm');
  });

  it('honours LAYERSTREAM_BACKEND and rejects unknown names with the choices', async () => {
    process.env.LAYERSTREAM_BACKEND = 'cpu';
    expect((await initBackend({ warn: () => {} })).name).toBe('cpu');
    process.env.LAYERSTREAM_BACKEND = 'webgl';
    await expect(initBackend()).rejects.toThrow(/LAYERSTREAM_BACKEND: unknown backend 'webgl'.*tensorflow, wasm, cpu/);
    await expect(initBackend({ backend: 'gpu' })).rejects.toThrow(/--backend: unknown backend 'gpu'/);
  });

  it('refuses an explicit tensorflow request when tfjs-node is absent, saying what to install', async () => {
    if (tf.findBackend('tensorflow')) return;
    await expect(initBackend({ backend: 'tensorflow' })).rejects.toThrow(/tfjs-node-gpu/);
  });
});

