/**
 * Keeps a network backend's dnsmasq running for as long as the
 * network is attached (the network plugins use it). dnsmasq is spawned through the core `ProcessRunner` in the
 * foreground; it counts as started once it has written its pid file (it does
 * so after binding its DHCP socket). If it dies while supervised, it is
 * restarted with exponential backoff, a bounded number of times in a row, and
 * each restart is reported through `NetworkHooks.notice`. A restart only
 * happens while this supervisor still owns its pid file: `start` writes a
 * random token next to it (`<pidFile>.owner`), and `stopStrayDnsmasq` removes
 * that token before it stops a leftover dnsmasq, so a stale supervisor (a
 * backend instance that was never detached, or a second instance) stands
 * down instead of restarting the dnsmasq that a newer run just stopped, and
 * never deletes the newer run's pid file. Also here: finding and stopping a
 * dnsmasq left behind by a crashed run, through its pid file, after checking
 * that the pid really is that dnsmasq.
 *
 * dnsmasq drops to `nobody` after binding when it can, which needs CAP_SETUID
 * and CAP_SETGID, and podvisor can then signal it only with CAP_KILL. Where
 * podvisor lacks any of the three (a container that drops them), dnsmasq keeps
 * podvisor's user instead (`--user= --group=`), so that it still starts and
 * podvisor can still stop it; its confinement is then the container's own
 * capability set. On a host where podvisor has them all, the drop stays.
 */
import { randomUUID } from 'node:crypto';
import { readFile, rm, writeFile } from 'node:fs/promises';
import {
  PodvisorError,
  SystemClock,
  UNKILLABLE_HINT,
  hasCapabilities,
  ownEffectiveCapabilities,
  terminateChild,
  type BinaryNeed,
  type CapabilityNeed,
  type ChildHandle,
  type Clock,
  type Logger,
  type NetworkHooks,
  type ProcessRunner,
} from '@podvisor/core';
import { readPid, stopStrayProcess } from './stray-process.js';

/**
 * What a supervised dnsmasq needs, for the prerequisites of the backends that
 * start one: it binds the DHCP port 67. With `--no-ping` it needs no NET_RAW,
 * and without SETUID, SETGID or KILL it keeps podvisor's user (see the module comment).
 */
export const DNSMASQ_PREREQUISITES: { binaries: BinaryNeed[]; capabilities: CapabilityNeed[] } = {
  binaries: [{ name: 'dnsmasq', why: 'leases the VM its address over DHCP' }],
  capabilities: [{ name: 'NET_BIND_SERVICE', why: 'dnsmasq binds the DHCP port 67' }],
};

/**
 * The arguments every supervised dnsmasq starts with: in the foreground (so the
 * runner owns it), no configuration file, no DNS service (`--port=0`: the VM
 * gets the pod's own name servers), its pid and lease files in the state dir,
 * bound only to the interfaces named after these. `--no-ping`: each backend
 * leases one fixed address to one MAC, so the ICMP probe before an offer
 * guards against nothing, and without it dnsmasq needs no CAP_NET_RAW.
 */
export function dnsmasqBaseArgs(pidFile: string, leaseFile: string): string[] {
  return ['--keep-in-foreground', '--conf-file=/dev/null', '--port=0', `--pid-file=${pidFile}`, `--dhcp-leasefile=${leaseFile}`, '--bind-interfaces', '--no-ping'];
}

/** The capabilities without which dnsmasq keeps podvisor's user (see the module comment). */
export const DNSMASQ_PRIVILEGE_DROP_CAPABILITIES = ['CAP_SETUID', 'CAP_SETGID', 'CAP_KILL'] as const;

/**
 * The arguments that keep dnsmasq from changing its user and group, when
 * podvisor's effective capabilities (`mask`) lack any of
 * `DNSMASQ_PRIVILEGE_DROP_CAPABILITIES`; none when it has them all, or when
 * the mask is unknown (dnsmasq's own default, the drop to `nobody`). Pure.
 */
export function dnsmasqUserArgs(mask: bigint | undefined): string[] {
  return mask === undefined || hasCapabilities(mask, DNSMASQ_PRIVILEGE_DROP_CAPABILITIES) ? [] : ['--user=', '--group='];
}

