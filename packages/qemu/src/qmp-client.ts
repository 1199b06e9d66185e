/**
 * A QMP client over a unix socket, layered like qemu.qmp: the line protocol
 * (`JsonLineDecoder`, one JSON object per line), then the client proper
 * (greeting, `qmp_capabilities` negotiation, commands correlated with their
 * replies by `id`), then event fan-out as an rxjs `Observable`. An explicit
 * connection state (`idle → connecting → running → disconnected`) guards every
 * call. A client is used once: after it disconnects it stays disconnected, and
 * every command still waiting for its reply fails with `QmpInterruptedError`.
 */
import { watch } from 'node:fs';
import path from 'node:path';
import { createConnection, type Socket } from 'node:net';
import { Subject, type Observable } from 'rxjs';
import { SilentLogger, SystemClock, errorMessage, type Clock, type Logger, type QmpEventMessage } from '@podvisor/core';
import { JsonLineDecoder } from './json-line-decoder.js';
import { QmpCommandError, QmpConnectError, QmpError, QmpInterruptedError, QmpProtocolError } from './qmp-error.js';
import { QmpTranscript } from './qmp-transcript.js';

export type QmpConnectionState = 'idle' | 'connecting' | 'running' | 'disconnected';

/** The server greeting (QMP spec, section 2.2). */
export interface QmpGreeting {
  version: { qemu: { major: number; minor: number; micro: number }; package: string };
  /** What the server offers; this client enables none of it (no `oob`). */
  capabilities: string[];
}

export interface QmpClientOptions {
  log?: Logger;
  clock?: Clock;
  /** Keep a transcript of every line (true: a new one; or one to append to). Default: none. */
  transcript?: boolean | QmpTranscript;
  /** How long to wait between attempts while the socket does not exist or refuses. Default 20 ms. */
  retryIntervalMs?: number;
}

export interface QmpConnectOptions {
  /** The whole budget: socket, greeting and negotiation. Default 10 000 ms. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

interface PendingCall {
  command: string;
  resolve(value: unknown): void;
  reject(err: Error): void;
}

/** Socket errors that mean "qemu has not created or opened the socket yet": try again. */
const RETRYABLE = new Set(['ENOENT', 'ECONNREFUSED', 'EAGAIN']);

export class QmpClient {
  private current: QmpConnectionState = 'idle';
  private socket: Socket | null = null;
  private readonly decoder = new JsonLineDecoder();
  private readonly pending = new Map<number, PendingCall>();
  private nextId = 1;
  private greetingValue: QmpGreeting | null = null;
  private greetingWaiter: { resolve(g: QmpGreeting): void; reject(err: Error): void } | null = null;
  private closeReason = '';
  private readonly eventSubject = new Subject<QmpEventMessage>();
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly retryIntervalMs: number;
  private markClosed!: () => void;
  private roundTrip: number | null = null;

  /** QMP events in the order qemu sent them; completes when the connection ends. Hot: late subscribers miss earlier events. */
  readonly events: Observable<QmpEventMessage> = this.eventSubject.asObservable();
  /** Resolves once the client is disconnected, for whatever reason. */
  readonly closed: Promise<void> = new Promise((resolve) => {
    this.markClosed = resolve;
  });
  /** Every line sent and received, when enabled. */
  readonly transcript: QmpTranscript | null;

  constructor(options: QmpClientOptions = {}) {
    this.log = options.log ?? new SilentLogger();
    this.clock = options.clock ?? new SystemClock();
    this.retryIntervalMs = options.retryIntervalMs ?? 20;
    this.transcript = options.transcript === true ? new QmpTranscript() : options.transcript || null;
  }

  get state(): QmpConnectionState {
    return this.current;
  }

  /** The greeting, once connected. */
  get greeting(): QmpGreeting | null {
    return this.greetingValue;
  }

  /** qemu's version from the greeting, `major.minor.micro`; empty before the greeting. */
  get version(): string {
    const v = this.greetingValue?.version.qemu;
    return v === undefined ? '' : `${v.major}.${v.minor}.${v.micro}`;
  }

  /** The last measured `query-status` round trip in milliseconds, `null` before the first. */
  get lastRoundTripMs(): number | null {
    return this.roundTrip;
  }

