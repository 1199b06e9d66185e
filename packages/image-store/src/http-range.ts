/**
 * Pure HTTP helpers for resumable, verifiable downloads (RFC 9110): reading
 * the validators (ETag, Last-Modified) of a response, choosing the `If-Range`
 * value (only a strong ETag or a Last-Modified date may be used, section
 * 13.1.5), and parsing a `Content-Range` (section 14.4).
 */
import type { SourceValidators } from '@podvisor/core';

export type HeaderMap = Record<string, string | string[] | undefined>;

export function header(headers: HeaderMap, name: string): string | undefined {
  const v = headers[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}

/** The validators a response carries, for conditional and range requests later. */
export function validatorsOf(headers: HeaderMap): SourceValidators {
  const etag = header(headers, 'etag');
  const lastModified = header(headers, 'last-modified');
  return { ...(etag === undefined ? {} : { etag }), ...(lastModified === undefined ? {} : { lastModified }) };
}

/**
 * The `If-Range` value that makes the server send the rest only if the file
 * is the one already half-downloaded, or undefined when no validator can
 * guarantee that (a weak ETag must not be used for ranges).
 */
export function ifRangeValue(v: SourceValidators): string | undefined {
  if (v.etag !== undefined && !v.etag.startsWith('W/')) return v.etag;
  return v.lastModified;
}

/** The headers of a conditional request: `If-None-Match` and/or `If-Modified-Since`. */
export function conditionalHeaders(v: SourceValidators | undefined): Record<string, string> {
  if (v === undefined) return {};
  return {
    ...(v.etag === undefined ? {} : { 'if-none-match': v.etag }),
    ...(v.lastModified === undefined ? {} : { 'if-modified-since': v.lastModified }),
  };
}

export interface ContentRange {
  start: number;
  end: number;
  /** The complete length, or undefined for `*`. */
  total: number | undefined;
}

/** Parses `bytes START-END/TOTAL` (TOTAL may be `*`); null for anything else. */
export function parseContentRange(value: string | undefined): ContentRange | null {
  if (value === undefined) return null;
  const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(value.trim());
  if (m === null) return null;
  const start = Number(m[1]);
  const end = Number(m[2]);
  const total = m[3] === '*' ? undefined : Number(m[3]);
  if (end < start || (total !== undefined && end >= total)) return null;
  return { start, end, total };
}

/** A `Content-Length` as a number, or undefined when absent or malformed. */
export function contentLength(headers: HeaderMap): number | undefined {
  const v = header(headers, 'content-length');
  return v !== undefined && /^\d+$/.test(v) ? Number(v) : undefined;
}
