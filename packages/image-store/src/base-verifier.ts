/**
 * Checks a base before every use, because the images volume is shared: any
 * pod that mounts it can replace a file, or rewrite the metadata next to it.
 * Two checks, each cheap when nothing changed:
 * - identity: the content file under `sha256/<hex>` must hash to `<hex>`. The
 *   hash is computed again whenever the file's size, mtime, ctime, inode or
 *   device differ from the record written when it was last hashed
 *   (`.meta/verified/<hex>.json`); a record that names another hash than its
 *   own file name is ignored. Replacing or rewriting the file changes its
 *   ctime, which no writer can set back, so a swap is noticed even when the
 *   swapper restores the mtime. (A writer that can also forge the record
 *   with the new ctime defeats the shortcut; the header check below still
 *   runs at every use, so such a base can still not name a host file.)
 * - the header, read directly (qcow2-header.ts), never trusted from `.meta`:
 *   a qcow2 must name no backing file and no external data file and must not
 *   be marked corrupt; the format is what the first bytes say. Bytes that are
 *   no qcow2 are a raw disk only when the operator named raw (IMG_FORMAT=raw),
 *   and never when they are recognisably something else (HTML, an archive,
 *   another image format).
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, open } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { PodvisorError, type ProcessRunner } from '@podvisor/core';
import { describeBytes, hexPrefix, isNotADisk } from './image-bytes.js';
import type { ImageCacheLayout } from './image-cache-layout.js';
import { parseQcow2Header, type Qcow2Header } from './qcow2-header.js';
import { qemuImgInfo } from './qemu-img.js';

export interface BasePolicy {
  /** Bytes that are no qcow2 may be taken as a raw disk (the operator said IMG_FORMAT=raw). */
  allowRaw: boolean;
  maxVirtualSizeBytes: number;
}

export interface CheckedImage {
  format: 'qcow2' | 'raw';
  virtualSize: number;
}

export interface VerifiedBase extends CheckedImage {
  path: string;
  sha256: string;
  bytes: number;
  /** The file was hashed again (its metadata had changed, or it had no record). */
  rehashed: boolean;
}

const HEAD_BYTES = 64 * 1024;

export class BaseVerifier {
  constructor(
    private readonly layout: ImageCacheLayout,
    private readonly runner: ProcessRunner,
    private readonly policy: BasePolicy,
  ) {}

  /**
   * Checks the header of `file` (`shown` names it in messages: the redacted
   * URL or the path). Throws ERR_IMAGE_INVALID (not a disk image, with what
   * its first bytes are), ERR_IMAGE_RAW_NOT_NAMED, ERR_IMAGE_BACKING_REFUSED,
   * ERR_IMAGE_CORRUPT, ERR_IMAGE_TOO_LARGE.
   */
  async inspect(file: string, shown: string): Promise<CheckedImage> {
    const fh = await open(file, 'r');
    let head: Buffer;
    let size: number;
    try {
      const buf = Buffer.alloc(HEAD_BYTES);
      const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
      head = buf.subarray(0, bytesRead);
      size = (await fh.stat()).size;
    } finally {
      await fh.close();
    }
    const details = { url: shown, path: file };
    const kind = describeBytes(head);
    let checked: CheckedImage;
    if (kind === 'qcow2') {
      const header = parseQcow2Header(head) ?? (await this.viaQemuImg(file, shown));
      refuseForeignFiles(header, shown, details);
      if (header.corrupt) throw new PodvisorError('ERR_IMAGE_CORRUPT', `image ${shown} is marked corrupt in its qcow2 header`, { hint: 'run qemu-img check on it', details });
      checked = { format: 'qcow2', virtualSize: header.virtualSize };
    } else if (isNotADisk(kind)) {
      throw new PodvisorError('ERR_IMAGE_INVALID', `image ${shown} is not a disk image: its first bytes are ${kind} (${hexPrefix(head)})`, {
        hint: kind === 'HTML' ? 'the server answered with a web page (a login or captive portal?); check IMG_SOURCE' : 'give a qcow2 (qemu-img convert -O qcow2) or a raw disk image',
        details: { ...details, expected: 'qcow2, or raw with IMG_FORMAT=raw', actual: kind },
      });
    } else if (!this.policy.allowRaw) {
      throw new PodvisorError('ERR_IMAGE_RAW_NOT_NAMED', `image ${shown} is not qcow2 (its first bytes are ${hexPrefix(head)}); a raw base is accepted only when IMG_FORMAT is raw`, {
        hint: 'set IMG_FORMAT=raw (image.format: raw) if this is a raw disk image, or convert it with qemu-img convert -O qcow2',
        details: { ...details, expected: 'qcow2', actual: 'unrecognised bytes (raw?)' },
      });
    } else {
      checked = { format: 'raw', virtualSize: size };
    }
    if (checked.virtualSize > this.policy.maxVirtualSizeBytes) {
      throw new PodvisorError('ERR_IMAGE_TOO_LARGE', `image ${shown} has a virtual size of ${checked.virtualSize} bytes, over the limit of ${this.policy.maxVirtualSizeBytes}`, {
        hint: 'raise the limit (PODVISOR_MAX_VIRTUAL_SIZE_GB) if this is intended',
        details: { ...details, expected: `<= ${this.policy.maxVirtualSizeBytes}`, actual: checked.virtualSize },
      });
    }
    return checked;
  }

