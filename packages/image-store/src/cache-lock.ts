/**
 * A lock file shared by every podvisor process that uses one images volume
 * (which may be shared by pods on several nodes), so that concurrent pulls of
 * one image make one download. Node has no `flock`, and flock does not reach
 * across NFS clients anyway, so the lock is a file created with O_EXCL that
 * holds its owner: pid, pid namespace, process start time, hostname and the
 * kernel's boot id (which names the node: two nodes never share one). The
 * owner refreshes the file's mtime every `refreshMs` while it holds it.
 *
 * A waiter takes the lock over only when it is provably stale:
 * - the owner is on this node (same boot id and pid namespace) and its pid is
 *   gone, or now belongs to a process that started at another time; or
 * - the waiter itself watched the lock not being refreshed for `staleMs` (a
 *   lease: the owner's node died or lost the volume). The waiter measures that
 *   on its own clock, so clock skew between nodes cannot make a live lock look
 *   old.
 * A live owner on another node is never judged by its pid. A waiter waits at
 * most `maxWaitMs` for a live owner, then fails with ERR_IMAGE_LOCK_TIMEOUT
 * naming the owner's host and pid. Take-overs are serialised by a second
 * O_EXCL file, so two waiters never both remove a lock and the second one a
 * fresh lock.
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
  /** The longest wait for a live owner before `ERR_IMAGE_LOCK_TIMEOUT`. */
  maxWaitMs: number;
  clock?: Clock;
  log?: Logger;
}

export const DEFAULT_LOCK_OPTIONS: CacheLockOptions = { staleMs: 60_000, refreshMs: 10_000, pollMs: 200, maxWaitMs: 3_600_000 };

/** What a lock file holds. */
export interface LockOwner {
  pid: number;
  /** `pid:[inode]` of the owner's pid namespace: a pid means nothing outside it. */
  pidNamespace: string;
  /** Clock ticks since boot when the owner started (field 22 of /proc/PID/stat), to tell a reused pid. */
  startTime: number | null;
  host: string;
  /** The kernel's boot id (/proc/sys/kernel/random/boot_id): the node, across hostnames and pid namespaces. */
  bootId: string;
  at: string;
}

export interface HeldLock {
  /** Removes the lock file (if it is still ours). Safe to call twice. */
  release(): Promise<void>;
}

export function currentOwner(now: Date): LockOwner {
  return { pid: process.pid, pidNamespace: pidNamespace(), startTime: processStartTime(process.pid), host: os.hostname(), bootId: bootId(), at: now.toISOString() };
}

/**
 * Takes the lock at `file`, waiting for a live owner at most `maxWaitMs`.
 * Rejects with the signal's reason when `signal` aborts the wait, with
 * ERR_IMAGE_LOCK_TIMEOUT (naming the owner's host) when the wait is over,
 * and with ERR_IMAGE_LOCK_FAILED when the lock file cannot be used.
 */
export async function acquireCacheLock(file: string, options: CacheLockOptions, signal?: AbortSignal): Promise<HeldLock> {
  const clock = options.clock ?? new SystemClock();
  const started = clock.now().getTime();
  const watch: LeaseWatch = { seen: null, since: started };
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
    const verdict = await judge(file, options, clock, watch);
    if (verdict.kind === 'stale') {
      options.log?.warn('taking over a stale image cache lock', { path: file, owner: verdict.owner, why: verdict.why });
      await takeOver(file, options, clock, watch);
      continue;
    }
    if (verdict.kind === 'gone') continue;
    if (!reported) {
      options.log?.info('waiting for another process that pulls the same image', { path: file, owner: verdict.owner });
      reported = true;
    }
    const waited = clock.now().getTime() - started;
    if (waited >= options.maxWaitMs) throw lockTimeout(file, verdict.owner, waited);
    await clock.sleep(Math.min(options.pollMs, options.maxWaitMs - waited), signal);
  }
}

type Verdict = { kind: 'gone' } | { kind: 'live'; owner: LockOwner | null } | { kind: 'stale'; owner: LockOwner | null; why: string };

/** What one waiter has seen of a lock file: its identity and mtime, and since when (on the waiter's clock) it has not changed. */
interface LeaseWatch {
  seen: string | null;
  since: number;
}

/**
 * Whether the lock at `file` is held by a live owner, as far as one look can
 * prove (gc's sweep of `.tmp/`): stale when its owner is provably dead on this
 * node, or when it was last refreshed more than `oldAfterMs` ago on this
 * clock (give a bound far past the lease, so clock skew between nodes cannot
 * matter).
 */
