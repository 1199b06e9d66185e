/**
 * The on-disk layout of the shared images volume, and its small atomic
 * writes. Every writer renames a complete temporary file into place, so a
 * reader never sees half a file:
 *   sha256/<hex>          immutable, validated base content (mode 0444)
 *   <target>              a symlink to sha256/<hex>: the human name (IMG_TARGET)
 *   .meta/<target>.json   where that content came from and its validators
 *   .meta/verified/<hex>.json  the file's identity (size, mtime, ctime, inode)
 *                         when its hash was last checked (see BaseVerifier)
 *   .locks/<target>.lock  held by the process that pulls that name
 *   .tmp/<target>.partial[.json]  the resumable download of that name, and
 *                         what a later process needs to resume it (Range)
 *   .tmp/                 other temporary files; never read as images
 * Anything in the volume may have been written by another pod that shares
 * it, so nothing read from it is trusted without a check (BaseVerifier).
 */
import { randomBytes } from 'node:crypto';
import { lstat, mkdir, open, readdir, readFile, readlink, rename, rm, symlink, writeFile } from 'node:fs/promises';
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

/** The identity of a content file when its hash was last checked. */
export interface VerifiedRecord {
  sha256: string;
  format: 'qcow2' | 'raw';
  size: number;
  mtimeMs: number;
  ctimeMs: number;
  ino: number;
  dev: number;
  verifiedAt: string;
}

/** What a later process needs to resume a partial download of a name. */
export interface PartialMeta {
  /** The source, redacted: only a download of the same source is resumed. */
  source: string;
  /** The pinned sha256, if any: a partial of another pin is started over. */
  sha256: string | null;
  validators: SourceValidators;
  total: number | null;
  startedAt: string;
}

const CONTENT = /(?:^|\/)sha256\/([0-9a-f]{64})$/;
const HEX64 = /^[0-9a-f]{64}$/;

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
  private verifiedPath(sha256: string): string {
    return path.join(this.dir, '.meta', 'verified', `${sha256}.json`);
  }
  /** The resumable download of `target`, and its metadata. */
  partialPath(target: string): string {
    return path.join(this.tmpDir, `${target}.partial`);
  }
  private partialMetaPath(target: string): string {
    return path.join(this.tmpDir, `${target}.partial.json`);
  }

  /** Creates the directories. */
  async prepare(): Promise<void> {
    for (const d of ['sha256', '.tmp', '.meta', '.meta/verified', '.locks']) await mkdir(path.join(this.dir, d), { recursive: true });
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

  /**
   * The identity recorded when `sha256`'s content was last hashed, or null.
   * A record that names another hash than its own file name is ignored.
   */
  async readVerified(sha256: string): Promise<VerifiedRecord | null> {
    if (!HEX64.test(sha256)) return null;
    try {
      const r = JSON.parse(await readFile(this.verifiedPath(sha256), 'utf8')) as Partial<VerifiedRecord>;
      const numbers = [r.size, r.mtimeMs, r.ctimeMs, r.ino, r.dev].every((n) => typeof n === 'number');
      return r.sha256 === sha256 && numbers && (r.format === 'qcow2' || r.format === 'raw') ? (r as VerifiedRecord) : null;
    } catch {
      return null;
    }
  }

  async writeVerified(record: VerifiedRecord): Promise<void> {
    await this.writeJson(this.verifiedPath(record.sha256), record);
  }

  async readPartial(target: string): Promise<PartialMeta | null> {
    try {
      const m = JSON.parse(await readFile(this.partialMetaPath(target), 'utf8')) as Partial<PartialMeta>;
      if (typeof m.source !== 'string' || typeof m.validators !== 'object' || m.validators === null) return null;
      return {
        source: m.source,
        sha256: typeof m.sha256 === 'string' ? m.sha256 : null,
        validators: m.validators,
        total: typeof m.total === 'number' ? m.total : null,
        startedAt: String(m.startedAt ?? ''),
      };
    } catch {
      return null;
    }
  }

  async writePartial(target: string, meta: PartialMeta): Promise<void> {
    await this.writeJson(this.partialMetaPath(target), meta);
  }

  /** Removes the partial download of `target` and its metadata. */
  async removePartial(target: string): Promise<void> {
    await rm(this.partialPath(target), { force: true });
    await rm(this.partialMetaPath(target), { force: true });
  }

  /**
   * Every entry of `.tmp/` with its age and the name it belongs to (when its
   * file name tells), for the sweep.
   */
  async tmpEntries(now: number): Promise<Array<{ path: string; target: string | null; ageMs: number; bytes: number }>> {
    const out: Array<{ path: string; target: string | null; ageMs: number; bytes: number }> = [];
    for (const name of await readdir(this.tmpDir).catch(() => [] as string[])) {
      const p = path.join(this.tmpDir, name);
      const st = await lstat(p).catch(() => null);
      if (st === null) continue;
      out.push({ path: p, target: tmpTarget(name), ageMs: now - st.mtimeMs, bytes: st.isFile() ? st.size : 0 });
    }
    return out;
  }

  private async writeJson(file: string, value: unknown): Promise<void> {
    const tmp = `${file}.${randomBytes(4).toString('hex')}.tmp`;
    await writeFile(tmp, `${JSON.stringify(value, null, 2)}\n`);
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

/** The name a `.tmp/` entry belongs to: `<target>.partial[.json]`, `<target>.<pid>.<hex>`, `<target>.link.<hex>`. */
function tmpTarget(name: string): string | null {
  const m = /^(.+)\.partial(?:\.json)?(?:\.[0-9a-f]{8}\.tmp)?$/.exec(name) ?? /^(.+)\.(?:\d+|link)\.[0-9a-f]{8}$/.exec(name);
  return m?.[1] ?? null;
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
