#!/usr/bin/env node
/**
 * The `podvisor` executable: runs the command dispatcher on the process's
 * arguments and exits with its documented code (docs/cli.md).
 */
import type { CommandIo } from './commands/run-command.js';
import { main } from './cli-main.js';

const io: CommandIo = { stdout: process.stdout, stderr: process.stderr, env: process.env };
void main(process.argv.slice(2), io)
  .catch((err: unknown) => {
    process.stderr.write(`podvisor: internal error: ${(err as Error)?.stack ?? String(err)}\n`);
    return 1;
  })
  .then((code) => {
    // Let stdout/stderr drain, then exit with the documented code.
    process.exitCode = code;
    setImmediate(() => process.exit(code));
  });
