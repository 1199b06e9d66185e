#!/usr/bin/env node
/**
 * The `podvisor` executable: runs the command dispatcher on the process's
 * arguments and exits with its documented code (docs/cli.md) once everything
 * it wrote to stdout and stderr has been flushed (process-output.ts).
 */
import type { CommandIo } from './commands/run-command.js';
import { main } from './cli-main.js';
import { CliOutput } from './process-output.js';
import { bufferEarlySignals } from './pid1/early-signals.js';

// `run` may be PID 1: no signal may be lost while it starts (the launcher did this already).
if (process.argv[2] === 'run') bufferEarlySignals();

const io: CommandIo = { stdout: process.stdout, stderr: process.stderr, env: process.env };
const output = new CliOutput(io, process.argv[2] === 'run');
void main(process.argv.slice(2), io)
  .catch((err: unknown) => {
    process.stderr.write(`podvisor: internal error: ${(err as Error)?.stack ?? String(err)}\n`);
    return 1;
  })
  .then((code) => output.exit(code));
