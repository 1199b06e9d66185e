/**
 * The control endpoint's request handling, independent of where requests come
 * from: routing on the exact path (only noVNC's files are served from disk, by
 * `WebConsole`, so `..` in a path matches no route), authentication and roles,
 * request validation against the OpenAPI contract, the reads (probes,
 * `/v1/vm`, the log as JSON or Server-Sent Events, `/metrics`), the actions
 * (through the supervisor's decider), raw QMP behind the allow-list, and the
 * upgrades: the serial console and the web console's VNC WebSocket. It never
 * throws to the server: every failure is one JSON error answer.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Subscription } from 'rxjs';
import {
  allowedActions,
  errorMessage,
  type EventStore,
  type Logger,
  type Requester,
  type StoredEvent,
  type VmAction,
  type VmHandle,
  type VmState,
} from '@podvisor/core';
import { degradedConditions, foldHelperFacts, initialHelperFacts, type DegradedCondition, type HelperFacts } from './degraded-conditions.js';
import { errorBody, httpError, httpStatusOf, sendError, sendJson } from './http-errors.js';
import type { OpenApiContract } from './openapi-contract.js';
import { foldMetricFacts, initialMetricFacts, renderMetrics, type BlockStatsRow, type MetricFacts } from './prometheus-metrics.js';
import { isReadOnlyQmp, type QmpAllowList } from './qmp-allow-list.js';
import { eventForReader, redactUrlsDeep } from './secret-redaction.js';
import { DEFAULT_STREAM_LIMITS, StreamLimits, type StreamHolder, type StreamLimitSettings } from './stream-limits.js';
import { DEFAULT_MAX_BODY_BYTES, readJsonBody } from './request-body.js';
import { formatSseMessage } from './sse-parser.js';
import type { ControlTokens } from './control-tokens.js';
import { bridgeWebSocketToVnc, checkWebSocketRequest, locateVnc } from './vnc-bridge.js';
import { WEB_CONSOLE_PREFIX, type WebConsole } from './web-console.js';

/** What the endpoint needs of the supervisor (`Supervisor` has it). */
export interface ControlTarget {
  current(): VmState;
  /** Throws `ERR_VM_ACTION_REFUSED` when the status refuses the action. */
  act(action: VmAction, by: Requester): Promise<void>;
  handle(): VmHandle | null;
}

/** The serial console's fan-out (`ConsoleRelay` has it). */
export interface ConsoleHub {
  /** Calls `listener` with every chunk of output until the returned function is called. */
  subscribe(listener: (chunk: Buffer) => void): () => void;
  /** Sends input to the guest; false when no qemu runs. */
  write(data: Buffer): boolean;
  /** `null` while the guest's input can take more (or no qemu runs); else a promise that resolves once it can. */
  inputDrained(): Promise<void> | null;
  /** The last `maxBytes` of output. */
  recent(maxBytes: number): Buffer;
}

/** Where a request came in: the unix socket (its file mode is the access control) or TCP. */
export type RequestOrigin = 'unix' | 'tcp';

export interface ControlHandlerOptions {
  target: ControlTarget;
  store: EventStore;
  tokens: ControlTokens;
  qmpAllow: QmpAllowList;
  /** The contract, loaded on first use (parsing it costs ~40 ms that startup need not pay). */
  contract: () => OpenApiContract;
  log: Logger;
  version: string;
  console?: ConsoleHub | undefined;
  /** The VNC password qemu asks for, which the web console's bridge answers for the browser; `undefined`: VNC has none. */
  vncPassword?: (() => string | undefined) | undefined;
  /** noVNC's files, when the package is installed; without it `/console` is 503. */
  webConsole?: WebConsole | null | undefined;
  now?: () => Date;
  /** Bound of one raw QMP command and of the probes' and metrics' QMP reads. */
  qmpTimeoutMs?: number;
  maxBodyBytes?: number;
  sseKeepAliveMs?: number;
  /** An authenticated SSE client this far behind is cut off (anonymous ones at a quarter of it); it resumes with Last-Event-ID. */
  sseMaxBufferedBytes?: number;
  /** Events a new SSE stream replays per turn of the event loop (default 200); the next page waits until the client has read this one. */
  sseReplayPage?: number;
  /** A stream whose client has not read for this long (its buffer stays full) is cut off. Default 60 000 ms. */
  sseStallMs?: number;
  /** How many long-lived streams who may hold. */
  streamLimits?: StreamLimitSettings;
  /** How long a QMP read for the probes and metrics is reused (default 1000 ms): anonymous requests never drive QMP faster. */
  qmpCacheMs?: number;
}

