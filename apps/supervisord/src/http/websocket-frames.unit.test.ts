import { describe, expect, it } from 'vitest';
import { WS_OPCODE, WsFrameDecoder, encodeWsFrame, websocketAccept } from './websocket-frames.js';

/** A client frame: masked, as RFC 6455 5.1 requires. */
function clientFrame(opcode: number, payload: Buffer, fin = true): Buffer {
  const mask = Buffer.from([0x37, 0xfa, 0x21, 0x3d]);
  const n = payload.length;
  const head = n < 126 ? Buffer.from([(fin ? 0x80 : 0) | opcode, 0x80 | n]) : Buffer.from([(fin ? 0x80 : 0) | opcode, 0x80 | 126, n >> 8, n & 0xff]);
  const body = Buffer.from(payload.map((b, i) => b ^ (mask[i & 3] ?? 0)));
  return Buffer.concat([head, mask, body]);
}

describe('WebSocket frames (RFC 6455)', () => {
  it('computes the accept value of the RFC example', () => {
    expect(websocketAccept('dGhlIHNhbXBsZSBub25jZQ==')).toBe('s3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
  });

  it('decodes masked frames across chunk boundaries, with 7- and 16-bit lengths', () => {
    const big = Buffer.alloc(300, 7);
    const wire = Buffer.concat([clientFrame(WS_OPCODE.binary, Buffer.from('RFB 003.008\n')), clientFrame(WS_OPCODE.ping, Buffer.from('p')), clientFrame(WS_OPCODE.binary, big)]);
    const d = new WsFrameDecoder();
    const frames = [];
    for (let i = 0; i < wire.length; i += 5) frames.push(...d.push(wire.subarray(i, i + 5)));
    expect(frames.map((f) => [f.opcode, f.payload.length])).toEqual([[2, 12], [9, 1], [2, 300]]);
    expect(frames[0]?.payload.toString()).toBe('RFB 003.008\n');
    expect(frames[2]?.payload.equals(big)).toBe(true);
  });

  it('refuses unmasked client frames (1002) and frames over the size limit (1009)', () => {
    expect(() => new WsFrameDecoder().push(encodeWsFrame(WS_OPCODE.binary, Buffer.from('x')))).toThrow(expect.objectContaining({ closeCode: 1002 }));
    expect(() => new WsFrameDecoder(100).push(clientFrame(WS_OPCODE.binary, Buffer.alloc(200)))).toThrow(expect.objectContaining({ closeCode: 1009 }));
  });

  it('encodes server frames unmasked with the right length form', () => {
    expect([...encodeWsFrame(WS_OPCODE.binary, Buffer.from('hi'))]).toEqual([0x82, 2, 0x68, 0x69]);
    expect([...encodeWsFrame(WS_OPCODE.binary, Buffer.alloc(70_000)).subarray(0, 10)]).toEqual([0x82, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
  });
});
