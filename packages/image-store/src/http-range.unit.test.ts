import { describe, expect, it } from 'vitest';
import { conditionalHeaders, ifRangeValue, parseContentRange, validatorsOf } from './http-range.js';
import { splitCredentials } from './image-uri.js';
import { ProgressMeter } from './progress-meter.js';

describe('http-range', () => {
  it('parses Content-Range and refuses malformed or impossible ones', () => {
    expect(parseContentRange('bytes 100-199/200')).toEqual({ start: 100, end: 199, total: 200 });
    expect(parseContentRange('bytes 0-9/*')).toEqual({ start: 0, end: 9, total: undefined });
    expect(parseContentRange('bytes 10-5/200')).toBeNull();
    expect(parseContentRange('bytes 0-200/200')).toBeNull();
    expect(parseContentRange('items 0-1/2')).toBeNull();
    expect(parseContentRange(undefined)).toBeNull();
  });

  it('uses only a strong ETag or a date for If-Range', () => {
    expect(ifRangeValue({ etag: '"abc"', lastModified: 'd' })).toBe('"abc"');
    expect(ifRangeValue({ etag: 'W/"abc"', lastModified: 'd' })).toBe('d');
    expect(ifRangeValue({ etag: 'W/"abc"' })).toBeUndefined();
    expect(conditionalHeaders({ etag: '"e"', lastModified: 'd' })).toEqual({ 'if-none-match': '"e"', 'if-modified-since': 'd' });
    expect(validatorsOf({ etag: '"e"' })).toEqual({ etag: '"e"' });
  });

  it('moves URL credentials into a Basic Authorization header', () => {
    const { url, authorization } = splitCredentials('https://u%40x:p%3Aw@example.test/a.qcow2');
    expect(url.toString()).toBe('https://example.test/a.qcow2');
    expect(Buffer.from((authorization ?? '').slice(6), 'base64').toString()).toBe('u@x:p:w');
    expect(splitCredentials('http://h/x').authorization).toBeUndefined();
  });
});

describe('ProgressMeter', () => {
  it('reports at most once per interval, then a final report with the average rate', () => {
    let now = 0;
    const seen: unknown[] = [];
    const m = new ProgressMeter('t', 1000, (p) => seen.push(p), () => now);
    m.update(100, 1000);
    now = 1000;
    m.update(500, 1000);
    now = 1500;
    m.update(700, 1000);
    now = 2000;
    m.finish(1000, 1000);
    expect(seen).toEqual([
      { target: 't', bytes: 500, total: 1000, percent: 50, bytesPerSecond: 500, done: false },
      { target: 't', bytes: 1000, total: 1000, percent: 100, bytesPerSecond: 500, done: true },
    ]);
  });
});
