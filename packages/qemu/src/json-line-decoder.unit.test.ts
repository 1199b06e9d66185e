import { describe, expect, it } from 'vitest';
import { JsonLineDecoder } from './json-line-decoder.js';
import { QmpProtocolError } from './qmp-error.js';

describe('JsonLineDecoder', () => {
  it('waits for the newline of a message cut across chunks', () => {
    const d = new JsonLineDecoder();
    expect(d.push(Buffer.from('{"return": {"sta'))).toEqual([]);
    expect(d.push(Buffer.from('tus": "running"}, "id": 1}'))).toEqual([]);
    expect(d.push(Buffer.from('\r\n'))).toEqual([{ line: '{"return": {"status": "running"}, "id": 1}', message: { return: { status: 'running' }, id: 1 } }]);
    expect(d.rest()).toBe('');
  });

  it('returns every message of a chunk that holds several, in order, and keeps the unfinished one', () => {
    const d = new JsonLineDecoder();
    const out = d.push(Buffer.from('{"event": "STOP"}\r\n{"return": {}, "id": 2}\n\n{"event": "RES'));
    expect(out.map((m) => m.message)).toEqual([{ event: 'STOP' }, { return: {}, id: 2 }]);
    expect(d.rest()).toBe('{"event": "RES');
    expect(d.push('UME"}\n').map((m) => m.message)).toEqual([{ event: 'RESUME' }]);
  });

  it('reassembles a UTF-8 character split between two chunks', () => {
    const bytes = Buffer.from('{"desc": "caf\u00e9"}\n');
    const cut = bytes.indexOf(0xc3) + 1;
    const d = new JsonLineDecoder();
    expect(d.push(bytes.subarray(0, cut))).toEqual([]);
    expect(d.push(bytes.subarray(cut))[0]?.message).toEqual({ desc: 'caf\u00e9' });
  });

  it('throws QmpProtocolError for a line that is not JSON, or JSON that is not an object', () => {
    expect(() => new JsonLineDecoder().push('hello qemu\n')).toThrow(QmpProtocolError);
    expect(() => new JsonLineDecoder().push('hello qemu\n')).toThrow(/not JSON: hello qemu/);
    expect(() => new JsonLineDecoder().push('[1,2]\n')).toThrow(/not an object/);
  });
});
