/**
 * The reaper's decision, kept pure: given every process in `/proc`, which
 * zombies may podvisor wait for? Only its own zombie children (ppid is podvisor)
 * that its ProcessRunner does not own (libuv reaps those by pid, and a child
 * reaped behind libuv's back never reports its exit), and only once a zombie
 * has been seen in two consecutive sweeps. The second sighting is a guard for
 * children that some code spawned without the runner: the reaper sweeps only
 * in libuv's check phase and a new sighting is confirmed in a later loop
 * iteration, so libuv's own SIGCHLD handler (poll phase) has run in between
 * and has already reaped any zombie that was its own.
 */
import type { ProcStat } from './proc-stat.js';

export interface OrphanSelectionInput {
  /** Every process read from `/proc` in this sweep. */
  readonly processes: readonly ProcStat[];
  /** The reaper's own pid: zombies whose parent is someone else are not ours to wait for. */
  readonly selfPid: number;
  /** Pids the ProcessRunner started and has not yet seen exit. */
  readonly ownedPids: ReadonlySet<number>;
  /** The candidates of the previous sweep. */
  readonly suspects: ReadonlySet<number>;
}

export interface OrphanSelection {
  /** Zombies to wait for now: candidates already seen by the previous sweep. */
  readonly reap: readonly ProcStat[];
  /** Every candidate of this sweep, for the next one to confirm. */
  readonly suspects: ReadonlySet<number>;
  /** True when this sweep saw a candidate the previous one had not: a confirming sweep is due. */
  readonly confirmDue: boolean;
}

export function selectOrphans(input: OrphanSelectionInput): OrphanSelection {
  const reap: ProcStat[] = [];
  const suspects = new Set<number>();
  let confirmDue = false;
  for (const p of input.processes) {
    if (p.state !== 'Z' || p.ppid !== input.selfPid || input.ownedPids.has(p.pid)) continue;
    suspects.add(p.pid);
    if (input.suspects.has(p.pid)) reap.push(p);
    else confirmDue = true;
  }
  return { reap, suspects, confirmDue };
}
