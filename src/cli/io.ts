/** The CLI's connection to the terminal, injectable so commands can be tested in-process. */
export interface CliIo {
  stdout(text: string): void;
  stderr(text: string): void;
  /** Whether stderr is a terminal (progress bars) or a pipe/file (plain progress lines). */
  isTTY: boolean;
  /** The stream progress bars draw on. */
  progressStream: NodeJS.WritableStream;
  /** layerstream's package version. */
  version: string;
  /** Aborted on Ctrl-C (SIGINT): commands pass it down so that work stops and cleans up. */
  signal: AbortSignal;
}

/** The real terminal: process.stdout/stderr, with `signal` aborted on Ctrl-C by the caller. */
export function processIo(version: string, signal: AbortSignal): CliIo {
  return {
    signal,
    stdout: (t) => void process.stdout.write(t),
    stderr: (t) => void process.stderr.write(t),
    isTTY: Boolean(process.stderr.isTTY),
    progressStream: process.stderr,
    version,
  };
}
