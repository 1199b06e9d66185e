/**
 * The `http`/`https` image source, on undici. The body streams into `dest`
 * (a new file in the images volume) while its sha256 is computed, then the
 * file is fsynced. An interrupted transfer resumes with `Range` plus
 * `If-Range`, so that a file that changed on the server is started over
 * instead of spliced. 5xx answers, 408/429 and network errors (including the
 * headers and body timeouts) are retried with exponential backoff, a bounded
 * number of times in a row without progress; other 4xx are not. Redirects are
 * followed by hand, up to a limit, so that the final URL is known for resumed
 * requests and credentials go only to the origin they were given for. URL
 * credentials become an `Authorization` header and never appear in a message.
 * A download can also continue one that an earlier process left in `dest`
 * (`resume`): the prefix is hashed again, then the rest is asked for with
 * `Range` and `If-Range`. A body whose first bytes are no disk image (a
 * captive portal's HTML page answered with 200) is refused at once, and a
 * body never takes the images volume's last free space: it is cut off before
 * the free space would drop below a margin, with or without a Content-Length.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, rm, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { inject, injectable, optional } from 'inversify';
import type { Dispatcher } from 'undici';
import {
  Clock,
  PodvisorError,
  SystemClock,
  errorMessage,
  isPodvisorError,
  redactUrl,
  type FetchProgress,
  type ImageFetchResult,
  type ImageSource,
  type FetchRetry,
  type ImageFetchOptions,
  type SourceValidators,
} from '@podvisor/core';
import { conditionalHeaders, contentLength, header, ifRangeValue, parseContentRange, validatorsOf } from './http-range.js';
import { freeSpace, type FreeSpace } from './free-space.js';
import { describeBytes, hexPrefix, isNotADisk } from './image-bytes.js';
import { splitCredentials } from './image-uri.js';

export interface HttpImageSourceSettings {
  /** Time allowed for the response headers after the request is sent. */
  headersTimeoutMs: number;
  /** Longest silence allowed between two pieces of the body. */
  bodyTimeoutMs: number;
  connectTimeoutMs: number;
  /** Attempts in a row that make no progress before giving up (the first included). */
  maxAttempts: number;
  backoffInitialMs: number;
  backoffMaxMs: number;
  maxRedirects: number;
}

export const HttpImageSourceSettings = Symbol.for('podvisor.HttpImageSourceSettings');

export const DEFAULT_HTTP_SETTINGS: HttpImageSourceSettings = {
  headersTimeoutMs: 30_000,
  bodyTimeoutMs: 30_000,
  connectTimeoutMs: 10_000,
  maxAttempts: 5,
  backoffInitialMs: 1_000,
  backoffMaxMs: 30_000,
  maxRedirects: 5,
};

/** What the store adds to a fetch from this source: resuming across processes. */
export interface ResumableFetchOptions extends ImageFetchOptions {
  /** `dest` exists and holds the first bytes of the body an earlier process fetched with these validators: continue it. */
  resume?: { validators: SourceValidators; total: number | undefined };
  /** Called (and awaited) when a fresh answer's validators are known and allow a resume, before its body is read. */
  onResumable?: (validators: SourceValidators, total: number | undefined) => Promise<void>;
  /** On an error, leave `dest` for the caller (who may resume it later) instead of removing it. */
  keepPartial?: boolean;
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
/** Writes in flight while the next chunk is hashed: the thread pool writes while the main thread hashes. */
const MAX_INFLIGHT_WRITES = 16;

/** One failed attempt: retried when `retryable`. */
class AttemptError extends Error {
  constructor(
    readonly error: PodvisorError,
    readonly retryable: boolean,
    readonly retryAfterMs?: number,
  ) {
    super(error.message);
  }
}

/** The state of one download across attempts. */
interface Transfer {
  readonly fh: FileHandle;
  /** The directory of the download, for the free-space check. */
  readonly dir: string;
  readonly shown: string;
  readonly authorization: string | undefined;
  readonly origin: string;
  hash: Hash;
  bytes: number;
  total: number | undefined;
  validators: SourceValidators;
  /** The URL after redirects, asked again on resume. */
  url: URL;
  /** The answer's Content-Type, for messages. */
  contentType: string | undefined;
}

@injectable()
export class HttpImageSource implements ImageSource {
  readonly schemes = ['http', 'https'] as const;
  private readonly settings: HttpImageSourceSettings;
  /** undici and its agent, loaded on the first pull: most starts pull nothing, and loading undici costs ~40 ms. */
  private http: Promise<{ request: typeof import('undici').request; dispatcher: Dispatcher }> | undefined;

