/**
 * The macvtap network backend (BBVA docker-kvm / KubeVirt macvtap design):
 * the VM takes the pod's own interfaces. For each attached pod interface, a
 * macvtap in bridge mode carries the interface's original MAC (a macvtap
 * cannot share its lower device's MAC, so the pod interface gets a random
 * one), the VM's NIC gets the interface's address from a supervised dnsmasq
 * listening on a sibling macvlan (the lower device's own stack cannot reach
 * the VM; a sibling can), and the pod keeps a derived, non-conflicting
 * address on that sibling. qemu receives each macvtap's `/dev/tapN` as an
 * open file descriptor, plus `/dev/vhost-net` when it opens. A container's
 * /dev has no udev, so when it lacks the right `/dev/tapN` the backend makes
 * a private node with `mknod` in a fresh directory under /dev (a tmpfs that
 * runc mounts without `nodev`; volumes are mounted `nodev`), opens it and
 * removes it at once: the open fd is all qemu needs, and no node outlives
 * the open. A dual-stack interface also hands the VM its IPv6 address: the
 * sibling is the VM's IPv6 router (dnsmasq's router advertisements with the M
 * flag, DHCPv6 for the address), and the pod namespace forwards the VM's
 * IPv6 traffic to the pod's own IPv6 gateway (net.ipv6.conf.all.forwarding,
 * its old value kept in the state dir); when forwarding cannot be turned on,
 * the IPv6 addresses stay with the pod and a warning says so. Before touching
 * anything, attach records the pod's interfaces (MACs, addresses, routes) in
 * the state dir; detach puts them back from that record, so it also undoes a
 * crashed run. Every host change goes through the
 * injected `ProcessRunner` (`ip`, `mknod`, `cat` of sysfs, `sysctl`, `dnsmasq`), in
 * whatever namespace it runs commands.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, constants, openSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { inject, injectable, optional } from 'inversify';
import {
  Clock,
  SystemClock,
  ConfigError,
  Logger,
  PodvisorError,
  ProcessRunner,
  errorMessage,
  hasCapabilities,
  isPodvisorError,
  ownEffectiveCapabilities,
  type ConfigProblem,
  type NetworkAttachSpec,
  type NetworkAttachment,
  type NetworkBackend,
  type NetworkHooks,
  type Prerequisites,
  type ProbeFinding,
  type VmNic,
} from '@podvisor/core';
import {
  DnsmasqSupervisor,
  DNSMASQ_PREREQUISITES,
  enableSysctlsKeepingPrevious,
  networkStep,
  parseResolvConf,
  restoreKeptSysctls,
  stopStrayDnsmasq,
  type KeptSysctl,
  type PodResolvConf,
} from '@podvisor/net-support';
import { resolveMacvtapConfig } from './macvtap-config.js';
import { buildMacvtapDnsmasqArgs, type MacvtapDhcpNic } from './macvtap-dnsmasq-args.js';
import {
  isMacvtapBackendLink,
  MACVTAP_PROBE_PREFIX,
  parsePodInterfaces,
  parsePodRoutes,
  planMacvtapNics,
  restorableRoutes,
  routeReplaceArgs,
  type MacvtapNicPlan,
  type PodAddress,
  type PodInterface,
  type PodRoute,
} from './pod-network.js';

/**
 * What attach records before it changes anything, so that detach (even after
 * a crash) can put it back. Version 2 adds the IPv6 addresses the VM took
 * (`addresses6`) and the interface's IPv6 routes (`family: 'inet6'`);
 * a version 1 record (IPv4 only) is still read.
 */
export interface MacvtapRestoreRecord {
  version: 1 | 2;
  interfaces: { name: string; mac: string; addresses: PodAddress[]; addresses6?: PodAddress[]; routes: PodRoute[] }[];
}

/** The files the backend keeps in the state dir. */
export function macvtapStatePaths(stateDir: string): { record: string; pidFile: string; leaseFile: string; vncSocket: string; ipv6ForwardFile: string } {
  return {
    record: join(stateDir, 'macvtap-restore.json'),
    pidFile: join(stateDir, 'macvtap-dnsmasq.pid'),
    leaseFile: join(stateDir, 'macvtap-dnsmasq.leases'),
    vncSocket: join(stateDir, 'vnc.sock'),
    ipv6ForwardFile: join(stateDir, 'macvtap.ipv6_forward'),
  };
}