export async function judgeCacheLock(file: string, options: CacheLockOptions, clock: Clock, oldAfterMs: number): Promise<Verdict> {
  const verdict = await judge(file, options, clock, null);
  if (verdict.kind !== 'live') return verdict;
  const mtimeMs = (await stat(file).catch(() => null))?.mtimeMs;
  if (mtimeMs === undefined) return { kind: 'gone' };
  const age = clock.now().getTime() - mtimeMs;
  return age > oldAfterMs ? { kind: 'stale', owner: verdict.owner, why: `not refreshed for ${Math.round(age / 1000)} s` } : verdict;
}

async function judge(file: string, options: CacheLockOptions, clock: Clock, watch: LeaseWatch | null): Promise<Verdict> {
  let text: string;
  let st: { mtimeMs: number; ino: number };
  try {
    [text, st] = await Promise.all([readFile(file, 'utf8'), stat(file)]);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'gone' };
    throw lockError(file, err);
  }
  const owner = parseOwner(text);
  if (owner !== null && sameNode(owner) && !isAlive(owner)) {
    return { kind: 'stale', owner, why: `pid ${owner.pid} is not running on this node (${owner.host})` };
  }
  if (watch !== null) {
    // The lease: measured on this waiter's clock from when it last saw the file change.
    const now = clock.now().getTime();
    const seen = `${st.ino}:${st.mtimeMs}:${text}`;
    if (seen !== watch.seen) {
      watch.seen = seen;
      watch.since = now;
    }
    const unchanged = now - watch.since;
    if (unchanged >= options.staleMs) {
      return { kind: 'stale', owner, why: `not refreshed for ${Math.round(unchanged)} ms (owner ${owner === null ? 'unknown' : `pid ${owner.pid} on ${owner.host}`})` };
    }
  }
  // A holder that died between O_EXCL and writing its owner leaves an empty file: the lease runs out.
  return { kind: 'live', owner };
}

/** The owner runs on this node, in this pid namespace: its pid can be checked here. */
function sameNode(owner: LockOwner): boolean {
  const mine = bootId();
  return mine !== '' && owner.bootId === mine && owner.pidNamespace !== '' && owner.pidNamespace === pidNamespace();
}

/** Removes a stale lock under a take-over lock, after checking again that it is the same stale file. */
async function takeOver(file: string, options: CacheLockOptions, clock: Clock, watch: LeaseWatch): Promise<void> {
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
    if ((await judge(file, options, clock, watch)).kind === 'stale') await unlink(file).catch(() => undefined);
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
      if (owner !== null && owner.pid === me.pid && owner.at === me.at && owner.pidNamespace === me.pidNamespace && owner.bootId === me.bootId) {
        await unlink(file).catch(() => undefined);
      }
    },
  };
}

export function parseOwner(text: string): LockOwner | null {
  try {
    const j = JSON.parse(text) as Partial<LockOwner>;
    if (typeof j.pid !== 'number' || typeof j.pidNamespace !== 'string') return null;
    return {
      pid: j.pid,
      pidNamespace: j.pidNamespace,
      startTime: typeof j.startTime === 'number' ? j.startTime : null,
      host: String(j.host ?? ''),
      bootId: String(j.bootId ?? ''),
      at: String(j.at ?? ''),
    };
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

let cachedBootId: string | undefined;
function bootId(): string {
  if (cachedBootId === undefined) {
    try {
      cachedBootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    } catch {
      cachedBootId = '';
    }
  }
  return cachedBootId;
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

function lockTimeout(file: string, owner: LockOwner | null, waitedMs: number): PodvisorError {
  const who = owner === null ? 'an owner that wrote no identity' : `pid ${owner.pid} on host ${owner.host || '(unknown)'} (boot id ${owner.bootId || 'unknown'})`;
  return new PodvisorError('ERR_IMAGE_LOCK_TIMEOUT', `waited ${Math.round(waitedMs / 1000)} s for the image cache lock ${file}, held by ${who}, which is still refreshing it`, {
    hint: 'another pod is pulling the same image; let it finish, or stop it. A lock is taken over only when its owner is provably gone',
    details: { path: file, owner: owner === null ? null : { pid: owner.pid, host: owner.host, bootId: owner.bootId, since: owner.at }, waitedMs },
  });
}

function lockError(file: string, err: unknown): PodvisorError {
  return new PodvisorError('ERR_IMAGE_LOCK_FAILED', `cannot use the image cache lock ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, {
    hint: 'the images volume must be writable by podvisor',
    cause: err,
    details: { path: file },
  });
}