export interface DnsmasqSupervisorOptions {
  runner: ProcessRunner;
  log: Logger;
  hooks: Pick<NetworkHooks, 'warn' | 'notice'>;
  /** The arguments after `dnsmasq`; must contain `--pid-file=<pidFile>`. */
  args: readonly string[];
  pidFile: string;
  /** The error code for a dnsmasq that cannot start, e.g. `ERR_NAT_DNSMASQ`. */
  errorCode: string;
  /** What to check when dnsmasq cannot start (goes into the error's hint). */
  startHint?: string;
  /** Restarts in a row before giving up. Default 5. */
  maxRestarts?: number;
  /** The first restart delay, doubled each time. Default 200 ms. */
  backoffMs?: number;
  /** The longest restart delay. Default 5 s. */
  maxBackoffMs?: number;
  /** A run this long resets the count of restarts in a row. Default 60 s. */
  stableMs?: number;
  /** How long dnsmasq may take to write its pid file. Default 5 s. */
  readyTimeoutMs?: number;
  /** podvisor's effective capabilities, which decide `dnsmasqUserArgs`. Default: read from /proc/self/status. */
  capabilities?: bigint;
  /** Reads the time and sleeps: the readiness poll and the restart backoff. Default: the system clock. */
  clock?: Clock;
}

const POLL_MS = 20;

export class DnsmasqSupervisor {
  private child: ChildHandle | undefined;
  private stopped = false;
  private restartsInARow = 0;
  /** Aborts the restart backoff's sleep when the supervision stops. */
  private backoff: AbortController | undefined;
  private pending: Promise<void> = Promise.resolve();
  private userLogged = false;
  private readonly ownerToken = randomUUID();

  private readonly clock: Clock;

  constructor(private readonly o: DnsmasqSupervisorOptions) {
    this.clock = o.clock ?? new SystemClock();
  }

  /** The running dnsmasq's pid, if any. */
  get pid(): number | undefined {
    return this.child?.running === true ? this.child.pid : undefined;
  }

  /**
   * Starts dnsmasq and waits until it serves. Throws `errorCode` (with
   * dnsmasq's stderr) when it exits or stays silent instead; nothing is left
   * running then. Takes over the pid file from any earlier supervisor.
   */
  async start(): Promise<void> {
    this.stopped = false;
    await writeFile(dnsmasqOwnerFile(this.o.pidFile), `${this.ownerToken}\n`).catch((err: unknown) => {
      throw new PodvisorError(this.o.errorCode, `cannot write ${dnsmasqOwnerFile(this.o.pidFile)}: ${(err as Error).message}`, { cause: err });
    });
    const child = await this.launch();
    this.watch(child);
  }

  /**
   * Stops supervising and stops dnsmasq (SIGTERM, then SIGKILL after 2 s).
   * Bounded: a dnsmasq that cannot be signalled is left running after another
   * 2 s, with a `WARN_DNSMASQ_NOT_STOPPED` warning. Safe to call twice.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    this.backoff?.abort();
    await this.pending;
    const child = this.child;
    this.child = undefined;
    if (child !== undefined && (await terminateChild(child, 2000)) === 'survived') {
      this.o.hooks.warn({
        code: 'WARN_DNSMASQ_NOT_STOPPED',
        message: `dnsmasq (pid ${child.pid}) did not stop on SIGTERM or SIGKILL; teardown goes on without it`,
        hint: UNKILLABLE_HINT,
      });
    }
    if (await this.owns()) await rm(dnsmasqOwnerFile(this.o.pidFile), { force: true });
  }

  /** The argv after `dnsmasq`: the backend's, and the user to keep when podvisor cannot drop privileges. */
  private args(): string[] {
    const user = dnsmasqUserArgs(this.o.capabilities ?? ownEffectiveCapabilities());
    if (user.length > 0 && !this.userLogged) {
      this.userLogged = true;
      this.o.log.info('dnsmasq keeps podvisor\'s user: podvisor lacks one of CAP_SETUID, CAP_SETGID, CAP_KILL, needed to drop it to nobody and signal it after');
    }
    return [...this.o.args, ...user];
  }

  private async launch(): Promise<ChildHandle> {
    await rm(this.o.pidFile, { force: true });
    const child = await this.o.runner.spawn('dnsmasq', this.args(), { name: 'dnsmasq', stdout: 'ignore' }).catch((err: unknown) => {
      throw new PodvisorError(this.o.errorCode, `cannot start dnsmasq: ${(err as Error).message}`, { cause: err });
    });
    this.child = child;
    const deadline = this.clock.now().getTime() + (this.o.readyTimeoutMs ?? 5000);
    for (;;) {
      if (!child.running) {
        const exit = await child.exited;
        throw new PodvisorError(
          this.o.errorCode,
          `dnsmasq exited while starting (${exit.signal ?? `exit ${exit.code}`}): ${exit.stderrTail.trim() || '(no output)'}`,
          { hint: this.o.startHint ?? 'the argv is in the details; dnsmasq-base must be installed', details: { argv: child.argv } },
        );
      }
      if ((await readPid(this.o.pidFile)) !== undefined) return child;
      if (this.clock.now().getTime() > deadline) {
        if ((await terminateChild(child, 1000)) === 'survived') this.o.log.error('a dnsmasq that did not start could not be stopped', { pid: child.pid, hint: UNKILLABLE_HINT });
        throw new PodvisorError(this.o.errorCode, `dnsmasq did not write ${this.o.pidFile} within ${this.o.readyTimeoutMs ?? 5000} ms: ${child.stderrTail().trim()}`, {
          details: { argv: child.argv },
        });
      }
      await this.clock.sleep(POLL_MS);
    }
  }

