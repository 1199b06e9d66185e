/**
 * The control endpoint's listeners: one HTTP server on a unix socket in the
 * state dir (`control.sock`, mode 0600) and one on TCP (`control.listen`),
 * both answering through one `ControlHandler`. Slow or stuck clients are
 * bounded by Node's own timeouts (headers, whole request, idle keep-alive);
 * long-lived answers (SSE, consoles) are bounded in number by the handler's
 * stream limits, far below the connection limit, so that the probes always
 * find a free connection; they are ended by `close()`.
 */
import { chmod, lstat, readFile, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import { ConfigError, type EventStore, type Logger } from '@podvisor/core';
import { ControlHandler, type ConsoleHub, type ControlTarget, type RequestOrigin } from './control-handler.js';
import { ControlTokens } from './control-tokens.js';
import { OpenApiContract } from './openapi-contract.js';
import { QmpAllowList } from './qmp-allow-list.js';
import type { StreamLimitSettings } from './stream-limits.js';
import { WebConsole } from './web-console.js';

export interface ControlServerOptions {
  /** The supervisor. */
  supervisor: ControlTarget;
  store: EventStore;
  config: {
    stateDir: string;
    /** `HOST:PORT` (port 0: any free port); `null`: no TCP listener. */
    listen: string | null;
    tokenFile?: string | undefined;
    qmpAllow?: readonly string[] | undefined;
  };
  log: Logger;
  version: string;
  /** Tokens already read and checked (podvisor run does it with the configuration); else `config.tokenFile` is read here. */
  tokens?: ControlTokens | undefined;
  /** The serial console fan-out, for `podvisor console`. */
  console?: ConsoleHub | undefined;
  /** Bound of a raw QMP command. Default 5000 ms. */
  qmpTimeoutMs?: number;
  /** noVNC's files; default: the `@novnc/novnc` package if installed; `null`: no web console. */
  webConsole?: WebConsole | null;
  /** Slow-client bounds; the defaults suit production, tests shorten them. */
  timeouts?: Partial<HttpTimeouts>;
  /** The VNC password, which the web console's bridge answers qemu with and `GET /v1/vnc/password` shows an admin. */
  vncPassword?: (() => string | undefined) | undefined;
  /** Stream bounds; the defaults suit production, tests shrink them. */
  limits?: { streams?: StreamLimitSettings; sseMaxBufferedBytes?: number; sseReplayPage?: number; sseStallMs?: number; qmpCacheMs?: number };
}

export interface HttpTimeouts {
  /** Time to receive the request headers. Default 5000 ms. */
  headersMs: number;
  /** Time to receive the whole request (not the answer: SSE streams are unaffected). Default 10 000 ms. */
  requestMs: number;
  /** How often Node checks the two above. Default 1000 ms. */
  checkIntervalMs: number;
}

const DEFAULT_TIMEOUTS: HttpTimeouts = { headersMs: 5000, requestMs: 10_000, checkIntervalMs: 1000 };

export interface ControlServer {
  readonly unixSocket: string;
  readonly tcpAddress: { host: string; port: number } | null;
  /** Ends live streams, stops listening and removes the socket. Idempotent. */
  close(): Promise<void>;
}

/** Connections per listener; new ones past it are closed at once by Node. */
export const MAX_CONNECTIONS = 1024;

/** The socket's name in the state dir. */
export const CONTROL_SOCKET_NAME = 'control.sock';

/**
 * Starts both listeners. Throws `ConfigError` for an unreadable or invalid
 * token file, and the listen error (`EADDRINUSE`...) as `ERR_CONTROL_LISTEN`;
 * nothing is left listening then. Replaces a stale `control.sock`.
 */
export async function startControlServer(options: ControlServerOptions): Promise<ControlServer> {
  const { config } = options;
  const log = options.log.child({ name: 'ControlServer' });
  const tokens = options.tokens ?? (config.tokenFile === undefined ? ControlTokens.none() : ControlTokens.parse(await readTokenFile(config.tokenFile), config.tokenFile));
  const handler = new ControlHandler({
    target: options.supervisor,
    store: options.store,
    tokens,
    qmpAllow: new QmpAllowList(config.qmpAllow ?? []),
    contract: once(() => OpenApiContract.load()),
    log: options.log,
    version: options.version,
    console: options.console,
    vncPassword: options.vncPassword,
    ...(options.limits?.streams === undefined ? {} : { streamLimits: options.limits.streams }),
    ...(options.limits?.sseMaxBufferedBytes === undefined ? {} : { sseMaxBufferedBytes: options.limits.sseMaxBufferedBytes }),
    ...(options.limits?.sseReplayPage === undefined ? {} : { sseReplayPage: options.limits.sseReplayPage }),
    ...(options.limits?.sseStallMs === undefined ? {} : { sseStallMs: options.limits.sseStallMs }),
    ...(options.limits?.qmpCacheMs === undefined ? {} : { qmpCacheMs: options.limits.qmpCacheMs }),
    webConsole: options.webConsole === undefined ? WebConsole.locate() : options.webConsole,
    ...(options.qmpTimeoutMs === undefined ? {} : { qmpTimeoutMs: options.qmpTimeoutMs }),
  });
  const servers: Server[] = [];
  const unixSocket = path.join(config.stateDir, CONTROL_SOCKET_NAME);
  let tcpAddress: ControlServer['tcpAddress'] = null;
  try {
    await removeStaleSocket(unixSocket);
    const timeouts = { ...DEFAULT_TIMEOUTS, ...options.timeouts };
    const unix = serve(handler, 'unix', timeouts);
    servers.push(unix);
    await listen(unix, { path: unixSocket }, unixSocket);
    await chmod(unixSocket, 0o600);
    if (config.listen !== null) {
      const { host, port } = parseListen(config.listen);
      const tcp = serve(handler, 'tcp', timeouts);
      servers.push(tcp);
      await listen(tcp, { host, port }, config.listen);
      const addr = tcp.address() as AddressInfo;
      tcpAddress = { host: addr.address, port: addr.port };
    }
  } catch (err) {
    handler.close();
    await Promise.all(servers.map((s) => closeServer(s)));
    throw err;
  }
  log.info('control endpoint listening', { unix: unixSocket, tcp: tcpAddress === null ? null : `${tcpAddress.host}:${tcpAddress.port}`, tokens: tokens.configured });
  let closing: Promise<void> | null = null;
  return {
    unixSocket,
    tcpAddress,
    close: () =>
      (closing ??= (async () => {
        handler.close();
        await Promise.all(servers.map((s) => closeServer(s)));
        await rm(unixSocket, { force: true });
      })()),
  };
}

function serve(handler: ControlHandler, origin: RequestOrigin, t: HttpTimeouts): Server {
  const server = createServer(
    { requestTimeout: t.requestMs, headersTimeout: t.headersMs, connectionsCheckingInterval: t.checkIntervalMs, keepAliveTimeout: 5_000, maxHeaderSize: 16 * 1024 },
    (req: IncomingMessage, res: ServerResponse) => handler.handle(req, res, origin),
  );
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => handler.upgrade(req, socket, head, origin));
  // A malformed request line or headers: answer 400 when the socket still can, never crash.
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    const status = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout' : err.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : '400 Bad Request';
    if (socket.writable) socket.end(`HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
    else socket.destroy();
  });
  // Streams are bounded far below this (stream-limits.ts), and idle or slow connections are cut by the timeouts above.
  server.maxConnections = MAX_CONNECTIONS;
  return server;
}

function listen(server: Server, where: { path: string } | { host: string; port: number }, label: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void =>
      reject(new ConfigError([{ path: 'control.listen', value: label, expected: `an address this process can listen on (${err.code ?? err.message})` }], { cause: err }));
    server.once('error', onError);
    server.listen(where, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) {
      resolve();
      return;
    }
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

/** `HOST:PORT`, `[v6]:PORT`. */
export function parseListen(listen: string): { host: string; port: number } {
  const i = listen.lastIndexOf(':');
  const host = listen.slice(0, i).replace(/^\[(.*)\]$/, '$1');
  return { host: host === '' ? '0.0.0.0' : host, port: Number(listen.slice(i + 1)) };
}

async function readTokenFile(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigError([{ path: 'control.tokenFile', value: file, expected: `a readable token file (${(err as NodeJS.ErrnoException).code ?? 'unreadable'})` }]);
  }
}

async function removeStaleSocket(file: string): Promise<void> {
  try {
    if ((await lstat(file)).isSocket()) await rm(file, { force: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/** A memoised thunk. */
function once<T>(make: () => T): () => T {
  let value: { v: T } | undefined;
  return () => (value ??= { v: make() }).v;
}
