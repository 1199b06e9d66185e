/**
 * Structured JSON-lines logging. Libraries receive a `Logger` and never write
 * to stdout themselves: stdout belongs to the VM's serial console. Each line is
 * `{"time","level","logger",...bindings,"msg",...fields}`.
 */
import { inspect } from 'node:util';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  /** A logger that adds `bindings` to every line; `name` extends the logger name with `/name`. */
  child(bindings: Record<string, unknown> & { name?: string }): Logger;
}

export const Logger = Symbol.for('podvisor.Logger');

export interface LogSink {
  write(line: string): unknown;
}

export class JsonLogger implements Logger {
  constructor(
    private readonly sink: LogSink,
    private readonly name: string,
    private readonly minLevel: LogLevel = 'info',
    private readonly bindings: Record<string, unknown> = {},
    private readonly now: () => Date = () => new Date(),
  ) {}

  debug(msg: string, fields?: Record<string, unknown>): void {
    this.log('debug', msg, fields);
  }
  info(msg: string, fields?: Record<string, unknown>): void {
    this.log('info', msg, fields);
  }
  warn(msg: string, fields?: Record<string, unknown>): void {
    this.log('warn', msg, fields);
  }
  error(msg: string, fields?: Record<string, unknown>): void {
    this.log('error', msg, fields);
  }

  child(bindings: Record<string, unknown> & { name?: string }): Logger {
    const { name, ...rest } = bindings;
    return new JsonLogger(
      this.sink,
      name === undefined ? this.name : `${this.name}/${name}`,
      this.minLevel,
      { ...this.bindings, ...rest },
      this.now,
    );
  }

  private log(level: LogLevel, msg: string, fields?: Record<string, unknown>): void {
    if (LEVELS[level] < LEVELS[this.minLevel]) return;
    const line = { time: this.now().toISOString(), level, logger: this.name, ...this.bindings, msg, ...normalize(fields) };
    this.sink.write(`${safeStringify(line)}\n`);
  }
}

/** A logger that drops everything, for tests and library defaults. */
export class SilentLogger implements Logger {
  debug(): void {}
  info(): void {}
  warn(): void {}
  error(): void {}
  child(): Logger {
    return this;
  }
}

function normalize(fields: Record<string, unknown> | undefined): Record<string, unknown> {
  if (fields === undefined) return {};
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(fields)) {
    out[k] = v instanceof Error ? serializeError(v) : v;
  }
  return out;
}

function serializeError(err: Error): Record<string, unknown> {
  const coded = err as Error & { code?: unknown; hint?: unknown };
  return {
    name: err.name,
    message: err.message,
    ...(coded.code === undefined ? {} : { code: coded.code }),
    ...(coded.hint === undefined ? {} : { hint: coded.hint }),
    ...(err.cause === undefined ? {} : { cause: err.cause instanceof Error ? serializeError(err.cause) : err.cause }),
  };
}

function safeStringify(value: unknown): string {
  try {
    return JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
  } catch {
    return JSON.stringify({ msg: inspect(value) });
  }
}

export function parseLogLevel(value: string | undefined): LogLevel | undefined {
  return value !== undefined && value in LEVELS ? (value as LogLevel) : undefined;
}