interface Principal {
  by: Requester;
  role: 'admin' | 'read' | 'anonymous';
}

/** A serial console client this far behind is dropped. */
const CONSOLE_MAX_BUFFERED_BYTES = 256 * 1024;

interface Ctx {
  req: IncomingMessage;
  res: ServerResponse;
  origin: RequestOrigin;
  query: URLSearchParams;
  /** Who asks; checked for every `/v1` route (a token that is given must be valid), anonymous elsewhere. */
  who: Principal;
}

type Route = (ctx: Ctx) => Promise<void> | void;

export const CONSOLE_UPGRADE_PROTOCOL = 'podvisor-console';
const CONSOLE_REPLAY_BYTES = 4096;

export class ControlHandler {
  private readonly routes: ReadonlyMap<string, Readonly<Partial<Record<string, Route>>>>;
  private readonly streams = new Set<() => void>();
  private readonly requests = new Map<string, number>();
  private facts: MetricFacts = initialMetricFacts();
  private helpers: HelperFacts = initialHelperFacts();
  private readonly factsSub: Subscription;
  private readonly log: Logger;
  private readonly now: () => Date;
  private readonly qmpTimeoutMs: number;
  private readonly limits: StreamLimits;
  private readonly qmpCache = new Map<string, { vm: VmHandle; at: number; answer: Promise<{ value: unknown; roundTripMs: number }> }>();

  constructor(private readonly o: ControlHandlerOptions) {
    this.limits = new StreamLimits(o.streamLimits ?? DEFAULT_STREAM_LIMITS);
    this.log = o.log.child({ name: 'ControlHandler' });
    this.now = o.now ?? (() => new Date());
    this.qmpTimeoutMs = o.qmpTimeoutMs ?? 5000;
    this.factsSub = o.store.follow(0).subscribe({
      next: (e) => {
        this.facts = foldMetricFacts(this.facts, e);
        this.helpers = foldHelperFacts(this.helpers, e);
      },
      error: (err: unknown) => this.log.warn('metrics stopped following the log', { err }),
    });
    this.routes = new Map<string, Partial<Record<string, Route>>>([
      ['/healthz', { GET: (c) => sendJson(c.res, 200, { status: 'ok', version: o.version, pid: process.pid }) }],
      ['/readyz', { GET: (c) => this.readiness(c) }],
      ['/metrics', { GET: (c) => this.metrics(c) }],
      ['/v1/vm', { GET: (c) => sendJson(c.res, 200, redactUrlsDeep(this.vm())) }],
      ['/v1/events', { GET: (c) => this.events(c) }],
      ['/v1/vm/actions', { POST: (c) => this.action(c) }],
      ['/v1/qmp', { POST: (c) => this.qmp(c) }],
      ['/v1/console', { GET: () => Promise.reject(httpError('ERR_HTTP_UPGRADE_REQUIRED', `attach with Connection: Upgrade and Upgrade: ${CONSOLE_UPGRADE_PROTOCOL}`)) }],
      ['/v1/vnc', { GET: () => Promise.reject(httpError('ERR_HTTP_UPGRADE_REQUIRED', 'connect with a WebSocket (Upgrade: websocket)')) }],
      ['/v1/vnc/password', { GET: (c) => this.vncPassword(c) }],
      ['/console', { GET: (c) => this.consolePage(c) }],
    ]);
  }

  /**
   * Every path and method this handler serves, as the OpenAPI file spells
   * them (noVNC's files as `/console/novnc/{file}`), from the dispatch table itself.
   */
  served(): { path: string; methods: string[] }[] {
    return [...[...this.routes].map(([path, methods]) => ({ path, methods: Object.keys(methods) })), { path: `${WEB_CONSOLE_PREFIX}{file}`, methods: ['GET'] }];
  }

  /** Answers one request. Never throws; never rejects. */
  handle(req: IncomingMessage, res: ServerResponse, origin: RequestOrigin): void {
    const rawPath = (req.url ?? '/').split('?', 1)[0] ?? '/';
    const methods = this.routes.get(rawPath);
    res.once('finish', () => this.count(methods === undefined ? 'other' : rawPath, res.statusCode));
    void this.dispatch(req, res, origin, rawPath, methods).catch((err: unknown) => this.fail(req, res, err));
  }

