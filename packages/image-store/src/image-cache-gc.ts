/**
 * Listing and garbage collection of the shared image cache. A base is kept
 * when an overlay in one of the given disk dirs references it anywhere in its
 * backing chain (read with `qemu-img info`, one link at a time, so a chain
 * with a missing link still names what it can), when a name points at it (it
 * is the current content of that name), or when it landed less than
 * `minAgeMs` ago (a pull may be about to name it, or a pod to create an
 * overlay on it). Everything else is garbage. Collection is a dry run unless
 * asked otherwise: only the operator knows whether the disk dirs given are
 * all the disk dirs there are. It fails closed: a pet disk that cannot be
 * read (qemu-img cannot open it, a symlink that leads nowhere) stops the
 * collection before anything is removed, since its base cannot be known.
 * Symlinked pet disks are followed. Leftovers in `.tmp/` older than
 * `minAgeMs`, of names no live process pulls, are swept too.
 */
import { readdir, realpath, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { PodvisorError, SystemClock, type ProcessRunner } from '@podvisor/core';
import { judgeCacheLock, type CacheLockOptions, DEFAULT_LOCK_OPTIONS } from './cache-lock.js';
import type { CacheMeta, ImageCacheLayout } from './image-cache-layout.js';
import { sha256OfPath } from './image-cache-layout.js';
import { qemuImgInfo } from './qemu-img.js';

export interface ImageCacheListing {
  dir: string;
  names: Array<{ target: string; sha256: string; meta: CacheMeta | null }>;
  contents: Array<{ sha256: string; bytes: number; names: string[]; landedAt: string }>;
}

/** Names and contents of the cache. */
export async function listImageCache(layout: ImageCacheLayout): Promise<ImageCacheListing> {
  const names = await Promise.all((await layout.names()).map(async (n) => ({ ...n, meta: await layout.readMeta(n.target) })));
  const contents = await Promise.all(
    (await layout.contents()).map(async (sha256) => {
      const st = await stat(layout.contentPath(sha256));
      return { sha256, bytes: st.size, names: names.filter((n) => n.sha256 === sha256).map((n) => n.target), landedAt: st.ctime.toISOString() };
    }),
  );
  return { dir: layout.dir, names, contents };
}

export interface ImageGcOptions {
  diskDirs: readonly string[];
  /** When true (the default), nothing is removed: the report says what would be. */
  dryRun: boolean;
  /** Contents younger than this are kept. */
  minAgeMs: number;
  now?: Date;
}

export interface ImageGcReport {
  dryRun: boolean;
  removed: Array<{ sha256: string; bytes: number }>;
  kept: Array<{ sha256: string; reasons: string[] }>;
  /** Leftovers of `.tmp/` removed (or, in a dry run, that would be). */
  swept: Array<{ path: string; bytes: number }>;
  freedBytes: number;
}

/**
 * Removes (or, in a dry run, lists) the bases nothing keeps. Throws, before
 * removing anything, ERR_IMAGE_GC_DISK_DIR when a disk dir does not exist
 * (a mistyped dir must not make every base look unused) and
 * ERR_IMAGE_GC_DISK_UNREADABLE naming every pet disk it cannot read.
 */
export async function collectImageGarbage(layout: ImageCacheLayout, runner: ProcessRunner, options: ImageGcOptions): Promise<ImageGcReport> {
  const now = (options.now ?? new Date()).getTime();
  const reasons = new Map<string, string[]>();
  const keep = (sha: string, why: string): void => {
    reasons.set(sha, [...(reasons.get(sha) ?? []), why]);
  };
  const unreadable: Array<{ path: string; reason: string }> = [];
  for (const dir of options.diskDirs) {
    const entries = await readdir(dir, { withFileTypes: true }).catch((err: NodeJS.ErrnoException) => {
      throw new PodvisorError('ERR_IMAGE_GC_DISK_DIR', `cannot read disk dir ${dir}: ${err.code ?? err.message}`, {
        hint: 'pass every disk dir that may hold overlays on this cache, spelled right; nothing was removed',
        details: { path: dir },
      });
    });
    for (const e of entries) {
      if (e.name.startsWith('.') || !(e.isFile() || e.isSymbolicLink())) continue;
      const file = path.join(dir, e.name);
      try {
        // A symlinked pet disk is read where it leads (a relative backing path is relative to the real file).
        const real = e.isSymbolicLink() ? await realpath(file) : file;
        if (!(await stat(real)).isFile()) continue;
        for (const sha of await chainContents(runner, real)) keep(sha, `backs ${file}${real === file ? '' : ` (${real})`}`);
      } catch (err) {
        unreadable.push({ path: file, reason: (err as Error).message });
      }
    }
  }
  if (unreadable.length > 0) {
    const list = unreadable.map((u) => `${u.path} (${u.reason})`).join('; ');
    throw new PodvisorError(
      'ERR_IMAGE_GC_DISK_UNREADABLE',
      `cannot read the pet disk(s) ${list}; nothing was removed, since the bases they use are unknown`,
      {
        hint: 'repair or remove those files (or move them out of the disk dir) and run gc again',
        details: { paths: unreadable.map((u) => u.path), reasons: unreadable.map((u) => u.reason) },
      },
    );
  }
  for (const n of await layout.names()) keep(n.sha256, `named ${n.target}`);
  const swept = await sweepTmpDir(layout, options.minAgeMs, DEFAULT_LOCK_OPTIONS, undefined, options.dryRun, now);
  const removed: ImageGcReport['removed'] = [];
  for (const sha of await layout.contents()) {
    const file = layout.contentPath(sha);
    const st = await stat(file);
    if (now - st.ctimeMs < options.minAgeMs) keep(sha, `younger than ${Math.round(options.minAgeMs / 1000)} s`);
    if (reasons.has(sha)) continue;
    if (!options.dryRun) await rm(file, { force: true });
    removed.push({ sha256: sha, bytes: st.size });
  }
  return {
    dryRun: options.dryRun,
    removed,
    kept: [...reasons].filter(([sha]) => !removed.some((r) => r.sha256 === sha)).map(([sha256, why]) => ({ sha256, reasons: why })),
    swept,
    freedBytes: removed.reduce((sum, r) => sum + r.bytes, 0) + swept.reduce((sum, r) => sum + r.bytes, 0),
  };
}

/**
 * Removes (or, with `dryRun`, lists) the `.tmp/` entries older than
 * `maxAgeMs` that belong to no name a live process is pulling: the name's
 * cache lock is absent or provably stale (judgeCacheLock). `keep`'s entries
 * are left alone (its caller holds its lock and may resume them).
 */
export async function sweepTmpDir(
  layout: ImageCacheLayout,
  maxAgeMs: number,
  lockOptions: CacheLockOptions,
  keep?: string,
  dryRun = false,
  now = Date.now(),
): Promise<Array<{ path: string; bytes: number }>> {
  const out: Array<{ path: string; bytes: number }> = [];
  const clock = lockOptions.clock ?? new SystemClock();
  for (const e of await layout.tmpEntries(now)) {
    if (e.ageMs < maxAgeMs || (e.target !== null && e.target === keep)) continue;
    if (e.target !== null && (await judgeCacheLock(layout.lockPath(e.target), lockOptions, clock, Math.max(maxAgeMs, lockOptions.staleMs * 10))).kind === 'live') continue;
    if (!dryRun) await rm(e.path, { force: true, recursive: true });
    out.push({ path: e.path, bytes: e.bytes });
  }
  return out;
}

/** The cache contents an image's backing chain goes through (by path and by resolved link). */
async function chainContents(runner: ProcessRunner, file: string): Promise<string[]> {
  const out: string[] = [];
  let current = file;
  for (let depth = 0; depth < 16; depth += 1) {
    const info = await qemuImgInfo(runner, current);
    if (info.backingFilename === undefined) break;
    const next = path.resolve(path.dirname(current), info.backingFilename);
    const sha = sha256OfPath(next) ?? sha256OfPath(await realpathOrSelf(next));
    if (sha !== null) out.push(sha);
    if (!(await stat(next).then(() => true, () => false))) break;
    current = next;
  }
  return out;
}

async function realpathOrSelf(p: string): Promise<string> {
  return realpath(p).catch(() => p);
}