  /**
   * Connects to the QMP socket at `path`, retrying while it does not exist yet
   * or refuses (qemu creates it shortly after it starts), reads the greeting
   * and negotiates capabilities (enabling none). Allowed only in state `idle`.
   * Moves to `running`, or to `disconnected` when it throws `QmpConnectError`
   * (timeout, abort, a missing or malformed greeting, a failed negotiation).
   */
  async connect(path: string, options: QmpConnectOptions = {}): Promise<QmpGreeting> {
    if (this.current !== 'idle') throw new QmpError('ERR_QMP_STATE', `cannot connect QMP to ${path}: the client is ${this.current} (a client connects once)`);
    this.current = 'connecting';
    const timeoutMs = options.timeoutMs ?? 10_000;
    const started = this.clock.now().getTime();
    const deadline = started + timeoutMs;
    const budget = { path, deadline, timeoutMs, signal: options.signal };
    try {
      const socket = await this.openWithRetry(budget);
      this.attach(socket);
      this.transcript?.record('--', `connected to ${path}`);
      const greeting = await this.within(
        new Promise<QmpGreeting>((resolve, reject) => {
          this.greetingWaiter = { resolve, reject };
        }),
        budget,
        'no QMP greeting',
      );
      // Capabilities negotiation (QMP spec, section 4): `oob` is offered by qemu 7.2 but left off on purpose.
      await this.within(this.send('qmp_capabilities', undefined), budget, 'no reply to qmp_capabilities');
      this.current = 'running';
      this.log.info('QMP connected', { path, version: this.version, capabilities: greeting.capabilities, connectMs: this.clock.now().getTime() - started });
      return greeting;
    } catch (err) {
      const failure = err instanceof QmpConnectError ? err : new QmpConnectError(`cannot connect QMP at ${path}: ${errorMessage(err)}`, { cause: err });
      this.close(`connect failed: ${failure.message}`, failure);
      throw failure;
    }
  }

  /**
   * Runs one command and resolves with its `return` value. Allowed only in
   * state `running`. Throws `QmpCommandError` when qemu answers with an error,
   * `QmpInterruptedError` when the connection ends first (or has ended), and
   * `QmpError` (ERR_QMP_STATE) before `connect` has finished.
   */
  async execute<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T> {
    if (this.current === 'disconnected') throw new QmpInterruptedError(command, `not connected (${this.closeReason})`);
    if (this.current !== 'running') throw new QmpError('ERR_QMP_STATE', `cannot run QMP command ${command}: the client is ${this.current}`);
    if (command !== 'query-status') return (await this.send(command, args)) as T;
    const started = performance.now();
    const result = (await this.send(command, args)) as T;
    this.roundTrip = performance.now() - started;
    return result;
  }

  /** Measures the round trip of `query-status` and returns it in milliseconds. Throws like `execute`. */
  async ping(): Promise<number> {
    await this.execute('query-status');
    return this.roundTrip ?? 0;
  }

  /** Closes the connection; pending calls fail with `QmpInterruptedError`. Idempotent. */
  async disconnect(): Promise<void> {
    this.close('disconnected by the client');
    await this.closed;
  }

  private async openWithRetry(budget: Budget): Promise<Socket> {
    for (;;) {
      const attempt = openUnixSocket(budget.path);
      try {
        return await this.within(attempt, budget, 'the QMP socket did not accept');
      } catch (err) {
        void attempt.then((s) => s.destroy(), () => undefined);
        const code = (err as NodeJS.ErrnoException).code;
        if (code === undefined || !RETRYABLE.has(code)) throw err;
        if (this.clock.now().getTime() + this.retryIntervalMs >= budget.deadline) {
          throw new QmpConnectError(`the QMP socket ${budget.path} did not accept within ${budget.timeoutMs} ms (${code})`, { cause: err });
        }
        await this.within(this.socketMayAppear(budget.path, code), budget, 'the QMP socket did not accept');
      }
    }
  }

  /**
   * Waits before the next attempt: until the socket file appears (a watch on
   * its folder: qemu creates it a few tens of ms after it starts, and every ms
   * counts at a pod's start), or the retry interval, whichever comes first.
   */
  private async socketMayAppear(socketPath: string, code: string): Promise<void> {
    const stop = new AbortController();
    const appeared =
      code !== 'ENOENT'
        ? new Promise<void>(() => undefined)
        : new Promise<void>((resolve) => {
            try {
              const watcher = watch(path.dirname(socketPath), { signal: stop.signal }, (_event, name) => {
                if (name === path.basename(socketPath)) resolve();
              });
              watcher.on('error', () => undefined);
            } catch {
              // The folder is gone or cannot be watched: the interval decides.
            }
          });
    try {
      await Promise.race([appeared, this.clock.sleep(this.retryIntervalMs)]);
    } finally {
      stop.abort();
    }
  }

  /** Races `work` against the connect deadline and the caller's signal. */
  private async within<T>(work: Promise<T>, budget: Budget, what: string): Promise<T> {
    const stop = new AbortController();
    const remaining = Math.max(0, budget.deadline - this.clock.now().getTime());
    const timeout = this.clock.sleep(remaining, stop.signal).then(() => {
      throw new QmpConnectError(`${what} on ${budget.path} within ${budget.timeoutMs} ms`);
    });
    let onAbort = (): void => undefined;
    const aborted = new Promise<never>((_resolve, reject) => {
      onAbort = () => reject(new QmpConnectError(`connecting QMP on ${budget.path} was aborted: ${errorMessage(budget.signal?.reason)}`, { cause: budget.signal?.reason }));
      if (budget.signal?.aborted) onAbort();
      else budget.signal?.addEventListener('abort', onAbort, { once: true });
    });
    try {
      return await Promise.race([work, timeout, aborted]);
    } finally {
      stop.abort();
      budget.signal?.removeEventListener('abort', onAbort);
    }
  }

