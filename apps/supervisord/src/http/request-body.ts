/**
 * Reading a JSON request body at the HTTP edge: the media type must be JSON,
 * the size is bounded (a `content-length` over the bound is refused before a
 * byte is read; a chunked body is cut off as soon as it passes the bound), and
 * the text must parse. Each refusal is a coded error with its HTTP status.
 */
import type { IncomingMessage } from 'node:http';
import { httpError } from './http-errors.js';

export const DEFAULT_MAX_BODY_BYTES = 64 * 1024;

/**
 * Resolves with the parsed body. Throws `ERR_HTTP_UNSUPPORTED_MEDIA_TYPE`
 * (415), `ERR_HTTP_BODY_TOO_LARGE` (413, after which the connection must be
 * closed: the rest of the body is not read) and `ERR_HTTP_INVALID_JSON` (400).
 */
export async function readJsonBody(req: IncomingMessage, maxBytes = DEFAULT_MAX_BODY_BYTES): Promise<unknown> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
  if (type !== 'application/json') {
    throw httpError('ERR_HTTP_UNSUPPORTED_MEDIA_TYPE', `expected a JSON body (content-type: application/json), got ${JSON.stringify(req.headers['content-type'] ?? '(none)')}`);
  }
  const declared = Number(req.headers['content-length'] ?? Number.NaN);
  if (declared > maxBytes) throw tooLarge(maxBytes);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) throw tooLarge(maxBytes);
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw httpError('ERR_HTTP_INVALID_JSON', `the request body is not valid JSON: ${(err as Error).message}`, { hint: 'send one JSON object' });
  }
}

function tooLarge(maxBytes: number): Error {
  return httpError('ERR_HTTP_BODY_TOO_LARGE', `the request body is larger than ${maxBytes} bytes`, { details: { maxBytes } });
}
