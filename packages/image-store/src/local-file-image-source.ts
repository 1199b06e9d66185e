/**
 * The `file` image source: an absolute local path (an image baked into the
 * container, or a mounted volume), copied with its sha256 computed in-stream
 * and fsynced, when the volume can hold it and keep its free-space margin. Its validator is the file's identity (size, mtime, inode), so
 * an unchanged file is not read again.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { open, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { injectable } from 'inversify';
import { PodvisorError, type ImageFetchResult, type ImageSource, type ImageFetchOptions } from '@podvisor/core';
import { freeSpace } from './free-space.js';
import { localPath } from './image-uri.js';

@injectable()
export class LocalFileImageSource implements ImageSource {
  readonly schemes = ['file'] as const;

  /**
   * Copies `uri` (a path or `file://` URL) to `dest`, fsyncs it, and returns
   * its size and sha256; `{notModified: true}` when `ifChanged.fingerprint`
   * still matches. Throws ERR_IMAGE_SOURCE_NOT_FOUND, ERR_IMAGE_NO_SPACE;
   * on failure `dest` is removed.
   */
  async fetch(uri: string, dest: string, options: ImageFetchOptions = {}): Promise<ImageFetchResult> {
    const from = localPath(uri);
    let fingerprint: string;
    let size: number;
    try {
      const st = await stat(from);
      if (!st.isFile()) throw Object.assign(new Error('not a regular file'), { code: 'EISDIR' });
      fingerprint = `${st.size}:${st.mtimeMs}:${st.ino}`;
      size = st.size;
    } catch (err) {
      throw notFound(from, err);
    }
    if (options.ifChanged?.fingerprint === fingerprint) return { notModified: true };
    const space = await freeSpace(path.dirname(dest));
    if (space.budget < size) {
      throw new PodvisorError('ERR_IMAGE_NO_SPACE', `${from} needs ${size} bytes but the images volume at ${path.dirname(dest)} has ${space.available} free, of which ${space.margin} are kept free`, {
        hint: 'make the images volume (PODVISOR_IMAGES_DIR) larger, or run podvisor image gc',
        details: { path: from, needed: size, available: space.available, margin: space.margin },
      });
    }
    const hash = createHash('sha256');
    let bytes = 0;
    const meter = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        hash.update(chunk);
        bytes += chunk.length;
        options.onProgress?.({ bytes, total: undefined });
        cb(null, chunk);
      },
    });
    try {
      await pipeline(createReadStream(from), meter, createWriteStream(dest, { flags: 'wx', mode: 0o600 }), options.signal === undefined ? {} : { signal: options.signal });
      const fh = await open(dest, 'r+');
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // EEXIST: dest was there before (the `wx` open refused it), and is not this fetch's to remove.
      if (code !== 'EEXIST') await rm(dest, { force: true });
      if (code === 'ENOSPC' || code === 'EDQUOT') {
        throw new PodvisorError('ERR_IMAGE_NO_SPACE', `the images volume filled up while copying ${from} (${bytes} bytes copied)`, {
          hint: 'make the images volume (PODVISOR_IMAGES_DIR) larger, or run podvisor image gc',
          cause: err,
          details: { path: from, bytes },
        });
      }
      if (code === 'ENOENT' || code === 'EACCES') throw notFound(from, err);
      throw err;
    }
    return { notModified: false, bytes, sha256: hash.digest('hex'), validators: { fingerprint } };
  }
}

function notFound(from: string, err: unknown): PodvisorError {
  return new PodvisorError('ERR_IMAGE_SOURCE_NOT_FOUND', `cannot read image source ${from}: ${(err as NodeJS.ErrnoException).code ?? 'unreadable'}`, {
    hint: 'IMG_SOURCE must be an http(s) URL or the absolute path of a readable qcow2 file',
    cause: err,
    details: { path: from },
  });
}