/** The sysctl a dual-stack pod needs for the VM's outbound IPv6, and the state file that keeps its old value. */
function ipv6Forwarding(stateDir: string): KeptSysctl {
  return { key: 'net.ipv6.conf.all.forwarding', file: macvtapStatePaths(stateDir).ipv6ForwardFile };
}

/**
 * Where private tap nodes are made: a container's /dev is a tmpfs without
 * `nodev` (a volume is mounted `nodev`, where a node cannot be opened).
 */
export const MACVTAP_NODE_PARENT = '/dev';

/** The device that gives qemu vhost-net acceleration. */
export const VHOST_NET_DEVICE = '/dev/vhost-net';

/**
 * What the backend needs from the host (checked by `podvisor doctor` before
 * anything is pulled). The macvtap character devices themselves appear only
 * once the links exist, with a major number the kernel chose, so their
 * device-cgroup access is not declared here: the backend's `probe()` tries it
 * with a throwaway link (and attach's ERR_MACVTAP_TAP_DEVICE names the rule
 * to grant too).
 */
export const MACVTAP_PREREQUISITES: Prerequisites = {
  binaries: [
    { name: 'ip', why: 'creates the macvtap and macvlan links, moves addresses and routes' },
    { name: 'mknod', why: 'makes a private tap node when /dev has no right /dev/tapN' },
    { name: 'cat', why: "reads the macvtap's device numbers from sysfs" },
    { name: 'sysctl', why: "turns on net.ipv6.conf.all.forwarding for a dual-stack pod (without it the VM gets IPv4 only)", optional: true },
    ...DNSMASQ_PREREQUISITES.binaries,
  ],
  capabilities: [
    { name: 'NET_ADMIN', why: "links, addresses, routes in the pod's namespace; dnsmasq's ARP entries" },
    { name: 'MKNOD', why: 'the private /dev/tapN node: a container /dev has no udev' },
    ...DNSMASQ_PREREQUISITES.capabilities,
  ],
  devices: [
    {
      path: VHOST_NET_DEVICE,
      why: "vhost-net acceleration of the VM's NICs (without it they work, with lower throughput)",
      fix: `load vhost_net on the node (modprobe vhost-net) and give the container ${VHOST_NET_DEVICE} (a hostPath CharDevice or a device plugin; docker: --device ${VHOST_NET_DEVICE})`,
      optional: true,
    },
  ],
};

@injectable()
export class MacvtapNetworkBackend implements NetworkBackend {
  readonly name = 'macvtap';
  private readonly log: Logger;
  private dhcp: DnsmasqSupervisor | undefined;
  /** The fds this process holds for qemu (taps and vhost-net), closed by detach. */
  private fds: number[] = [];

  constructor(
    @inject(ProcessRunner) private readonly runner: ProcessRunner,
    @inject(Logger) log: Logger,
    @inject(Clock) @optional() private readonly clock: Clock = new SystemClock(),
  ) {
    this.log = log.child({ name: 'MacvtapNetworkBackend' });
  }

  /** Pure; see `resolveMacvtapConfig`. Interface names are checked against the pod at the start of `attach`. */
  validate(spec: NetworkAttachSpec): ConfigProblem[] {
    return resolveMacvtapConfig(spec).problems;
  }

  /** Pure: what attach and its dnsmasq need from the host; the same for every spec. */
  prerequisites(): Prerequisites {
    return MACVTAP_PREREQUISITES;
  }

