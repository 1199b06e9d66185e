/**
 * The web console's transport: a WebSocket (RFC 6455) on the control
 * endpoint, bridged to qemu's own VNC server, wherever QMP `query-vnc` says it
 * listens (a TCP port, or a unix socket when the VM owns the pod's addresses).
 * The bridge is the "websockify" of this design (the WebSocket protocol comes
 * from the `ws` package), so qemu needs no websocket option of its own. It also answers qemu's VNC authentication itself (RFC
 * 6143, 7.2.2) with the password podvisor set, and offers the browser, which
 * has already proven an admin token, security type None: the VNC password
 * never leaves the pod. After the security handshake, bytes pass unchanged,
 * each direction paused while the other side's socket is full.
 */
import { createCipheriv } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { connect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger, VmHandle } from '@podvisor/core';
import { httpError } from './http-errors.js';
import { WebSocketServer, type WebSocket } from 'ws';

export type VncEndpoint = { kind: 'unix'; path: string } | { kind: 'tcp'; host: string; port: number };

/** The part of QMP `query-vnc`'s answer (QMP reference, VncInfo) used here. */
interface VncInfo {
  enabled?: boolean;
  host?: string;
  service?: string;
  family?: string;
}

/**
 * Where qemu's VNC server listens, asked with `execute` (a QMP command runner).
 * Throws `ERR_CONSOLE_UNAVAILABLE` when VNC is off, and what `execute` throws
 * when QMP fails. Changes nothing.
 */
export async function locateVnc(execute: VmHandle['execute']): Promise<VncEndpoint> {
  const info = await execute<VncInfo>('query-vnc');
  if (info.enabled !== true || info.host === undefined) {
    throw httpError('ERR_CONSOLE_UNAVAILABLE', 'qemu serves no VNC display (NO_VNC is set)', { hint: 'unset NO_VNC to get a VNC display and the web console' });
  }
  if (info.family === 'unix') return { kind: 'unix', path: info.host };
  // qemu listens on every address of the pod: reach it on loopback.
  const host = info.host === '0.0.0.0' ? '127.0.0.1' : info.host === '::' ? '::1' : info.host;
  return { kind: 'tcp', host, port: Number(info.service) };
}

/**
 * Checks the client's opening handshake (section 4.2.1). Throws
 * `ERR_HTTP_BAD_REQUEST` when it is not a WebSocket version 13 request.
 */
export function checkWebSocketRequest(req: IncomingMessage): void {
  const key = req.headers['sec-websocket-key'];
  if ((req.headers.upgrade ?? '').toLowerCase() !== 'websocket' || typeof key !== 'string' || !/^[A-Za-z0-9+/]{22}==$/.test(key)) {
    throw httpError('ERR_HTTP_BAD_REQUEST', 'expected a WebSocket opening handshake (Upgrade: websocket, Sec-WebSocket-Key)');
  }
  if (req.headers['sec-websocket-version'] !== '13') throw httpError('ERR_HTTP_BAD_REQUEST', 'expected Sec-WebSocket-Version: 13');
}

/**
 * Connects to the VNC server and authenticates to it (with `password` when it
 * asks for one), answers 101, runs the browser's side of the RFB handshake
 * (security type None), then pumps bytes both ways until either side closes.
 * Resolves once connected; throws `ERR_CONSOLE_UNAVAILABLE` when the VNC
 * server does not accept, asks for a password that is not known or not right,
 * or does not finish its handshake within 5 s (nothing has been written to
 * `socket` then). Call `checkWebSocketRequest` first.
 */
