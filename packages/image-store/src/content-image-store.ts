/**
 * The image store: a content-addressed cache of base images on the shared
 * images volume (layout in image-cache-layout.ts), and one qcow2 overlay (the
 * "pet" disk) per VM on the VM's own volume. A base lands under its sha256
 * only after it is complete, fsynced, matches its pin and passes validation,
 * so a broken download never becomes a broken cache. A pet disk is backed by
 * the content path, never by the name, so a newer base under the same name
 * cannot change a disk that exists: it keeps booting on its base until an
 * explicit rebase. The volume is shared with other pods, so a cached base is
 * checked at every use (BaseVerifier: its hash when its file changed, and its
 * header), and so is the base a pet disk is backed by.
 */
import { constants } from 'node:fs';
import { chmod, copyFile, link, mkdir, open, realpath, rename, rm, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { inject, injectable } from 'inversify';
import {
  ImageSourceCatalog,
  imageSourceCatalogOf,
  type ImageSource,
  Logger,
  PodvisorError,
  ProcessRunner,
  redactUrl,
  type BaseImage,
  type ImageStore,
  type Overlay,
  type EnsureBaseRequest,
  type RebaseResult,
  type Prerequisites,
} from '@podvisor/core';
import { BaseVerifier, refuseForeignFiles, type VerifiedBase } from './base-verifier.js';
import { DEFAULT_LOCK_OPTIONS, acquireCacheLock, type CacheLockOptions } from './cache-lock.js';
import { sweepTmpDir } from './image-cache-gc.js';
import { isResumableFailure, type ResumableFetchOptions } from './http-image-source.js';
import { ImageCacheLayout, fsyncDir, sha256OfPath, type CacheMeta } from './image-cache-layout.js';
import { assertSafeName, deriveTarget, schemeOf } from './image-uri.js';
import { ProgressMeter } from './progress-meter.js';
import { readQcow2Header } from './qcow2-header.js';
import { qemuImgCheck, qemuImgCreateOverlay, qemuImgInfo, qemuImgRebase, qemuImgResize } from './qemu-img.js';

export interface ImageStoreSettings {
  imagesDir: string;
  /** Bases with a larger virtual size are refused. */
  maxVirtualSizeBytes: number;
  /** Minimum interval between progress reports (default 1000 ms). */
  progressIntervalMs?: number;
  /** The cache lock's timings (tests shorten them). */
  lock?: Partial<CacheLockOptions>;
  /** The operator named raw (IMG_FORMAT=raw): bytes that are no qcow2 may be a raw base. Default false. */
  allowRaw?: boolean;
  /** `.tmp/` leftovers older than this, of names no live process pulls, are removed at pull time (default 24 h). */
  tmpMaxAgeMs?: number;
}

export const ImageStoreSettings = Symbol.for('podvisor.ImageStoreSettings');

export const DEFAULT_MAX_VIRTUAL_SIZE = 2 * 1024 ** 4; // 2 TiB

export const DEFAULT_TMP_MAX_AGE_MS = 24 * 3600 * 1000;

/** Progress log lines are rarer than progress reports. */
const LOG_PROGRESS_EVERY_MS = 5000;

@injectable()
export class ContentImageStore implements ImageStore {
  private readonly log: Logger;
  private readonly sources: ImageSourceCatalog;
  readonly layout: ImageCacheLayout;
  readonly verifier: BaseVerifier;

  constructor(
    @inject(ImageStoreSettings) private readonly settings: ImageStoreSettings,
    @inject(ImageSourceCatalog) sources: ImageSourceCatalog | readonly ImageSource[],
    @inject(ProcessRunner) private readonly runner: ProcessRunner,
    @inject(Logger) log: Logger,
  ) {
    this.log = log.child({ name: 'ContentImageStore' });
    this.sources = Array.isArray(sources) ? imageSourceCatalogOf(sources) : (sources as ImageSourceCatalog);
    this.layout = new ImageCacheLayout(settings.imagesDir);
    this.verifier = new BaseVerifier(this.layout, runner, { allowRaw: settings.allowRaw === true, maxVirtualSizeBytes: settings.maxVirtualSizeBytes });
  }

  /** Pure: the binary it spawns. */
  prerequisites(): Prerequisites {
    return { binaries: [{ name: 'qemu-img', why: 'checks bases, creates, grows and rebases the pet disk' }] };
  }

  /**
   * Makes the base named `target` hold the content of `source`. Downloads
   * nothing when the pinned content is cached, when another process pulled it
   * while this one waited for the lock, or when the source says it is
   * unchanged (conditional request). Throws ERR_IMAGE_SOURCE_*,
   * ERR_IMAGE_HTTP_*, ERR_IMAGE_CHECKSUM_MISMATCH, ERR_IMAGE_INVALID,
   * ERR_IMAGE_CORRUPT, ERR_IMAGE_BACKING_REFUSED, ERR_IMAGE_TOO_LARGE,
   * ERR_IMAGE_NO_SPACE, ERR_IMAGE_RAW_NOT_NAMED, ERR_IMAGE_LOCK_TIMEOUT; on
   * any error nothing is left under `sha256/`, and nothing under `.tmp/` either,
   * except the partial download of an interrupted transfer (aborted, or the
   * network gave up), which the next pull of the same source resumes.
   */
  async ensureBase(request: EnsureBaseRequest): Promise<BaseImage> {
    const started = performance.now();
    const target = request.target ?? deriveTarget(request.source);
    assertSafeName(target);
    const shown = redactUrl(request.source);
    const pin = request.sha256?.toLowerCase();
    const source = this.sourceFor(request.source);
    await this.layout.prepare();

    const pinned = pin === undefined ? null : await this.reusePinned(target, shown, pin);
    if (pinned !== null) return pinned;

    const waitedFrom = Date.now();
    const lockOptions = { ...DEFAULT_LOCK_OPTIONS, ...this.settings.lock, log: this.log };
    const lock = await acquireCacheLock(this.layout.lockPath(target), lockOptions, request.signal);
    const tmp = this.layout.partialPath(target);
    let keepPartial = false;
    try {
      await this.sweepTmp(this.settings.tmpMaxAgeMs ?? DEFAULT_TMP_MAX_AGE_MS, lockOptions, target).catch((err: unknown) => this.log.warn('sweeping .tmp failed', { err }));
      const again = pin === undefined ? null : await this.reusePinned(target, shown, pin);
      if (again !== null) return again;
      const meta = await this.layout.readMeta(target);
      const cached = meta !== null && meta.source === shown && (await this.usable(meta.sha256)) !== null ? meta : null;
      if (cached !== null && pin === undefined && Date.parse(cached.fetchedAt) >= waitedFrom) {
        // Another process pulled it while this one waited for the lock.
        return await this.reuse(target, cached, 'pulled by another process meanwhile');
      }
      let lastLog = 0;
      const meter = new ProgressMeter(target, this.settings.progressIntervalMs ?? 1000, (p) => {
        request.onProgress?.(p);
        const now = performance.now();
        if (p.done || now - lastLog >= LOG_PROGRESS_EVERY_MS) {
          lastLog = now;
          this.log.info('pull progress', { source: shown, target, bytes: p.bytes, total: p.total, percent: p.percent, bytesPerSecond: p.bytesPerSecond });
        }
      });
      const resume = await this.resumable(target, shown, pin);
      const options: ResumableFetchOptions = {
        ...(request.signal === undefined ? {} : { signal: request.signal }),
        ...(cached !== null && pin === undefined && resume === undefined ? { ifChanged: cached.validators } : {}),
        ...(resume === undefined ? {} : { resume }),
        keepPartial: true,
        onResumable: (validators, total) =>
          this.layout.writePartial(target, { source: shown, sha256: pin ?? null, validators, total: total ?? null, startedAt: new Date().toISOString() }),
        onProgress: (p) => meter.update(p.bytes, p.total),
        onRetry: (r) => {
          this.log.warn('pull retried', { source: shown, target, ...r });
          request.onRetry?.({ ...r, target });
        },
      };
      let fetched;
      try {
        fetched = await source.fetch(request.source, tmp, options);
      } catch (err) {
        // Interrupted (a pod stopped, a network that gave up): a later process resumes with Range.
        keepPartial = (request.signal?.aborted === true || isResumableFailure(err)) && (await this.layout.readPartial(target)) !== null && (await sizeOf(tmp)) > 0;
        if (keepPartial) this.log.info('partial download kept for a resume', { source: shown, target, bytes: await sizeOf(tmp) });
        throw err;
      }
      if (fetched.notModified) {
        if (cached === null) throw new PodvisorError('ERR_INTERNAL', `${shown} answered "not modified" to an unconditional request`);
        return await this.reuse(target, { ...cached, fetchedAt: new Date().toISOString() }, 'source unchanged');
      }
      meter.finish(fetched.bytes, fetched.bytes);
      if (pin !== undefined && pin !== fetched.sha256) {
        throw new PodvisorError('ERR_IMAGE_CHECKSUM_MISMATCH', `image ${shown} has sha256 ${fetched.sha256}, but ${pin} was pinned`, {
          hint: 'the source changed or is corrupt; check IMG_SHA256 (nothing was cached)',
          details: { url: shown, expected: pin, actual: fetched.sha256, bytes: fetched.bytes },
        });
      }
      const info = await this.validate(tmp, shown);
      const contentPath = this.layout.contentPath(fetched.sha256);
      if ((await this.usable(fetched.sha256)) === null) {
        // Absent, or failing its check (replaced in the shared cache): the verified download takes its place.
        await chmod(tmp, 0o444);
        await rename(tmp, contentPath);
        await fsyncDir(this.layout.contentDir);
        await this.verifier.recordLanded(fetched.sha256, info.format);
      }
      const fresh: CacheMeta = { source: shown, sha256: fetched.sha256, bytes: fetched.bytes, format: info.format, validators: fetched.validators, fetchedAt: new Date().toISOString() };
      await this.layout.writeMeta(target, fresh);
      await this.layout.pointName(target, fetched.sha256);
      this.log.info('base imported', { source: shown, target, sha256: fetched.sha256, bytes: fetched.bytes, durationMs: Math.round(performance.now() - started) });
      return { path: contentPath, target, sha256: fetched.sha256, bytes: fetched.bytes, format: info.format, reused: false };
    } finally {
      if (!keepPartial) await this.layout.removePartial(target);
      await lock.release();
    }
  }

  /**
   * Removes `.tmp/` leftovers older than `maxAgeMs` whose name no live
   * process is pulling (its cache lock is absent or provably stale), except
   * `keep`'s (the caller holds its lock). Returns what it removed.
   */
  async sweepTmp(maxAgeMs: number, lockOptions: CacheLockOptions = { ...DEFAULT_LOCK_OPTIONS, ...this.settings.lock }, keep?: string): Promise<Array<{ path: string; bytes: number }>> {
    return sweepTmpDir(this.layout, maxAgeMs, lockOptions, keep);
  }

  /**
   * Returns the pet disk `<diskDir>/<name>.qcow2`. An existing one is kept as
   * it is, whatever the base: it is never recreated or overwritten, and
   * `behindBase` tells that `base` is other content than its backing file.
   * Its backing file must be a base of this cache that passes its check, in
   * the format the disk names (ERR_IMAGE_BACKING_OUTSIDE_CACHE,
   * ERR_IMAGE_BACKING_FORMAT, ERR_IMAGE_BASE_MISMATCH, ...), and it must
   * name no external data file (ERR_IMAGE_BACKING_REFUSED).
   * Without one, creates it backed by `base` (throws ERR_IMAGE_SOURCE_REQUIRED
   * when `base` is null). `sizeBytes` grows the disk and never shrinks it
   * (ERR_IMAGE_RESIZE_FAILED, ERR_IMAGE_DISK_IN_USE).
   */
  async ensureOverlay(request: { base: BaseImage | null; diskDir: string; name: string; sizeBytes?: number }): Promise<Overlay> {
    assertSafeName(request.name);
    await mkdir(request.diskDir, { recursive: true });
    const overlay = path.join(request.diskDir, `${request.name}.qcow2`);
    if (await exists(overlay)) {
      // The header is enough to reuse a pet disk; qemu-img only when it is not a plain qcow2.
      const info = (await readQcow2Header(overlay)) ?? (await qemuImgInfo(this.runner, overlay));
      const backingFile = info.backingFilename ?? null;
      await this.checkPetBacking(overlay, info);
      const behindBase = request.base !== null && backingFile !== null && !(await samePath(resolveBacking(overlay, backingFile), request.base.path));
      const grown = await this.grow(overlay, info.virtualSize, request.sizeBytes);
      this.log.info('pet disk reused', { path: overlay, backing: backingFile, behindBase });
      return {
        path: overlay,
        created: false,
        backingFile,
        backingFormat: info.backingFormat ?? null,
        virtualSize: grown ?? info.virtualSize,
        ...(grown === null ? {} : { resizedFrom: info.virtualSize }),
        backingSha256: backingFile === null ? null : sha256OfPath(backingFile),
        behindBase,
      };
    }
    const base = request.base;
    if (base === null) {
      throw new PodvisorError('ERR_IMAGE_SOURCE_REQUIRED', `no pet disk at ${overlay} and no IMG_SOURCE to create it from`, {
        hint: 'set IMG_SOURCE to the base image (URL or path)',
        details: { path: overlay },
      });
    }
    const baseSize = (await qemuImgInfo(this.runner, base.path)).virtualSize;
    const size = request.sizeBytes !== undefined && request.sizeBytes > baseSize ? request.sizeBytes : undefined;
    // Create under a temporary name, then link(2) into place: link fails if the
    // name exists, so a disk that appeared meanwhile is never overwritten.
    const tmp = path.join(request.diskDir, `.${request.name}.qcow2.${randomBytes(4).toString('hex')}.tmp`);
    try {
      await qemuImgCreateOverlay(this.runner, tmp, base.path, base.format, size);
      await link(tmp, overlay).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'EEXIST') throw err;
      });
    } finally {
      await unlink(tmp).catch(() => undefined);
    }
    this.log.info('pet disk created', { path: overlay, backing: base.path });
    return { path: overlay, created: true, backingFile: base.path, backingFormat: base.format, virtualSize: size ?? baseSize, backingSha256: base.sha256, behindBase: false };
  }

  /**
   * Moves the pet disk onto `base` with the safe `qemu-img rebase` (not `-u`):
   * qemu-img writes into the disk every cluster where the old and the new base
   * differ, so the guest reads the same data as before. It works on a copy in
   * the disk's directory and renames the copy over the disk only after
   * `qemu-img check` passes, so a failure (a full volume, a missing old base,
   * a crash) leaves the disk as it was. Needs free space for a copy of the
   * disk plus the differences. Throws ERR_IMAGE_DISK_IN_USE (a running qemu
   * holds it), ERR_IMAGE_REBASE_NO_BACKING, ERR_IMAGE_REBASE_OLD_BASE_MISSING,
   * ERR_IMAGE_REBASE_FAILED.
   */
  async rebaseOverlay(request: { path: string; base: BaseImage }): Promise<RebaseResult> {
    const started = performance.now();
    const disk = request.path;
    // Without -U: qemu's image lock refuses a disk that a running qemu has open.
    const info = await qemuImgInfo(this.runner, disk, { shared: false });
    const from = info.backingFilename;
    if (from === undefined) {
      throw new PodvisorError('ERR_IMAGE_REBASE_NO_BACKING', `${disk} has no backing file; there is nothing to rebase`, { details: { path: disk } });
    }
    const fromPath = resolveBacking(disk, from);
    if (await samePath(fromPath, request.base.path)) return { path: disk, fromBacking: from, toBacking: request.base.path, changed: false, durationMs: 0 };
    if (!(await exists(fromPath))) {
      throw new PodvisorError('ERR_IMAGE_REBASE_OLD_BASE_MISSING', `${disk} is backed by ${from}, which is gone; a safe rebase needs it to compute the difference`, {
        hint: 'restore the old base (e.g. pull it again with its sha256 pinned); never rebase with -u unless both bases are identical',
        details: { path: disk, expected: from },
      });
    }
    const tmp = path.join(path.dirname(disk), `.${path.basename(disk)}.rebase-${randomBytes(4).toString('hex')}.tmp`);
    try {
      await copyFile(disk, tmp, constants.COPYFILE_FICLONE);
      await qemuImgRebase(this.runner, tmp, request.base.path, request.base.format);
      const problem = await qemuImgCheck(this.runner, tmp);
      if (problem !== null) throw new PodvisorError('ERR_IMAGE_REBASE_FAILED', `the rebased copy of ${disk} does not check out: ${problem}`, { details: { path: disk } });
      const after = await qemuImgInfo(this.runner, tmp);
      if (after.backingFilename !== request.base.path) {
        throw new PodvisorError('ERR_IMAGE_REBASE_FAILED', `the rebased copy of ${disk} is backed by ${String(after.backingFilename)}, expected ${request.base.path}`, {
          details: { path: disk, expected: request.base.path, actual: after.backingFilename ?? null },
        });
      }
      const fh = await open(tmp, 'r+');
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, disk);
      await fsyncDir(path.dirname(disk));
    } catch (err) {
      throw isCoded(err)
        ? err
        : new PodvisorError('ERR_IMAGE_REBASE_FAILED', `rebasing ${disk} failed: ${(err as Error).message}; the disk is unchanged`, { cause: err, details: { path: disk } });
    } finally {
      await rm(tmp, { force: true });
    }
    const durationMs = Math.round(performance.now() - started);
    this.log.info('pet disk rebased', { path: disk, from, to: request.base.path, durationMs });
    return { path: disk, fromBacking: from, toBacking: request.base.path, changed: true, durationMs };
  }

  /**
   * The cached base a name (or a sha256) stands for, without any network,
   * checked (BaseVerifier). Throws ERR_IMAGE_NOT_CACHED, ERR_IMAGE_BASE_MISMATCH
   * and the header refusals.
   */
  async resolveBase(nameOrSha256: string): Promise<BaseImage> {
    const sha = /^(sha256:)?[0-9a-f]{64}$/i.test(nameOrSha256)
      ? nameOrSha256.replace(/^sha256:/i, '').toLowerCase()
      : (await this.layout.names()).find((n) => n.target === nameOrSha256)?.sha256;
    const contentPath = sha === undefined ? null : this.layout.contentPath(sha);
    if (sha === undefined || contentPath === null || !(await exists(contentPath))) {
      throw new PodvisorError('ERR_IMAGE_NOT_CACHED', `no base ${JSON.stringify(nameOrSha256)} in the image cache ${this.layout.dir}`, {
        hint: 'pull it first (podvisor image pull), or check PODVISOR_IMAGES_DIR and IMG_TARGET',
        details: { path: this.layout.dir, name: nameOrSha256 },
      });
    }
    const verified = await this.verifier.verify(sha);
    if (verified === null) throw new PodvisorError('ERR_IMAGE_NOT_CACHED', `the cached base ${contentPath} disappeared`, { details: { path: contentPath } });
    const target = (await this.layout.names()).find((n) => n.sha256 === sha)?.target ?? sha;
    return { path: contentPath, target, sha256: sha, bytes: verified.bytes, format: verified.format, reused: true };
  }

  private async reusePinned(target: string, shown: string, pin: string): Promise<BaseImage | null> {
    const verified = await this.usable(pin);
    if (verified === null) return null;
    const meta = await this.layout.readMeta(target);
    const same = meta?.sha256 === pin ? meta : null;
    return this.reuse(target, { source: shown, sha256: pin, bytes: verified.bytes, format: verified.format, validators: same?.validators ?? {}, fetchedAt: new Date().toISOString() }, 'pinned content is cached', verified);
  }

  /**
   * The cached content `sha256` when it passes its check, else null (absent,
   * or replaced: a pull then fetches it again, and the verified download
   * takes its place).
   */
  private async usable(sha256: string): Promise<VerifiedBase | null> {
    if (!/^[0-9a-f]{64}$/.test(sha256)) return null;
    try {
      return await this.verifier.verify(sha256);
    } catch (err) {
      if (!isCoded(err)) throw err;
      this.log.warn('cached base refused; it will be fetched again', { sha256, code: err.code, err: err.message });
      return null;
    }
  }

  /** What a partial download of `target` left for a resume, if it is of this source and pin. */
  private async resumable(target: string, shown: string, pin: string | undefined): Promise<ResumableFetchOptions['resume']> {
    const partial = await this.layout.readPartial(target);
    const bytes = await sizeOf(this.layout.partialPath(target));
    if (partial === null || partial.source !== shown || partial.sha256 !== (pin ?? null) || bytes <= 0) {
      await this.layout.removePartial(target);
      return undefined;
    }
    this.log.info('resuming a partial download', { source: shown, target, bytes, total: partial.total, startedAt: partial.startedAt });
    return { validators: partial.validators, total: partial.total ?? undefined };
  }

  /** Names the content and returns it; the format and size are what the check found, never what `.meta` says. */
  private async reuse(target: string, meta: CacheMeta, why: string, checked?: VerifiedBase): Promise<BaseImage> {
    const verified = checked ?? (await this.verifier.verify(meta.sha256));
    if (verified === null) throw new PodvisorError('ERR_IMAGE_NOT_CACHED', `the cached base ${this.layout.contentPath(meta.sha256)} disappeared`, { details: { path: this.layout.contentPath(meta.sha256) } });
    const fixed = { ...meta, bytes: verified.bytes, format: verified.format };
    await this.layout.writeMeta(target, fixed);
    await this.layout.pointName(target, meta.sha256);
    this.log.info('base reused', { target, sha256: meta.sha256, why, rehashed: verified.rehashed });
    return { path: verified.path, target, sha256: meta.sha256, bytes: verified.bytes, format: verified.format, reused: true };
  }

  /** The pet disk's backing chain: one link, to a verified base of this cache, in the format the disk names. */
  private async checkPetBacking(overlay: string, info: { backingFilename?: string | undefined; backingFormat?: string | undefined; dataFile?: string | undefined }): Promise<void> {
    const details = { path: overlay };
    if (info.dataFile !== undefined) refuseForeignFiles({ backingFilename: undefined, dataFile: info.dataFile }, overlay, details);
    if (info.backingFilename === undefined) return;
    const named = resolveBacking(overlay, info.backingFilename);
    const real = await realpath(named).catch(() => null);
    const contentDir = await realpath(this.layout.contentDir).catch(() => this.layout.contentDir);
    const sha = real !== null && path.dirname(real) === contentDir && /^[0-9a-f]{64}$/.test(path.basename(real)) ? path.basename(real) : null;
    if (sha === null) {
      const where = real === null ? 'nothing (it does not exist)' : real;
      throw new PodvisorError(
        'ERR_IMAGE_BACKING_OUTSIDE_CACHE',
        `the pet disk ${overlay} is backed by ${info.backingFilename}, which leads to ${where}, not to a base in the image cache ${this.layout.contentDir}`,
        {
          hint: 'a pet disk may only be backed by a base of PODVISOR_IMAGES_DIR; pull the base again (IMG_SHA256) and rebase the disk onto it, or restore the images volume',
          details: { ...details, backingFile: info.backingFilename, expected: `${this.layout.contentDir}/<sha256>`, actual: real },
        },
      );
    }
    const base = await this.verifier.verify(sha);
    if (base === null) throw new PodvisorError('ERR_IMAGE_BACKING_OUTSIDE_CACHE', `the base ${real} of the pet disk ${overlay} disappeared`, { details });
    if (info.backingFormat !== base.format) {
      throw new PodvisorError('ERR_IMAGE_BACKING_FORMAT', `the pet disk ${overlay} names its base ${info.backingFilename} as ${info.backingFormat ?? '(no format: qemu would guess)'}, but the base is ${base.format}`, {
        hint: 'rebase the disk onto the base with its format named (podvisor image rebase)',
        details: { ...details, expected: base.format, actual: info.backingFormat ?? null },
      });
    }
  }

  /** Grows the disk to `sizeBytes` when larger; returns the new size, or null when nothing changed. */
  private async grow(disk: string, current: number, sizeBytes: number | undefined): Promise<number | null> {
    if (sizeBytes === undefined || sizeBytes === current) return null;
    if (sizeBytes < current) {
      this.log.warn('PODVISOR_DISK_SIZE is smaller than the pet disk; disks never shrink', { path: disk, virtualSize: current, requested: sizeBytes });
      return null;
    }
    await qemuImgResize(this.runner, disk, sizeBytes);
    this.log.info('pet disk grown', { path: disk, from: current, to: sizeBytes });
    return sizeBytes;
  }

  /** Checks a downloaded file before it may land in the cache: its header (BaseVerifier), then qemu-img check for a qcow2. */
  private async validate(file: string, shown: string): Promise<{ format: 'qcow2' | 'raw' }> {
    const info = await this.verifier.inspect(file, shown);
    if (info.format === 'qcow2') {
      const problem = await qemuImgCheck(this.runner, file);
      if (problem !== null) {
        throw new PodvisorError('ERR_IMAGE_CORRUPT', `image ${shown} is corrupt or truncated: ${problem}`, {
          hint: 'the download may have been cut short by the server; pin IMG_SHA256 to catch it before qemu-img does',
          details: { url: shown, path: file, qemuImg: problem },
        });
      }
    }
    return info;
  }

  private sourceFor(uri: string): ImageSource {
    const scheme = schemeOf(uri);
    const source = this.sources.forScheme(scheme);
    if (source === undefined) {
      throw new PodvisorError('ERR_IMAGE_SOURCE_SCHEME', `no image source handles ${scheme}: URIs (${redactUrl(uri)})`, {
        hint: `supported: ${this.sources.schemes.join(', ')} (an image-source plugin named in PODVISOR_PLUGINS adds a scheme)`,
      });
    }
    return source;
  }
}

/** A relative backing path is relative to the overlay's directory (qemu's rule). */
function resolveBacking(overlay: string, backing: string): string {
  return path.resolve(path.dirname(overlay), backing);
}

async function samePath(a: string, b: string): Promise<boolean> {
  const [ra, rb] = await Promise.all([realpath(a).catch(() => a), realpath(b).catch(() => b)]);
  return ra === rb;
}

function isCoded(err: unknown): err is PodvisorError {
  return err instanceof PodvisorError;
}

async function sizeOf(p: string): Promise<number> {
  return (await stat(p).catch(() => null))?.size ?? 0;
}

async function exists(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch {
    return false;
  }
}
