/**
 * The `passt` network backend (KubeVirt's passt binding): passt, a user-space
 * daemon in the pod's network namespace, gives the VM the pod's own IPv4
 * address, routes and name servers over DHCP, and carries its traffic through
 * ordinary sockets of the pod. qemu connects to passt's unix socket
 * (`-netdev stream`). No bridge, no tap, no nftables rule and no
 * `CAP_NET_ADMIN`: the VM's outbound traffic leaves from the pod's own
 * sockets (so, as the pod IP), and inbound connections to the forwarded ports
 * are accepted by passt and relayed to the guest.
 *
 * passt refuses to run as root: started by root, it drops to `nobody`, which
 * needs CAP_SETUID and CAP_SETGID; it binds its socket as that user, so the
 * socket's directory is chowned to it first (CAP_CHOWN), and podvisor needs
 * CAP_KILL to stop it after. Where podvisor lacks one of the four, passt runs
 * as podvisor's own user (`--runas`, explicit either way). Binding a forwarded
 * port below 1024 needs CAP_NET_BIND_SERVICE (passt keeps no capability after
 * it has bound them).
 */
import { access, chown, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { inject, injectable, optional } from 'inversify';
import {
  Clock,
  ConfigError,
  Logger,
  PodvisorError,
  ProcessRunner,
  SystemClock,
  UNKILLABLE_HINT,
  hasCapabilities,
  ownEffectiveCapabilities,
  terminateChild,
  type ChildHandle,
  type ConfigProblem,
  type NetworkAttachSpec,
  type NetworkAttachment,
  type NetworkBackend,
  type NetworkHooks,
  type Prerequisites,
} from '@podvisor/core';
import { ensureVmMac, networkStep, stopStrayProcess } from '@podvisor/net-support';
import { buildPasstArgs, lowestPort, passtPortCount, resolvePasstConfig, type PasstConfig } from './passt-config.js';

/** The capabilities without which passt keeps podvisor's user (see the module comment). */
export const PASST_PRIVILEGE_DROP_CAPABILITIES = ['CAP_SETUID', 'CAP_SETGID', 'CAP_KILL', 'CAP_CHOWN'] as const;

/**
 * Where the backend keeps its files in the state dir: passt's socket, in a
 * directory of its own that passt's user owns (passt binds the socket after
 * it has dropped to that user), and the pid file podvisor writes.
 */
export function passtStatePaths(stateDir: string): { dir: string; socket: string; pidFile: string } {
  const dir = join(stateDir, 'passt');
  return { dir, socket: join(dir, 'passt.sock'), pidFile: join(stateDir, 'passt.pid') };
}

/**
 * The user passt runs as: `nobody` (`nobodyIds`) when podvisor may drop it
 * there and still stop it (its effective capabilities `mask` hold every one
 * of `PASST_PRIVILEGE_DROP_CAPABILITIES`, or are unknown), else podvisor's
 * own. Pure.
 */
export function passtUser(mask: bigint | undefined, own: { uid: number; gid: number }, nobodyIds: { uid: number; gid: number }): { uid: number; gid: number } {
  if (own.uid !== 0) return own;
  return mask === undefined || hasCapabilities(mask, PASST_PRIVILEGE_DROP_CAPABILITIES) ? nobodyIds : own;
}

/** The ids of `nobody` from /etc/passwd (65534:65534 when it is not listed). */
export async function nobodyIds(): Promise<{ uid: number; gid: number }> {
  const passwd = await readFile('/etc/passwd', 'utf8').catch(() => '');
  const m = /^nobody:[^:]*:(\d+):(\d+):/m.exec(passwd);
  return m === null ? { uid: 65534, gid: 65534 } : { uid: Number(m[1]), gid: Number(m[2]) };
}

/** The hard limit of open files of this process (`/proc/self/limits`), `undefined` when unknown or unlimited. */
export async function openFilesLimit(): Promise<number | undefined> {
  const text = await readFile('/proc/self/limits', 'utf8').catch(() => '');
  const m = /^Max open files\s+\S+\s+(\S+)/m.exec(text);
  return m === null || m[1] === 'unlimited' ? undefined : Number(m[1]);
}

const POLL_MS = 20;

@injectable()
export class PasstNetworkBackend implements NetworkBackend {
  readonly name = 'passt';
  private child: ChildHandle | undefined;
  private readonly clock: Clock;

  constructor(
    @inject(ProcessRunner) private readonly runner: ProcessRunner,
    @inject(Logger) private readonly log: Logger,
    @inject(Clock) @optional() clock?: Clock,
  ) {
    this.clock = clock ?? new SystemClock();
  }

  /** podvisor's effective capabilities, which decide `passtUser` (tests may set them). */
  capabilities: bigint | undefined = ownEffectiveCapabilities();

  validate(spec: NetworkAttachSpec): ConfigProblem[] {
    return resolvePasstConfig(spec).problems;
  }

  prerequisites(spec: NetworkAttachSpec): Prerequisites {
    const { config } = resolvePasstConfig(spec);
    const low = config === undefined ? undefined : Math.min(lowestPort(config.tcp) ?? 65536, lowestPort(config.udp) ?? 65536);
    return {
      binaries: [{ name: 'passt', why: 'gives the VM the pod IP and relays its traffic through the pod\'s sockets' }],
      capabilities: low !== undefined && low < 1024 ? [{ name: 'NET_BIND_SERVICE', why: `passt binds the forwarded port ${low} (below 1024)` }] : [],
    };
  }

  async attach(spec: NetworkAttachSpec, hooks: NetworkHooks): Promise<NetworkAttachment> {
    spec.signal?.throwIfAborted();
    const { config, problems } = resolvePasstConfig(spec);
    if (config === undefined) throw new ConfigError(problems);
    const paths = passtStatePaths(spec.stateDir);
    try {
      await this.step(spec, 'ERR_PASST_FILE_DESCRIPTORS', 'open a socket per forwarded port', () => this.checkOpenFiles(config));
      const pod = await this.step(spec, 'ERR_PASST_POD_ADDRESS', 'read the pod\'s address', () => this.podAddress());
      await this.step(spec, 'ERR_PASST_STATE_DIR', `prepare ${spec.stateDir}`, () => mkdir(spec.stateDir, { recursive: true }));
      await this.step(spec, 'ERR_PASST_START', 'start passt', () => this.start(config, paths, hooks));
      const { mac } = await this.step(spec, 'ERR_PASST_MAC_FILE', 'persist the VM\'s MAC address', () => ensureVmMac(spec.diskDir, spec.vmName, { file: 'ERR_PASST_MAC_FILE', invalid: 'ERR_PASST_MAC_INVALID' }));
      return {
        nics: [{ id: 'net0', mac, backend: { kind: 'stream', path: paths.socket }, addresses: [pod.cidr] }],
        detail: { podInterface: pod.ifname, podIp: pod.ip, socket: paths.socket, tcpPorts: config.tcp, udpPorts: config.udp, keptByPod: config.reservedTcp.map((p) => `tcp/${p}`) },
      };
    } catch (err) {
      await this.detach(spec);
      throw err;
    }
  }

  async detach(spec: NetworkAttachSpec): Promise<void> {
    const paths = passtStatePaths(spec.stateDir);
    const child = this.child;
    this.child = undefined;
    if (child !== undefined && (await terminateChild(child, 2000)) === 'survived') {
      this.log.error('passt did not stop on SIGTERM or SIGKILL; teardown goes on without it', { pid: child.pid, hint: UNKILLABLE_HINT });
    }
    await stopStrayProcess({ pidFile: paths.pidFile, program: 'passt', marker: `--socket=${paths.socket}` }, this.log, this.clock);
    await rm(paths.dir, { recursive: true, force: true });
  }

  private async start(config: PasstConfig, paths: { dir: string; socket: string; pidFile: string }, hooks: NetworkHooks): Promise<void> {
    const own = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
    const user = passtUser(this.capabilities, own, await nobodyIds());
    await rm(paths.dir, { recursive: true, force: true });
    await mkdir(paths.dir, { mode: 0o700 });
    if (user.uid !== own.uid || user.gid !== own.gid) await chown(paths.dir, user.uid, user.gid);
    const args = [...buildPasstArgs({ socket: paths.socket, config }), '--runas', `${user.uid}:${user.gid}`];
    const child = await this.runner.spawn('passt', args, { name: 'passt', stdout: 'ignore' });
    this.child = child;
    // passt drops to nobody before it could write a pid file of its own, so podvisor writes it (for a crashed run's cleanup).
    await writeFile(paths.pidFile, `${child.pid}\n`);
    const deadline = this.clock.now().getTime() + 10_000;
    for (;;) {
      if (!child.running) {
        const exit = await child.exited;
        throw new PodvisorError('ERR_PASST_START', `passt exited while starting (${exit.signal ?? `exit ${exit.code}`}): ${passtSaid(exit.stderrTail)}`, {
          hint: 'the argv is in the details; the passt package must be installed',
          details: { argv: child.argv },
        });
      }
      if (await exists(paths.socket)) break;
      if (this.clock.now().getTime() > deadline) {
        throw new PodvisorError('ERR_PASST_START', `passt did not create ${paths.socket} within 10 s: ${passtSaid(child.stderrTail())}`, { details: { argv: child.argv } });
      }
      await this.clock.sleep(POLL_MS);
    }
    void child.exited.then((exit) => {
      if (this.child !== child) return;
      hooks.warn({
        code: 'WARN_PASST_EXITED',
        message: `passt (pid ${child.pid}) exited (${exit.signal ?? `exit ${exit.code}`}); the VM has no network until podvisor restarts: ${passtSaid(exit.stderrTail)}`,
        hint: 'restart the pod',
      });
    });
  }

  private async checkOpenFiles(config: PasstConfig): Promise<void> {
    const needed = passtPortCount(config.tcp, config.reservedTcp) + passtPortCount(config.udp, []) + 64;
    const limit = await openFilesLimit();
    if (limit !== undefined && needed > limit) {
      throw new PodvisorError('ERR_PASST_FILE_DESCRIPTORS', `passt needs about ${needed} open files for the forwarded ports, but the limit is ${limit}`, {
        hint: 'name the ports the VM serves (PASST_TCP_PORTS=22,80 PASST_UDP_PORTS=none), or raise the container\'s nofile limit',
      });
    }
  }

  /** The pod's interface with the default route, and its first IPv4 address: what passt hands to the guest. */
  private async podAddress(): Promise<{ ifname: string; ip: string; cidr: string }> {
    const routes = JSON.parse((await this.runner.run('ip', ['-j', '-4', 'route', 'show', 'default'])).stdout || '[]') as Array<{ dev?: string }>;
    const ifname = routes[0]?.dev;
    if (ifname === undefined) throw new PodvisorError('ERR_PASST_POD_ADDRESS', 'the pod has no IPv4 default route, so passt has no address to give the VM');
    const links = JSON.parse((await this.runner.run('ip', ['-j', '-4', 'addr', 'show', 'dev', ifname])).stdout || '[]') as Array<{ addr_info?: Array<{ local: string; prefixlen: number }> }>;
    const addr = links[0]?.addr_info?.[0];
    if (addr === undefined) throw new PodvisorError('ERR_PASST_POD_ADDRESS', `${ifname}, the pod's default route interface, has no IPv4 address`);
    return { ifname, ip: addr.local, cidr: `${addr.local}/${addr.prefixlen}` };
  }

  private step<T>(spec: NetworkAttachSpec, code: string, what: string, fn: () => Promise<T>): Promise<T> {
    return networkStep({ backend: 'passt', codePrefix: 'ERR_PASST_', code, what, ...(spec.signal === undefined ? {} : { signal: spec.signal }) }, fn);
  }
}

/** passt's stderr without the lines about a missing syslog. */
function passtSaid(stderr: string): string {
  return stderr.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('Failed to send')).slice(-4).join(' | ') || '(no output)';
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}
