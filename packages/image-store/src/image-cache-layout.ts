/**
 * The on-disk layout of the shared images volume, and its small atomic
 * writes. Every writer renames a complete temporary file into place, so a
 * reader never sees half a file:
 *   sha256/<hex>          immutable, validated base content (mode 0444)
 *   <target>              a symlink to sha256/<hex>: the human name (IMG_TARGET)
 *   .meta/<target>.json   where that content came from and its validators
 *   .locks/<target>.lock  held by the process that pulls that name
 *   .tmp/                 downloads in progress; never read as images
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, readlink, rename, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { SourceValidators } from '@podvisor/core';

/** What the cache knows about a name. The source never holds credentials. */
export interface CacheMeta {
  source: string;
  sha256: string;
  bytes: number;
  format: 'qcow2' | 'raw';
  validators: SourceValidators;
  /** ISO time the content was last fetched or confirmed unchanged. */
  fetchedAt: string;
}

const CONTENT = /(?:^|\/)sha256\/([0-9a-f]{64})$/;

export class ImageCacheLayout {
  constructor(readonly dir: string) {}

  get contentDir(): string {
    return path.join(this.dir, 'sha256');
  }
  get tmpDir(): string {
    return path.join(this.dir, '.tmp');
  }
  contentPath(sha256: string): string {
    return path.join(this.contentDir, sha256);
  }
  namePath(target: string): string {
    return path.join(this.dir, target);
  }
  lockPath(target: string): string {
    return path.join(this.dir, '.locks', `${target}.lock`);
  }
  private metaPath(target: string): string {
    return path.join(this.dir, '.meta', `${target}.json`);
  }

  /** Creates the directories. */
  async prepare(): Promise<void> {
    for (const d of ['sha256', '.tmp', '.meta', '.locks']) await mkdir(path.join(this.dir, d), { recursive: true });
  }

  /** A fresh name for a download in `.tmp/`. */
  tmpPath(target: string): string {
    return path.join(this.tmpDir, `${target}.${process.pid}.${randomBytes(4).toString('hex')}`);
  }

  async readMeta(target: string): Promise<CacheMeta | null> {
    try {
      return JSON.parse(await readFile(this.metaPath(target), 'utf8')) as CacheMeta;
    } catch {
      return null;
    }
  }

  async writeMeta(target: string, meta: CacheMeta): Promise<void> {
    const file = this.metaPath(target);
    const tmp = `${file}.${randomBytes(4).toString('hex')}.tmp`;
    await writeFile(tmp, `${JSON.stringify(meta, null, 2)}\n`);
    await rename(tmp, file);
  }

  /** Points `<target>` at the content, atomically (a symlink under a temp name, then rename). */
  async pointName(target: string, sha256: string): Promise<void> {
    const linkPath = this.namePath(target);
    const want = path.join('sha256', sha256);
    if ((await readlink(linkPath).catch(() => null)) === want) return;
    const tmp = path.join(this.tmpDir, `${target}.link.${randomBytes(4).toString('hex')}`);
    await symlink(want, tmp);
    await rename(tmp, linkPath);
    await fsyncDir(this.dir);
  }

  /** Every name and the content it points at. */
  async names(): Promise<Array<{ target: string; sha256: string }>> {
    const out: Array<{ target: string; sha256: string }> = [];
    for (const e of await readdir(this.dir, { withFileTypes: true }).catch(() => [])) {
      if (!e.isSymbolicLink()) continue;
      const sha = sha256OfPath(await readlink(path.join(this.dir, e.name)).catch(() => ''));
      if (sha !== null) out.push({ target: e.name, sha256: sha });
    }
    return out.sort((a, b) => a.target.localeCompare(b.target));
  }

  /** Every content hash in `sha256/`. */
  async contents(): Promise<string[]> {
    return (await readdir(this.contentDir).catch(() => [])).filter((n) => /^[0-9a-f]{64}$/.test(n)).sort();
  }
}

/** The hash of a path of the form `.../sha256/<hex>`, else null. */
export function sha256OfPath(p: string): string | null {
  return CONTENT.exec(p)?.[1] ?? null;
}

/** Makes a rename in `dir` durable. */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
