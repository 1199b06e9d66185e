/**
 * A real HTTP/1.1 server on 127.0.0.1 that tests (and the pull benchmark)
 * control: it serves images from memory or from a file with ETag,
 * Last-Modified, conditional requests and single byte ranges (`If-Range`
 * honoured), logs every request with its Range and validators and what it
 * answered, and plays scripted misbehaviours, one per request, in order:
 * an error status, a connection dropped after N bytes, a slow body, stalled
 * headers, a body cut short with no Content-Length (close-delimited), a
 * redirect. Content can be replaced at any time (a new base at the same URL).
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export type Behaviour =
  | { kind: 'status'; status: number; headers?: Record<string, string> }
  /** Sends the headers and the body up to `atBytes` of the answer, then destroys the socket. */
  | { kind: 'drop'; atBytes: number }
  /** Never answers within `ms` (past the client's headers timeout). */
  | { kind: 'stall'; ms: number }
  /** Sends the body at this rate. */
  | { kind: 'slow'; bytesPerSecond: number }
  /** No Content-Length, no chunking: `atBytes` of the body, then the connection closes as if that were all. */
  | { kind: 'truncate'; atBytes: number }
  | { kind: 'redirect'; status?: number; location: string };

export interface ServedRequest {
  method: string;
  path: string;
  range: string | null;
  ifRange: string | null;
  ifNoneMatch: string | null;
  ifModifiedSince: string | null;
  authorization: string | null;
  status: number;
  /** Body bytes sent (what the server wrote before the end or the drop). */
  bytesSent: number;
  behaviour: Behaviour['kind'] | 'normal';
}

interface Entry {
  body: Buffer | { file: string; size: number };
  etag: string;
  lastModified: string;
  /** Send validators (ETag / Last-Modified) at all. */
  validators: boolean;
  ranges: boolean;
  /** Persistent body rate limit (bytes per second), on every answer. */
  rate?: number;
  /** Send chunked (no Content-Length) on normal answers. */
  chunked: boolean;
  contentType?: string;
  plan: Behaviour[];
}

export interface ServeOptions {
  validators?: boolean;
  ranges?: boolean;
  rate?: number;
  chunked?: boolean;
  /** A Content-Type header on every answer (none by default). */
  contentType?: string;
}

export class HttpImageServer {
  readonly requests: ServedRequest[] = [];
  private readonly requestWaiters: Array<(r: ServedRequest) => void> = [];
  private readonly entries = new Map<string, Entry>();
  private readonly sockets = new Set<Socket>();
  private readonly sentWaiters = new Set<() => void>();
  private readonly server: http.Server;
  private version = 0;
  private port = 0;
  private host = '127.0.0.1';

  constructor() {
    this.server = http.createServer((req, res) => {
      void this.handle(req, res);
    });
    this.server.on('connection', (s) => {
      this.sockets.add(s);
      s.once('close', () => this.sockets.delete(s));
    });
  }

