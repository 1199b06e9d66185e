/**
 * `podvisor console`: attaches the terminal to the VM's serial console through
 * the control endpoint (`GET /v1/console`, upgraded to a raw byte stream).
 * What is typed goes to the guest; the guest's output, starting with the last
 * 4 KiB, comes back. `Ctrl-]` detaches, as in telnet and `virsh console`; the
 * VM keeps running. On a terminal, the input is put in raw mode for the
 * session, so that `Ctrl-C` reaches the guest instead of ending the command.
 */
import { parseArgs } from 'node:util';
import type { Duplex } from 'node:stream';
import { CONSOLE_UPGRADE_PROTOCOL } from '../http/control-handler.js';
import { CONNECTION_HELP, CONNECTION_OPTIONS, CtlExit, controlClientFromFlags, reportClientError, reportErrorAnswer } from './ctl-command.js';
import type { CommandIo } from './run-command.js';

/** The detach key: Ctrl-] (GS, 0x1d). */
export const DETACH_BYTE = 0x1d;

export const CONSOLE_HELP = `Usage: podvisor console [options]

Attaches this terminal to the VM's serial console: type to the guest, read its
output. Detach with Ctrl-] (the VM keeps running).

Options:
${CONNECTION_HELP}
  -h, --help          this help

Over TCP, attaching needs an admin token.
Exit codes: 0 detached (or the console ended), 1 internal error, 2 usage,
3 endpoint unreachable, 4 the VM is not running, 5 not authorized.
`;

/** The terminal, when it is one. */
type Input = NodeJS.ReadableStream & { isTTY?: boolean; setRawMode?: (raw: boolean) => unknown };

export interface ConsoleIo extends CommandIo {
  /** Default `process.stdin`. */
  stdin?: Input;
}

export async function consoleCommand(argv: readonly string[], io: ConsoleIo): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: { ...CONNECTION_OPTIONS, help: { type: 'boolean', short: 'h' } },
      strict: true,
    }));
  } catch (err) {
    io.stderr.write(`podvisor console: ${(err as Error).message}\n\n${CONSOLE_HELP}`);
    return CtlExit.Usage;
  }
  if (values.help === true) {
    io.stdout.write(CONSOLE_HELP);
    return CtlExit.Ok;
  }
  let client;
  try {
    client = controlClientFromFlags(values, io.env);
  } catch (err) {
    io.stderr.write(`podvisor console: ${(err as Error).message}\n\n${CONSOLE_HELP}`);
    return CtlExit.Usage;
  }
  try {
    // The upgrade's own error answers are not readable through undici, so ask first: reachable, token valid, VM running.
    const state = await client.request('GET', '/v1/vm');
    if (state.status >= 400) return reportErrorAnswer(io, 'console', state);
    const status = (state.json as { status: string }).status;
    if (status !== 'Running' && status !== 'Paused') {
      io.stderr.write(`podvisor console: the VM is ${status}; there is no console to attach to\n`);
      return CtlExit.Refused;
    }
    let socket: Duplex;
    try {
      socket = await client.upgrade('/v1/console', CONSOLE_UPGRADE_PROTOCOL);
    } catch (err) {
      if (client.target.startsWith('http')) {
        io.stderr.write('podvisor console: the endpoint refused to attach; over TCP this needs an admin token (--token or --token-file)\n');
        return CtlExit.NotAuthorized;
      }
      throw err;
    }
    io.stderr.write(`podvisor console: attached to ${(state.json as { vm: string }).vm} (detach with Ctrl-])\n`);
    await session(socket, io.stdin ?? (process.stdin as Input), io.stdout);
    io.stderr.write('\npodvisor console: detached\n');
    return CtlExit.Ok;
  } catch (err) {
    return reportClientError(io, 'console', err);
  } finally {
    await client.close();
  }
}

/** Pumps bytes both ways until Ctrl-] is typed, the input ends, or the server closes the stream. */
function session(socket: Duplex, stdin: Input, stdout: NodeJS.WritableStream): Promise<void> {
  return new Promise((resolve) => {
    const raw = stdin.isTTY === true && typeof stdin.setRawMode === 'function';
    if (raw) stdin.setRawMode?.(true);
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      stdin.off('data', onInput);
      stdin.off('end', finish);
      if (raw) stdin.setRawMode?.(false);
      stdin.pause();
      socket.destroy();
      resolve();
    };
    const onInput = (chunk: Buffer | string): void => {
      const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      const detach = bytes.indexOf(DETACH_BYTE);
      if (detach === -1) {
        socket.write(bytes);
        return;
      }
      if (detach > 0) socket.write(bytes.subarray(0, detach));
      finish();
    };
    socket.on('data', (chunk: Buffer) => stdout.write(chunk));
    socket.on('close', finish);
    socket.on('error', finish);
    stdin.on('data', onInput);
    stdin.on('end', finish);
    stdin.resume();
  });
}