  /**
   * Undoes leftovers of an earlier run, then reads the pod's interfaces and
   * throws a `ConfigError` (naming the interface and listing the pod's) when
   * a named interface does not exist or SELECTED_NETWORK matches nothing:
   * nothing has changed then. Otherwise records the pod's interfaces in the
   * state dir, and for each attached one: gives it a random MAC, creates
   * macvtap `pvmvt<ifindex>` (its original MAC) and macvlan `pvmvl<ifindex>`
   * (the derived address), moves the VM's address off it, and opens its tap
   * device (a private node under /dev when needed). Starts one dnsmasq.
   * Throws `ERR_MACVTAP_<STEP>` naming the interface or command; on failure
   * it has put everything back.
   */
  async attach(spec: NetworkAttachSpec, hooks: NetworkHooks): Promise<NetworkAttachment> {
    const { config, problems } = resolveMacvtapConfig(spec);
    if (config === undefined) throw new ConfigError(problems);
    const started = performance.now();
    await this.detach(spec);
    const paths = macvtapStatePaths(spec.stateDir);

    const interfaces = parsePodInterfaces((await this.ip(spec, '-j', '-d', 'addr', 'show')).stdout);
    const routes = parsePodRoutes((await this.ip(spec, '-j', '-4', 'route', 'show', 'table', 'main')).stdout);
    const routes6 = parsePodRoutes((await this.ip(spec, '-j', '-6', 'route', 'show', 'table', 'main')).stdout, 'inet6');
    const planned = planMacvtapNics(config, interfaces, routes);
    if (planned.problems.length > 0) {
      throw new ConfigError(planned.problems, { hint: 'name interfaces the pod has (see the list); nothing was changed' });
    }
    const resolv = await this.readResolvConf(config.resolvConf, hooks);
    // IPv6 is handed over only when dnsmasq can advertise (CAP_NET_RAW) and the pod can forward; else it stays with the pod.
    let ipv6 = planned.plans.some((plan) => plan.vmAddress6 !== undefined) && this.ipv6Possible(planned.plans, hooks);
    const withoutIpv6 = (plans: readonly MacvtapNicPlan[]): MacvtapNicPlan[] => plans.map((plan) => ({ ...plan, vmAddress6: undefined, siblingAddress6: undefined }));
    let plans = ipv6 ? planned.plans : withoutIpv6(planned.plans);

    try {
      if (ipv6 && !(await this.enableIpv6Forwarding(spec, plans, hooks))) {
        ipv6 = false;
        plans = withoutIpv6(plans);
      }
      await this.step(spec, 'ERR_MACVTAP_STATE_DIR', `record the pod interfaces in ${paths.record}`, async () => {
        await mkdir(spec.stateDir, { recursive: true });
        const record: MacvtapRestoreRecord = {
          version: 2,
          interfaces: plans.map(({ pod, vmAddress6 }) => ({
            name: pod.name,
            mac: pod.mac,
            addresses: pod.addresses,
            addresses6: vmAddress6 === undefined ? [] : [vmAddress6],
            routes: restorableRoutes([...routes, ...routes6], pod.name),
          })),
        };
        await writeFile(`${paths.record}.tmp`, `${JSON.stringify(record, null, 2)}\n`);
        await rename(`${paths.record}.tmp`, paths.record);
      });
      const vhost = this.vhostAvailable(hooks);
      const nics: VmNic[] = [];
      const dhcpNics: MacvtapDhcpNic[] = [];
      const details: Record<string, unknown>[] = [];
      for (const plan of plans) {
        const { tapPath, fd } = await this.attachOne(spec, plan, restorableRoutes(routes6, plan.pod.name));
        const vhostFd = vhost ? this.open(VHOST_NET_DEVICE) : undefined;
        const vmCidr = [plan.vmAddress, plan.vmAddress6].flatMap((a) => (a === undefined ? [] : [`${a.ip}/${a.prefix}`]));
        nics.push({ id: plan.id, mac: plan.pod.mac, backend: { kind: 'tap-fd', fd, ...(vhostFd === undefined ? {} : { vhostFd }) }, addresses: vmCidr });
        const v6 = plan.vmAddress6 !== undefined && plan.siblingAddress6 !== undefined ? { address: plan.vmAddress6, sibling: plan.siblingAddress6 } : undefined;
        if (plan.vmAddress !== undefined || v6 !== undefined) {
          dhcpNics.push({ tag: plan.id, listenOn: plan.links.macvlan, mac: plan.pod.mac, address: plan.vmAddress, ipv6: v6, gateway: plan.gateway, routes: plan.vmRoutes, mtu: plan.pod.mtu });
        }
        details.push({
          podInterface: plan.pod.name,
          mac: plan.pod.mac,
          addresses: vmCidr,
          sibling: plan.siblingAddress === undefined ? null : `${plan.siblingAddress.ip}/${plan.siblingAddress.prefix}`,
          ...(v6 === undefined ? {} : { sibling6: `${v6.sibling.ip}/${v6.sibling.prefix}` }),
          macvtap: plan.links.macvtap,
          macvlan: plan.links.macvlan,
          tapDevice: tapPath,
          routes: plan.vmRoutes.map((r) => `${r.dst} via ${r.gateway}`),
          vhost: vhostFd !== undefined,
        });
      }

      const hostname = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(spec.vmName) ? spec.vmName : undefined;
      const args = buildMacvtapDnsmasqArgs({
        nics: dhcpNics,
        hostname,
        pidFile: paths.pidFile,
        leaseFile: paths.leaseFile,
        dnsServers: resolv.nameservers,
        dnsServers6: resolv.nameservers6,
        searchDomains: resolv.search,
      });
      if (args !== undefined) {
        const dhcp = new DnsmasqSupervisor({
          runner: this.runner,
          clock: this.clock,
          log: this.log,
          hooks,
          args,
          pidFile: paths.pidFile,
          errorCode: 'ERR_MACVTAP_DNSMASQ',
          startHint: 'dnsmasq-base must be installed, and the sibling macvlans must exist',
        });
        this.dhcp = dhcp;
        await this.step(spec, 'ERR_MACVTAP_DNSMASQ', `start dnsmasq on ${dhcpNics.map((n) => n.listenOn).join(', ')}`, () => dhcp.start());
      }

      const attachment: NetworkAttachment = {
        nics,
        // The VM owns the pod's addresses: VNC goes to a unix socket, as QMP does.
        vnc: spec.vnc.enabled ? { kind: 'unix', path: paths.vncSocket } : undefined,
        detail: {
          interfaces: details,
          ipv6,
          dhcp: { dnsServers: resolv.nameservers, ...(ipv6 ? { dnsServers6: resolv.nameservers6 } : {}), searchDomains: resolv.search, dnsmasqPid: this.dhcp?.pid ?? null },
        },
      };
      this.log.info('attached', { ...attachment.detail, durationMs: Math.round(performance.now() - started) });
      return attachment;
    } catch (err) {
      await this.detach(spec).catch((cleanupErr: unknown) => this.log.error('cleanup after a failed attach failed', { err: cleanupErr }));
      throw err;
    }
  }

