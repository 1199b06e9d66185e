import { describe, expect, it } from 'vitest';
import { SseParser, formatSseMessage } from './sse-parser.js';

describe('SseParser', () => {
  it('reads back what formatSseMessage writes, across arbitrary chunk boundaries, skipping comments', () => {
    const wire = `: hello\n\n${formatSseMessage(1, 'VmStarted', '{"a":1}')}: keepalive\n\n${formatSseMessage(2, 'VmPaused', '{"b":"x:y"}')}`;
    for (const size of [1, 2, 7, wire.length]) {
      const p = new SseParser();
      const got = [];
      const bytes = new TextEncoder().encode(wire);
      for (let i = 0; i < bytes.length; i += size) got.push(...p.push(bytes.subarray(i, i + size)));
      expect(got).toEqual([
        { id: '1', event: 'VmStarted', data: '{"a":1}' },
        { id: '2', event: 'VmPaused', data: '{"b":"x:y"}' },
      ]);
    }
  });

  it('handles CRLF and multi-line data', () => {
    expect(new SseParser().push('data: a\r\ndata: b\r\n\r\n')).toEqual([{ id: null, event: 'message', data: 'a\nb' }]);
  });
});
