/**
 * The web console's transport: a WebSocket (RFC 6455) on the control
 * endpoint, bridged byte for byte to qemu's own VNC server, wherever QMP
 * `query-vnc` says it listens (a TCP port, or a unix socket when the VM owns
 * the pod's addresses). noVNC speaks RFB over it; VNC's own password, when set,
 * still applies. The bridge is the "websockify" of this design, so qemu needs
 * no websocket option of its own.
 */
import type { IncomingMessage } from 'node:http';
import { connect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger, VmHandle } from '@podvisor/core';
import { httpError } from './http-errors.js';
import { WS_OPCODE, WsFrameDecoder, WsProtocolError, encodeWsClose, encodeWsFrame, websocketAccept } from './websocket-frames.js';

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
export function checkWebSocketRequest(req: IncomingMessage): string {
  const key = req.headers['sec-websocket-key'];
  if ((req.headers.upgrade ?? '').toLowerCase() !== 'websocket' || typeof key !== 'string' || !/^[A-Za-z0-9+/]{22}==$/.test(key)) {
    throw httpError('ERR_HTTP_BAD_REQUEST', 'expected a WebSocket opening handshake (Upgrade: websocket, Sec-WebSocket-Key)');
  }
  if (req.headers['sec-websocket-version'] !== '13') throw httpError('ERR_HTTP_BAD_REQUEST', 'expected Sec-WebSocket-Version: 13');
  return key;
}

/**
 * Connects to the VNC server, answers 101, and pumps bytes both ways until
 * either side closes. Resolves once connected; throws `ERR_CONSOLE_UNAVAILABLE`
 * when the VNC server does not accept (nothing has been written to `socket` then).
 */
export async function bridgeWebSocketToVnc(req: IncomingMessage, socket: Duplex, head: Buffer, key: string, target: VncEndpoint, log: Logger): Promise<() => void> {
  const vnc = await openVnc(target);
  const offered = String(req.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim());
  const protocol = offered.includes('binary') ? 'binary' : null;
  socket.write(
    `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${websocketAccept(key)}\r\n${protocol === null ? '' : `Sec-WebSocket-Protocol: ${protocol}\r\n`}\r\n`,
  );
  const decoder = new WsFrameDecoder();
  let closed = false;
  const close = (code = 1000): void => {
    if (closed) return;
    closed = true;
    if (socket.writable) socket.end(encodeWsClose(code));
    vnc.destroy();
  };
  const fromClient = (chunk: Buffer): void => {
    let frames;
    try {
      frames = decoder.push(chunk);
    } catch (err) {
      close(err instanceof WsProtocolError ? err.closeCode : 1002);
      return;
    }
    for (const f of frames) {
      if (f.opcode === WS_OPCODE.binary || f.opcode === WS_OPCODE.continuation || f.opcode === WS_OPCODE.text) vnc.write(f.payload);
      else if (f.opcode === WS_OPCODE.ping) socket.write(encodeWsFrame(WS_OPCODE.pong, f.payload));
      else if (f.opcode === WS_OPCODE.close) close(1000);
    }
  };
  vnc.on('data', (chunk: Buffer) => socket.write(encodeWsFrame(WS_OPCODE.binary, chunk)));
  vnc.on('close', () => close(1000));
  vnc.on('error', () => close(1011));
  socket.on('data', fromClient);
  socket.on('close', () => close(1000));
  if (head.length > 0) fromClient(head);
  log.info('web console attached', { vnc: target.kind === 'unix' ? target.path : `${target.host}:${target.port}` });
  return () => close(1001);
}

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
