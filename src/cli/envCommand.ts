/** `layerstream env`: what this machine will run on (backend, SIMD, threads, accelerator, versions). */
import type { Command } from 'commander';
import { initBackend } from '../tensor/backend.js';
import { acceleratorInfo } from '../tensor/accel.js';
import type { CliIo } from './io.js';

export interface EnvOptions {
  backend?: string;
  json?: boolean;
}

/** Collects the environment report printed by `layerstream env`. */
export async function environmentReport(options: EnvOptions, io: CliIo): Promise<Record<string, unknown>> {
  const backend = await initBackend({ backend: options.backend, warn: (m) => io.stderr(`${m}\n`) });
  const accel = acceleratorInfo();
  return {
    backend: backend.name,
    package: backend.package,
    simd: backend.simd ?? null,
    threads: backend.threads ?? null,
    acceleratedKernels: backend.acceleratedKernels,
    accelerator: accel.active
      ? { active: true, kernels: accel.kernels, threads: accel.threads, blas: accel.blas, lapack: accel.lapack }
      : { active: false, reason: accel.reason ?? 'not enabled' },
    versions: { layerstream: io.version, ...backend.versions },
    platform: `${process.platform}-${process.arch}`,
    warnings: backend.warnings,
  };
}

function render(report: Record<string, unknown>): string {
  const accel = report.accelerator as Record<string, unknown>;
  const versions = report.versions as Record<string, string>;
  const lines = [
    `backend        ${report.backend} (${report.package})`,
    `simd           ${report.simd ?? 'n/a'}`,
    `threads        ${report.threads ?? 'n/a'}`,
    accel.active
      ? `accelerator    ${accel.blas}, ${accel.threads} threads, kernels: ${(accel.kernels as string[]).join(', ')}`
      : `accelerator    off (${accel.reason})`,
    `platform       ${report.platform}`,
    'versions',
    ...Object.entries(versions).map(([k, v]) => `  ${k} ${v}`),
  ];
  return lines.join('\n') + '\n';
}

/** Adds the `env` command to `program`. */
export function registerEnvCommand(program: Command, io: CliIo): void {
  program
    .command('env')
    .description('print the backend, SIMD, threads, native accelerator and versions layerstream will use')
    .option('--backend <name>', 'force a backend: tensorflow, wasm or cpu (default: the best available)')
    .option('--json', 'print one JSON object on stdout')
    .option('--verbose', 'print stack traces on errors')
    .action(async (options: EnvOptions) => {
      const report = await environmentReport(options, io);
      io.stdout(options.json ? `${JSON.stringify(report)}\n` : render(report));
    });
}
