/**
 * The macvtap backend's dnsmasq, kept running while the network is attached:
 * spawned through the core `ProcessRunner` in the foreground, counted as
 * serving once it has written its pid file (after binding its DHCP socket),
 * and restarted with a doubling delay, a bounded number of times, when it
 * dies on its own (each restart is a notice). `stopStrayDnsmasq` stops one
 * left by a crashed run, after checking through /proc that the pid really is
 * a dnsmasq started with that pid file. The nat-bridge plugin has the same
 * needs; this belongs in core once both can share it.
 */
import { readFile, rm } from 'node:fs/promises';
import { PodvisorError, type ChildHandle, type Logger, type NetworkHooks, type ProcessRunner } from '@podvisor/core';

export interface MacvtapDhcpServerOptions {
  runner: ProcessRunner;
  log: Logger;
  hooks: Pick<NetworkHooks, 'warn' | 'notice'>;
  /** The arguments after `dnsmasq`, with `--pid-file=<pidFile>`. */
  args: readonly string[];
  pidFile: string;
  /** Restarts in a row before giving up (default 5). */
  maxRestarts?: number;
  readyTimeoutMs?: number;
}

const POLL_MS = 20;

export class MacvtapDhcpServer {
  private child: ChildHandle | undefined;
  private stopped = false;
  private restarts = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly o: MacvtapDhcpServerOptions) {}

  get pid(): number | undefined {
    return this.child?.running === true ? this.child.pid : undefined;
  }

  /** Starts dnsmasq and waits until it serves. Throws `ERR_MACVTAP_DNSMASQ` with its stderr; nothing is left running then. */
  async start(): Promise<void> {
    this.stopped = false;
    this.watch(await this.launch());
  }

  /** Stops supervising and stops dnsmasq. Safe to call twice. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    const child = this.child;
    this.child = undefined;
    if (child !== undefined) await terminate(child);
  }

  private async launch(): Promise<ChildHandle> {
    await rm(this.o.pidFile, { force: true });
    const child = await this.o.runner.spawn('dnsmasq', this.o.args, { name: 'dnsmasq', stdout: 'ignore' });
    this.child = child;
    const timeoutMs = this.o.readyTimeoutMs ?? 5000;
    const deadline = Date.now() + timeoutMs;
    while ((await readPid(this.o.pidFile)) === undefined) {
      if (!child.running || Date.now() > deadline) {
        await terminate(child);
        const exit = await child.exited;
        throw new PodvisorError('ERR_MACVTAP_DNSMASQ', `dnsmasq ${child.running ? `did not write ${this.o.pidFile} within ${timeoutMs} ms` : `exited while starting (${exit.signal ?? `exit ${exit.code}`})`}: ${exit.stderrTail.trim() || '(no output)'}`, {
          hint: 'dnsmasq-base must be installed, and the sibling macvlans must exist',
          details: { argv: child.argv },
        });
      }
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
    return child;
  }

  private watch(child: ChildHandle): void {
    void child.exited.then(async (exit) => {
      if (this.stopped || this.child !== child) return;
      const how = exit.signal ?? `exit ${exit.code}`;
      const max = this.o.maxRestarts ?? 5;
      if (this.restarts >= max) {
        this.o.hooks.warn({ code: 'WARN_DNSMASQ_GAVE_UP', message: `dnsmasq exited (${how}) after ${max} restarts; the VM gets no more DHCP answers`, hint: exit.stderrTail.trim().split('\n').slice(-3).join(' | ') });
        return;
      }
      const wait = Math.min(200 * 2 ** this.restarts, 5000);
      this.restarts += 1;
      await new Promise<void>((r) => {
        this.timer = setTimeout(r, wait);
      });
      if (this.stopped) return;
      try {
        const next = await this.launch();
        this.watch(next);
        this.o.hooks.notice({ code: 'NOTICE_DNSMASQ_RESTARTED', message: `dnsmasq (pid ${child.pid}) exited (${how}); restarted as pid ${next.pid}` });
      } catch (err) {
        this.o.hooks.warn({ code: 'WARN_DNSMASQ_GAVE_UP', message: `dnsmasq exited (${how}) and could not be restarted: ${(err as Error).message}` });
      }
    });
  }
}

/** Stops the dnsmasq named by `pidFile` if /proc shows it is one started with that pid file; removes the pid file. Never throws for "already gone". */
export async function stopStrayDnsmasq(pidFile: string, log: Logger): Promise<number | undefined> {
  const pid = await readPid(pidFile);
  let stopped: number | undefined;
  if (pid !== undefined) {
    const argv: string[] = await readFile(`/proc/${pid}/cmdline`, 'utf8').then((t) => t.split('\0'), () => []);
    if ((argv[0] ?? '').endsWith('dnsmasq') && argv.includes(`--pid-file=${pidFile}`)) {
      log.info('stopping a dnsmasq left by an earlier run', { pid, pidFile });
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
      stopped = pid;
    }
  }
  await rm(pidFile, { force: true });
  return stopped;
}

async function readPid(pidFile: string): Promise<number | undefined> {
  const text = await readFile(pidFile, 'utf8').catch(() => '');
  const pid = Number(text.trim());
  return text.trim() !== '' && Number.isInteger(pid) && pid > 1 ? pid : undefined;
}

async function terminate(child: ChildHandle): Promise<void> {
  if (!child.running) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 2000);
  await child.exited;
  clearTimeout(timer);
}