  constructor(
    @inject(HttpImageSourceSettings) @optional() settings: Partial<HttpImageSourceSettings> | undefined,
    @inject(Clock) @optional() private readonly clock: Clock = new SystemClock(),
  ) {
    this.settings = { ...DEFAULT_HTTP_SETTINGS, ...settings };
  }

  private undici(): Promise<{ request: typeof import('undici').request; dispatcher: Dispatcher }> {
    this.http ??= import('undici').then(({ Agent, request }) => ({
      request,
      dispatcher: new Agent({
        headersTimeout: this.settings.headersTimeoutMs,
        bodyTimeout: this.settings.bodyTimeoutMs,
        connectTimeout: this.settings.connectTimeoutMs,
      }),
    }));
    return this.http;
  }

  /**
   * Downloads `uri` into `dest` (created; must not exist, unless `resume`
   * says what it holds). With `ifChanged`, a 304 answer returns
   * `{notModified: true}` and leaves no file.
   * Throws ERR_IMAGE_SOURCE_NOT_FOUND (404/410), ERR_IMAGE_HTTP_STATUS,
   * ERR_IMAGE_HTTP_TIMEOUT, ERR_IMAGE_DOWNLOAD_FAILED (network, after the
   * retries), ERR_IMAGE_TOO_MANY_REDIRECTS, ERR_IMAGE_INVALID (the body is
   * no disk image), ERR_IMAGE_NO_SPACE, ERR_IMAGE_WRITE_FAILED; on any
   * error `dest` is removed, unless `keepPartial`.
   */
  async fetch(uri: string, dest: string, options: ResumableFetchOptions = {}): Promise<ImageFetchResult> {
    const { url, authorization } = splitCredentials(uri);
    const fh = await open(dest, options.resume === undefined ? 'wx' : 'r+', 0o600);
    const t: Transfer = {
      fh,
      dir: path.dirname(dest),
      shown: redactUrl(uri),
      authorization,
      origin: url.origin,
      hash: createHash('sha256'),
      bytes: 0,
      total: undefined,
      validators: {},
      url,
      contentType: undefined,
    };
    let ok = false;
    try {
      if (options.resume !== undefined) {
        // The prefix is hashed again: the file on the volume is not trusted to be what was hashed before.
        const size = (await fh.stat()).size;
        if (size > 0) for await (const chunk of createReadStream(dest, { start: 0, end: size - 1, highWaterMark: 1 << 20 })) t.hash.update(chunk as Buffer);
        t.bytes = size;
        t.validators = options.resume.validators;
        t.total = options.resume.total;
        if (size === 0 || ifRangeValue(t.validators) === undefined) await this.restart(t);
      }
      const result = await this.download(t, options);
      if (!result.notModified) await fh.sync();
      ok = !result.notModified;
      return result;
    } finally {
      await fh.close();
      if (!ok && options.keepPartial !== true) await rm(dest, { force: true });
    }
  }

