/** Plain-text formatting for the CLI: durations, byte sizes, the per-module table. */

/** `3.21 s`, `42.0 s`, `2 min 5 s`. */
export function formatSeconds(s: number): string {
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  const m = Math.floor(s / 60);
  return `${m} min ${Math.round(s - 60 * m)} s`;
}

/** Binary units with one decimal: `512 B`, `1.5 KiB`, `3.2 GiB`. */
export function formatBytes(b: number): string {
  if (b < 1024) return `${b} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = b / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(1)} ${units[i]}`;
}

export interface ModuleRow {
  name: string;
  samples: number;
  loss: number;
  seconds: number;
}

/**
 * The end-of-run table: one row per compressed module, in the order they were compressed.
 *
 * @example
 * formatModuleTable([{ name: 'model.layers.0.mlp.down_proj', samples: 512, loss: 0.013, seconds: 1.2 }]);
 */
export function formatModuleTable(rows: readonly ModuleRow[]): string {
  const header = ['module', 'samples', 'loss', 'seconds'];
  const cells = rows.map((r) => [r.name, String(r.samples), r.loss.toPrecision(4), r.seconds.toFixed(2)]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (c: string[]) => c.map((v, i) => (i === 0 ? v.padEnd(widths[i]) : v.padStart(widths[i]))).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.map(line)].join('\n') + '\n';
}