  /**
   * Stops dnsmasq (this run's, or a leftover found through its pid file),
   * closes the tap and vhost fds, deletes every `pvmvt*`/`pvmvl*` link, and,
   * when the state dir holds a record of the pod's interfaces, gives them
   * back their MACs, addresses (in their order; the IPv6 ones the VM took)
   * and routes (IPv4 and IPv6), then removes the record, and puts back the
   * IPv6 forwarding value from before attach. Idempotent and safe after a crash. Throws `ERR_MACVTAP_DETACH`
   * listing the steps that failed, after trying all of them (the record is
   * kept then, so a later detach retries).
   */
  async detach(spec: NetworkAttachSpec): Promise<void> {
    const paths = macvtapStatePaths(spec.stateDir);
    const failures: string[] = [];
    const attempt = async (what: string, fn: () => Promise<unknown>): Promise<void> => {
      try {
        await fn();
      } catch (err) {
        failures.push(`${what}: ${errorMessage(err)}`);
      }
    };
    const dhcp = this.dhcp;
    this.dhcp = undefined;
    if (dhcp !== undefined) await attempt('stop dnsmasq', () => dhcp.stop());
    await attempt(`stop the dnsmasq of ${paths.pidFile}`, () => stopStrayDnsmasq(paths.pidFile, this.log, this.clock));
    for (const fd of this.fds.splice(0)) {
      try {
        closeSync(fd);
      } catch {
        // Already closed.
      }
    }
    let present: Set<string> = new Set();
    await attempt('list links', async () => {
      present = new Set(parsePodInterfaces((await this.runner.run('ip', ['-j', 'link', 'show'])).stdout).map((l) => l.name));
    });
    for (const link of present) {
      if (isMacvtapBackendLink(link)) await attempt(`delete ${link}`, () => this.runner.run('ip', ['link', 'del', 'dev', link]));
    }
    const record = await readFile(paths.record, 'utf8').then(
      (text) => JSON.parse(text) as MacvtapRestoreRecord,
      () => undefined,
    );
    const before = failures.length;
    for (const i of record?.interfaces ?? []) {
      if (!present.has(i.name)) continue;
      await attempt(`give ${i.name} back its MAC ${i.mac}, addresses and routes`, async () => {
        await this.runner.run('ip', ['link', 'set', 'dev', i.name, 'address', i.mac]);
        // Flushed and re-added in the recorded order, so the primary address stays the primary.
        await this.runner.run('ip', ['-4', 'addr', 'flush', 'dev', i.name]);
        for (const a of i.addresses) await this.runner.run('ip', ['addr', 'add', `${a.ip}/${a.prefix}`, 'dev', i.name]);
        // The VM is gone: no duplicate address detection to wait for.
        for (const a of i.addresses6 ?? []) await this.runner.run('ip', ['-6', 'addr', 'replace', `${a.ip}/${a.prefix}`, 'dev', i.name, 'nodad']);
        for (const r of i.routes) await this.runner.run('ip', routeReplaceArgs(r));
      });
    }
    if (failures.length === before) await rm(paths.record, { force: true });
    if (record !== undefined) this.log.info('pod interfaces restored', { interfaces: record.interfaces.map((i) => i.name) });
    await attempt('restore net.ipv6.conf.all.forwarding', () => restoreKeptSysctls(this.runner, [ipv6Forwarding(spec.stateDir)]));
    if (failures.length > 0) {
      throw new PodvisorError('ERR_MACVTAP_DETACH', `macvtap: could not put everything back: ${failures.join('; ')}`, {
        hint: `the record of the pod's interfaces stays in ${paths.record}; the next start retries`,
        details: { failures },
      });
    }
  }