  private async download(t: Transfer, options: ResumableFetchOptions): Promise<ImageFetchResult> {
    let failures = 0;
    let attempt = 0;
    for (;;) {
      attempt += 1;
      const before = t.bytes;
      try {
        const done = await this.attempt(t, options);
        if (done === 'not-modified') return { notModified: true };
        return { notModified: false, bytes: t.bytes, sha256: t.hash.digest('hex'), validators: t.validators };
      } catch (err) {
        if (options.signal?.aborted === true) throw options.signal.reason ?? err;
        const failure = err instanceof AttemptError ? err : classify(err, t.shown);
        if (!failure.retryable) throw failure.error;
        failures = t.bytes > before ? 1 : failures + 1;
        if (failures >= this.settings.maxAttempts) {
          throw new PodvisorError(failure.error.code, `${failure.error.message} (gave up after ${attempt} attempts)`, {
            ...(failure.error.hint === undefined ? {} : { hint: failure.error.hint }),
            cause: failure.error.cause ?? failure.error,
            details: { ...failure.error.details, attempts: attempt },
          });
        }
        // Resuming needs a validator; without one a changed file could be spliced, so start over.
        if (t.bytes > 0 && ifRangeValue(t.validators) === undefined) await this.restart(t);
        const backoff = Math.min(this.settings.backoffMaxMs, this.settings.backoffInitialMs * 2 ** (failures - 1));
        const delayMs = Math.min(this.settings.backoffMaxMs, failure.retryAfterMs ?? backoff);
        const retry: FetchRetry = { attempt, delayMs, resumeFrom: t.bytes, reason: failure.error.message };
        options.onRetry?.(retry);
        await this.clock.sleep(delayMs, options.signal);
      }
    }
  }

  /** One request (following redirects) and its body. Throws `AttemptError` or a non-retryable `PodvisorError`. */
  private async attempt(t: Transfer, options: ResumableFetchOptions): Promise<'done' | 'not-modified'> {
    const resuming = t.bytes > 0;
    const ifRange = ifRangeValue(t.validators);
    const headers: Record<string, string> = {
      'accept-encoding': 'identity',
      ...(resuming && ifRange !== undefined ? { range: `bytes=${t.bytes}-`, 'if-range': ifRange } : {}),
      ...(!resuming ? conditionalHeaders(options.ifChanged) : {}),
    };
    const res = await this.requestFollowingRedirects(t, headers, options.signal);
    const status = res.statusCode;
    if (status === 304 && !resuming && options.ifChanged !== undefined) {
      await res.body.dump();
      return 'not-modified';
    }
    if (status === 200) {
      // A fresh answer: the first one, or the server ignored the range / the file changed (If-Range).
      if (resuming) await this.restart(t);
      t.validators = validatorsOf(res.headers);
      t.total = contentLength(res.headers);
      if (options.onResumable !== undefined && ifRangeValue(t.validators) !== undefined) {
        await options.onResumable(t.validators, t.total).catch((err: unknown) => {
          res.body.destroy();
          throw err;
        });
      }
    } else if (status === 206 && resuming) {
      const range = parseContentRange(header(res.headers, 'content-range'));
      if (range === null || range.start !== t.bytes || (t.total !== undefined && range.total !== undefined && range.total !== t.total)) {
        await res.body.dump();
        await this.restart(t);
        throw new AttemptError(
          new PodvisorError('ERR_IMAGE_HTTP_RANGE', `${t.shown} answered the range request for bytes ${t.bytes}- with Content-Range ${JSON.stringify(header(res.headers, 'content-range') ?? null)}`, {
            details: { url: t.shown, expectedStart: t.bytes, contentRange: header(res.headers, 'content-range') ?? null },
          }),
          true,
        );
      }
      t.total = range.total ?? t.total;
    } else {
      await res.body.dump().catch(() => undefined);
      throw statusError(status, t.shown, header(res.headers, 'retry-after'), t.url);
    }
    t.contentType = header(res.headers, 'content-type');
    if (t.total !== undefined) {
      await assertSpace(t, t.total - t.bytes).catch((err: unknown) => {
        res.body.destroy();
        throw err;
      });
    }
    await this.drain(t, res.body, options);
    if (t.total !== undefined && t.bytes !== t.total) {
      throw new AttemptError(
        new PodvisorError('ERR_IMAGE_DOWNLOAD_FAILED', `${t.shown} ended after ${t.bytes} of ${t.total} bytes`, { details: { url: t.shown, bytes: t.bytes, expected: t.total } }),
        true,
      );
    }
    return 'done';
  }

