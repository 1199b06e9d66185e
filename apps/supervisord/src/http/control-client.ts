/**
 * The control endpoint's client side, over undici: the unix socket by default
 * (an `Agent` that connects to the socket path), or a TCP URL with a bearer
 * token. Used by `podvisor ctl`, `podvisor console`, the benchmark and the
 * tests. It returns answers as they are (status, headers, body) and leaves
 * their meaning to the caller.
 */
import type { Duplex, Readable } from 'node:stream';
import { Agent, request, upgrade } from 'undici';
import { PodvisorError } from '@podvisor/core';

export interface ControlClientOptions {
  /** The unix socket (wins over `url`). */
  socketPath?: string;
  /** `http://host:port`, when not using the socket. */
  url?: string;
  token?: string;
  /** Bound of a whole request (not of streams). Default 30 000 ms. */
  timeoutMs?: number;
  /** Keep-alive connections to open at most. Default 16. */
  connections?: number;
}

export interface ControlAnswer {
  status: number;
  headers: Record<string, string>;
  text: string;
  /** The parsed body when it is JSON, else `undefined`. */
  json: unknown;
}

export class ControlClient {
  readonly origin: string;
  private readonly agent: Agent;
  private readonly timeoutMs: number;

  constructor(private readonly options: ControlClientOptions) {
    const socketPath = options.socketPath;
    this.origin = socketPath !== undefined ? 'http://localhost' : (options.url ?? 'http://127.0.0.1:5800').replace(/\/+$/, '');
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.agent = new Agent({ connections: options.connections ?? 16, pipelining: 1, ...(socketPath === undefined ? {} : { connect: { socketPath } }) });
  }

  /** Where it talks to, for messages. */
  get target(): string {
    return this.options.socketPath ?? this.origin;
  }

  /**
   * One request; resolves with any HTTP status. Throws `ERR_CONTROL_UNREACHABLE`
   * when nothing answers at the socket or URL (or within the timeout).
   */
  async request(method: string, path: string, options: { body?: unknown; headers?: Record<string, string> } = {}): Promise<ControlAnswer> {
    const headers: Record<string, string> = { ...this.auth(), ...options.headers };
    let body: string | undefined;
    if (options.body !== undefined) {
      body = typeof options.body === 'string' ? options.body : JSON.stringify(options.body);
      headers['content-type'] ??= 'application/json';
    }
    try {
      const res = await request(`${this.origin}${path}`, {
        method: method as 'GET',
        headers,
        ...(body === undefined ? {} : { body }),
        dispatcher: this.agent,
        headersTimeout: this.timeoutMs,
        bodyTimeout: this.timeoutMs,
      });
      const text = await res.body.text();
      const flat = flatten(res.headers);
      let json: unknown;
      if ((flat['content-type'] ?? '').startsWith('application/json')) {
        try {
          json = JSON.parse(text) as unknown;
        } catch {
          json = undefined;
        }
      }
      return { status: res.statusCode, headers: flat, text, json };
    } catch (err) {
      throw this.unreachable(err);
    }
  }

  /** A streaming GET (Server-Sent Events): the answer's status, headers and body stream. */
  async stream(path: string, options: { headers?: Record<string, string>; signal?: AbortSignal } = {}): Promise<{ status: number; headers: Record<string, string>; body: Readable }> {
    try {
      const res = await request(`${this.origin}${path}`, {
        method: 'GET',
        headers: { accept: 'text/event-stream', ...this.auth(), ...options.headers },
        dispatcher: this.agent,
        headersTimeout: this.timeoutMs,
        bodyTimeout: 0,
        ...(options.signal === undefined ? {} : { signal: options.signal }),
      });
      return { status: res.statusCode, headers: flatten(res.headers), body: res.body };
    } catch (err) {
      throw this.unreachable(err);
    }
  }

  /** An HTTP upgrade to `protocol`; the socket then carries the raw stream. Throws `ERR_CONTROL_UNREACHABLE`. */
  async upgrade(path: string, protocol: string): Promise<Duplex> {
    try {
      const { socket } = await upgrade(`${this.origin}${path}`, { dispatcher: this.agent, protocol, headers: this.auth() });
      return socket;
    } catch (err) {
      throw this.unreachable(err);
    }
  }

  async close(): Promise<void> {
    await this.agent.close();
  }

  private auth(): Record<string, string> {
    return this.options.token === undefined ? {} : { authorization: `Bearer ${this.options.token}` };
  }

  private unreachable(err: unknown): PodvisorError {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).name;
    return new PodvisorError('ERR_CONTROL_UNREACHABLE', `no answer from the control endpoint at ${this.target} (${code}: ${(err as Error).message})`, {
      cause: err,
      hint: this.options.socketPath === undefined ? 'check --url and that podvisor runs' : 'is podvisor running? pass --state-dir or --socket, or --url for TCP',
    });
  }
}

function flatten(headers: Record<string, string | string[] | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) if (v !== undefined) out[k] = Array.isArray(v) ? v.join(', ') : v;
  return out;
}
