/**
 * Writing a directory all-or-nothing: everything goes into a temporary sibling
 * (`<outputDir>.tmp-<random>`), which is renamed into place only when complete. A failure or an
 * abort removes the temporary directory, so a reader never sees a half-written checkpoint.
 */
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';

export interface AtomicDirOptions {
  /** Replace a non-empty `outputDir` (the old one is moved aside, then deleted). Default false. */
  overwrite?: boolean;
  /** Stops the write; the temporary directory is removed and the signal's reason is thrown. */
  signal?: AbortSignal;
}

/** Throws the signal's reason (or an AbortError) if it has fired. */
export function throwIfAborted(signal: AbortSignal | undefined, what: string): void {
  if (!signal?.aborted) return;
  const reason: unknown = signal.reason;
  if (reason instanceof Error) throw reason;
  const err = new Error(`${what} was aborted${reason === undefined ? '' : `: ${String(reason)}`}`);
  err.name = 'AbortError';
  throw err;
}

/**
 * Runs `fill(tmpDir)` and moves the result to `outputDir`. Refuses a non-empty `outputDir` unless
 * `overwrite` is set. Returns what `fill` returned.
 */
export async function writeDirAtomically<T>(
  outputDir: string,
  options: AtomicDirOptions,
  fill: (tmpDir: string) => Promise<T>,
): Promise<T> {
  const target = path.resolve(outputDir);
  throwIfAborted(options.signal, `writing '${target}'`);
  await checkTarget(target, options.overwrite ?? false);
  await fsp.mkdir(path.dirname(target), { recursive: true });
  const tmp = `${target}.tmp-${randomBytes(6).toString('hex')}`;
  await fsp.mkdir(tmp);
  try {
    const result = await fill(tmp);
    throwIfAborted(options.signal, `writing '${target}'`);
    await commit(tmp, target, options.overwrite ?? false);
    return result;
  } catch (e) {
    await fsp.rm(tmp, { recursive: true, force: true });
    throw e;
  }
}

/** 'missing', 'empty' or 'full'; throws when the path is a file. */
async function targetState(target: string): Promise<'missing' | 'empty' | 'full'> {
  let stat;
  try {
    stat = await fsp.stat(target);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 'missing';
    throw e;
  }
  if (!stat.isDirectory()) {
    throw new Error(`checkpoint: output path '${target}' exists and is not a directory; choose another output directory`);
  }
  return (await fsp.readdir(target)).length === 0 ? 'empty' : 'full';
}

async function checkTarget(target: string, overwrite: boolean): Promise<void> {
  if ((await targetState(target)) === 'full' && !overwrite) {
    throw new Error(
      `checkpoint: output directory '${target}' exists and is not empty; choose a new directory, empty it, ` +
        `or pass overwrite: true (--overwrite) to replace it`,
    );
  }
}

async function commit(tmp: string, target: string, overwrite: boolean): Promise<void> {
  const state = await targetState(target);
  if (state === 'missing') return fsp.rename(tmp, target);
  if (state === 'empty') {
    await fsp.rmdir(target);
    return fsp.rename(tmp, target);
  }
  await checkTarget(target, overwrite);
  const old = `${target}.old-${randomBytes(6).toString('hex')}`;
  await fsp.rename(target, old);
  try {
    await fsp.rename(tmp, target);
  } catch (e) {
    await fsp.rename(old, target);
    throw e;
  }
  await fsp.rm(old, { recursive: true, force: true });
}
