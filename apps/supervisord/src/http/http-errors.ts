/**
 * Errors at the HTTP edge: the one place where a `PodvisorError.code` becomes
 * an HTTP status, and the one JSON shape every error answer has,
 * `{error: {code, message, hint?, details?}}`. Anything that is not a
 * `PodvisorError` is an internal error (500) whose message is logged, not sent.
 */
import type { ServerResponse } from 'node:http';
import { PodvisorError, isPodvisorError } from '@podvisor/core';

/** Status per code; codes not listed are 500 (ERR_HTTP_* codes carry their own, see `httpError`). */
const STATUS: Readonly<Record<string, number>> = {
  ERR_HTTP_BAD_REQUEST: 400,
  ERR_HTTP_INVALID_JSON: 400,
  ERR_HTTP_INVALID_BODY: 400,
  ERR_HTTP_INVALID_QUERY: 400,
  ERR_HTTP_UNAUTHORIZED: 401,
  ERR_HTTP_FORBIDDEN: 403,
  ERR_QMP_COMMAND_FORBIDDEN: 403,
  ERR_HTTP_NOT_FOUND: 404,
  ERR_HTTP_METHOD_NOT_ALLOWED: 405,
  ERR_HTTP_NOT_ACCEPTABLE: 406,
  ERR_VM_ACTION_REFUSED: 409,
  ERR_VM_NOT_RUNNING: 409,
  ERR_HTTP_BODY_TOO_LARGE: 413,
  ERR_HTTP_UNSUPPORTED_MEDIA_TYPE: 415,
  ERR_QMP_COMMAND: 422,
  ERR_HTTP_UPGRADE_REQUIRED: 426,
  ERR_HTTP_TOO_MANY_STREAMS: 429,
  ERR_CONSOLE_UNAVAILABLE: 503,
  ERR_QMP_INTERRUPTED: 503,
  ERR_QMP_CONNECT: 503,
  ERR_QMP_STATE: 503,
  ERR_EVENTSTORE_CLOSED: 503,
  ERR_QMP_TIMEOUT: 504,
};

/** The HTTP status of an error. */
export function httpStatusOf(err: unknown): number {
  return isPodvisorError(err) ? (STATUS[err.code] ?? 500) : 500;
}

/** A coded error meant for the client; `code` must be listed in the status table. */
export function httpError(code: string, message: string, options: { hint?: string; details?: Record<string, unknown> } = {}): PodvisorError {
  return new PodvisorError(code, message, options);
}

/** The JSON body of an error; internal errors say only that they happened. */
export function errorBody(err: unknown): { error: { code: string; message: string; hint?: string; details?: Record<string, unknown> } } {
  if (isPodvisorError(err) && httpStatusOf(err) !== 500) return { error: err.toJSON() };
  return { error: { code: 'ERR_INTERNAL', message: 'internal error; the supervisor log has the details' } };
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store', ...headers });
  res.end(text);
}

/** Sends the error answer, unless headers are already out (then the connection is cut). */
export function sendError(res: ServerResponse, err: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  sendJson(res, httpStatusOf(err), errorBody(err), headers);
}
