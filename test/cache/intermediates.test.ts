import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IntermediatesCache } from '../../src/cache/intermediates.js';
import { initBackend } from '../../src/tensor/backend.js';

beforeAll(async () => {
  await initBackend({ backend: 'cpu', warn: () => {} });
});

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'layerstream-cache-test-'));
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

/** Replaces tensors by `{dtype, shape, values}` so results compare with toEqual. */
function plainOf(v: unknown): unknown {
  if (v instanceof tf.Tensor) return { dtype: v.dtype, shape: v.shape, values: Array.from(v.dataSync()) };
  if (Array.isArray(v)) return v.map(plainOf);
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plainOf(x)]));
  return v;
}

function disposeAll(v: unknown): void {
  if (v instanceof tf.Tensor) v.dispose();
  else if (Array.isArray(v)) v.forEach(disposeAll);
  else if (v !== null && typeof v === 'object') Object.values(v).forEach(disposeAll);
}

function sampleValues(): Record<string, unknown> {
  return {
    hidden_states: tf.tensor3d([1.5, -2, 3, 4.25, 0, -1], [1, 2, 3]),
    position_ids: tf.tensor2d([0, 1], [1, 2], 'int32'),
    flags: tf.tensor1d([true, false, true], 'bool'),
    scalar: tf.scalar(7),
    position_embeddings: [tf.ones([1, 2, 4]), tf.zeros([1, 2, 4])],
    nested: { a: [1, 'two', null], b: { c: tf.tensor1d([9, 8]) } },
    attention_mask: null,
    use_cache: false,
    note: 'text',
    count: 3,
    missing: undefined,
  };
}

describe('IntermediatesCache', () => {
  it('round-trips every kind of value, in memory', async () => {
    const before = tf.memory().numTensors;
    const cache = new IntermediatesCache();
    const values = sampleValues();
    const expected = plainOf(values);
    await cache.update(0, values);
    disposeAll(values);
    expect(tf.memory().numTensors).toBe(before);
    const got = await cache.fetch(0);
    expect(plainOf(got)).toEqual(expected);
    expect(Array.isArray(got.position_embeddings)).toBe(true);
    disposeAll(got);
    expect(tf.memory().numTensors).toBe(before);
    // 6 floats + 2 ints + 3 bools + 1 + 8 + 8 + 2 floats
    expect(cache.size()).toBe(6 * 4 + 2 * 4 + 3 + 4 + 16 * 4 + 2 * 4);
    expect(cache.spillDirectory).toBeUndefined();
    cache.close();
  });

  it('fetches a subset of names, deletes names and whole batches', async () => {
    const cache = new IntermediatesCache();
    const a = tf.tensor1d([1, 2]);
    const b = tf.tensor1d([3, 4, 5]);
    await cache.update(0, { a, b });
    const sub = await cache.fetch(0, ['b']);
    expect(Object.keys(sub)).toEqual(['b']);
    disposeAll(sub);
    cache.delete(0, ['a']);
    expect(cache.names(0)).toEqual(['b']);
    expect(cache.size()).toBe(12);
    cache.delete(0);
    expect(cache.names(0)).toEqual([]);
    expect(cache.size()).toBe(0);
    await expect(cache.fetch(0, ['a'])).rejects.toThrow(/batch 0 has no value 'a'/);
    await expect(cache.fetch(5)).rejects.toThrow(/no batch 5/);
    tf.dispose([a, b]);
    cache.close();
  });

  it('update replaces names and keeps the byte count exact; append adds batches', async () => {
    const cache = new IntermediatesCache();
    const x = tf.zeros([4]);
    const y = tf.zeros([2]);
    expect(await cache.append({ h: x })).toBe(0);
    expect(await cache.append({ h: x })).toBe(1);
    await cache.update(1, { h: y });
    expect(cache.length).toBe(2);
    expect(cache.size()).toBe(16 + 8);
    tf.dispose([x, y]);
    cache.close();
  });

  it('spills past the host budget, reads spilled data back, and close removes the directory', async () => {
    const before = tf.memory().numTensors;
    const cache = new IntermediatesCache({ hostBytes: 100, spillDir: scratch });
    const batches = [0, 1, 2, 3].map((i) => ({
      h: tf.fill([2, 5], i + 0.5),
      pe: [tf.fill([5], -i), tf.fill([5], i)],
      ids: tf.tensor1d([i, i + 1], 'int32'),
    }));
    const expected = batches.map(plainOf);
    for (let i = 0; i < batches.length; i++) await cache.update(i, batches[i]);
    disposeAll(batches);
    expect(cache.size()).toBeLessThanOrEqual(100);
    expect(cache.diskBytes).toBeGreaterThan(0);
    const dir = cache.spillDirectory!;
    expect(dir.startsWith(scratch)).toBe(true);
    expect(fs.readdirSync(dir).length).toBeGreaterThan(0);
    for (let i = 0; i < 4; i++) {
      const got = await cache.fetch(i);
      expect(plainOf(got)).toEqual(expected[i]);
      disposeAll(got);
    }
    cache.delete(3);
    const filesAfterDelete = fs.readdirSync(dir).length;
    cache.delete(2);
    expect(fs.readdirSync(dir).length).toBeLessThan(filesAfterDelete);
    cache.close();
    expect(fs.existsSync(dir)).toBe(false);
    expect(tf.memory().numTensors).toBe(before);
    await expect(cache.fetch(0)).rejects.toThrow(/closed/);
  });

  it('refuses what it cannot store, naming the value', async () => {
    const cache = new IntermediatesCache();
    const s = tf.tensor(['a']);
    await expect(cache.update(0, { s })).rejects.toThrow(/'s' is a string tensor/);
    await expect(cache.update(0, { m: new Map() })).rejects.toThrow(/'m' is a Map/);
    await expect(cache.update(-1, {})).rejects.toThrow(/integer >= 0/);
    s.dispose();
    cache.close();
  });

  it('an update racing close() leaves no directory behind', async () => {
    const cache = new IntermediatesCache({ hostBytes: 0, spillDir: scratch });
    const t = tf.zeros([8]);
    const pending = cache.update(0, { t });
    cache.close();
    await expect(pending).rejects.toThrow(/closed/);
    t.dispose();
    expect(fs.readdirSync(scratch)).toEqual([]);
  });
});
