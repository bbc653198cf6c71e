/**
 * The `layerstream` command line: `oneshot`, `eval`, `env`.
 *
 * Exit codes: 0 success; 1 the command failed (the message says what and how to fix it);
 * 2 the command line is wrong; 130 interrupted by Ctrl-C (after cleaning up partial output).
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError } from 'commander';
import { EXIT, UsageError, formatError } from './errors.js';
import { registerEnvCommand } from './envCommand.js';
import { registerEvalCommand } from './evalCommand.js';
import { processIo, type CliIo } from './io.js';
import { registerOneshotCommand } from './oneshotCommand.js';

function packageVersion(): string {
  const file = fileURLToPath(new URL('../../package.json', import.meta.url));
  return (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version;
}

/** The commander program; commands write through `io`. */
export function buildProgram(io: CliIo): Command {
  const program = new Command('layerstream')
    .description('Layer-wise streaming GPTQ / round-to-nearest quantization of Hugging Face causal LMs (llm-compressor compatible checkpoints)')
    .version(io.version)
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.stdout(s), writeErr: (s) => io.stderr(s) })
    .showHelpAfterError('(add --help for usage)');
  registerOneshotCommand(program, io);
  registerEvalCommand(program, io);
  registerEnvCommand(program, io);
  for (const c of program.commands) c.exitOverride().configureOutput({ writeOut: (s) => io.stdout(s), writeErr: (s) => io.stderr(s) });
  return program;
}

/**
 * Runs the CLI on `argv` (node-style: [node, script, ...args]) and resolves to the exit code.
 * Ctrl-C aborts the running command through `io.signal`; a second Ctrl-C exits at once.
 */
export async function main(argv: string[] = process.argv, ioOverride?: CliIo): Promise<number> {
  const controller = new AbortController();
  const io = ioOverride ?? processIo(packageVersion(), controller.signal);
  let interrupted = false;
  const onSigint = () => {
    if (interrupted) process.exit(EXIT.interrupted);
    interrupted = true;
    io.stderr('\nlayerstream: interrupted; cleaning up (Ctrl-C again to quit at once)\n');
    controller.abort(new Error('interrupted by Ctrl-C'));
  };
  process.on('SIGINT', onSigint);
  let command = 'layerstream';
  let verbose = false;
  const program = buildProgram(io);
  program.hook('preAction', (_program, action) => {
    command = action.name();
    verbose = Boolean(action.opts().verbose);
  });
  try {
    await program.parseAsync(argv);
    return EXIT.ok;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? EXIT.ok : EXIT.usage;
    if (interrupted || io.signal.aborted) return EXIT.interrupted;
    io.stderr(formatError(command, e, verbose));
    return e instanceof UsageError ? EXIT.usage : EXIT.failure;
  } finally {
    // after a Ctrl-C the handler stays until exit, so a second one during teardown still exits 130
    // instead of killing the process by the signal's default action
    if (!interrupted) process.off('SIGINT', onSigint);
  }
}

const invokedDirectly = process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1];
if (invokedDirectly) {
  main().then((code) => process.exit(code));
}