  /** Listens on `host` (default loopback; a container test binds its bridge's gateway). */
  async start(host = '127.0.0.1'): Promise<this> {
    this.host = host;
    await new Promise<void>((resolve) => this.server.listen(0, host, resolve));
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  /** The URL of `path` on this server, optionally with credentials. */
  url(p: string, credentials?: { user: string; password: string }): string {
    const auth = credentials === undefined ? '' : `${encodeURIComponent(credentials.user)}:${encodeURIComponent(credentials.password)}@`;
    return `http://${auth}${this.host}:${this.port}${p}`;
  }

  /** Serves `body` (bytes, or a file streamed from disk) at `path`; replaces what was there with a new ETag and date. */
  async serve(p: string, body: Buffer | string, options: ServeOptions = {}): Promise<void> {
    this.version += 1;
    const content = typeof body === 'string' ? { file: body, size: (await stat(body)).size } : body;
    const tag = Buffer.isBuffer(content) ? createHash('sha256').update(content).digest('hex').slice(0, 16) : `${content.size}-${this.version}`;
    this.entries.set(p, {
      body: content,
      etag: `"${tag}-${this.version}"`,
      lastModified: new Date(Date.UTC(2026, 10, 22, 12, 0, this.version)).toUTCString(),
      validators: options.validators ?? true,
      ranges: options.ranges ?? true,
      chunked: options.chunked ?? false,
      ...(options.rate === undefined ? {} : { rate: options.rate }),
      ...(options.contentType === undefined ? {} : { contentType: options.contentType }),
      plan: this.entries.get(p)?.plan ?? [],
    });
  }

  /** Queues behaviours for the next requests of `path`, one per request; afterwards it answers normally. */
  plan(p: string, ...behaviours: Behaviour[]): void {
    const e = this.entries.get(p);
    if (e === undefined) throw new Error(`nothing served at ${p}`);
    e.plan.push(...behaviours);
  }

  /** Resolves once one answer for `path` has sent at least `bytes` body bytes. */
  waitForBytesSent(p: string, bytes: number): Promise<void> {
    return new Promise((resolve) => {
      const check = (): void => {
        if (!this.requests.some((r) => r.path === p && r.bytesSent >= bytes)) return;
        this.sentWaiters.delete(check);
        resolve();
      };
      this.sentWaiters.add(check);
      check();
    });
  }

  /** Resolves with the next request that arrives (one already served counts when `includeServed`). */
  nextRequest(includeServed = false): Promise<ServedRequest> {
    const served = this.requests.at(-1);
    if (includeServed && served !== undefined) return Promise.resolve(served);
    return new Promise((resolve) => this.requestWaiters.push(resolve));
  }

  /** Requests of `path` that were answered with a full 200 body. */
  fullDownloads(p: string): ServedRequest[] {
    return this.requests.filter((r) => r.path === p && r.status === 200);
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const p = new URL(req.url ?? '/', 'http://x').pathname;
    const log: ServedRequest = {
      method: req.method ?? 'GET',
      path: p,
      range: req.headers.range ?? null,
      ifRange: headerOf(req, 'if-range'),
      ifNoneMatch: headerOf(req, 'if-none-match'),
      ifModifiedSince: headerOf(req, 'if-modified-since'),
      authorization: req.headers.authorization ?? null,
      status: 0,
      bytesSent: 0,
      behaviour: 'normal',
    };
    this.requests.push(log);
    for (const w of this.requestWaiters.splice(0)) w(log);
    const e = this.entries.get(p);
    if (e === undefined) {
      log.status = 404;
      res.writeHead(404, { 'content-length': '0' }).end();
      return;
    }
    const behaviour = e.plan.shift();
    if (behaviour !== undefined) log.behaviour = behaviour.kind;
    switch (behaviour?.kind) {
      case 'status':
        log.status = behaviour.status;
        res.writeHead(behaviour.status, { 'content-length': '0', ...behaviour.headers }).end();
        return;
      case 'redirect':
        log.status = behaviour.status ?? 302;
        res.writeHead(log.status, { location: behaviour.location, 'content-length': '0' }).end();
        return;
      case 'stall':
        await new Promise((r) => setTimeout(r, behaviour.ms).unref());
        req.socket.destroy();
        return;
      default:
    }
    const size = Buffer.isBuffer(e.body) ? e.body.length : e.body.size;
    const validators = e.validators ? { etag: e.etag, 'last-modified': e.lastModified } : {};
    if (e.validators && (log.ifNoneMatch === e.etag || (log.ifNoneMatch === null && log.ifModifiedSince === e.lastModified))) {
      log.status = 304;
      res.writeHead(304, validators).end();
      return;
    }
    let start = 0;
    let end = size - 1;
    let status = 200;
    const m = /^bytes=(\d+)-(\d*)$/.exec(log.range ?? '');
    const rangeApplies = e.ranges && m !== null && (log.ifRange === null || log.ifRange === e.etag || log.ifRange === e.lastModified);
    if (rangeApplies && m !== null) {
      start = Number(m[1]);
      end = m[2] === '' ? size - 1 : Math.min(size - 1, Number(m[2]));
      if (start >= size) {
        log.status = 416;
        res.writeHead(416, { 'content-range': `bytes */${size}`, 'content-length': '0' }).end();
        return;
      }
      status = 206;
    }
    const length = end - start + 1;
    log.status = status;
    const truncate = behaviour?.kind === 'truncate';
    const chunked = e.chunked && !truncate;
    const headers: Record<string, string | undefined> = {
      ...validators,
      ...(e.contentType === undefined ? {} : { 'content-type': e.contentType }),
      ...(e.ranges ? { 'accept-ranges': 'bytes' } : {}),
      ...(status === 206 ? { 'content-range': `bytes ${start}-${end}/${size}` } : {}),
      ...(truncate || chunked ? {} : { 'content-length': String(length) }),
      ...(truncate ? { connection: 'close' } : {}),
    };
    if (truncate) {
      // A close-delimited body (RFC 9112 section 6.3, rule 8): written raw, since node would chunk it.
      const socket = req.socket;
      const head = `HTTP/1.1 ${status} OK\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}`).join('\r\n')}\r\n\r\n`;
      socket.write(head);
      const cut = Math.min(length, behaviour.atBytes);
      await this.send(e, start, start + cut - 1, (chunk) => new Promise<void>((r) => socket.write(chunk, () => r())), log, undefined, () => !socket.destroyed);
      socket.end();
      return;
    }
    res.writeHead(status, headers);
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    const dropAt = behaviour?.kind === 'drop' ? behaviour.atBytes : Infinity;
    const rate = behaviour?.kind === 'slow' ? behaviour.bytesPerSecond : e.rate;
    const last = Math.min(end, start + dropAt - 1);
    // Each write resolves once node has handed it to the kernel, so a drop cuts exactly after `dropAt` bytes.
    await this.send(e, start, last, (chunk) => new Promise<void>((resolve) => res.write(chunk, () => resolve())), log, rate, () => !req.socket.destroyed);
    if (last < end) {
      req.socket.destroy();
      return;
    }
    res.end();
  }

  /** Writes bytes `from..to` (inclusive) of the entry, at `rate` bytes/s if given. */
  private async send(e: Entry, from: number, to: number, write: (chunk: Buffer) => Promise<void>, log: ServedRequest, rate?: number, alive: () => boolean = () => true): Promise<void> {
    if (to < from) return;
    const started = Date.now();
    const chunks: AsyncIterable<Buffer> = Buffer.isBuffer(e.body) ? sliceChunks(e.body, from, to) : createReadStream(e.body.file, { start: from, end: to, highWaterMark: 1 << 20 });
    for await (const chunk of chunks) {
      const piece = rate === undefined ? [chunk] : splitBuffer(chunk, Math.max(1024, Math.floor(rate / 20)));
      for (const c of piece) {
        if (!alive()) return;
        await write(c);
        log.bytesSent += c.length;
        for (const w of [...this.sentWaiters]) w();
        if (rate !== undefined) {
          const due = started + (log.bytesSent / rate) * 1000 - Date.now();
          if (due > 0) await new Promise((r) => setTimeout(r, due));
        }
      }
    }
  }
}

function headerOf(req: IncomingMessage, name: string): string | null {
  const v = req.headers[name];
  return Array.isArray(v) ? (v[0] ?? null) : (v ?? null);
}

async function* sliceChunks(buf: Buffer, from: number, to: number): AsyncIterable<Buffer> {
  for (let i = from; i <= to; i += 256 * 1024) yield buf.subarray(i, Math.min(to + 1, i + 256 * 1024));
}

function splitBuffer(buf: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < buf.length; i += size) out.push(buf.subarray(i, i + size));
  return out;
}
