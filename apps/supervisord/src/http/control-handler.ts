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
  type VmAction,
  type VmHandle,
  type VmState,
} from '@podvisor/core';
import { errorBody, httpError, httpStatusOf, sendError, sendJson } from './http-errors.js';
import type { OpenApiContract } from './openapi-contract.js';
import { foldMetricFacts, initialMetricFacts, renderMetrics, type BlockStatsRow, type MetricFacts } from './prometheus-metrics.js';
import { isReadOnlyQmp, type QmpAllowList } from './qmp-allow-list.js';
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
  /** noVNC's files, when the package is installed; without it `/console` is 503. */
  webConsole?: WebConsole | null | undefined;
  now?: () => Date;
  /** Bound of one raw QMP command and of the probes' and metrics' QMP reads. */
  qmpTimeoutMs?: number;
  maxBodyBytes?: number;
  sseKeepAliveMs?: number;
  /** An SSE client this far behind is cut off; it resumes with Last-Event-ID. */
  sseMaxBufferedBytes?: number;
}

interface Principal {
  by: Requester;
  role: 'admin' | 'read' | 'anonymous';
}

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
  private readonly factsSub: Subscription;
  private readonly log: Logger;
  private readonly now: () => Date;
  private readonly qmpTimeoutMs: number;

  constructor(private readonly o: ControlHandlerOptions) {
    this.log = o.log.child({ name: 'ControlHandler' });
    this.now = o.now ?? (() => new Date());
    this.qmpTimeoutMs = o.qmpTimeoutMs ?? 5000;
    this.factsSub = o.store.follow(0).subscribe({
      next: (e) => {
        this.facts = foldMetricFacts(this.facts, e);
      },
      error: (err: unknown) => this.log.warn('metrics stopped following the log', { err }),
    });
    this.routes = new Map<string, Partial<Record<string, Route>>>([
      ['/healthz', { GET: (c) => sendJson(c.res, 200, { status: 'ok', version: o.version, pid: process.pid }) }],
      ['/readyz', { GET: (c) => this.readiness(c) }],
      ['/metrics', { GET: (c) => this.metrics(c) }],
      ['/v1/vm', { GET: (c) => sendJson(c.res, 200, vmView(o.target.current())) }],
      ['/v1/events', { GET: (c) => this.events(c) }],
      ['/v1/vm/actions', { POST: (c) => this.action(c) }],
      ['/v1/qmp', { POST: (c) => this.qmp(c) }],
      ['/v1/console', { GET: () => Promise.reject(httpError('ERR_HTTP_UPGRADE_REQUIRED', `attach with Connection: Upgrade and Upgrade: ${CONSOLE_UPGRADE_PROTOCOL}`)) }],
      ['/v1/vnc', { GET: () => Promise.reject(httpError('ERR_HTTP_UPGRADE_REQUIRED', 'connect with a WebSocket (Upgrade: websocket)')) }],
      ['/console', { GET: (c) => this.consolePage(c) }],
    ]);
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
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: ${CONSOLE_UPGRADE_PROTOCOL}\r\nConnection: Upgrade\r\n\r\n`);
      socket.write(hub.recent(CONSOLE_REPLAY_BYTES));
      const unsubscribe = hub.subscribe((chunk) => socket.write(chunk));
      const end = (): void => {
        unsubscribe();
        this.streams.delete(end);
        socket.destroy();
      };
      this.streams.add(end);
      socket.on('close', end);
      if (head.length > 0) hub.write(head);
      socket.on('data', (data: Buffer) => hub.write(data));
      this.log.info('console attached', { by: who.by });
    } catch (err) {
      refuseUpgrade(socket, err);
    }
  }

  /** The web console's WebSocket: admin only; over TCP the token may come as `?token=` (browsers cannot set headers on a WebSocket). */
  private async vnc(req: IncomingMessage, socket: Duplex, head: Buffer, origin: RequestOrigin): Promise<void> {
    const key = checkWebSocketRequest(req);
    const queryToken = new URLSearchParams((req.url ?? '').split('?')[1] ?? '').get('token');
    if (origin === 'tcp' && req.headers.authorization === undefined && queryToken !== null) req.headers.authorization = `Bearer ${queryToken}`;
    const who = this.requireRole(this.principal(req, origin), 'admin', 'the web console');
    const vm = this.o.target.handle();
    if (vm === null) throw httpError('ERR_VM_NOT_RUNNING', `cannot attach to the display: the VM is ${this.o.target.current().status}`);
    const bound = Math.min(1000, this.qmpTimeoutMs);
    const target = await locateVnc(<T,>(command: string) => this.timedQmp(vm, command, undefined, bound).then((r) => r.value as T));
    const end = await bridgeWebSocketToVnc(req, socket, head, key, target, this.log.child({ by: who.by }));
    const stop = (): void => {
      this.streams.delete(stop);
      end();
    };
    this.streams.add(stop);
    socket.once('close', stop);
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
    if (status === 500) this.log.error('control request failed', { method: req.method, url: req.url?.slice(0, 200), err });
    else this.log.debug('control request refused', { method: req.method, url: req.url?.slice(0, 200), status, code: (err as { code?: string }).code });
    const headers: Record<string, string> = {};
    if (status === 401) headers['www-authenticate'] = 'Bearer realm="podvisor"';
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

  private async readiness(c: Ctx): Promise<void> {
    const state = this.o.target.current();
    const vm = this.o.target.handle();
    if (state.status !== 'Running' || vm === null) {
      sendJson(c.res, 503, { ready: false, status: state.status, reason: `the VM is ${state.status}` });
      return;
    }
    const rtt = await this.timedQmp(vm, 'query-status', undefined, Math.min(1000, this.qmpTimeoutMs)).then((r) => r.roundTripMs, (err: unknown) => errorMessage(err));
    if (typeof rtt === 'string') sendJson(c.res, 503, { ready: false, status: state.status, reason: `QMP does not answer: ${rtt}` });
    else sendJson(c.res, 200, { ready: true, status: state.status, qmpRoundTripMs: rtt });
  }

  private async metrics(c: Ctx): Promise<void> {
    const vm = this.o.target.handle();
    const bound = Math.min(1000, this.qmpTimeoutMs);
    const [status, blocks] = vm === null
      ? [null, null]
      : await Promise.all([
          this.timedQmp(vm, 'query-status', undefined, bound).then((r) => r.roundTripMs, () => null),
          this.timedQmp(vm, 'query-blockstats', undefined, bound).then((r) => (Array.isArray(r.value) ? (r.value as BlockStatsRow[]) : null), () => null),
        ]);
    const text = renderMetrics({ state: this.o.target.current(), facts: this.facts, now: this.now(), qmpRoundTripMs: status, blockstats: blocks, requests: this.requests });
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
    sendJson(c.res, 200, { events, next: events.at(-1)?.position ?? after, lastPosition: this.o.store.lastPosition() });
  }

  /** Server-Sent Events: the backlog after `after`, then live events, until the client goes. */
  private stream(c: Ctx, after: number): void {
    const { res } = c;
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    res.write(': podvisor events\n\n');
    const maxBuffered = this.o.sseMaxBufferedBytes ?? 1024 * 1024;
    let stopped = false;
    let sub: Subscription | null = null;
    const keepAlive = setInterval(() => res.write(': keepalive\n\n'), this.o.sseKeepAliveMs ?? 15_000);
    const end = (): void => {
      if (stopped) return;
      stopped = true;
      clearInterval(keepAlive);
      sub?.unsubscribe();
      this.streams.delete(end);
      res.end();
    };
    this.streams.add(end);
    res.once('close', end);
    sub = this.o.store.follow(after).subscribe({
      next: (e) => {
        if (stopped) return;
        res.write(formatSseMessage(e.position, e.type, JSON.stringify(e)));
        // A client this far behind is cut off rather than buffered without bound; it resumes with Last-Event-ID.
        if (res.writableLength > maxBuffered) end();
      },
      complete: end,
      error: end,
    });
    if (stopped) sub.unsubscribe();
  }

  // ------------------------------------------------------------ actions

  private async action(c: Ctx): Promise<void> {
    const who = this.requireRole(c.who, 'admin', 'POST /v1/vm/actions');
    const body = await this.body(c, '/v1/vm/actions');
    const action = (body as { action: VmAction }).action;
    await this.o.target.act(action, who.by);
    this.log.info('action requested', { action, by: who.by });
    sendJson(c.res, 202, { action, by: who.by, vm: vmView(this.o.target.current()) });
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

/** The projected state plus the actions it allows, as `GET /v1/vm` shows it. */
export function vmView(state: VmState): VmState & { allowedActions: VmAction[] } {
  return { ...state, allowedActions: allowedActions(state) };
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