export async function bridgeWebSocketToVnc(
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  target: VncEndpoint,
  password: string | undefined,
  log: Logger,
): Promise<() => void> {
  const vnc = await openVnc(target);
  let early: Buffer;
  try {
    early = await authenticateToVnc(vnc, password, 5000);
  } catch (err) {
    vnc.destroy();
    throw err;
  }
  let ws: WebSocket;
  try {
    ws = await new Promise<WebSocket>((resolve, reject) => {
      // `ws` answers a handshake it refuses itself (400) and never calls back: the socket's end says so.
      const refused = (): void => reject(httpError('ERR_HTTP_BAD_REQUEST', 'the WebSocket handshake was refused'));
      socket.once('close', refused);
      WEBSOCKETS.handleUpgrade(req, socket, head, (w) => {
        socket.off('close', refused);
        resolve(w);
      });
    });
  } catch (err) {
    vnc.destroy();
    throw err;
  }
  const browser = new RfbNoneServer();
  let closed = false;
  const close = (code = 1000): void => {
    if (closed) return;
    closed = true;
    ws.close(code);
    vnc.destroy();
  };
  // qemu's output waits while the browser's socket holds more than this.
  let vncPaused = false;
  const toBrowser = (chunk: Buffer): void => {
    if (chunk.length === 0 || closed) return;
    ws.send(chunk, { binary: true }, () => {
      if (vncPaused && ws.bufferedAmount < VNC_BUFFER_LOW) {
        vncPaused = false;
        vnc.resume();
      }
    });
    if (!vncPaused && ws.bufferedAmount >= VNC_BUFFER_HIGH) {
      vncPaused = true;
      vnc.pause();
    }
  };
  ws.on('message', (data: Buffer | ArrayBuffer | Buffer[]) => {
    const step = browser.push(Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data));
    toBrowser(step.reply);
    if (step.failed) close(1002);
    else if (step.forward.length > 0 && !vnc.write(step.forward)) {
      // The browser's input waits while qemu does not read.
      ws.pause();
      vnc.once('drain', () => ws.resume());
    }
  });
  toBrowser(browser.greeting());
  toBrowser(early);
  vnc.on('data', toBrowser);
  vnc.resume();
  vnc.on('close', () => close(1000));
  vnc.on('error', () => close(1011));
  ws.on('close', () => close(1000));
  ws.on('error', () => close(1002));
  log.info('web console attached', { vnc: target.kind === 'unix' ? target.path : `${target.host}:${target.port}` });
  return () => close(1001);
}

/** Above this many bytes queued for the browser, qemu's VNC output is paused; below the low mark, resumed. */
const VNC_BUFFER_HIGH = 4 * 1024 * 1024;
const VNC_BUFFER_LOW = 1024 * 1024;

/** The WebSocket protocol (RFC 6455) from `ws`: frames of at most 1 MiB, subprotocol `binary` when offered, no compression. */
const WEBSOCKETS = new WebSocketServer({
  noServer: true,
  maxPayload: 1024 * 1024,
  perMessageDeflate: false,
  clientTracking: false,
  handleProtocols: (protocols: Set<string>) => (protocols.has('binary') ? 'binary' : false),
});

function openVnc(target: VncEndpoint): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = target.kind === 'unix' ? connect(target.path) : connect(target.port, target.host);
    s.once('connect', () => {
      s.off('error', onError);
      resolve(s);
    });
    const onError = (err: NodeJS.ErrnoException): void => {
      s.destroy();
      reject(httpError('ERR_CONSOLE_UNAVAILABLE', `qemu's VNC server does not accept connections (${err.code ?? err.message})`));
    };
    s.once('error', onError);
  });
}

const RFB_38 = 'RFB 003.008\n';

/**
 * Runs the client side of the RFB handshake with qemu (RFC 6143, 7.1 and 7.2):
 * version 3.8, then security type 2 (VNC authentication, answered with
 * `password`) or 1 (None), and the security result. Resolves with any bytes
 * that came after it; throws `ERR_CONSOLE_UNAVAILABLE` otherwise.
 */
async function authenticateToVnc(vnc: Socket, password: string | undefined, timeoutMs: number): Promise<Buffer> {
  const reader = new ExactReader(vnc, timeoutMs);
  try {
    const version = (await reader.read(12)).toString('latin1');
    if (!/^RFB 003\.00[78]\n$/.test(version)) throw unavailable(`qemu's VNC server speaks ${JSON.stringify(version)}, expected RFB 3.7 or 3.8`);
    vnc.write(RFB_38);
    const count = (await reader.read(1))[0] ?? 0;
    if (count === 0) throw unavailable('qemu\'s VNC server refused the connection');
    const types = [...(await reader.read(count))];
    if (types.includes(2) && password !== undefined) {
      vnc.write(Buffer.from([2]));
      vnc.write(vncAuthResponse(password, await reader.read(16)));
    } else if (types.includes(1)) {
      vnc.write(Buffer.from([1]));
    } else {
      throw unavailable(`qemu's VNC server offers security types ${types.join(', ')}, and podvisor ${password === undefined ? 'has no VNC password' : 'speaks only None (1) and VNC authentication (2)'}`);
    }
    if ((await reader.read(4)).readUInt32BE(0) !== 0) throw unavailable('qemu\'s VNC server refused the VNC password podvisor set');
    return reader.rest();
  } finally {
    reader.stop();
  }
}

