/**
 * Exit codes and error reporting for the CLI: one paragraph on stderr, the stack only with
 * --verbose.
 */
import { InvalidArgumentError } from 'commander';

/** Exit codes of `layerstream`. */
export const EXIT = {
  ok: 0,
  /** The command ran and failed (bad model directory, dataset, recipe, numerical failure, ...). */
  failure: 1,
  /** The command line itself is wrong (unknown option, missing required option, bad number). */
  usage: 2,
  /** Interrupted by Ctrl-C (SIGINT); partial output was removed. */
  interrupted: 130,
} as const;

/** An error whose message is meant for the user as is (bad option values). */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** The one-paragraph message a user sees, with the stack appended when `verbose`. */
export function formatError(command: string, error: unknown, verbose: boolean): string {
  const e = error instanceof Error ? error : new Error(String(error));
  const paragraph = e.message.replace(/\s*\n\s*/g, ' ').trim();
  const head = `layerstream ${command}: ${paragraph}`;
  const hint = verbose ? '' : ' (run with --verbose for details)';
  if (verbose && e.stack) return `${head}\n${e.stack}\n`;
  return e instanceof UsageError ? `${head}\n` : `${head}${hint}\n`;
}

/** Parses a positive integer option value (commander reports the option name with the message). */
export function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('expected a positive integer.');
  return n;
}

/** Parses a non-negative integer option value (seeds). */
export function nonNegativeInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('expected a non-negative integer.');
  return n;
}
