/**
 * A lock file shared by every podvisor process that uses one images volume,
 * so that concurrent pulls of one image make one download. Node has no
 * `flock`, so the lock is a file created with O_EXCL that holds its owner
 * (pid, the pid namespace, the process start time, the host). The owner
 * refreshes its mtime while it holds it. A waiter takes the lock over when
 * the owner is provably dead (same pid namespace, and the pid is gone or now
 * belongs to a process that started at another time), or when the file has
 * not been refreshed for `staleMs` (an owner on another node, or in another
 * pid namespace, that died). Take-overs are serialised by a second O_EXCL
 * file, so two waiters never both remove a lock and the second one a fresh lock.
 */
import { readFileSync, readlinkSync } from 'node:fs';
import { open, readFile, stat, unlink, utimes } from 'node:fs/promises';
import os from 'node:os';
import { PodvisorError, SystemClock, type Clock, type Logger } from '@podvisor/core';

export interface CacheLockOptions {
  /** A lock not refreshed for this long is stale. */
  staleMs: number;
  /** How often the owner refreshes the lock's mtime. */
  refreshMs: number;
  /** How often a waiter looks again. */
  pollMs: number;
  clock?: Clock;
  log?: Logger;
}

export const DEFAULT_LOCK_OPTIONS: CacheLockOptions = { staleMs: 60_000, refreshMs: 10_000, pollMs: 200 };

/** What a lock file holds. */
export interface LockOwner {
  pid: number;
  /** `pid:[inode]` of the owner's pid namespace: a pid means nothing outside it. */
  pidNamespace: string;
  /** Clock ticks since boot when the owner started (field 22 of /proc/PID/stat), to tell a reused pid. */
  startTime: number | null;
  host: string;
  at: string;
}

export interface HeldLock {
  /** Removes the lock file (if it is still ours). Safe to call twice. */
  release(): Promise<void>;
}

export function currentOwner(now: Date): LockOwner {
  return { pid: process.pid, pidNamespace: pidNamespace(), startTime: processStartTime(process.pid), host: os.hostname(), at: now.toISOString() };
}

/**
 * Takes the lock at `file`, waiting for its owner as long as it lives.
 * Rejects with the signal's reason when `signal` aborts the wait.
 */
export async function acquireCacheLock(file: string, options: CacheLockOptions, signal?: AbortSignal): Promise<HeldLock> {
  const clock = options.clock ?? new SystemClock();
  let reported = false;
  for (;;) {
    signal?.throwIfAborted();
    const me = currentOwner(clock.now());
    try {
      const fh = await open(file, 'wx', 0o644);
      try {
        // No fsync: the content matters only while this process lives (a dead
        // holder is recognised by its pid), so durability buys nothing here.
        await fh.writeFile(`${JSON.stringify(me)}\n`);
      } finally {
        await fh.close();
      }
      return holdLock(file, me, options);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw lockError(file, err);
    }
    const verdict = await judge(file, options, clock);
    if (verdict.kind === 'stale') {
      options.log?.warn('taking over a stale image cache lock', { path: file, owner: verdict.owner, why: verdict.why });
      await takeOver(file, options, clock);
      continue;
    }
    if (verdict.kind === 'gone') continue;
    if (!reported) {
      options.log?.info('waiting for another process that pulls the same image', { path: file, owner: verdict.owner });
      reported = true;
    }
    await clock.sleep(options.pollMs, signal);
  }
}

type Verdict = { kind: 'gone' } | { kind: 'live'; owner: LockOwner | null } | { kind: 'stale'; owner: LockOwner | null; why: string };

async function judge(file: string, options: CacheLockOptions, clock: Clock): Promise<Verdict> {
  let text: string;
  let mtimeMs: number;
  try {
    [text, mtimeMs] = await Promise.all([readFile(file, 'utf8'), stat(file).then((s) => s.mtimeMs)]);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'gone' };
    throw lockError(file, err);
  }
  const owner = parseOwner(text);
  const age = clock.now().getTime() - mtimeMs;
  if (owner !== null && owner.pidNamespace === pidNamespace() && owner.pidNamespace !== '' && !isAlive(owner)) {
    return { kind: 'stale', owner, why: `pid ${owner.pid} is not running` };
  }
  if (age > options.staleMs) return { kind: 'stale', owner, why: `not refreshed for ${Math.round(age)} ms` };
  // A holder that died between O_EXCL and writing its owner leaves an empty file: wait for staleMs.
  return { kind: 'live', owner };
}

/** Removes a stale lock under a take-over lock, after checking again that it is the same stale file. */
async function takeOver(file: string, options: CacheLockOptions, clock: Clock): Promise<void> {
  const guard = `${file}.takeover`;
  let fh;
  try {
    fh = await open(guard, 'wx', 0o644);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw lockError(guard, err);
    // Someone else is taking over; a guard left by a crash is removed once it is stale.
    const st = await stat(guard).catch(() => null);
    if (st !== null && clock.now().getTime() - st.mtimeMs > options.staleMs) await unlink(guard).catch(() => undefined);
    else await clock.sleep(options.pollMs);
    return;
  }
  try {
    await fh.close();
    if ((await judge(file, options, clock)).kind === 'stale') await unlink(file).catch(() => undefined);
  } finally {
    await unlink(guard).catch(() => undefined);
  }
}

function holdLock(file: string, me: LockOwner, options: CacheLockOptions): HeldLock {
  const timer = setInterval(() => {
    const now = new Date();
    utimes(file, now, now).catch(() => undefined);
  }, options.refreshMs);
  timer.unref();
  let released = false;
  return {
    async release(): Promise<void> {
      if (released) return;
      released = true;
      clearInterval(timer);
      // Remove it only if it is still ours: a waiter may have judged it stale.
      const owner = parseOwner(await readFile(file, 'utf8').catch(() => ''));
      if (owner !== null && owner.pid === me.pid && owner.at === me.at && owner.pidNamespace === me.pidNamespace) {
        await unlink(file).catch(() => undefined);
      }
    },
  };
}

export function parseOwner(text: string): LockOwner | null {
  try {
    const j = JSON.parse(text) as Partial<LockOwner>;
    if (typeof j.pid !== 'number' || typeof j.pidNamespace !== 'string') return null;
    return { pid: j.pid, pidNamespace: j.pidNamespace, startTime: typeof j.startTime === 'number' ? j.startTime : null, host: String(j.host ?? ''), at: String(j.at ?? '') };
  } catch {
    return null;
  }
}

function isAlive(owner: LockOwner): boolean {
  try {
    process.kill(owner.pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
  }
  // The pid exists; it is the owner only if it started when the owner did.
  const start = processStartTime(owner.pid);
  return owner.startTime === null || start === null || start === owner.startTime;
}

function pidNamespace(): string {
  try {
    return readlinkSync('/proc/self/ns/pid');
  } catch {
    return '';
  }
}

/** Field 22 (starttime) of /proc/PID/stat; the command name (field 2) may hold spaces and parentheses. */
export function processStartTime(pid: number): number | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    const v = Number(fields[19]);
    return Number.isFinite(v) ? v : null;
  } catch {
    return null;
  }
}

function lockError(file: string, err: unknown): PodvisorError {
  return new PodvisorError('ERR_IMAGE_LOCK_FAILED', `cannot use the image cache lock ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, {
    hint: 'the images volume must be writable by podvisor',
    cause: err,
    details: { path: file },
  });
}
