import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { formatBytes, formatModuleTable, formatSeconds } from '../../src/cli/format.js';
import { createProgressRenderer } from '../../src/cli/progress.js';
import type { OneshotEvent } from '../../src/oneshot.js';
import { layerLabel } from '../../src/pipelines/events.js';

function events(layers: number, batches: number): OneshotEvent[] {
  const out: OneshotEvent[] = [{ type: 'calibration_start', pipeline: 'layer_sequential', layers, modifiers: ['GPTQModifier'] }];
  for (let l = 0; l < layers; l++) {
    for (const phase of ['calibrating', 'propagating'] as const) {
      for (let b = 1; b <= batches; b++) {
        out.push({ type: 'layer_progress', layer: l, layers, phase, batch: b, batches: l === 0 && phase === 'calibrating' ? undefined : batches, label: layerLabel(l, layers, phase) });
      }
    }
    out.push({ type: 'module_result', modifier: 'GPTQModifier', module: `model.layers.${l}.mlp.down_proj`, layer: l, samples: batches, loss: 0.5, seconds: 0.1 });
    out.push({ type: 'layer_done', layer: l, layers, seconds: 0.2 });
  }
  out.push({ type: 'warning', message: 'damp raised' });
  out.push({ type: 'calibration_end', seconds: 1.5, batches, peakDeviceBytes: 3 * 2 ** 20 });
  return out;
}

describe('progress rendering', () => {
  it('prints one plain line per finished phase when not a TTY', () => {
    const lines: string[] = [];
    const r = createProgressRenderer({ tty: false, stream: new PassThrough(), write: (t) => lines.push(t) });
    for (const e of events(2, 3)) r.onEvent(e);
    r.stop();
    const text = lines.join('');
    expect(text).toMatch(/^layer_sequential pipeline: 2 layers, modifiers GPTQModifier\n/);
    expect(text).toContain('(1/2): Calibrating: 3 batches');
    expect(text).toContain('(1/2): Propagating: 3 batches');
    expect(text).toContain('(2/2): Propagating: 3 batches');
    expect(text).toContain('warning: damp raised');
    expect(text).toMatch(/calibration: 3 batches, 1\.50 s, peak device memory 3\.0 MiB/);
    expect(text.match(/Calibrating:/g)).toHaveLength(2);
  });

  it('draws labelled bars on a TTY stream and stops cleanly', () => {
    const stream = Object.assign(new PassThrough(), { isTTY: true, columns: 120, cursorTo: () => true, clearLine: () => true, moveCursor: () => true });
    let drawn = '';
    stream.on('data', (d: Buffer) => (drawn += d.toString()));
    const r = createProgressRenderer({ tty: true, stream, write: () => {} });
    for (const e of events(2, 3)) r.onEvent(e);
    r.stop();
    r.stop();
    expect(drawn).toContain('(2/2): Propagating');
    expect(drawn).toContain('Layers');
    expect(drawn).toContain('warning: damp raised');
  });
});

describe('formatting', () => {
  it('formats the module table with aligned columns', () => {
    const t = formatModuleTable([
      { name: 'model.layers.0.self_attn.q_proj', samples: 512, loss: 0.012345, seconds: 1.234 },
      { name: 'lm', samples: 8, loss: 12, seconds: 10 },
    ]);
    const lines = t.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^module\s+samples\s+loss\s+seconds$/);
    expect(lines[2]).toBe('model.layers.0.self_attn.q_proj      512  0.01235     1.23');
    expect(new Set(lines.map((l) => l.length)).size).toBe(1);
  });
  it('formats seconds and bytes', () => {
    expect(formatSeconds(1.234)).toBe('1.23 s');
    expect(formatSeconds(125)).toBe('2 min 5 s');
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(5 * 2 ** 30)).toBe('5.0 GiB');
  });
});