  private async requestFollowingRedirects(t: Transfer, headers: Record<string, string>, signal: AbortSignal | undefined): Promise<Dispatcher.ResponseData> {
    let url = t.url;
    for (let hop = 0; ; hop += 1) {
      // Credentials go only to the origin they came with, never to a redirect target elsewhere.
      const auth = t.authorization !== undefined && url.origin === t.origin ? { authorization: t.authorization } : {};
      const { request, dispatcher } = await this.undici();
      const res = await request(url, { method: 'GET', headers: { ...headers, ...auth }, dispatcher, ...(signal === undefined ? {} : { signal }) });
      const location = header(res.headers, 'location');
      if (!REDIRECTS.has(res.statusCode) || location === undefined) {
        t.url = url;
        return res;
      }
      await res.body.dump();
      if (hop >= this.settings.maxRedirects) {
        throw new PodvisorError('ERR_IMAGE_TOO_MANY_REDIRECTS', `${t.shown} redirected more than ${this.settings.maxRedirects} times (last to ${redactUrl(new URL(location, url).toString())})`, {
          hint: 'point IMG_SOURCE at the final URL',
          details: { url: t.shown, maxRedirects: this.settings.maxRedirects },
        });
      }
      url = new URL(location, url);
    }
  }

  /** Streams the body to the file at `t.bytes`, hashing in order. On return or throw, `t.bytes` counts exactly what is written and hashed. */
  private async drain(t: Transfer, body: AsyncIterable<Buffer>, options: ImageFetchOptions): Promise<void> {
    const inflight: Promise<void>[] = [];
    let position = t.bytes;
    let failure: unknown = null;
    let writeFailed = false;
    // Bytes that may be written before the free space is looked at again.
    let budget = (await freeSpace(t.dir)).budget;
    try {
      for await (const chunk of body) {
        if (writeFailed) break;
        if (position === 0) refuseNonDisk(t, chunk);
        if (chunk.length > budget) {
          // Measure again once what is in flight has landed: others may have freed (or taken) space.
          await Promise.allSettled(inflight);
          const space = await freeSpace(t.dir);
          budget = space.budget;
          if (chunk.length > budget) throw bodyTooLarge(t, position, space);
        }
        budget -= chunk.length;
        t.hash.update(chunk);
        const write = writeFully(t.fh, chunk, position);
        // Handled now, reported below: a full volume must not wait for the next await to surface.
        write.catch(() => {
          writeFailed = true;
        });
        inflight.push(write);
        position += chunk.length;
        if (inflight.length >= MAX_INFLIGHT_WRITES) await inflight.shift();
        options.onProgress?.({ bytes: position, total: t.total } satisfies FetchProgress);
      }
    } catch (err) {
      failure = err;
    }
    const settled = await Promise.allSettled(inflight);
    const writeError = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    t.bytes = position;
    if (writeError !== undefined) throw writeFailure(writeError.reason, t);
    if (failure !== null) throw failure;
  }