  /**
   * Checks the cached content `sha256` before a use: its identity, then its
   * header. Returns null when there is no such content. Throws
   * ERR_IMAGE_BASE_MISMATCH when the file is not what its name says, and
   * what `inspect` throws.
   */
  async verify(sha256: string): Promise<VerifiedBase | null> {
    const file = this.layout.contentPath(sha256);
    const st = await lstat(file).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return null;
      throw err;
    });
    if (st === null) return null;
    if (!st.isFile()) throw mismatch(file, sha256, 'it is not a regular file (a symlink or a device)');
    const record = await this.layout.readVerified(sha256);
    const unchanged =
      record !== null && record.size === st.size && record.mtimeMs === st.mtimeMs && record.ctimeMs === st.ctimeMs && record.ino === st.ino && record.dev === st.dev;
    if (!unchanged) {
      const actual = await sha256OfFile(file);
      if (actual !== sha256) throw mismatch(file, sha256, `it now hashes to ${actual}`);
    }
    const checked = await this.inspect(file, file);
    if (!unchanged || record.format !== checked.format) {
      await this.layout.writeVerified({
        sha256,
        format: checked.format,
        size: st.size,
        mtimeMs: st.mtimeMs,
        ctimeMs: st.ctimeMs,
        ino: st.ino,
        dev: st.dev,
        verifiedAt: new Date().toISOString(),
      });
    }
    return { ...checked, path: file, sha256, bytes: st.size, rehashed: !unchanged };
  }

  /** Records the identity of content whose hash was computed as it landed. */
  async recordLanded(sha256: string, format: 'qcow2' | 'raw'): Promise<void> {
    const st = await lstat(this.layout.contentPath(sha256));
    await this.layout.writeVerified({ sha256, format, size: st.size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs, ino: st.ino, dev: st.dev, verifiedAt: new Date().toISOString() });
  }

  /** For a qcow2 header this parser does not fully understand: qemu-img reads it. */
  private async viaQemuImg(file: string, shown: string): Promise<Qcow2Header> {
    let info;
    try {
      info = await qemuImgInfo(this.runner, file);
    } catch (err) {
      throw err instanceof PodvisorError ? new PodvisorError(err.code, `image ${shown}: ${err.message}`, { cause: err, details: { url: shown } }) : err;
    }
    if (info.format !== 'qcow2') throw new PodvisorError('ERR_IMAGE_INVALID', `image ${shown} starts with the qcow2 magic, but qemu-img reads it as ${info.format}`, { details: { url: shown, path: file } });
    return { version: 0, virtualSize: info.virtualSize, backingFilename: info.backingFilename, backingFormat: info.backingFormat, dataFile: info.dataFile, corrupt: info.corrupt };
  }
}

/** A base that names a backing file or an external data file could make qemu read any host file. */
export function refuseForeignFiles(header: Pick<Qcow2Header, 'backingFilename' | 'dataFile'>, shown: string, details: Record<string, unknown>): void {
  if (header.backingFilename === undefined && header.dataFile === undefined) return;
  const which = header.backingFilename !== undefined ? 'backing' : 'data';
  const named = header.backingFilename ?? (header.dataFile === '' ? '(unnamed)' : header.dataFile);
  throw new PodvisorError('ERR_IMAGE_BACKING_REFUSED', `image ${shown} names a ${which} file (${String(named)}); a base image must be self-contained`, {
    hint: 'flatten it with qemu-img convert -O qcow2 before publishing it',
    details: { ...details, expected: 'no backing or data file', actual: named ?? null },
  });
}

function mismatch(file: string, sha256: string, why: string): PodvisorError {
  return new PodvisorError('ERR_IMAGE_BASE_MISMATCH', `the cached base ${file} is not the content its name says (${sha256}): ${why}; it was changed or replaced in the shared image cache`, {
    hint: 'a pull of the image replaces it; find out what writes into the images volume (PODVISOR_IMAGES_DIR)',
    details: { path: file, expected: sha256 },
  });
}

async function sha256OfFile(file: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(file, { highWaterMark: 1 << 20 }), hash);
  return hash.digest('hex');
}
