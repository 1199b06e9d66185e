/**
 * The QMP error tree, after qemu.qmp's: every failure of the QMP client is a
 * `QmpError`, itself a `PodvisorError` with a stable code.
 *
 * ```
 * PodvisorError
 * └── QmpError                 any QMP failure (ERR_QMP_NOT_CONNECTED when a call comes before `connect`)
 *     ├── QmpConnectError      ERR_QMP_CONNECT: no socket, no greeting, or negotiation failed
 *     ├── QmpProtocolError     ERR_QMP_PROTOCOL: the server broke the protocol (garbage, unknown id); the client disconnects
 *     ├── QmpCommandError      ERR_QMP_COMMAND: the server answered a command with an error (QMP `class` and `desc`)
 *     └── QmpInterruptedError  ERR_QMP_INTERRUPTED: the connection ended before the reply came
 * ```
 */
import { PodvisorError, type PodvisorErrorOptions } from '@podvisor/core';

/** The base of every QMP failure. */
export class QmpError extends PodvisorError {
  constructor(code: string, message: string, options: PodvisorErrorOptions = {}) {
    super(code, message, options);
    this.name = 'QmpError';
  }
}

/** Connecting failed: the socket never accepted, the greeting was missing or wrong, or `qmp_capabilities` failed. */
export class QmpConnectError extends QmpError {
  constructor(message: string, options: PodvisorErrorOptions = {}) {
    super('ERR_QMP_CONNECT', message, options);
    this.name = 'QmpConnectError';
  }
}

/** The server sent something QMP does not allow; the connection is closed because nothing after it can be trusted. */
export class QmpProtocolError extends QmpError {
  constructor(message: string, options: PodvisorErrorOptions = {}) {
    super('ERR_QMP_PROTOCOL', message, options);
    this.name = 'QmpProtocolError';
  }
}

/** The server answered a command with `{"error": {"class", "desc"}}` (QMP spec, section 2.4.2). */
export class QmpCommandError extends QmpError {
  readonly command: string;
  /** QMP's error class, e.g. `CommandNotFound`, `GenericError`. */
  readonly errorClass: string;
  readonly desc: string;

  constructor(command: string, errorClass: string, desc: string) {
    super('ERR_QMP_COMMAND', `QMP command ${command} failed: ${errorClass}: ${desc}`, { details: { command, class: errorClass, desc } });
    this.name = 'QmpCommandError';
    this.command = command;
    this.errorClass = errorClass;
    this.desc = desc;
  }
}

/** The connection ended (qemu exited, the socket closed, a protocol error) while a command waited for its reply. */
export class QmpInterruptedError extends QmpError {
  readonly command: string;

  constructor(command: string, reason: string, cause?: unknown) {
    super('ERR_QMP_INTERRUPTED', `QMP command ${command} interrupted: ${reason}`, {
      cause,
      hint: 'the QMP connection is gone, usually because qemu exited; the supervisor decides what happens next',
      details: { command },
    });
    this.name = 'QmpInterruptedError';
    this.command = command;
  }
}