  /** Moves one pod interface's identity to a macvtap and a sibling macvlan, and opens the macvtap's tap device. */
  private async attachOne(spec: NetworkAttachSpec, plan: MacvtapNicPlan, routes6: readonly PodRoute[]): Promise<{ tapPath: string; fd: number }> {
    const { pod, links } = plan;
    const code = 'ERR_MACVTAP_LINK';
    await this.step(spec, code, `give ${pod.name} a random MAC and create macvtap ${links.macvtap} with its MAC ${pod.mac}`, async () => {
      await this.ip(spec, 'link', 'set', 'dev', pod.name, 'address', randomLocalMac());
      await this.ip(spec, 'link', 'add', 'link', pod.name, 'name', links.macvtap, 'address', pod.mac, 'mtu', String(pod.mtu), 'type', 'macvtap', 'mode', 'bridge');
      await this.ip(spec, 'link', 'set', 'dev', links.macvtap, 'up');
    });
    await this.step(spec, code, `create macvlan ${links.macvlan} on ${pod.name}`, async () => {
      await this.ip(spec, 'link', 'add', 'link', pod.name, 'name', links.macvlan, 'mtu', String(pod.mtu), 'type', 'macvlan', 'mode', 'bridge');
      await this.ip(spec, 'link', 'set', 'dev', links.macvlan, 'up');
    });
    if (plan.vmAddress !== undefined && plan.siblingAddress !== undefined) {
      const vm = `${plan.vmAddress.ip}/${plan.vmAddress.prefix}`;
      const sibling = `${plan.siblingAddress.ip}/${plan.siblingAddress.prefix}`;
      await this.step(spec, 'ERR_MACVTAP_ADDRESS', `move ${vm} off ${pod.name} and give ${links.macvlan} ${sibling}`, async () => {
        await this.ip(spec, 'addr', 'del', vm, 'dev', pod.name);
        // Deleting a primary address deletes its secondaries too (unless promote_secondaries): put the others back.
        for (const a of pod.addresses) if (a !== plan.vmAddress) await this.ip(spec, 'addr', 'replace', `${a.ip}/${a.prefix}`, 'dev', pod.name);
        await this.ip(spec, 'addr', 'add', sibling, 'dev', links.macvlan);
      });
    }
    const { vmAddress6, siblingAddress6 } = plan;
    if (vmAddress6 !== undefined && siblingAddress6 !== undefined) {
      const vm6 = `${vmAddress6.ip}/${vmAddress6.prefix}`;
      const sibling6 = `${siblingAddress6.ip}/${siblingAddress6.prefix}`;
      await this.step(spec, 'ERR_MACVTAP_ADDRESS', `move ${vm6} off ${pod.name} and make ${links.macvlan} (${sibling6}) the VM's IPv6 router`, async () => {
        await this.ip(spec, '-6', 'addr', 'del', vm6, 'dev', pod.name);
        // The pod keeps its IPv6 routes (its default route via the node), which the VM's outbound traffic follows.
        for (const r of routes6) await this.ip(spec, ...routeReplaceArgs(r));
        await this.ip(spec, '-6', 'addr', 'add', sibling6, 'dev', links.macvlan, 'nodad');
        // The pod itself reaches the VM's address through the sibling, as it does the IPv4 one.
        await this.ip(spec, '-6', 'route', 'replace', `${vmAddress6.ip}/128`, 'dev', links.macvlan);
      });
    }
    const tap = await this.step(spec, 'ERR_MACVTAP_TAP_DEVICE', `open the tap device of ${links.macvtap}`, () => this.openTapDevice(links.macvtap, spec.signal));
    this.fds.push(tap.fd);
    return { tapPath: tap.tapPath, fd: tap.fd };
  }

