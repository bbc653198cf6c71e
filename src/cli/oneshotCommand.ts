// placeholder until src/oneshot.ts lands
import type { Command } from 'commander';
import type { CliIo } from './io.js';
export function registerOneshotCommand(_program: Command, _io: CliIo): void {}
