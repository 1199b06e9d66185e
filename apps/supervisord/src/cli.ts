#!/usr/bin/env node
/**
 * The `podvisor` executable: runs the command dispatcher on the process's
 * arguments and exits with its documented code (docs/cli.md) once everything
 * it wrote to stdout and stderr has been flushed (process-output.ts).
 */
import type { CommandIo } from './commands/run-command.js';
import { main } from './cli-main.js';
import { CliOutput } from './process-output.js';

const io: CommandIo = { stdout: process.stdout, stderr: process.stderr, env: process.env };
const output = new CliOutput(io, process.argv[2] === 'run');
void main(process.argv.slice(2), io)
  .catch((err: unknown) => {
    process.stderr.write(`podvisor: internal error: ${(err as Error)?.stack ?? String(err)}\n`);
    return 1;
  })
  .then((code) => output.exit(code));
