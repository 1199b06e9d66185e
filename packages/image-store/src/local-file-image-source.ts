/**
 * The `file` image source: an absolute local path (an image baked into the
 * container, or a mounted volume), copied with its sha256 computed in-stream.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { Transform } from 'node:stream';
import { injectable } from 'inversify';
import { PodvisorError, type FetchProgress, type ImageFetchResult, type ImageSource } from '@podvisor/core';

@injectable()
export class LocalFileImageSource implements ImageSource {
  readonly schemes = ['file'] as const;

  /** Copies `uri` (a path or `file://` URL) to `dest`, fsyncs it, and returns its size and sha256. Throws `ERR_IMAGE_SOURCE_NOT_FOUND`. */
  async fetch(uri: string, dest: string, options: { signal?: AbortSignal; onProgress?: (p: FetchProgress) => void } = {}): Promise<ImageFetchResult> {
    const from = uri.startsWith('file://') ? new URL(uri).pathname : uri;
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
      await pipeline(createReadStream(from), meter, createWriteStream(dest, { flags: 'wx' }), { signal: options.signal });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'EISDIR' || code === 'EACCES') {
        throw new PodvisorError('ERR_IMAGE_SOURCE_NOT_FOUND', `cannot read image source ${from}: ${code}`, {
          hint: 'IMG_SOURCE must be an http(s) URL or the absolute path of a readable qcow2 file',
          cause: err,
        });
      }
      throw err;
    }
    const fh = await open(dest, 'r+');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
    return { bytes, sha256: hash.digest('hex') };
  }
}
