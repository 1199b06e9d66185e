/**
 * Listing and garbage collection of the shared image cache. A base is kept
 * when an overlay in one of the given disk dirs references it anywhere in its
 * backing chain (read with `qemu-img info`, one link at a time, so a chain
 * with a missing link still names what it can), when a name points at it (it
 * is the current content of that name), or when it landed less than
 * `minAgeMs` ago (a pull may be about to name it, or a pod to create an
 * overlay on it). Everything else is garbage. Collection is a dry run unless
 * asked otherwise: only the operator knows whether the disk dirs given are
 * all the disk dirs there are.
 */
import { readdir, realpath, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { PodvisorError, type ProcessRunner } from '@podvisor/core';
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
  /** Files in the disk dirs that qemu-img could not read, skipped. */
  skipped: Array<{ path: string; reason: string }>;
  freedBytes: number;
}

/**
 * Removes (or, in a dry run, lists) the bases nothing keeps. Throws
 * `ERR_IMAGE_GC_DISK_DIR` when a disk dir does not exist, before removing
 * anything: a mistyped dir must not make every base look unused.
 */
export async function collectImageGarbage(layout: ImageCacheLayout, runner: ProcessRunner, options: ImageGcOptions): Promise<ImageGcReport> {
  const now = (options.now ?? new Date()).getTime();
  const reasons = new Map<string, string[]>();
  const keep = (sha: string, why: string): void => {
    reasons.set(sha, [...(reasons.get(sha) ?? []), why]);
  };
  const skipped: ImageGcReport['skipped'] = [];
  for (const dir of options.diskDirs) {
    const entries = await readdir(dir, { withFileTypes: true }).catch((err: NodeJS.ErrnoException) => {
      throw new PodvisorError('ERR_IMAGE_GC_DISK_DIR', `cannot read disk dir ${dir}: ${err.code ?? err.message}`, {
        hint: 'pass every disk dir that may hold overlays on this cache, spelled right; nothing was removed',
        details: { path: dir },
      });
    });
    for (const e of entries) {
      if (!e.isFile() || e.name.startsWith('.')) continue;
      const file = path.join(dir, e.name);
      try {
        for (const sha of await chainContents(runner, file)) keep(sha, `backs ${file}`);
      } catch (err) {
        skipped.push({ path: file, reason: (err as Error).message });
      }
    }
  }
  for (const n of await layout.names()) keep(n.sha256, `named ${n.target}`);
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
    skipped,
    freedBytes: removed.reduce((sum, r) => sum + r.bytes, 0),
  };
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
