/**
 * PID 1 duty: reap orphans. Any process orphaned anywhere in the container is
 * re-parented to PID 1 (or, when podvisor is not PID 1, to podvisor as a child
 * subreaper) and stays a zombie until it is waited for. Node cannot wait for an
 * arbitrary pid, and libuv waits only for the children it spawned, each by its
 * pid with `waitpid(pid, WNOHANG)`; when that fails with ECHILD because someone
 * else reaped the child, libuv drops it and its exit callback never fires
 * (libuv src/unix/process.c, SIGCHLD handler). So this reaper never waits for
 * "any child": on each SIGCHLD, and on a slow
 * safety interval, it reads `/proc`, picks its zombie children that the
 * ProcessRunner does not own, and waits for exactly those pids through the
 * native addon.
 */
import type { Logger, PodvisorError } from '@podvisor/core';
import { loadNativeReaper, signalName, DEFAULT_REAPER_ADDON, type NativeReaper } from './native-reaper.js';
import type { ProcStat } from './proc-stat.js';
import { readProcStats } from './read-proc-stats.js';
import { selectOrphans } from './select-orphans.js';

/** One orphan the reaper waited for. */
export interface ReapedOrphan {
  readonly pid: number;
  /** Its command name as `/proc` showed it while a zombie. */
  readonly comm: string;
  /** Its exit code, or null when a signal ended it. */
  readonly code: number | null;
  /** The signal that ended it (`SIGKILL`), or null. */
  readonly signal: string | null;
}

export interface OrphanReaperOptions {
  /** Pids the ProcessRunner started and has not seen exit (`ProcessRunner.ownedPids()`): never waited for here. */
  readonly ownedPids: () => ReadonlySet<number>;
  readonly log: Logger;
  /** The safety sweep's period, for a SIGCHLD that was coalesced or missed. Default 5000 ms. */
  readonly intervalMs?: number;
}

export type OrphanReaperLoad = { readonly reaper: OrphanReaper; readonly reason: null } | { readonly reaper: null; readonly reason: PodvisorError };

const DEFAULT_INTERVAL_MS = 5000;

export class OrphanReaper {
  private readonly log: Logger;
  private readonly intervalMs: number;
  private readonly listeners = new Set<(orphan: ReapedOrphan) => void>();
  private suspects: ReadonlySet<number> = new Set();
  private started = false;
  private interval: NodeJS.Timeout | undefined;
  private immediate: NodeJS.Immediate | undefined;
  private readonly onSigchld = (): void => this.scheduleSweep();

  constructor(
    private readonly options: OrphanReaperOptions,
    private readonly native: NativeReaper,
  ) {
    this.log = options.log.child({ name: 'orphan-reaper' });
    this.intervalMs = options.intervalMs ?? DEFAULT_INTERVAL_MS;
  }

  /**
   * Loads the native addon and builds a reaper, not yet started. When the addon
   * cannot be loaded it logs a warning and returns `reaper: null` with the
   * reason (`ERR_PID1_REAPER_UNAVAILABLE`): podvisor runs on without reaping
   * orphans. Never throws.
   */
  static load(options: OrphanReaperOptions, addonPath: string = DEFAULT_REAPER_ADDON): OrphanReaperLoad {
    const loaded = loadNativeReaper(addonPath);
    if (loaded.native === null) {
      options.log.warn('orphan reaper unavailable: orphaned processes will stay zombies', { err: loaded.error });
      return { reaper: null, reason: loaded.error };
    }
    return { reaper: new OrphanReaper(options, loaded.native), reason: null };
  }

  /**
   * Starts reaping. Unless this process is PID 1, first makes it a child
   * subreaper (for good: `stop()` does not undo it), so orphans of its
   * descendants come back to it. Installs a SIGCHLD listener and an unref'd
   * interval timer, then sweeps once. A second call is a no-op.
   */
  start(): void {
    if (this.started) return;
    this.started = true;
    const pid1 = process.pid === 1;
    const subreaper = pid1 ? false : this.native.setChildSubreaper();
    if (!pid1 && !subreaper) this.log.warn('cannot become a child subreaper: orphans of children go to the real init', {});
    process.on('SIGCHLD', this.onSigchld);
    this.interval = setInterval(() => this.scheduleSweep(), this.intervalMs).unref();
    this.log.info('orphan reaper started', { pid: process.pid, pid1, subreaper, intervalMs: this.intervalMs });
    this.scheduleSweep();
  }

  /** Removes the SIGCHLD listener, the timer and any pending sweep. Idempotent. */
  stop(): void {
    if (!this.started) return;
    this.started = false;
    process.off('SIGCHLD', this.onSigchld);
    clearInterval(this.interval);
    if (this.immediate !== undefined) clearImmediate(this.immediate);
    this.interval = undefined;
    this.immediate = undefined;
    this.suspects = new Set();
  }

  /** Calls `listener` after each orphan is reaped (and logged). Returns the function that unsubscribes it. */
  onDidReap(listener: (orphan: ReapedOrphan) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Every sweep runs from `setImmediate`, i.e. in libuv's check phase, after the
   * poll phase in which libuv's own SIGCHLD watcher waits for its children; and
   * concurrent triggers fold into one sweep. See select-orphans.ts for why that
   * matters.
   */
  private scheduleSweep(): void {
    if (!this.started || this.immediate !== undefined) return;
    this.immediate = setImmediate(() => {
      this.immediate = undefined;
      this.sweep();
    });
  }

  private sweep(): void {
    try {
      const selection = selectOrphans({
        processes: readProcStats(),
        selfPid: process.pid,
        ownedPids: this.options.ownedPids(),
        suspects: this.suspects,
      });
      this.suspects = selection.suspects;
      if (selection.reap.length > 0) this.reap(selection.reap);
      // Scheduled from the check phase, this sweep runs in the next loop iteration.
      if (selection.confirmDue) this.scheduleSweep();
    } catch (err) {
      this.log.error('orphan sweep failed', { err });
    }
  }

  private reap(zombies: readonly ProcStat[]): void {
    const comms = new Map(zombies.map((z) => [z.pid, z.comm]));
    for (const child of this.native.reap(zombies.map((z) => z.pid))) {
      const orphan: ReapedOrphan = {
        pid: child.pid,
        comm: comms.get(child.pid) ?? '',
        code: child.code,
        signal: child.signal === null ? null : signalName(child.signal),
      };
      this.log.info('reaped orphan', { ...orphan });
      for (const listener of this.listeners) {
        try {
          listener(orphan);
        } catch (err) {
          this.log.error('onDidReap listener failed', { err, pid: orphan.pid });
        }
      }
    }
  }
}
