/**
 * The WireGuard interface, in the kernel when it has WireGuard and in user
 * space (`wireguard-go -f`, a child of podvisor) when it does not. Both are
 * configured the same way, with `wg`, which talks netlink to the kernel and
 * the control socket `/var/run/wireguard/<name>.sock` to wireguard-go. A
 * wireguard-go left behind by a crashed run is found through its pid file
 * and stopped, after checking that the pid is that wireguard-go.
 */
import { writeFile } from 'node:fs/promises';
import { PodvisorError, errorMessage, terminateChild, type ChildHandle, type Clock, type Logger, type ProcessRunner } from '@podvisor/core';
import { stopStrayProcess } from '@podvisor/net-support';
import type { WireguardChoice } from './l2-segment-settings.js';

export type WireguardImplementation = 'kernel' | 'userspace';

/** `auto` tries the kernel first; the kernel's refusal is kept for the error when user space fails too. Pure. */
export function wireguardOrder(choice: WireguardChoice): WireguardImplementation[] {
  return choice === 'auto' ? ['kernel', 'userspace'] : [choice];
}

export interface WireguardDeviceOptions {
  runner: ProcessRunner;
  log: Logger;
  clock: Clock;
  name: string;
  pidFile: string;
  signal?: AbortSignal;
}

const POLL_MS = 20;
const READY_MS = 10_000;

/** One WireGuard interface; `create` once, `destroy` any number of times. */
export class WireguardDevice {
  private child: ChildHandle | undefined;
  implementation: WireguardImplementation | undefined;

  constructor(private readonly o: WireguardDeviceOptions) {}

  get name(): string {
    return this.o.name;
  }

  /** The running wireguard-go, when the interface lives in user space. */
  get userspaceChild(): ChildHandle | undefined {
    return this.child;
  }

  /** Creates the interface. Throws `ERR_L2_WIREGUARD` naming what each implementation said. */
  async create(choice: WireguardChoice): Promise<WireguardImplementation> {
    const refusals: string[] = [];
    for (const impl of wireguardOrder(choice)) {
      try {
        if (impl === 'kernel') await this.o.runner.run('ip', ['link', 'add', 'dev', this.o.name, 'type', 'wireguard'], { ...(this.o.signal === undefined ? {} : { signal: this.o.signal }) });
        else await this.startUserspace();
        this.implementation = impl;
        return impl;
      } catch (err) {
        refusals.push(`${impl}: ${errorMessage(err).trim()}`);
        this.o.log.info('wireguard implementation unavailable', { implementation: impl, err: errorMessage(err) });
      }
    }
    throw new PodvisorError('ERR_L2_WIREGUARD', `l2-segment: cannot create the WireGuard interface ${this.o.name}: ${refusals.join('; ')}`, {
      hint: 'the kernel needs the wireguard module, or the container needs wireguard-go (Debian: wireguard-go) and /dev/net/tun; see docs/l2-segment.md',
    });
  }

  /** wireguard-go in the foreground, owned by the runner; ready once its interface exists. */
  private async startUserspace(): Promise<void> {
    const child = await this.o.runner.spawn('wireguard-go', ['-f', this.o.name], { name: 'wireguard-go', stdout: 'ignore' });
    this.child = child;
    await writeFile(this.o.pidFile, `${child.pid}\n`);
    const deadline = this.o.clock.now().getTime() + READY_MS;
    for (;;) {
      if (!child.running) {
        const exit = await child.exited;
        this.child = undefined;
        throw new Error(`wireguard-go exited while starting (${exit.signal ?? `exit ${exit.code}`}): ${exit.stderrTail.trim() || '(no output)'}`);
      }
      const out = await this.o.runner.run('ip', ['link', 'show', 'dev', this.o.name], { check: false });
      if (out.exitCode === 0) return;
      if (this.o.clock.now().getTime() > deadline) {
        await terminateChild(child, 1000);
        this.child = undefined;
        throw new Error(`wireguard-go did not create ${this.o.name} within ${READY_MS} ms: ${child.stderrTail().trim()}`);
      }
      await this.o.clock.sleep(POLL_MS);
    }
  }

  /**
   * Deletes the interface unless the caller did (wireguard-go exits when its
   * interface goes) and stops this run's wireguard-go, or an earlier run's found through the pid
   * file. Never throws for "already gone".
   */
  async destroy(options: { linkDeleted?: boolean } = {}): Promise<void> {
    if (options.linkDeleted !== true) await this.o.runner.run('ip', ['link', 'del', 'dev', this.o.name], { check: false }).catch(() => undefined);
    const child = this.child;
    this.child = undefined;
    if (child !== undefined) await terminateChild(child, 2000);
    await stopStrayWireguard(this.o.pidFile, this.o.name, this.o.log, this.o.clock);
    this.implementation = undefined;
  }
}

/** Stops the wireguard-go of `pidFile` when `/proc/<pid>/cmdline` shows it serving `name`; removes the pid file. */
export async function stopStrayWireguard(pidFile: string, name: string, log: Logger, clock: Clock): Promise<void> {
  await stopStrayProcess({ pidFile, program: 'wireguard-go', marker: name }, log, clock);
}