/** The 16-byte answer to a VNC authentication challenge: DES (ECB) with the password's first 8 bytes, each bit-reversed, as the key (RFC 6143, 7.2.2 and errata). */
export function vncAuthResponse(password: string, challenge: Buffer): Buffer {
  const key = Buffer.alloc(8);
  Buffer.from(password, 'latin1').copy(key, 0, 0, 8);
  for (let i = 0; i < 8; i += 1) {
    let b = key[i] ?? 0;
    let r = 0;
    for (let bit = 0; bit < 8; bit += 1) {
      r = (r << 1) | (b & 1);
      b >>= 1;
    }
    key[i] = r;
  }
  // Single DES is only in OpenSSL 3's legacy provider; triple DES with three equal keys is single DES.
  const cipher = createCipheriv('des-ede3-ecb', Buffer.concat([key, key, key]), null).setAutoPadding(false);
  return Buffer.concat([cipher.update(challenge), cipher.final()]);
}

/**
 * The server side of the RFB handshake towards the browser: version 3.8 (or
 * the 3.7 or 3.3 the client answers), security type None, and the security
 * result; then every byte is forwarded.
 */
class RfbNoneServer {
  private stage: 'version' | 'security' | 'open' = 'version';
  private pending: Buffer = Buffer.alloc(0);
  private minor = 8;

  greeting(): Buffer {
    return Buffer.from(RFB_38);
  }

  push(data: Buffer): { reply: Buffer; forward: Buffer; failed: boolean } {
    const none = { reply: Buffer.alloc(0), forward: Buffer.alloc(0), failed: false };
    if (this.stage === 'open') return { ...none, forward: data };
    this.pending = Buffer.concat([this.pending, data]);
    const replies: Buffer[] = [];
    if (this.stage === 'version') {
      if (this.pending.length < 12) return none;
      const m = /^RFB 003\.00([378])\n$/.exec(this.pending.subarray(0, 12).toString('latin1'));
      if (m === null) return { ...none, failed: true };
      this.minor = Number(m[1]);
      this.pending = this.pending.subarray(12);
      if (this.minor === 3) {
        // 3.3: the server decides the type (a u32), and sends no result for None.
        replies.push(u32(1));
        this.stage = 'open';
      } else {
        replies.push(Buffer.from([1, 1]));
        this.stage = 'security';
      }
    }
    if (this.stage === 'security') {
      if (this.pending.length < 1) return { ...none, reply: Buffer.concat(replies) };
      if (this.pending[0] !== 1) return { ...none, reply: Buffer.concat(replies), failed: true };
      this.pending = this.pending.subarray(1);
      if (this.minor === 8) replies.push(u32(0));
      this.stage = 'open';
    }
    const forward = this.pending;
    this.pending = Buffer.alloc(0);
    return { reply: Buffer.concat(replies), forward, failed: false };
  }
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n, 0);
  return b;
}

function unavailable(message: string): Error {
  return httpError('ERR_CONSOLE_UNAVAILABLE', message, { hint: 'check that the VNC password qemu was given is the one podvisor holds (podvisor ctl vnc-password)' });
}

/** Reads exact byte counts from a socket during a handshake, under one deadline. */
class ExactReader {
  private buffer: Buffer = Buffer.alloc(0);
  private waiter: (() => void) | null = null;
  private failure: Error | null = null;
  private readonly timer: NodeJS.Timeout;
  private readonly onData = (chunk: Buffer): void => {
    this.buffer = Buffer.concat([this.buffer, chunk]);
    this.waiter?.();
  };
  private readonly onEnd = (): void => this.fail(unavailable('qemu\'s VNC server closed the connection during the handshake'));

  constructor(
    private readonly socket: Socket,
    timeoutMs: number,
  ) {
    socket.on('data', this.onData);
    socket.on('close', this.onEnd);
    socket.on('error', this.onEnd);
    this.timer = setTimeout(() => this.fail(unavailable(`qemu's VNC server did not finish its handshake within ${timeoutMs} ms`)), timeoutMs);
  }

  async read(n: number): Promise<Buffer> {
    while (this.buffer.length < n) {
      if (this.failure !== null) throw this.failure;
      await new Promise<void>((resolve) => (this.waiter = resolve));
      this.waiter = null;
    }
    const out = this.buffer.subarray(0, n);
    this.buffer = this.buffer.subarray(n);
    return out;
  }

  rest(): Buffer {
    const out = this.buffer;
    this.buffer = Buffer.alloc(0);
    return out;
  }

  /** Stops reading; the socket stays paused until its next reader resumes it. */
  stop(): void {
    this.socket.pause();
    clearTimeout(this.timer);
    this.socket.off('data', this.onData);
    this.socket.off('close', this.onEnd);
    this.socket.off('error', this.onEnd);
  }

  private fail(err: Error): void {
    this.failure ??= err;
    this.waiter?.();
  }
}
