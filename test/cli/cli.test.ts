import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateRandomModel } from '../../src/models/random.js';

const ROOT = path.join(import.meta.dirname, '../..');
const BIN = path.join(ROOT, 'bin/layerstream.js');
const FIX = path.join(ROOT, 'test/fixtures');
const tmp = mkdtempSync(path.join(tmpdir(), 'ls-cli-'));
const modelDir = path.join(tmp, 'tiny');

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, LAYERSTREAM_BACKEND: 'wasm' },
    timeout: 60_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/**
 * Runs the CLI and sends one SIGINT each time stderr first matches the next pattern in `interrupts`
 * (a pattern is tested once the previous signal went out, so a line printed after one Ctrl-C
 * never triggers an unplanned second one).
 */
async function interruptCli(args: string[], interrupts: RegExp[]) {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: { ...process.env, LAYERSTREAM_BACKEND: 'wasm' } });
  let stderr = '';
  let sent = 0;
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
    if (sent < interrupts.length && interrupts[sent].test(stderr)) {
      sent++;
      child.kill('SIGINT');
    }
  });
  const [code, signal] = await new Promise<[number | null, string | null]>((resolve) => child.on('exit', (c, sig) => resolve([c, sig])));
  return { code, signal, stderr, sent };
}

beforeAll(async () => {
  // vocab 272 ≥ the fixture tokenizer's 270 ids
  await generateRandomModel(modelDir, { modelType: 'llama', hiddenSize: 32, intermediateSize: 64, numLayers: 2, numHeads: 4, numKvHeads: 2, vocabSize: 272, seed: 3 });
  cpSync(path.join(FIX, 'tokenizer'), modelDir, { recursive: true });
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('layerstream CLI', () => {
  it('--help lists the commands and exits 0', () => {
    const r = cli('--help');
    expect(r.code).toBe(0);
    for (const c of ['oneshot', 'eval', 'env']) expect(r.stdout).toContain(c);
  });

  it('a bad --model path exits 1 with a one-paragraph message and no stack trace', () => {
    const r = cli('eval', '--model', path.join(tmp, 'missing'), '--dataset', path.join(FIX, 'data/lines.txt'));
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^layerstream eval: loadModel: no config\.json in '.*missing'/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('--verbose adds the stack', () => {
    const r = cli('eval', '--model', path.join(tmp, 'missing'), '--dataset', 'x.txt', '--verbose');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/\n\s+at /);
  });

  it('a wrong command line exits 2', () => {
    expect(cli('eval', '--model', modelDir).code).toBe(2);
    expect(cli('eval', '--model', modelDir, '--dataset', 'x', '--max-seq-length', 'zero').code).toBe(2);
    expect(cli('frobnicate').code).toBe(2);
  });

  it('eval --json prints exactly one JSON object with perplexity and tokens', () => {
    const r = cli('eval', '--model', modelDir, '--dataset', path.join(FIX, 'data/lines.txt'), '--max-seq-length', '16', '--json');
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    const out = JSON.parse(lines[0]) as { perplexity: number; tokens: number; backend: string };
    // a random model is close to uniform over its 272 ids
    expect(out.perplexity).toBeGreaterThan(272 / 2);
    expect(out.perplexity).toBeLessThan(272 * 2);
    expect(out.tokens).toBeGreaterThan(10);
    expect(out.backend).toBe('wasm');
  });

  it('Ctrl-C (SIGINT) stops a command and exits 130', async () => {
    const big = path.join(tmp, 'big.txt');
    writeFileSync(big, Array.from({ length: 40000 }, () => 'the cat sat on the mat and the dog ran in the park').join('\n'));
    const r = await interruptCli(['eval', '--model', modelDir, '--dataset', big, '--max-seq-length', '8'], [/eval: \d+ windows/]);
    expect(r.code, r.stderr).toBe(130);
    expect(r.stderr).toContain('interrupted');
  });

  it('a second Ctrl-C during the cleanup still exits 130 (not killed by the signal)', async () => {
    const big = path.join(tmp, 'big2.txt');
    writeFileSync(big, Array.from({ length: 40000 }, () => 'the cat sat on the mat').join('\n'));
    const r = await interruptCli(['eval', '--model', modelDir, '--dataset', big, '--max-seq-length', '8'], [/eval: \d+ windows/, /interrupted; cleaning up/]);
    expect(r.sent).toBe(2);
    expect(r.signal, r.stderr).toBeNull();
    expect(r.code, r.stderr).toBe(130);
  });

  it('oneshot --json writes a checkpoint and prints one JSON object; eval reads the checkpoint', () => {
    const out = path.join(tmp, 'w8a16');
    const r = cli('oneshot', '--model', modelDir, '--dataset', path.join(FIX, 'data/lines.txt'), '--output', out, '--scheme', 'W8A16', '--num-calibration-samples', '3', '--max-seq-length', '16', '--json');
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    const result = JSON.parse(lines[0]) as { backend: string; seconds: number; peakDeviceBytes: number; outputDir: string; modules: { name: string; samples: number; loss: number; seconds: number }[] };
    expect(result.backend).toBe('wasm');
    expect(result.outputDir).toBe(out);
    expect(result.peakDeviceBytes).toBeGreaterThan(0);
    expect(result.modules).toHaveLength(14);
    expect(result.modules[0]).toMatchObject({ name: 'model.layers.0.self_attn.q_proj', samples: 3 });
    // progress went to stderr as plain lines (not a TTY)
    expect(r.stderr).toContain('(1/2): Calibrating: 3 batches');
    const ev = cli('eval', '--model', out, '--dataset', path.join(FIX, 'data/lines.txt'), '--max-seq-length', '16', '--json');
    expect(ev.code, ev.stderr).toBe(0);
    expect(JSON.parse(ev.stdout).perplexity).toBeGreaterThan(100);
  });

  it('oneshot refuses --recipe with --scheme (exit 2) and a missing dataset file (exit 1)', () => {
    const both = cli('oneshot', '--model', modelDir, '--output', path.join(tmp, 'x'), '--scheme', 'W8A16', '--recipe', 'r.yaml');
    expect(both.code).toBe(2);
    expect(both.stderr).toMatch(/either --recipe FILE or --scheme NAME/);
    const missing = cli('oneshot', '--model', modelDir, '--output', path.join(tmp, 'y'), '--scheme', 'W8A16', '--dataset', path.join(tmp, 'nope.txt'));
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/dataset '.*nope\.txt' does not exist/);
  });

  it('Ctrl-C during oneshot exits 130 and leaves no output directory or temp files', async () => {
    const big = path.join(tmp, 'calib-big.txt');
    writeFileSync(big, Array.from({ length: 1500 }, (_, i) => `the cat ${i} sat on the mat`).join('\n'));
    const out = path.join(tmp, 'interrupted');
    const r = await interruptCli(
      ['oneshot', '--model', modelDir, '--dataset', big, '--output', out, '--scheme', 'W8A16', '--num-calibration-samples', '1500', '--max-seq-length', '16'],
      [/\(1\/2\): Calibrating: \d+ batches/],
    );
    expect(r.sent).toBe(1);
    expect(r.code, r.stderr).toBe(130);
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(tmp).filter((n) => n.includes('.tmp'))).toEqual([]);
  });

  it('env reports the backend', () => {
    const text = cli('env');
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^backend\s+wasm/m);
    const json = JSON.parse(cli('env', '--json').stdout) as { backend: string; versions: Record<string, string> };
    expect(json.backend).toBe('wasm');
    expect(json.versions['@tensorflow/tfjs-core']).toBe('4.22.0');
  });
});
