/**
 * Finding and stopping a helper daemon (dnsmasq, passt) left behind by a
 * crashed run, through a pid file: the pid is signalled only after
 * `/proc/<pid>/cmdline` shows it is that program, started with an argument
 * that names this run's files (its `--pid-file=` or `--socket=`), so that a
 * recycled pid is never killed.
 */
import { readFile, rm } from 'node:fs/promises';
import { SystemClock, UNKILLABLE_HINT, type Clock, type Logger } from '@podvisor/core';

const POLL_MS = 20;

export interface StrayProcess {
  /** The file holding the daemon's pid. */
  pidFile: string;
  /** The program's file name, matched against argv[0]'s last path segment. */
  program: string;
  /** One argument the daemon was started with that only this run's daemon has. */
  marker: string;
}

/**
 * Stops the daemon named by `stray.pidFile` when it is still that daemon
 * (SIGTERM, then SIGKILL after 2 s; left running with an error logged when
 * even that fails), and removes the pid file. Returns the pid it stopped, if
 * any. Never throws for "already gone".
 */
export async function stopStrayProcess(stray: StrayProcess, log: Logger, clock: Clock = new SystemClock()): Promise<number | undefined> {
  const pid = await readPid(stray.pidFile);
  let stopped: number | undefined;
  if (pid !== undefined && (await isProcessOf(pid, stray))) {
    log.info(`stopping a ${stray.program} left by an earlier run`, { pid, pidFile: stray.pidFile });
    signal(pid, 'SIGTERM');
    if (!(await waitGone(pid, 2000, clock))) {
      signal(pid, 'SIGKILL');
      if (!(await waitGone(pid, 2000, clock))) log.error(`a ${stray.program} left by an earlier run could not be stopped; left running`, { pid, pidFile: stray.pidFile, hint: UNKILLABLE_HINT });
    }
    stopped = pid;
  }
  await rm(stray.pidFile, { force: true });
  return stopped;
}

/** The pid in a pid file; `undefined` when absent or not a pid. */
export async function readPid(pidFile: string): Promise<number | undefined> {
  try {
    const pid = Number((await readFile(pidFile, 'utf8')).trim());
    return Number.isInteger(pid) && pid > 1 ? pid : undefined;
  } catch {
    return undefined;
  }
}

async function isProcessOf(pid: number, stray: StrayProcess): Promise<boolean> {
  try {
    const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0');
    return (argv[0] ?? '').split('/').pop() === stray.program && argv.includes(stray.marker);
  } catch {
    return false;
  }
}

/** True once the process is gone or a zombie (its parent has not reaped it yet). */
async function waitGone(pid: number, timeoutMs: number, clock: Clock): Promise<boolean> {
  const deadline = clock.now().getTime() + timeoutMs;
  for (;;) {
    let state: string | undefined;
    try {
      // `pid (comm) S ...`; comm may itself hold spaces and parentheses.
      const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
      state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    } catch {
      return true;
    }
    if (state === 'Z' || state === 'X') return true;
    if (clock.now().getTime() > deadline) return false;
    await clock.sleep(POLL_MS);
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // Already gone.
  }
}