  /** Handles an HTTP upgrade (the serial console, the VNC WebSocket). Never throws. */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, origin: RequestOrigin): void {
    socket.on('error', () => socket.destroy());
    const rawPath = (req.url ?? '/').split('?', 1)[0] ?? '/';
    if (rawPath === '/v1/vnc') {
      this.vnc(req, socket, head, origin).catch((err: unknown) => refuseUpgrade(socket, err));
      return;
    }
    try {
      if (rawPath !== '/v1/console') throw httpError('ERR_HTTP_NOT_FOUND', `no upgrade at ${rawPath.slice(0, 200)}`);
      if ((req.headers.upgrade ?? '').toLowerCase() !== CONSOLE_UPGRADE_PROTOCOL) throw httpError('ERR_HTTP_UPGRADE_REQUIRED', `expected Upgrade: ${CONSOLE_UPGRADE_PROTOCOL}`);
      const who = this.requireRole(this.principal(req, origin), 'admin', 'attach to the console');
      const hub = this.o.console;
      if (hub === undefined) throw httpError('ERR_CONSOLE_UNAVAILABLE', 'this endpoint has no serial console');
      if (this.o.target.handle() === null) throw httpError('ERR_VM_NOT_RUNNING', `cannot attach to the console: the VM is ${this.o.target.current().status}`);
      const release = this.limits.acquire(holderOf(req, origin, who), 'the serial console');
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: ${CONSOLE_UPGRADE_PROTOCOL}\r\nConnection: Upgrade\r\n\r\n`);
      socket.write(hub.recent(CONSOLE_REPLAY_BYTES));
      // The serial output is shared (stdout, the log, other clients): a client that does not read is dropped, never waited for.
      const unsubscribe = hub.subscribe((chunk) => {
        socket.write(chunk);
        if (socket.writableLength > CONSOLE_MAX_BUFFERED_BYTES) {
          this.log.warn('console client dropped: it does not read', { by: who.by, bufferedBytes: socket.writableLength });
          end();
        }
      });
      const end = (): void => {
        unsubscribe();
        release();
        this.streams.delete(end);
        socket.destroy();
      };
      this.streams.add(end);
      socket.on('close', end);
      // Input waits for the guest's serial to take it: the client's socket is paused meanwhile.
      const input = (data: Buffer): void => {
        if (!hub.write(data)) return;
        const drained = hub.inputDrained();
        if (drained === null) return;
        socket.pause();
        void drained.then(() => socket.resume());
      };
      if (head.length > 0) input(head);
      socket.on('data', input);
      this.log.info('console attached', { by: who.by });
    } catch (err) {
      refuseUpgrade(socket, err);
    }
  }

  /** The web console's WebSocket: admin only; over TCP the token may come as `?token=` (browsers cannot set headers on a WebSocket). */
  private async vnc(req: IncomingMessage, socket: Duplex, head: Buffer, origin: RequestOrigin): Promise<void> {
    checkWebSocketRequest(req);
    const queryToken = new URLSearchParams((req.url ?? '').split('?')[1] ?? '').get('token');
    if (origin === 'tcp' && req.headers.authorization === undefined && queryToken !== null) req.headers.authorization = `Bearer ${queryToken}`;
    const who = this.requireRole(this.principal(req, origin), 'admin', 'the web console');
    const vm = this.o.target.handle();
    if (vm === null) throw httpError('ERR_VM_NOT_RUNNING', `cannot attach to the display: the VM is ${this.o.target.current().status}`);
    const release = this.limits.acquire(holderOf(req, origin, who), 'the web console');
    let end: () => void;
    try {
      const bound = Math.min(1000, this.qmpTimeoutMs);
      const target = await locateVnc(<T,>(command: string) => this.timedQmp(vm, command, undefined, bound).then((r) => r.value as T));
      end = await bridgeWebSocketToVnc(req, socket, head, target, this.o.vncPassword?.(), this.log.child({ by: who.by }));
    } catch (err) {
      release();
      throw err;
    }
    const stop = (): void => {
      this.streams.delete(stop);
      release();
      end();
    };
    this.streams.add(stop);
    socket.once('close', stop);
  }

  /** The VNC password, for an admin's own VNC client (the web console needs none). */
  private vncPassword(c: Ctx): void {
    const who = this.requireRole(c.who, 'admin', 'GET /v1/vnc/password');
    const password = this.o.vncPassword?.();
    if (password === undefined) throw httpError('ERR_CONSOLE_UNAVAILABLE', 'qemu serves no VNC display (NO_VNC is set)', { hint: 'unset NO_VNC to get a VNC display' });
    this.log.info('VNC password read', { by: who.by });
    sendJson(c.res, 200, { password, bytesUsed: Math.min(8, Buffer.byteLength(password, 'latin1')) });
  }

  private async consolePage(c: Ctx): Promise<void> {
    const web = this.o.webConsole;
    if (web === null || web === undefined) {
      throw httpError('ERR_CONSOLE_UNAVAILABLE', 'the noVNC web console is not installed in this build (the @novnc/novnc package is missing)', {
        hint: 'use `podvisor console` for the serial console, or a VNC client on port 5900',
      });
    }
    if (c.req.url !== '/console' && c.req.url?.startsWith('/console?') !== true) throw httpError('ERR_HTTP_NOT_FOUND', 'no such endpoint');
    const html = web.page();
    c.res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-length': Buffer.byteLength(html), 'cache-control': 'no-store', 'x-frame-options': 'DENY' });
    c.res.end(html);
  }

  private async consoleFile(res: ServerResponse, rawPath: string): Promise<void> {
    const file = await this.o.webConsole?.file(rawPath.slice(WEB_CONSOLE_PREFIX.length));
    if (file === null || file === undefined) throw httpError('ERR_HTTP_NOT_FOUND', `no such file: ${rawPath.slice(0, 200)}`);
    res.writeHead(200, { 'content-type': file.type, 'content-length': file.body.length, 'cache-control': 'max-age=3600' });
    res.end(file.body);
  }

  /** Ends every live stream (SSE, consoles) and stops following the log. */
  close(): void {
    this.factsSub.unsubscribe();
    for (const end of [...this.streams]) end();
  }

  private async dispatch(req: IncomingMessage, res: ServerResponse, origin: RequestOrigin, rawPath: string, methods: Partial<Record<string, Route>> | undefined): Promise<void> {
    if (methods === undefined && rawPath.startsWith(WEB_CONSOLE_PREFIX) && req.method === 'GET') return this.consoleFile(res, rawPath);
    if (methods === undefined) throw httpError('ERR_HTTP_NOT_FOUND', `no such endpoint: ${rawPath.slice(0, 200)}`, { hint: 'see docs/api.md' });
    const route = methods[req.method ?? ''];
    if (route === undefined) {
      const allow = Object.keys(methods).join(', ');
      res.setHeader('allow', allow);
      throw httpError('ERR_HTTP_METHOD_NOT_ALLOWED', `${req.method ?? '?'} is not allowed on ${rawPath}; allowed: ${allow}`);
    }
    const queryText = (req.url ?? '').slice(rawPath.length + 1);
    const who: Principal = rawPath.startsWith('/v1/') ? this.principal(req, origin) : { by: 'anonymous', role: 'anonymous' };
    await route({ req, res, origin, query: new URLSearchParams(queryText), who });
  }

  private fail(req: IncomingMessage, res: ServerResponse, err: unknown): void {
    const status = httpStatusOf(err);
    // The path only: a query may carry a token (the web console's `?token=`).
    const where = (req.url ?? '/').split('?', 1)[0]?.slice(0, 200);
    if (status === 500) this.log.error('control request failed', { method: req.method, path: where, err });
    else this.log.debug('control request refused', { method: req.method, path: where, status, code: (err as { code?: string }).code });
    const headers: Record<string, string> = {};
    if (status === 401) headers['www-authenticate'] = 'Bearer realm="podvisor"';
    // A refused stream's client is told when to retry, and its connection is freed at once.
    if (status === 429) {
      headers['retry-after'] = '5';
      headers['connection'] = 'close';
    }
    // The unread rest of an oversized body would be taken for the next request.
    if (status === 413) headers['connection'] = 'close';
    sendError(res, err, headers);
    if (status === 413) res.once('finish', () => req.socket.destroySoon());
  }

  // ------------------------------------------------------------ auth

  /** Who is asking. Throws `ERR_HTTP_UNAUTHORIZED` for a token that is malformed or unknown. */
  private principal(req: IncomingMessage, origin: RequestOrigin): Principal {
    if (origin === 'unix') return { by: 'unix-socket', role: 'admin' };
    const header = req.headers.authorization;
    if (header === undefined) return { by: 'anonymous', role: 'anonymous' };
    const m = /^Bearer ([^\s]+)$/i.exec(header);
    const token = m === null ? null : this.o.tokens.authenticate(m[1] ?? '');
    if (token === null) throw httpError('ERR_HTTP_UNAUTHORIZED', 'the bearer token is not valid', { hint: 'send Authorization: Bearer <token> with a token from PODVISOR_TOKEN_FILE' });
    return { by: `token:${token.name}`, role: token.role };
  }

  /** Throws 401 for an anonymous TCP client and 403 for a role below `role`. */
  private requireRole(p: Principal, role: 'admin' | 'read', what: string): Principal {
    if (p.role === 'anonymous') {
      throw httpError('ERR_HTTP_UNAUTHORIZED', `${what} needs a bearer token over TCP`, {
        hint: this.o.tokens.configured ? 'send Authorization: Bearer <token>' : 'no token is configured, so TCP is read-only: use the unix socket, or set PODVISOR_TOKEN_FILE',
      });
    }
    if (role === 'admin' && p.role !== 'admin') throw httpError('ERR_HTTP_FORBIDDEN', `${what} needs an admin token; ${p.by} is read-only`);
    return p;
  }

  // ------------------------------------------------------------ reads

  private vm(): ReturnType<typeof vmView> {
    return vmView(this.o.target.current(), degradedConditions(this.o.store.backlog(), this.helpers));
  }

  private async readiness(c: Ctx): Promise<void> {
    const state = this.o.target.current();
    const vm = this.o.target.handle();
    if (state.status !== 'Running' || vm === null) {
      sendJson(c.res, 503, { ready: false, status: state.status, reason: `the VM is ${state.status}` });
      return;
    }
    const rtt = await this.cachedQmp(vm, 'query-status').then((r) => r.roundTripMs, (err: unknown) => errorMessage(err));
    if (typeof rtt === 'string') sendJson(c.res, 503, { ready: false, status: state.status, reason: `QMP does not answer: ${rtt}` });
    else sendJson(c.res, 200, { ready: true, status: state.status, qmpRoundTripMs: rtt });
  }

  private async metrics(c: Ctx): Promise<void> {
    const vm = this.o.target.handle();
    const [status, blocks] = vm === null
      ? [null, null]
      : await Promise.all([
          this.cachedQmp(vm, 'query-status').then((r) => r.roundTripMs, () => null),
          this.cachedQmp(vm, 'query-blockstats').then((r) => (Array.isArray(r.value) ? (r.value as BlockStatsRow[]) : null), () => null),
        ]);
    const text = renderMetrics({ state: this.o.target.current(), facts: this.facts, now: this.now(), qmpRoundTripMs: status, blockstats: blocks, requests: this.requests, eventLog: this.o.store.backlog() });
    c.res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8', 'cache-control': 'no-store' });
    c.res.end(text);
  }

  private events(c: Ctx): void {
    for (const key of c.query.keys()) if (key !== 'after' && key !== 'limit') throw httpError('ERR_HTTP_INVALID_QUERY', `unknown query parameter ${JSON.stringify(key.slice(0, 60))}`, { details: { parameter: key.slice(0, 60) } });
    const after = queryInt(c.query, 'after', 0, 0, Number.MAX_SAFE_INTEGER);
    const limit = queryInt(c.query, 'limit', 100, 1, 1000);
    if (/\btext\/event-stream\b/.test(c.req.headers.accept ?? '')) {
      const last = c.req.headers['last-event-id'];
      const resumeFrom = typeof last === 'string' && /^\d{1,15}$/.test(last.trim()) ? Number(last.trim()) : after;
      this.stream(c, resumeFrom);
      return;
    }
    const events = this.o.store.readAfter(after, limit);
    const admin = c.who.role === 'admin';
    sendJson(c.res, 200, { events: events.map((e) => eventForReader(e, admin)), next: events.at(-1)?.position ?? after, lastPosition: this.o.store.lastPosition() });
  }

  /**
   * Server-Sent Events: the backlog after `after`, then live events, until the
   * client goes. The backlog is read a page at a time, each page only once the
   * client has taken the previous one (`drain`), yielding to the event loop in
   * between; then the live feed takes over from the last position sent. A
   * client that falls too far behind the live feed is cut off.
   */
  private stream(c: Ctx, after: number): void {
    const { res } = c;
    const admin = c.who.role === 'admin';
    const release = this.limits.acquire(holderOf(c.req, c.origin, c.who), 'an event stream');
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    res.write(': podvisor events\n\n');
    const full = this.o.sseMaxBufferedBytes ?? 1024 * 1024;
    const maxBuffered = c.who.role === 'anonymous' ? Math.max(16 * 1024, full >> 2) : full;
    const page = this.o.sseReplayPage ?? 200;
    const stallMs = this.o.sseStallMs ?? 60_000;
    let stopped = false;
    let last = after;
    let sub: Subscription | null = null;
    /** Since when the client's buffer has been full (`write` returned false and no `drain` since). */
    let fullSince: number | null = null;
    res.on('drain', () => (fullSince = null));
    const keepAlive = setInterval(() => {
      if (fullSince !== null && performance.now() - fullSince >= stallMs) {
        this.log.info('event stream cut off: the client stopped reading', { by: c.who.by, bufferedBytes: res.writableLength });
        end(true);
        return;
      }
      if (!res.write(': keepalive\n\n')) fullSince ??= performance.now();
    }, Math.min(this.o.sseKeepAliveMs ?? 15_000, stallMs));
    /** `cut`: the client does not read, so what is buffered for it is dropped with the connection. */
    const end = (cut = false): void => {
      if (stopped) return;
      stopped = true;
      clearInterval(keepAlive);
      sub?.unsubscribe();
      release();
      this.streams.delete(end);
      if (cut) res.destroy();
      else res.end();
    };
    this.streams.add(end);
    res.once('close', () => end());
    const send = (e: StoredEvent): boolean => {
      last = e.position;
      const ok = res.write(formatSseMessage(e.position, e.type, JSON.stringify(eventForReader(e, admin))));
      if (!ok) fullSince ??= performance.now();
      return ok;
    };
    const replay = (): void => {
      if (stopped) return;
      let events: StoredEvent[];
      try {
        events = this.o.store.readAfter(last, page);
      } catch {
        end();
        return;
      }
      let writable = true;
      for (const e of events) writable = send(e);
      if (events.length === page) {
        if (writable) setImmediate(replay);
        else res.once('drain', replay);
        return;
      }
      sub = this.o.store.follow(last).subscribe({
        next: (e) => {
          if (stopped) return;
          send(e);
          // A client this far behind is cut off rather than buffered without bound; it resumes with Last-Event-ID.
          if (res.writableLength > maxBuffered) {
            this.log.info('event stream cut off: the client does not read', { by: c.who.by, bufferedBytes: res.writableLength });
            end(true);
          }
        },
        complete: () => end(),
        error: () => end(),
      });
      if (stopped) sub.unsubscribe();
    };
    replay();
  }

  /**
   * A QMP read shared by every probe and scrape within `qmpCacheMs` (and while
   * it is in flight), so that anonymous requests never run QMP faster than that.
   */
  private cachedQmp(vm: VmHandle, command: string): Promise<{ value: unknown; roundTripMs: number }> {
    const now = performance.now();
    const hit = this.qmpCache.get(command);
    if (hit !== undefined && hit.vm === vm && now - hit.at < (this.o.qmpCacheMs ?? 1000)) return hit.answer;
    const answer = this.timedQmp(vm, command, undefined, Math.min(1000, this.qmpTimeoutMs));
    answer.catch(() => undefined);
    // The entry's age counts from when the answer came, so a slow qemu is not asked again while it answers.
    const entry = { vm, at: Number.POSITIVE_INFINITY, answer };
    this.qmpCache.set(command, entry);
    void answer.finally(() => (entry.at = performance.now())).catch(() => undefined);
    return answer;
  }

  // ------------------------------------------------------------ actions

  private async action(c: Ctx): Promise<void> {
    const who = this.requireRole(c.who, 'admin', 'POST /v1/vm/actions');
    const body = await this.body(c, '/v1/vm/actions');
    const action = (body as { action: VmAction }).action;
    await this.o.target.act(action, who.by);
    this.log.info('action requested', { action, by: who.by });
    sendJson(c.res, 202, { action, by: who.by, vm: this.vm() });
  }

  private async qmp(c: Ctx): Promise<void> {
    const who = this.requireRole(c.who, 'read', 'POST /v1/qmp');
    const body = (await this.body(c, '/v1/qmp')) as { execute: string; arguments?: Record<string, unknown> };
    // Decided before anything is sent: a refused command never reaches qemu.
    this.o.qmpAllow.assertAllowed(body.execute);
    if (who.role !== 'admin' && !isReadOnlyQmp(body.execute)) throw httpError('ERR_HTTP_FORBIDDEN', `QMP command ${body.execute} needs an admin token; ${who.by} may run query-* commands only`);
    const vm = this.o.target.handle();
    if (vm === null) throw httpError('ERR_VM_NOT_RUNNING', `cannot run QMP command ${body.execute}: the VM is ${this.o.target.current().status}`);
    if (!isReadOnlyQmp(body.execute)) this.log.info('raw QMP command', { command: body.execute, by: who.by });
    const r = await this.timedQmp(vm, body.execute, body.arguments, this.qmpTimeoutMs);
    sendJson(c.res, 200, { return: r.value ?? {}, roundTripMs: r.roundTripMs });
  }

  /** Reads the JSON body and checks it against the contract; the first problem names its field. */
  private async body(c: Ctx, path: string): Promise<unknown> {
    const body = await readJsonBody(c.req, this.o.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES);
    const problems = this.o.contract().requestProblems('post', path, body);
    const first = problems[0];
    if (first !== undefined) {
      const field = first.pointer === '' ? 'the body' : `field ${first.pointer.slice(1).replaceAll('/', '.')}`;
      throw httpError('ERR_HTTP_INVALID_BODY', `${field}: ${first.message}`, { details: { problems: problems.slice(0, 20) } });
    }
    return body;
  }

  private async timedQmp(vm: VmHandle, command: string, args: Record<string, unknown> | undefined, timeoutMs: number): Promise<{ value: unknown; roundTripMs: number }> {
    const started = performance.now();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(httpError('ERR_QMP_TIMEOUT', `QMP command ${command} did not answer within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      const value = await Promise.race([vm.execute(command, args), timeout]);
      return { value, roundTripMs: performance.now() - started };
    } finally {
      clearTimeout(timer);
    }
  }

  private count(route: string, status: number): void {
    const key = `${route} ${status}`;
    this.requests.set(key, (this.requests.get(key) ?? 0) + 1);
  }
}

