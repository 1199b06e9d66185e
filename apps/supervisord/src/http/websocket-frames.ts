/**
 * The server side of the WebSocket wire protocol (RFC 6455), as much as the
 * VNC bridge needs: the opening handshake's accept value, a decoder for the
 * client's masked frames (binary, text, continuation, ping, pong, close;
 * oversized frames refused), and an encoder for the server's unmasked frames.
 * Pure: the bridge owns the sockets.
 */
import { createHash } from 'node:crypto';

/** RFC 6455, section 1.3. */
const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

export const WS_OPCODE = { continuation: 0x0, text: 0x1, binary: 0x2, close: 0x8, ping: 0x9, pong: 0xa } as const;

/** The `Sec-WebSocket-Accept` value for a client's `Sec-WebSocket-Key` (section 4.2.2). */
export function websocketAccept(key: string): string {
  return createHash('sha1').update(key + GUID).digest('base64');
}

export interface WsFrame {
  fin: boolean;
  opcode: number;
  payload: Buffer;
}

/** Thrown for a frame the server must answer by closing (section 7.4.1: 1002 protocol error, 1009 too big). */
export class WsProtocolError extends Error {
  constructor(
    message: string,
    readonly closeCode: 1002 | 1009,
  ) {
    super(message);
    this.name = 'WsProtocolError';
  }
}

/** Decodes client frames across chunk boundaries. */
export class WsFrameDecoder {
  private buffer: Buffer = Buffer.alloc(0);

  constructor(private readonly maxPayload = 1024 * 1024) {}

  /** Feeds bytes; returns the complete frames. Throws `WsProtocolError`. */
  push(chunk: Buffer): WsFrame[] {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    const frames: WsFrame[] = [];
    for (;;) {
      const b = this.buffer;
      if (b.length < 2) return frames;
      const b0 = b[0] ?? 0;
      const b1 = b[1] ?? 0;
      if ((b0 & 0x70) !== 0) throw new WsProtocolError('reserved bits set without an extension', 1002);
      if ((b1 & 0x80) === 0) throw new WsProtocolError('a client frame must be masked (RFC 6455, 5.1)', 1002);
      let length = b1 & 0x7f;
      let offset = 2;
      if (length === 126) {
        if (b.length < 4) return frames;
        length = b.readUInt16BE(2);
        offset = 4;
      } else if (length === 127) {
        if (b.length < 10) return frames;
        const big = b.readBigUInt64BE(2);
        if (big > BigInt(this.maxPayload)) throw new WsProtocolError(`frame of ${big} bytes is over ${this.maxPayload}`, 1009);
        length = Number(big);
        offset = 10;
      }
      if (length > this.maxPayload) throw new WsProtocolError(`frame of ${length} bytes is over ${this.maxPayload}`, 1009);
      if (b.length < offset + 4 + length) return frames;
      const mask = b.subarray(offset, offset + 4);
      const payload = Buffer.from(b.subarray(offset + 4, offset + 4 + length));
      for (let i = 0; i < payload.length; i += 1) payload[i] = (payload[i] ?? 0) ^ (mask[i & 3] ?? 0);
      frames.push({ fin: (b0 & 0x80) !== 0, opcode: b0 & 0x0f, payload });
      this.buffer = b.subarray(offset + 4 + length);
    }
  }
}

/** One unmasked server frame. */
export function encodeWsFrame(opcode: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const n = payload.length;
  const head = n < 126 ? Buffer.alloc(2) : n < 65536 ? Buffer.alloc(4) : Buffer.alloc(10);
  head[0] = 0x80 | opcode;
  if (n < 126) head[1] = n;
  else if (n < 65536) {
    head[1] = 126;
    head.writeUInt16BE(n, 2);
  } else {
    head[1] = 127;
    head.writeBigUInt64BE(BigInt(n), 2);
  }
  return Buffer.concat([head, payload]);
}

/** A close frame with a status code (section 5.5.1). */
export function encodeWsClose(code: number, reason = ''): Buffer {
  const body = Buffer.alloc(2 + Buffer.byteLength(reason));
  body.writeUInt16BE(code, 0);
  body.write(reason, 2);
  return encodeWsFrame(WS_OPCODE.close, body);
}