  private attach(socket: Socket): void {
    this.socket = socket;
    let socketError: Error | undefined;
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => {
      socketError = err;
    });
    socket.on('close', () => {
      const rest = this.decoder.rest().trim();
      this.close(rest === '' ? 'the QMP socket closed' : `the QMP socket closed in the middle of a message: ${rest.slice(0, 200)}`, socketError);
    });
  }

  private onData(chunk: Buffer): void {
    try {
      for (const { line, message } of this.decoder.push(chunk)) {
        this.transcript?.record('<-', line);
        this.dispatch(message, line);
      }
    } catch (err) {
      const error = err instanceof QmpError ? err : new QmpProtocolError(errorMessage(err), { cause: err });
      this.log.error('QMP protocol error, closing the connection', { err: error });
      this.close(error.message, error);
    }
  }

  /** Routes one message: the greeting first, then events and replies (QMP spec, sections 2.2, 2.4, 2.5). */
  private dispatch(message: Record<string, unknown>, line: string): void {
    if (this.greetingValue === null) {
      const greeting = parseGreeting(message);
      if (greeting === null) throw new QmpProtocolError(`expected the QMP greeting, got: ${line.slice(0, 200)}`);
      this.greetingValue = greeting;
      this.greetingWaiter?.resolve(greeting);
      this.greetingWaiter = null;
      return;
    }
    if (typeof message.event === 'string') {
      this.eventSubject.next({
        event: message.event,
        data: isRecord(message.data) ? message.data : {},
        timestamp: isRecord(message.timestamp) ? (message.timestamp as QmpEventMessage['timestamp']) : { seconds: 0, microseconds: 0 },
      });
      return;
    }
    if (!('return' in message) && !('error' in message)) throw new QmpProtocolError(`QMP server sent a message that is neither event nor reply: ${line.slice(0, 200)}`);
    const id = message.id;
    const call = typeof id === 'number' ? this.pending.get(id) : undefined;
    if (call === undefined) throw new QmpProtocolError(`QMP server sent a reply with an unknown id ${JSON.stringify(id)}: ${line.slice(0, 200)}`);
    this.pending.delete(id as number);
    if ('return' in message) {
      call.resolve(message.return);
      return;
    }
    const error = isRecord(message.error) ? message.error : {};
    call.reject(new QmpCommandError(call.command, String(error.class ?? 'GenericError'), String(error.desc ?? line)));
  }

  private send(command: string, args: Record<string, unknown> | undefined): Promise<unknown> {
    const socket = this.socket;
    if (socket === null || this.current === 'disconnected') return Promise.reject(new QmpInterruptedError(command, `not connected (${this.closeReason})`));
    const id = this.nextId++;
    const line = JSON.stringify(args === undefined ? { execute: command, id } : { execute: command, arguments: args, id });
    return new Promise((resolve, reject) => {
      this.pending.set(id, { command, resolve, reject });
      this.transcript?.record('->', line);
      socket.write(`${line}\n`);
    });
  }

  /** Moves to `disconnected` once: closes the socket, fails every pending call, completes the events. */
  private close(reason: string, cause?: unknown): void {
    if (this.current === 'disconnected') return;
    this.current = 'disconnected';
    this.closeReason = reason;
    this.transcript?.record('--', `disconnected: ${reason}`);
    this.socket?.destroy();
    const calls = [...this.pending.values()];
    this.pending.clear();
    for (const call of calls) call.reject(new QmpInterruptedError(call.command, reason, cause));
    this.greetingWaiter?.reject(cause instanceof Error ? cause : new QmpConnectError(reason));
    this.greetingWaiter = null;
    if (calls.length > 0) this.log.warn('QMP disconnected with calls pending', { reason, pending: calls.map((c) => c.command) });
    else this.log.debug('QMP disconnected', { reason });
    this.eventSubject.complete();
    this.markClosed();
  }
}

interface Budget {
  path: string;
  deadline: number;
  timeoutMs: number;
  signal: AbortSignal | undefined;
}

function openUnixSocket(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ path });
    const onError = (err: Error): void => {
      socket.destroy();
      reject(err);
    };
    socket.once('error', onError);
    socket.once('connect', () => {
      socket.off('error', onError);
      resolve(socket);
    });
  });
}

function parseGreeting(message: Record<string, unknown>): QmpGreeting | null {
  const qmp = message.QMP;
  if (!isRecord(qmp) || !isRecord(qmp.version) || !isRecord(qmp.version.qemu) || !Array.isArray(qmp.capabilities)) return null;
  const q = qmp.version.qemu;
  return {
    version: { qemu: { major: Number(q.major), minor: Number(q.minor), micro: Number(q.micro) }, package: String(qmp.version.package ?? '') },
    capabilities: qmp.capabilities.map(String),
  };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