  /** Forgets what was downloaded: the next bytes start the file again. */
  private async restart(t: Transfer): Promise<void> {
    await t.fh.truncate(0);
    t.hash = createHash('sha256');
    t.bytes = 0;
    t.total = undefined;
    t.validators = {};
  }
}

async function writeFully(fh: FileHandle, chunk: Buffer, position: number): Promise<void> {
  let off = 0;
  while (off < chunk.length) {
    const { bytesWritten } = await fh.write(chunk, off, chunk.length - off, position + off);
    off += bytesWritten;
  }
}

/** Refuses early when the volume cannot hold the rest of the file and keep its margin (Content-Length known). */
async function assertSpace(t: Transfer, needed: number): Promise<void> {
  const space = await freeSpace(t.dir);
  if (space.budget < needed) {
    throw new PodvisorError(
      'ERR_IMAGE_NO_SPACE',
      `${t.shown} needs ${needed} more bytes but the images volume at ${t.dir} has ${space.available} free, of which ${space.margin} are kept free`,
      {
        hint: 'make the images volume (PODVISOR_IMAGES_DIR) larger, or run podvisor image gc',
        details: { url: t.shown, path: t.dir, needed, available: space.available, margin: space.margin },
      },
    );
  }
}

/** A body (of unknown or understated length) that would fill the volume: cut off. */
function bodyTooLarge(t: Transfer, written: number, space: FreeSpace): PodvisorError {
  return new PodvisorError(
    'ERR_IMAGE_NO_SPACE',
    `${t.shown} was cut off after ${written} bytes: the rest would fill the images volume at ${t.dir} (${space.available} bytes free, ${space.margin} kept free)`,
    {
      hint: 'make the images volume (PODVISOR_IMAGES_DIR) larger, or run podvisor image gc; the partial download was removed',
      details: { url: t.shown, path: t.dir, bytes: written, total: t.total ?? null, available: space.available, margin: space.margin },
    },
  );
}

/** A fresh body whose first bytes are no disk image (a captive portal's page, an archive) is refused before it is stored. */
function refuseNonDisk(t: Transfer, first: Buffer): void {
  const kind = describeBytes(first);
  if (!isNotADisk(kind)) return;
  throw new PodvisorError('ERR_IMAGE_INVALID', `${t.shown} answered with ${kind}, not a disk image (Content-Type ${t.contentType ?? 'not given'}; first bytes ${hexPrefix(first)})`, {
    hint: kind === 'HTML' ? 'the server answered with a web page (a login or captive portal?); check IMG_SOURCE and the network' : 'give a qcow2 (qemu-img convert -O qcow2) or a raw disk image',
    details: { url: t.shown, contentType: t.contentType ?? null, firstBytes: kind, expected: 'a qcow2 or raw disk image' },
  });
}

function statusError(status: number, shown: string, retryAfter: string | undefined, url: URL): PodvisorError | AttemptError {
  const details = { url: shown, status, finalUrl: redactUrl(url.toString()) };
  if (status === 404 || status === 410) {
    return new PodvisorError('ERR_IMAGE_SOURCE_NOT_FOUND', `${shown} answered ${status}: no image there`, { hint: 'check IMG_SOURCE', details });
  }
  const error = new PodvisorError('ERR_IMAGE_HTTP_STATUS', `${shown} answered HTTP ${status}`, {
    hint: status >= 500 ? 'the server failed; it was retried' : 'check IMG_SOURCE and its credentials',
    details,
  });
  if (status >= 500 || status === 408 || status === 429) {
    const seconds = retryAfter !== undefined && /^\d+$/.test(retryAfter) ? Number(retryAfter) * 1000 : undefined;
    return new AttemptError(error, true, seconds);
  }
  return error;
}

/** Maps an error thrown by undici or the network to an attempt failure. */
function classify(err: unknown, shown: string): AttemptError {
  if (isPodvisorError(err)) return new AttemptError(err, false);
  const code = (err as { code?: unknown }).code;
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT' || code === 'UND_ERR_CONNECT_TIMEOUT') {
    return new AttemptError(
      new PodvisorError('ERR_IMAGE_HTTP_TIMEOUT', `${shown} timed out (${String(code)}: ${errorMessage(err)})`, {
        hint: 'the server is too slow or unreachable',
        cause: err,
        details: { url: shown, reason: code },
      }),
      true,
    );
  }
  return new AttemptError(
    new PodvisorError('ERR_IMAGE_DOWNLOAD_FAILED', `downloading ${shown} failed: ${errorMessage(err)}${typeof code === 'string' ? ` (${code})` : ''}`, {
      cause: err,
      details: { url: shown, reason: typeof code === 'string' ? code : errorMessage(err) },
    }),
    true,
  );
}

function writeFailure(err: unknown, t: Transfer): PodvisorError {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new PodvisorError('ERR_IMAGE_NO_SPACE', `the images volume filled up while downloading ${t.shown} (${t.bytes} bytes written${t.total === undefined ? '' : ` of ${t.total}`})`, {
      hint: 'make the images volume (PODVISOR_IMAGES_DIR) larger, or run podvisor image gc',
      cause: err,
      details: { url: t.shown, bytes: t.bytes, total: t.total ?? null },
    });
  }
  return new PodvisorError('ERR_IMAGE_WRITE_FAILED', `cannot write the download of ${t.shown}: ${errorMessage(err)}`, { cause: err, details: { url: t.shown } });
}


/** A failure after which a later process may resume the partial download: the network or the server gave up, not the content. */
export function isResumableFailure(err: unknown): boolean {
  if (!isPodvisorError(err)) return false;
  return err.code === 'ERR_IMAGE_DOWNLOAD_FAILED' || err.code === 'ERR_IMAGE_HTTP_TIMEOUT' || err.code === 'ERR_IMAGE_HTTP_STATUS';
}