/** Who holds a stream, for the limits. */
function holderOf(req: IncomingMessage, origin: RequestOrigin, who: Principal): StreamHolder {
  return origin === 'unix' ? { kind: 'unix' } : { kind: 'tcp', address: req.socket.remoteAddress ?? 'unknown', anonymous: who.role === 'anonymous' };
}

/** The projected state plus the actions it allows, as `GET /v1/vm` shows it. */
/** The VM as `GET /v1/vm` shows it: the projected state, the actions it allows now, and whether podvisor runs degraded. */
export function vmView(state: VmState, degradedBy: readonly DegradedCondition[]): VmState & { allowedActions: VmAction[]; degraded: boolean; degradedBy: DegradedCondition[] } {
  return { ...state, allowedActions: allowedActions(state), degraded: degradedBy.length > 0, degradedBy: [...degradedBy] };
}

function queryInt(query: URLSearchParams, name: string, fallback: number, min: number, max: number): number {
  const raw = query.get(name);
  if (raw === null) return fallback;
  const n = /^\d{1,16}$/.test(raw) ? Number(raw) : Number.NaN;
  if (!(n >= min && n <= max)) {
    throw httpError('ERR_HTTP_INVALID_QUERY', `query parameter ${name}: got ${JSON.stringify(raw.slice(0, 40))}, expected an integer from ${min} to ${max}`, { details: { parameter: name } });
  }
  return n;
}

const STATUS_TEXT: Readonly<Record<number, string>> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  409: 'Conflict',
  426: 'Upgrade Required',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

/** Answers a refused upgrade on the raw socket with the one error shape, then closes it. */
function refuseUpgrade(socket: Duplex, err: unknown): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const text = JSON.stringify(errorBody(err));
  const status = httpStatusOf(err);
  socket.end(`HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Error'}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(text)}\r\nconnection: close\r\n\r\n${text}`);
}
