/**
 * One podvisor per VM volume. `podvisor run` takes an exclusive flock(2) on
 * `podvisor.lock` in the state dir before it touches anything a running
 * instance owns (the control socket, the network, dnsmasq, the event log's
 * writers), so a second instance on the same volume (a rolling update, a debug
 * run) refuses at once instead of unlinking the first one's socket and
 * restarting its dnsmasq. The kernel drops the lock when the process ends,
 * however it ends (kill -9 included), so a stale lock cannot exist. The holder
 * writes its pid, host and start time into the file for the refusal message.
 * Node has no flock: the call is in podvisor's N-API addon (native/reaper.c).
 */
import { closeSync, constants, ftruncateSync, openSync, readFileSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { PodvisorError } from '@podvisor/core';
import { DEFAULT_REAPER_ADDON } from './pid1/native-reaper.js';

/** The lock file's name in the state dir. */
export const VOLUME_LOCK_NAME = 'podvisor.lock';

/** What the holder writes into the lock file. */
export interface VolumeLockHolder {
  readonly pid: number;
  readonly host: string;
  readonly startedAt: string;
  readonly version: string;
}

/** The addon's lock call: true when this open file now holds the lock, false when another does. */
export type TryLockExclusive = (fd: number) => boolean;

/** Loads `tryLockExclusive` from the addon; null when the addon is missing or too old. */
export function loadTryLockExclusive(addonPath: string = DEFAULT_REAPER_ADDON): TryLockExclusive | null {
  try {
    const native = createRequire(import.meta.url)(addonPath) as { tryLockExclusive?: unknown };
    return typeof native.tryLockExclusive === 'function' ? (native.tryLockExclusive as TryLockExclusive) : null;
  } catch {
    return null;
  }
}

export class VolumeLock {
  private constructor(
    /** The lock file. */
    readonly path: string,
    private fd: number | null,
    /** Why this process runs without the lock (`WARN_VOLUME_UNLOCKED`), or null when it holds it. */
    readonly warning: PodvisorError | null,
  ) {}

  /**
   * Takes the lock on `stateDir` (which must exist) without waiting, and
   * writes this process into it. Throws `ERR_VOLUME_LOCKED`, naming the
   * holder, when another process holds it; nothing is changed then. When the
   * lock cannot be taken at all (no addon, a file that cannot be opened) it
   * returns an unheld lock with a `warning`, and podvisor runs as before.
   */
  static acquire(stateDir: string, holder: Pick<VolumeLockHolder, 'version'> & Partial<VolumeLockHolder>, tryLock: TryLockExclusive | null = loadTryLockExclusive()): VolumeLock {
    const file = path.join(stateDir, VOLUME_LOCK_NAME);
    const unlocked = (reason: string, cause?: unknown): VolumeLock =>
      new VolumeLock(file, null, new PodvisorError('WARN_VOLUME_UNLOCKED', `running without the volume lock ${file}: ${reason}`, {
        hint: 'a second podvisor on this volume would not be refused; build the addon with `npm run build:native -w @podvisor/supervisord`',
        cause,
        details: { path: file },
      }));
    if (tryLock === null) return unlocked('the N-API addon with flock is not available');
    let fd: number;
    let writable = true;
    try {
      // O_NOFOLLOW: the lock file is never a link to somewhere else. Never truncated before the lock is ours.
      fd = openSync(file, constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW, 0o644);
    } catch (err) {
      try {
        // A read-only volume: flock works on a read-only descriptor too.
        fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW);
        writable = false;
      } catch {
        return unlocked(`cannot open it (${(err as NodeJS.ErrnoException).code ?? String(err)})`, err);
      }
    }
    let held: boolean;
    try {
      held = tryLock(fd);
    } catch (err) {
      closeSync(fd);
      return unlocked((err as Error).message, err);
    }
    if (!held) {
      closeSync(fd);
      const by = readHolder(file);
      const who = by === null ? 'another podvisor (it has not written its pid yet)' : `podvisor pid ${by.pid} on host ${by.host}, started ${by.startedAt}${by.version === '' ? '' : ` (version ${by.version})`}`;
      throw new PodvisorError('ERR_VOLUME_LOCKED', `the VM volume ${stateDir} is in use by ${who}: ${file} is locked`, {
        hint: 'only one podvisor may run on a VM volume; stop the other one first (a Deployment needs strategy Recreate, or use a StatefulSet)',
        details: { path: file, holder: by },
      });
    }
    if (writable) {
      const me: VolumeLockHolder = { pid: process.pid, host: os.hostname(), startedAt: new Date().toISOString(), ...holder };
      try {
        ftruncateSync(fd, 0);
        writeSync(fd, `${JSON.stringify(me)}\n`, 0);
      } catch {
        // A full volume: the lock holds all the same; a refused instance says "has not written its pid".
      }
    }
    return new VolumeLock(file, fd, null);
  }

  /** Whether this process holds the lock. */
  get held(): boolean {
    return this.fd !== null;
  }

  /** Gives the lock up (the process's end does it too). Idempotent. */
  release(): void {
    if (this.fd === null) return;
    closeSync(this.fd);
    this.fd = null;
  }
}

/** The holder written in a lock file, or null when it is empty or unreadable. */
export function readHolder(file: string): VolumeLockHolder | null {
  try {
    const v = JSON.parse(readFileSync(file, 'utf8')) as Partial<VolumeLockHolder>;
    if (typeof v.pid !== 'number' || typeof v.host !== 'string' || typeof v.startedAt !== 'string') return null;
    return { pid: v.pid, host: v.host, startedAt: v.startedAt, version: typeof v.version === 'string' ? v.version : '' };
  } catch {
    return null;
  }
}
