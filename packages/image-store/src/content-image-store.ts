/**
 * The image store: a content-addressed cache of base images on the shared
 * images volume, and one qcow2 overlay (the "pet" disk) per VM on the VM's
 * own volume.
 *
 * Layout of the images dir:
 *   sha256/<hex>          immutable base content, validated before it lands here
 *   <target>              a symlink to sha256/<hex>: the human name (IMG_TARGET)
 *   .meta/<target>.json   where the content came from, to tell "unchanged" cheaply
 *   .tmp/                 partial files; never read as images
 * A pet disk is backed by the content path, never by the name, so a newer base
 * under the same name cannot change a disk that already exists.
 */
import { randomBytes } from 'node:crypto';

import { chmod, link, mkdir, readFile, readlink, rename, rm, stat, symlink, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { inject, injectable, multiInject } from 'inversify';
import {
  ImageSource,
  Logger,
  PodvisorError,
  ProcessRunner,
  type BaseImage,
  type ImageStore,
  type Overlay,
} from '@podvisor/core';
import { qemuImgCreateOverlay, qemuImgInfo, type QemuImgInfo } from './qemu-img.js';

export interface ImageStoreSettings {
  imagesDir: string;
  /** Bases with a larger virtual size are refused. */
  maxVirtualSizeBytes: number;
}

export const ImageStoreSettings = Symbol.for('podvisor.ImageStoreSettings');

export const DEFAULT_MAX_VIRTUAL_SIZE = 2 * 1024 ** 4; // 2 TiB

interface SourceMeta {
  source: string;
  sha256: string;
  bytes: number;
  format: 'qcow2' | 'raw';
  /** For local files: size and mtime of the source when it was imported. */
  fingerprint: string;
}

@injectable()
export class ContentImageStore implements ImageStore {
  private readonly log: Logger;

  constructor(
    @inject(ImageStoreSettings) private readonly settings: ImageStoreSettings,
    @multiInject(ImageSource) private readonly sources: ImageSource[],
    @inject(ProcessRunner) private readonly runner: ProcessRunner,
    @inject(Logger) log: Logger,
  ) {
    this.log = log.child({ name: 'ContentImageStore' });
  }

  /**
   * Makes the base named `target` hold the content of `source`. Reuses the
   * cache when the source is unchanged. Throws `ERR_IMAGE_SOURCE_*`,
   * `ERR_IMAGE_CHECKSUM_MISMATCH`, `ERR_IMAGE_INVALID`, `ERR_IMAGE_BACKING_REFUSED`,
   * `ERR_IMAGE_TOO_LARGE`; on any error no file is left under `sha256/`.
   */
  async ensureBase(request: { source: string; target?: string; sha256?: string; signal?: AbortSignal }): Promise<BaseImage> {
    const started = performance.now();
    const target = request.target ?? deriveTarget(request.source);
    assertSafeName(target);
    const pin = request.sha256?.toLowerCase();
    const dir = this.settings.imagesDir;
    await mkdir(path.join(dir, 'sha256'), { recursive: true });
    await mkdir(path.join(dir, '.tmp'), { recursive: true });
    await mkdir(path.join(dir, '.meta'), { recursive: true });

    const source = this.sourceFor(request.source);
    const fingerprint = await this.fingerprint(request.source);
    const cached = await this.readMeta(target);
    if (cached !== null && cached.source === request.source && fingerprint !== null && cached.fingerprint === fingerprint && (pin === undefined || pin === cached.sha256)) {
      const contentPath = this.contentPath(cached.sha256);
      if (await exists(contentPath)) {
        await this.pointName(target, cached.sha256);
        this.log.info('base reused', { target, sha256: cached.sha256 });
        return { path: contentPath, target, sha256: cached.sha256, bytes: cached.bytes, format: cached.format, reused: true };
      }
    }

    const tmp = path.join(dir, '.tmp', `${target}.${process.pid}.${randomBytes(4).toString('hex')}`);
    try {
      const fetched = await source.fetch(request.source, tmp, request.signal === undefined ? {} : { signal: request.signal });
      if (pin !== undefined && pin !== fetched.sha256) {
        throw new PodvisorError('ERR_IMAGE_CHECKSUM_MISMATCH', `image ${redact(request.source)} has sha256 ${fetched.sha256}, but ${pin} was pinned`, {
          hint: 'the source changed or is corrupt; check IMG_SHA256',
          details: { expected: pin, actual: fetched.sha256 },
        });
      }
      const info = await qemuImgInfo(this.runner, tmp);
      const format = this.validate(info, request.source);
      const contentPath = this.contentPath(fetched.sha256);
      if (!(await exists(contentPath))) {
        await chmod(tmp, 0o444);
        await rename(tmp, contentPath);
      }
      await this.writeMeta(target, { source: request.source, sha256: fetched.sha256, bytes: fetched.bytes, format, fingerprint: fingerprint ?? '' });
      await this.pointName(target, fetched.sha256);
      this.log.info('base imported', { target, sha256: fetched.sha256, bytes: fetched.bytes, durationMs: Math.round(performance.now() - started) });
      return { path: contentPath, target, sha256: fetched.sha256, bytes: fetched.bytes, format, reused: false };
    } finally {
      await rm(tmp, { force: true });
    }
  }

  /**
   * Returns the pet disk `<diskDir>/<name>.qcow2`. An existing one is kept as
   * it is, whatever the base: it is never recreated or overwritten. Without
   * one, creates it backed by `base` (throws `ERR_IMAGE_SOURCE_REQUIRED` when
   * `base` is null).
   */
  async ensureOverlay(request: { base: BaseImage | null; diskDir: string; name: string; sizeBytes?: number }): Promise<Overlay> {
    assertSafeName(request.name);
    await mkdir(request.diskDir, { recursive: true });
    const overlay = path.join(request.diskDir, `${request.name}.qcow2`);
    if (await exists(overlay)) {
      const info = await qemuImgInfo(this.runner, overlay);
      this.log.info('pet disk reused', { path: overlay, backing: info.backingFilename });
      return { path: overlay, created: false, backingFile: info.backingFilename ?? null, backingFormat: info.backingFormat ?? null };
    }
    if (request.base === null) {
      throw new PodvisorError('ERR_IMAGE_SOURCE_REQUIRED', `no pet disk at ${overlay} and no IMG_SOURCE to create it from`, {
        hint: 'set IMG_SOURCE to the base image (URL or path)',
      });
    }
    // Create under a temporary name, then link(2) into place: link fails if the
    // name exists, so a disk that appeared meanwhile is never overwritten.
    const tmp = path.join(request.diskDir, `.${request.name}.qcow2.${randomBytes(4).toString('hex')}.tmp`);
    try {
      await qemuImgCreateOverlay(this.runner, tmp, request.base.path, request.base.format);
      await link(tmp, overlay).catch(async (err: NodeJS.ErrnoException) => {
        if (err.code === 'EEXIST') return;
        throw err;
      });
    } finally {
      await unlink(tmp).catch(() => undefined);
    }
    this.log.info('pet disk created', { path: overlay, backing: request.base.path });
    return { path: overlay, created: true, backingFile: request.base.path, backingFormat: request.base.format };
  }

  private validate(info: QemuImgInfo, source: string): 'qcow2' | 'raw' {
    if (info.format !== 'qcow2' && info.format !== 'raw') {
      throw new PodvisorError('ERR_IMAGE_INVALID', `image ${redact(source)} is ${info.format}, expected qcow2 or raw`, {
        hint: 'convert it with qemu-img convert -O qcow2',
      });
    }
    if (info.backingFilename !== undefined) {
      // A base that names a backing file could make qemu read any host file.
      throw new PodvisorError('ERR_IMAGE_BACKING_REFUSED', `image ${redact(source)} names a backing file (${info.backingFilename}); a base image must be self-contained`, {
        hint: 'flatten it with qemu-img convert -O qcow2 before publishing it',
      });
    }
    if (info.corrupt) {
      throw new PodvisorError('ERR_IMAGE_INVALID', `image ${redact(source)} is marked corrupt by qemu-img`, { hint: 'run qemu-img check on it' });
    }
    if (info.virtualSize > this.settings.maxVirtualSizeBytes) {
      throw new PodvisorError('ERR_IMAGE_TOO_LARGE', `image ${redact(source)} has a virtual size of ${info.virtualSize} bytes, over the limit of ${this.settings.maxVirtualSizeBytes}`, {
        hint: 'raise the limit (images.maxVirtualSizeBytes) if this is intended',
      });
    }
    return info.format;
  }

  private sourceFor(uri: string): ImageSource {
    const scheme = schemeOf(uri);
    const source = this.sources.find((s) => s.schemes.includes(scheme));
    if (source === undefined) {
      throw new PodvisorError('ERR_IMAGE_SOURCE_SCHEME', `no image source handles ${scheme}: URIs (${redact(uri)})`, {
        hint: `supported: ${this.sources.flatMap((s) => s.schemes).join(', ')}`,
      });
    }
    return source;
  }

  /** A cheap identity of a local source (size + mtime); null for remote ones. */
  private async fingerprint(uri: string): Promise<string | null> {
    if (schemeOf(uri) !== 'file') return null;
    const p = uri.startsWith('file://') ? new URL(uri).pathname : uri;
    try {
      const st = await stat(p);
      return `${st.size}:${st.mtimeMs}:${st.ino}`;
    } catch {
      return null;
    }
  }

  private contentPath(sha256: string): string {
    return path.join(this.settings.imagesDir, 'sha256', sha256);
  }

  /** Points `<target>` at the content, atomically (symlink to a temp name, then rename). */
  private async pointName(target: string, sha256: string): Promise<void> {
    const linkPath = path.join(this.settings.imagesDir, target);
    const want = path.join('sha256', sha256);
    if ((await readlink(linkPath).catch(() => null)) === want) return;
    const tmp = path.join(this.settings.imagesDir, '.tmp', `${target}.link.${randomBytes(4).toString('hex')}`);
    await symlink(want, tmp);
    await rename(tmp, linkPath);
  }

  private async readMeta(target: string): Promise<SourceMeta | null> {
    try {
      return JSON.parse(await readFile(path.join(this.settings.imagesDir, '.meta', `${target}.json`), 'utf8')) as SourceMeta;
    } catch {
      return null;
    }
  }

  private async writeMeta(target: string, meta: SourceMeta): Promise<void> {
    const file = path.join(this.settings.imagesDir, '.meta', `${target}.json`);
    const tmp = `${file}.${randomBytes(4).toString('hex')}.tmp`;
    await writeFile(tmp, `${JSON.stringify(meta, null, 2)}\n`);
    await rename(tmp, file);
  }
}

export function schemeOf(uri: string): string {
  const m = /^([a-z][a-z0-9+.-]*):\/\//i.exec(uri);
  return m === null ? 'file' : (m[1] ?? 'file').toLowerCase();
}

/** The cache name for a source without IMG_TARGET: the last path segment. */
export function deriveTarget(source: string): string {
  const p = schemeOf(source) === 'file' ? source : new URL(source).pathname;
  const base = path.posix.basename(p.replace(/\/+$/, ''));
  return base === '' ? 'image.qcow2' : base;
}

/** Names become file names in shared volumes: no separators, no dot-files, no traversal. */
export function assertSafeName(name: string): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$/.test(name)) {
    throw new PodvisorError('ERR_IMAGE_NAME_INVALID', `${JSON.stringify(name)} is not a safe file name`, {
      hint: 'use letters, digits, dot, dash and underscore, starting with a letter or digit',
    });
  }
}

function redact(uri: string): string {
  try {
    const u = new URL(uri);
    if (u.password !== '' || u.username !== '') {
      u.username = '***';
      u.password = '';
    }
    return u.toString();
  } catch {
    return uri;
  }
}

async function exists(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch {
    return false;
  }
}

