import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PodvisorError, type FetchRetry } from '@podvisor/core';
import { HttpImageServer } from '../../../test/support/http-image-server.js';
import { HttpImageSource } from './http-image-source.js';

let server: HttpImageServer;
let dir: string;
const body = randomBytes(3 * 1024 * 1024 + 17);
const sha = createHash('sha256').update(body).digest('hex');
// Quick retries; the source's own timeouts (30 s): a spurious timeout on a loaded machine would retry and change the requests the tests count.
const fast = { backoffInitialMs: 10, backoffMaxMs: 50, maxAttempts: 3 };

beforeEach(async () => {
  server = await new HttpImageServer().start();
  dir = await mkdtemp(path.join(tmpdir(), 'pv-http-'));
  await server.serve('/img', body);
});
afterEach(async () => {
  await server.close();
  await rm(dir, { recursive: true, force: true });
});

async function failure(p: Promise<unknown>): Promise<PodvisorError> {
  const err = await p.then(() => null, (e: unknown) => e);
  expect(err).toBeInstanceOf(PodvisorError);
  return err as PodvisorError;
}

describe('HttpImageSource', () => {
  it('streams the body with its sha256 and validators', async () => {
    const dest = path.join(dir, 'a');
    const res = await new HttpImageSource(fast).fetch(server.url('/img'), dest, {});
    expect(res).toMatchObject({ notModified: false, bytes: body.length, sha256: sha });
    expect((await readFile(dest)).equals(body)).toBe(true);
    expect(server.requests).toHaveLength(1);
  });

  it('resumes with Range and If-Range after a dropped connection', async () => {
    server.plan('/img', { kind: 'drop', atBytes: body.length / 2 });
    const retries: FetchRetry[] = [];
    const dest = path.join(dir, 'a');
    const res = await new HttpImageSource(fast).fetch(server.url('/img'), dest, { onRetry: (r) => retries.push(r) });
    expect(res).toMatchObject({ sha256: sha, bytes: body.length });
    expect(server.requests.map((r) => [r.status, r.range !== null])).toEqual([
      [200, false],
      [206, true],
    ]);
    const resumeFrom = Number(/bytes=(\d+)-/.exec(server.requests[1]?.range ?? '')?.[1]);
    expect(resumeFrom).toBeGreaterThan(0);
    expect(server.requests[0]?.bytesSent).toBeGreaterThanOrEqual(resumeFrom);
    expect(server.requests[1]?.ifRange).toMatch(/^"/);
    expect(retries).toEqual([expect.objectContaining({ attempt: 1, resumeFrom })]);
  });

  it('starts over when the file changed between the drop and the resume (If-Range mismatch)', async () => {
    server.plan('/img', { kind: 'drop', atBytes: 1024 * 1024 });
    const other = randomBytes(body.length);
    const dest = path.join(dir, 'a');
    const res = await new HttpImageSource(fast).fetch(server.url('/img'), dest, { onRetry: () => void server.serve('/img', other) });
    expect(res).toMatchObject({ sha256: createHash('sha256').update(other).digest('hex') });
    expect(server.requests.map((r) => r.status)).toEqual([200, 200]);
  });

  it('retries 500 then succeeds; never retries 404', async () => {
    server.plan('/img', { kind: 'status', status: 500 }, { kind: 'status', status: 503 });
    expect(await new HttpImageSource(fast).fetch(server.url('/img'), path.join(dir, 'a'), {})).toMatchObject({ sha256: sha });
    expect(server.requests.map((r) => r.status)).toEqual([500, 503, 200]);
    const err = await failure(new HttpImageSource(fast).fetch(server.url('/missing'), path.join(dir, 'b'), {}));
    expect(err.code).toBe('ERR_IMAGE_SOURCE_NOT_FOUND');
    expect(server.requests.filter((r) => r.path === '/missing')).toHaveLength(1);
    expect(await readdir(dir)).toEqual(['a']);
  });

  it('gives up after maxAttempts of 5xx with the status in the error', async () => {
    server.plan('/img', ...Array.from({ length: 5 }, () => ({ kind: 'status' as const, status: 502 })));
    const err = await failure(new HttpImageSource(fast).fetch(server.url('/img'), path.join(dir, 'a'), {}));
    expect(err.code).toBe('ERR_IMAGE_HTTP_STATUS');
    expect(err.message).toContain('502');
    expect(err.message).toContain('3 attempts');
    expect(await readdir(dir)).toEqual([]);
  });

  it('times out a server that does not answer, and leaves no file', async () => {
    server.plan('/img', { kind: 'stall', ms: 5000 }, { kind: 'stall', ms: 5000 });
    const err = await failure(new HttpImageSource({ ...fast, headersTimeoutMs: 200, maxAttempts: 2 }).fetch(server.url('/img'), path.join(dir, 'a'), {}));
    expect(err.code).toBe('ERR_IMAGE_HTTP_TIMEOUT');
    expect(await readdir(dir)).toEqual([]);
  });

  it('follows redirects up to the limit, and sends credentials only to their origin', async () => {
    server.plan('/img', { kind: 'redirect', location: '/img' });
    const url = server.url('/img', { user: 'u', password: 's3cret' });
    await new HttpImageSource(fast).fetch(url, path.join(dir, 'a'), {});
    expect(server.requests.every((r) => r.authorization === `Basic ${Buffer.from('u:s3cret').toString('base64')}`)).toBe(true);
    server.plan('/img', ...Array.from({ length: 3 }, () => ({ kind: 'redirect' as const, location: '/img' })));
    const err = await failure(new HttpImageSource({ ...fast, maxRedirects: 2 }).fetch(url, path.join(dir, 'b'), {}));
    expect(err.code).toBe('ERR_IMAGE_TOO_MANY_REDIRECTS');
    expect(err.message).not.toContain('s3cret');
    expect(JSON.stringify(err.toJSON())).not.toContain('s3cret');
  });

  it('answers notModified to a conditional request without transferring the body', async () => {
    const first = await new HttpImageSource(fast).fetch(server.url('/img'), path.join(dir, 'a'), {});
    if (first.notModified) throw new Error('unexpected');
    const again = await new HttpImageSource(fast).fetch(server.url('/img'), path.join(dir, 'b'), { ifChanged: first.validators });
    expect(again).toEqual({ notModified: true });
    expect(server.requests.at(-1)).toMatchObject({ status: 304, bytesSent: 0, ifNoneMatch: first.validators.etag });
    expect(await readdir(dir)).toEqual(['a']);
  });

  it('without validators, a retry starts over instead of splicing', async () => {
    await server.serve('/plain', body, { validators: false });
    server.plan('/plain', { kind: 'drop', atBytes: 1024 * 1024 });
    const res = await new HttpImageSource(fast).fetch(server.url('/plain'), path.join(dir, 'a'), {});
    expect(res).toMatchObject({ sha256: sha });
    expect(server.requests.map((r) => r.range)).toEqual([null, null]);
  });

  it('resumes a chunked body cut short (no Content-Length) through the chunked framing error', async () => {
    await server.serve('/chunked', body, { chunked: true });
    server.plan('/chunked', { kind: 'drop', atBytes: 1024 * 1024 });
    const res = await new HttpImageSource(fast).fetch(server.url('/chunked'), path.join(dir, 'a'), {});
    expect(res).toMatchObject({ sha256: sha });
    expect(server.requests.map((r) => r.status)).toEqual([200, 206]);
  });
});