  private watch(child: ChildHandle): void {
    const startedAt = this.clock.now().getTime();
    void child.exited.then((exit) => {
      if (this.stopped || this.child !== child) return;
      this.pending = this.onExit(exit, this.clock.now().getTime() - startedAt, child.pid);
    });
  }

  private async onExit(exit: { code: number | null; signal: string | null; stderrTail: string }, ranMs: number, pid: number): Promise<void> {
    const how = exit.signal ?? `exit ${exit.code}`;
    if (!(await this.stillOwner(pid, how))) return;
    if (ranMs >= (this.o.stableMs ?? 60_000)) this.restartsInARow = 0;
    const max = this.o.maxRestarts ?? 5;
    if (this.restartsInARow >= max) {
      this.o.hooks.warn({
        code: 'WARN_DNSMASQ_GAVE_UP',
        message: `dnsmasq exited (${how}) after ${max} restarts in a row; the VM will get no DHCP lease renewals`,
        hint: `dnsmasq said: ${exit.stderrTail.trim().split('\n').slice(-3).join(' | ') || '(nothing)'}`,
      });
      return;
    }
    const wait = Math.min((this.o.backoffMs ?? 200) * 2 ** this.restartsInARow, this.o.maxBackoffMs ?? 5000);
    this.restartsInARow += 1;
    this.o.log.warn('dnsmasq exited, restarting', { pid, exit: how, inMs: wait, restart: this.restartsInARow });
    this.backoff = new AbortController();
    // An abort (stop) ends the wait early; what follows checks `stopped`.
    await this.clock.sleep(wait, this.backoff.signal).catch(() => undefined);
    this.backoff = undefined;
    if (this.stopped || !(await this.stillOwner(pid, how))) return;
    try {
      const next = await this.launch();
      if (this.stopped) {
        if ((await terminateChild(next, 1000)) === 'survived') this.o.log.error('a restarted dnsmasq could not be stopped', { pid: next.pid, hint: UNKILLABLE_HINT });
        return;
      }
      this.watch(next);
      this.o.hooks.notice({
        code: 'NOTICE_DNSMASQ_RESTARTED',
        message: `dnsmasq (pid ${pid}) exited (${how}); restarted as pid ${next.pid} (restart ${this.restartsInARow} of at most ${max} in a row)`,
      });
    } catch (err) {
      this.o.log.error('dnsmasq restart failed', { err });
      if (!this.stopped) await this.onExit({ code: null, signal: null, stderrTail: (err as Error).message }, 0, pid);
    }
  }

  private async owns(): Promise<boolean> {
    const token = await readFile(dnsmasqOwnerFile(this.o.pidFile), 'utf8').then(
      (text) => text.trim(),
      () => undefined,
    );
    return token === this.ownerToken;
  }

  private async stillOwner(pid: number, how: string): Promise<boolean> {
    if (await this.owns()) return true;
    this.o.log.info('dnsmasq exited and this backend no longer owns the network; not restarting', { pid, exit: how, pidFile: this.o.pidFile });
    return false;
  }
}

/** The file that names the supervisor owning `pidFile`. */
export function dnsmasqOwnerFile(pidFile: string): string {
  return `${pidFile}.owner`;
}

/**
 * Stops a dnsmasq left behind by an earlier run: first removes the owner
 * token, so that a supervisor still watching it does not restart it; then the
 * pid in `pidFile` is signalled only if `/proc/<pid>/cmdline` shows dnsmasq
 * started with that same pid file. Removes the pid file. Returns the pid it
 * stopped, if any. Never throws for "already gone".
 */
export async function stopStrayDnsmasq(pidFile: string, log: Logger, clock: Clock = new SystemClock()): Promise<number | undefined> {
  await rm(dnsmasqOwnerFile(pidFile), { force: true });
  return stopStrayProcess({ pidFile, program: 'dnsmasq', marker: `--pid-file=${pidFile}` }, log, clock);
}