  /**
   * Opens the tap device of macvtap `name` read-write: `/dev/tap<ifindex>`
   * when it is this device, else a private node made with `mknod` in a fresh
   * directory under /dev, removed (with its directory) once open or when
   * anything fails. The caller owns the fd. A refusal is an
   * `ERR_MACVTAP_TAP_DEVICE` whose details say which step (`mknod`, `open`)
   * and the device numbers, and whose hint names the fix.
   */
  private async openTapDevice(name: string, signal: AbortSignal | undefined): Promise<{ tapPath: string; fd: number; major: number }> {
    const [link] = parsePodInterfaces((await this.runner.run('ip', ['-j', 'link', 'show', 'dev', name], { signal })).stdout);
    if (link === undefined) throw new Error(`${name} is gone`);
    const devNumbers = (await this.runner.run('cat', [`/sys/class/net/${name}/tap${link.ifindex}/dev`], { signal })).stdout.trim();
    const m = /^(\d+):(\d+)$/.exec(devNumbers);
    if (m === null) throw new Error(`unexpected device numbers ${JSON.stringify(devNumbers)} in sysfs`);
    const [major, minor] = [Number(m[1]), Number(m[2])];
    // /dev/tapN is named after the ifindex, which another namespace may share: use it only if it is this device.
    const shared = `/dev/tap${link.ifindex}`;
    if (isCharDevice(shared, major, minor)) return { tapPath: shared, fd: openTap(shared, major, minor), major };
    const dir = await mkdtemp(join(MACVTAP_NODE_PARENT, 'podvisor-tap-'));
    try {
      const node = join(dir, `tap${link.ifindex}`);
      const made = await this.runner.run('mknod', ['-m', '0600', node, 'c', String(major), String(minor)], { signal, check: false });
      if (made.exitCode !== 0) {
        throw new PodvisorError('ERR_MACVTAP_TAP_DEVICE', `macvtap: cannot make the tap node ${node} (char ${major}:${minor}) for ${name}: ${made.stderr.trim()}`, {
          hint: 'give the container CAP_MKNOD (capabilities add: [MKNOD]; docs/kubernetes.md)',
          details: { step: 'mknod', major, minor },
        });
      }
      return { tapPath: `${node} (removed once open)`, fd: openTap(node, major, minor), major };
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  /**
   * The preflight's probe (plugin API 2.2): whether this container may open a
   * macvtap device, which no declared prerequisite can tell (the device
   * cgroup rule names a major the kernel chose). On the first pod interface
   * attach would take, it creates a throwaway macvtap `pvmvtprobe<hex>`,
   * left down so that the interface's traffic is untouched, opens its tap
   * device as attach does, and closes it; the link, the node and its
   * directory are always removed. One finding, `device.macvtap`: a refused
   * link (NET_ADMIN, the macvtap module), a refused node (MKNOD) or a refused
   * open (the device-cgroup rule `c <major>:* rwm`) fails.
   */
  async probe(spec: NetworkAttachSpec): Promise<ProbeFinding[]> {
    const check = 'a throwaway macvtap link on the pod interface, and its tap device opens read-write';
    const { config } = resolveMacvtapConfig(spec);
    if (config === undefined) return [];
    const failed = (finding: string, fix: string): ProbeFinding[] => [{ id: 'device.macvtap', check, status: 'fail', finding, fix }];
    let lower: string;
    try {
      const planned = planMacvtapNics(config, parsePodInterfaces((await this.ip(spec, '-j', '-d', 'addr', 'show')).stdout), []);
      const first = planned.plans[0];
      // Interfaces named wrong are attach's to report, with the ones the pod has.
      if (first === undefined) return [];
      lower = first.pod.name;
    } catch (err) {
      return failed(`cannot list the pod's interfaces: ${errorMessage(err)}`, "give the container iproute2's ip and NET_ADMIN");
    }
    const name = `${MACVTAP_PROBE_PREFIX}${randomBytes(2).toString('hex')}`;
    const made = await this.runner.run('ip', ['link', 'add', 'link', lower, 'name', name, 'type', 'macvtap', 'mode', 'bridge'], { signal: spec.signal, check: false });
    if (made.exitCode !== 0) {
      const stderr = made.stderr.trim();
      return failed(
        `cannot create a macvtap link on ${lower}: ${stderr || `ip exited with ${made.exitCode}`}`,
        /not permitted/i.test(stderr)
          ? 'add NET_ADMIN to the container securityContext capabilities'
          : 'load the macvtap module on the node (modprobe macvtap), or run the container privileged',
      );
    }
    try {
      const tap = await this.openTapDevice(name, spec.signal);
      closeSync(tap.fd);
      return [{ id: 'device.macvtap', check, status: 'ok', finding: `a macvtap device (char major ${tap.major}) on ${lower} opens read-write` }];
    } catch (err) {
      const refused = isPodvisorError(err) && err.code === 'ERR_MACVTAP_TAP_DEVICE';
      return failed(refused ? err.message : `macvtap: cannot open the tap device of ${name}: ${errorMessage(err)}`, (refused ? err.hint : undefined) ?? 'see docs/macvtap.md, What the container needs');
    } finally {
      await this.runner.run('ip', ['link', 'del', 'dev', name], { check: false });
    }
  }

  /** Opens `path` read-write; the fd is this process's until detach closes it. */
  private open(path: string): number {
    const fd = openSync(path, constants.O_RDWR);
    this.fds.push(fd);
    return fd;
  }

  /**
   * Whether dnsmasq can send the VM router advertisements: they need a raw
   * ICMPv6 socket (CAP_NET_RAW). Warns when it cannot.
   */
  private ipv6Possible(plans: readonly MacvtapNicPlan[], hooks: NetworkHooks): boolean {
    const mask = ownEffectiveCapabilities();
    if (mask === undefined || hasCapabilities(mask, ['CAP_NET_RAW'])) return true;
    this.warnIpv6NotPassed(plans, 'podvisor lacks CAP_NET_RAW, which dnsmasq needs to send the VM router advertisements', 'add NET_RAW to the container securityContext capabilities', hooks);
    return false;
  }

  /**
   * Turns on net.ipv6.conf.all.forwarding in the pod (the VM's outbound IPv6
   * goes in through the sibling and out the pod interface), keeping the old
   * value for detach. Returns false, with a warning, when it stays off.
   */
  private async enableIpv6Forwarding(spec: NetworkAttachSpec, plans: readonly MacvtapNicPlan[], hooks: NetworkHooks): Promise<boolean> {
    const forwarding = ipv6Forwarding(spec.stateDir);
    let reason: string;
    try {
      const { outcomes, result } = await enableSysctlsKeepingPrevious(this.runner, [forwarding], { signal: spec.signal });
      if (outcomes.get(forwarding.key) !== 'off') return true;
      reason = result.stderr.trim() || result.stdout.trim() || `sysctl exited with ${result.exitCode}`;
    } catch (err) {
      spec.signal?.throwIfAborted();
      reason = errorMessage(err);
    }
    this.warnIpv6NotPassed(
      plans,
      `cannot enable ${forwarding.key} in the pod (${reason}), which the VM's outbound IPv6 needs`,
      `set ${forwarding.key}=1 through the pod's sysctls (podman/docker --sysctl ${forwarding.key}=1; Kubernetes securityContext.sysctls with the kubelet --allowed-unsafe-sysctls), or run the container privileged, as macvtap in Kubernetes needs anyway (docs/kubernetes.md)`,
      hooks,
    );
    return false;
  }

  /** The warning that the IPv6 addresses stay with the pod, naming them and why. */
  private warnIpv6NotPassed(plans: readonly MacvtapNicPlan[], why: string, hint: string, hooks: NetworkHooks): void {
    const withIpv6 = plans.filter((p) => p.vmAddress6 !== undefined).map((p) => `${p.pod.name} (${p.pod.ipv6Addresses.map((a) => a.ip).join(', ')})`);
    hooks.warn({
      code: 'WARN_MACVTAP_IPV6_NOT_PASSED',
      message: `the VM gets the IPv4 addresses only: the IPv6 addresses of ${withIpv6.join(', ')} stay with the pod: ${why}`,
      hint,
    });
  }

  /** Whether /dev/vhost-net opens; when it does not, one warning with the seed's hint. */
  private vhostAvailable(hooks: NetworkHooks): boolean {
    try {
      closeSync(openSync(VHOST_NET_DEVICE, constants.O_RDWR));
      return true;
    } catch (err) {
      hooks.warn({
        code: 'WARN_MACVTAP_NO_VHOST_NET',
        message: `cannot open ${VHOST_NET_DEVICE} (${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}): the VM's NICs run without vhost-net, with lower throughput`,
        hint: `load the module on the node, as root: modprobe vhost-net; and give the container the device ${VHOST_NET_DEVICE}`,
      });
      return false;
    }
  }

  private async readResolvConf(path: string, hooks: NetworkHooks): Promise<PodResolvConf> {
    try {
      return parseResolvConf(await readFile(path, 'utf8'));
    } catch (err) {
      hooks.warn({
        code: 'WARN_MACVTAP_NO_RESOLV_CONF',
        message: `cannot read ${path} (${errorMessage(err)}); the VM gets no name servers or search domains over DHCP`,
        hint: 'point network.settings.resolvConf at the pod resolv.conf',
      });
      return { nameservers: [], nameservers6: [], search: [], skipped: [] };
    }
  }

  private ip(spec: NetworkAttachSpec, ...args: string[]): ReturnType<ProcessRunner['run']> {
    return this.runner.run('ip', args, { signal: spec.signal });
  }

  /** Runs one attach step; an error that is not already an `ERR_MACVTAP_*` one becomes `code`, naming `what`. */
  private step<T>(spec: NetworkAttachSpec, code: string, what: string, fn: () => Promise<T>): Promise<T> {
    return networkStep({ backend: 'macvtap', codePrefix: 'ERR_MACVTAP_', code, what, ...(spec.signal === undefined ? {} : { signal: spec.signal }) }, fn);
  }

}

/** A random unicast, locally administered MAC for the pod's interface. */
export function randomLocalMac(): string {
  const b = randomBytes(6);
  b[0] = ((b[0] as number) & 0xfc) | 0x02;
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

/** Opens a tap node read-write; a refusal by the device cgroup names the rule that would allow it. */
function openTap(path: string, major: number, minor: number): number {
  try {
    return openSync(path, constants.O_RDWR);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new PodvisorError('ERR_MACVTAP_TAP_DEVICE', `macvtap: cannot open the tap device ${path} (char ${major}:${minor}): ${code ?? errorMessage(err)}`, {
      cause: err,
      hint:
        code === 'EPERM'
          ? `the container's device cgroup refuses macvtap devices: allow 'c ${major}:* rwm' (podman/docker --device-cgroup-rule; the major is the "macvtap" line of the node's /proc/devices), or run the container privileged, as the Kubernetes overlay does (a pod spec cannot name a device-cgroup rule; docs/kubernetes.md)`
          : undefined,
      details: { step: 'open', major, minor, ...(code === undefined ? {} : { errno: code }) },
    });
  }
}

function isCharDevice(path: string, major: number, minor: number): boolean {
  try {
    const st = statSync(path);
    if (!st.isCharacterDevice()) return false;
    const rdev = st.rdev;
    return ((rdev >>> 8) & 0xfff) === major && ((rdev & 0xff) | ((rdev >>> 12) & 0xfff00)) === minor;
  } catch {
    return false;
  }
}
