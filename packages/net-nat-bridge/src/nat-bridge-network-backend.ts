/**
 * The NAT bridge network backend (kvm-manager / Berth design): inside the
 * pod's network namespace, a linux bridge holding the VM's gateway address of
 * a small /30, a tap for qemu enslaved to it, a dnsmasq that leases the VM its
 * one address with the pod's name servers and search domains, and one
 * nftables table that maps every TCP and UDP port of the pod IP 1:1 to the VM
 * (except VNC, the control endpoint and the operator's exclusions) and SNATs
 * the VM's traffic to the pod IP. The VM thereby assumes the pod's IP, which
 * works with CNIs such as Calico whose /32 addresses and link-local gateways
 * cannot be handed to a VM over DHCP. A dual-stack pod's IPv6 address is
 * mapped the same way to the VM's address on a unique-local /64 behind the
 * bridge (`nat-ipv6.ts`), which dnsmasq's router advertisements give it.
 * Every host change goes through the injected `ProcessRunner` (`ip`, `nft`,
 * `sysctl`, `dnsmasq`), in whatever namespace the runner runs commands: the
 * supervisor's own, in production.
 */
import { mkdir, readFile } from 'node:fs/promises';
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
  ownEffectiveCapabilities,
  type ConfigProblem,
  type NetworkAttachSpec,
  type NetworkAttachment,
  type NetworkBackend,
  type NetworkHooks,
  type Prerequisites,
} from '@podvisor/core';
import {
  DnsmasqSupervisor,
  DNSMASQ_PREREQUISITES,
  deriveVmMac,
  ensureVmMac,
  isDhcpHostname,
  networkStep,
  parseResolvConf,
  stopStrayDnsmasq,
  ipv4CidrsOverlap,
  enableSysctlsKeepingPrevious,
  restoreKeptSysctls,
  sysctlValues,
  type PodResolvConf,
} from '@podvisor/net-support';
import { buildDnsmasqArgs } from './dnsmasq-args.js';
import { formatNatExclusion, natVncListen, natVncPort, resolveNatBridgeConfig, type NatBridgeConfig } from './nat-config.js';
import { batchFailures, ipBatchScript, type IpBatchLine } from './ip-batch.js';
import { buildNatRuleset, buildNatTeardown, natExclusions } from './nat-ruleset.js';
import { NAT_BRIDGE_IPV6, natBridgeIpv6Subnet, natBridgeVmIpv6 } from './nat-ipv6.js';

/** The links the backend creates in the pod's namespace. */
export const NAT_BRIDGE_LINKS = { bridge: 'pvbr0', tap: 'pvtap0' } as const;

/** What the backend and its dnsmasq need from the host (checked by `podvisor doctor` before anything is pulled). */
export const NAT_BRIDGE_PREREQUISITES: Prerequisites = {
  binaries: [
    { name: 'ip', why: 'creates the bridge and the tap, and lists links' },
    { name: 'nft', why: 'applies the 1:1 NAT table ip podvisor' },
    { name: 'sysctl', why: 'reads and sets net.ipv4.ip_forward in the pod' },
    ...DNSMASQ_PREREQUISITES.binaries,
  ],
  capabilities: [
    { name: 'NET_ADMIN', why: 'the bridge, the tap, addresses, nftables, and the ARP entries dnsmasq adds for its leases' },
    ...DNSMASQ_PREREQUISITES.capabilities,
  ],
  devices: [{ path: '/dev/net/tun', why: 'creating the tap pvtap0, and qemu opening it', fix: 'give the container /dev/net/tun: a hostPath volume of type CharDevice mounted at /dev/net/tun, or a device plugin (docker: --device /dev/net/tun)' }],
  sysctls: [{ name: 'net.ipv4.ip_forward', value: '1', why: 'forwarding between the pod interface and the bridge', setsItself: true }],
  // A dual-stack pod also needs net.ipv6.conf.all.forwarding, and CAP_NET_RAW for dnsmasq's
  // router advertisements; without them the VM gets IPv4 only, with a warning event.
};

/** The files the backend keeps in the state dir. */
export function natBridgeStatePaths(stateDir: string): { pidFile: string; leaseFile: string; ipForwardFile: string; ipv6ForwardFile: string } {
  return {
    pidFile: join(stateDir, 'dnsmasq.pid'),
    leaseFile: join(stateDir, 'dnsmasq.leases'),
    ipForwardFile: join(stateDir, 'nat-bridge.ip_forward'),
    ipv6ForwardFile: join(stateDir, 'nat-bridge.ipv6_forward'),
  };
}

/** The forwarding sysctls the backend turns on, each with the state file that keeps its value from before. */
function forwardingSysctls(paths: ReturnType<typeof natBridgeStatePaths>): { key: string; file: string }[] {
  return [
    { key: 'net.ipv4.ip_forward', file: paths.ipForwardFile },
    { key: 'net.ipv6.conf.all.forwarding', file: paths.ipv6ForwardFile },
  ];
}

/** One route of `ip -j route show table all`; routes of the main table have no `table`. */
interface PodRoute {
  dst?: string;
  dev?: string;
  table?: string;
}

/** The pod interface the NAT goes through. */
export interface NatPodInterface {
  name: string;
  ip: string;
  /** Its first global IPv6 address, for a dual-stack pod. */
  ip6: string | undefined;
  mtu: number | undefined;
}

@injectable()
export class NatBridgeNetworkBackend implements NetworkBackend {
  readonly name = 'nat-bridge';
  private readonly log: Logger;
  private supervisor: DnsmasqSupervisor | undefined;

  constructor(
    @inject(ProcessRunner) private readonly runner: ProcessRunner,
    @inject(Logger) log: Logger,
    @inject(Clock) @optional() private readonly clock: Clock = new SystemClock(),
  ) {
    this.log = log.child({ name: 'NatBridgeNetworkBackend' });
  }

  /** Pure; see `resolveNatBridgeConfig`. */
  validate(spec: NetworkAttachSpec): ConfigProblem[] {
    return resolveNatBridgeConfig(spec).problems;
  }

  /** Pure: what attach and its dnsmasq need from the host; the same for every spec. */
  prerequisites(): Prerequisites {
    return NAT_BRIDGE_PREREQUISITES;
  }

  /**
   * Builds the bridge, tap, forwarding, NAT rules and dnsmasq in the runner's
   * namespace, after removing leftovers of an earlier run. Throws a
   * `ConfigError` for bad settings, `ERR_NAT_NO_POD_INTERFACE` /
   * `ERR_NAT_NO_POD_ADDRESS` when there is nothing to NAT through, and
   * `ERR_NAT_<STEP>` naming the link or command that failed; on failure it
   * has removed everything it created. Changes: links pvbr0 and pvtap0,
   * `net.ipv4.ip_forward` (to 1 if it is not already, the old value kept in the state dir), nftables
   * table `ip podvisor`, a dnsmasq child, and `<diskDir>/<vmName>.mac`; in a
   * dual-stack pod also `net.ipv6.conf.all.forwarding` (kept the same way),
   * the bridge's IPv6 address and table `ip6 podvisor`.
   */
  async attach(spec: NetworkAttachSpec, hooks: NetworkHooks): Promise<NetworkAttachment> {
    const { config, problems } = resolveNatBridgeConfig(spec);
    if (config === undefined) throw new ConfigError(problems);
    const started = performance.now();
    // Leftovers of an earlier run: its dnsmasq and ip_forward here; its links go in the
    // first lines of the link batch, and its table is replaced by the one atomic nft load.
    await this.teardown(spec, { links: false, table: false });
    const paths = natBridgeStatePaths(spec.stateDir);
    const { bridge, tap } = NAT_BRIDGE_LINKS;
    try {
      await this.step(spec, 'ERR_NAT_STATE_DIR', `create the state dir ${spec.stateDir}`, async () => {
        await mkdir(spec.stateDir, { recursive: true });
      });
      const { pod, routes } = await this.step(spec, 'ERR_NAT_NO_POD_INTERFACE', 'find the pod interface', () => this.findPodInterface(config, spec));
      this.warnOnOverlap(config, pod, routes, hooks);
      let ipv6 = pod.ip6 !== undefined && this.ipv6Possible(pod.ip6, hooks);

      const mtu = pod.mtu === undefined ? '' : ` mtu ${pod.mtu}`;
      const makeBridge = { code: 'ERR_NAT_BRIDGE', what: `create bridge ${bridge} with ${config.vmGateway}/30` };
      const makeTap = { code: 'ERR_NAT_TAP', what: `create tap ${tap} on ${bridge}` };
      await this.links(spec, [
        ...this.deleteLinkLines(),
        // A fixed bridge MAC: the VM's ARP entry for its gateway survives restarts.
        { ...makeBridge, command: `link add name ${bridge} address ${deriveVmMac(`${spec.vmName}/gateway`)}${mtu} type bridge` },
        { ...makeBridge, command: `addr add ${config.vmGateway}/30 dev ${bridge}` },
        ...(ipv6 ? [{ ...makeBridge, command: `addr add ${NAT_BRIDGE_IPV6.gateway}/${NAT_BRIDGE_IPV6.prefixLength} dev ${bridge} nodad` }] : []),
        { ...makeBridge, command: `link set dev ${bridge} up` },
        { ...makeTap, command: `tuntap add dev ${tap} mode tap` },
        { ...makeTap, command: `link set dev ${tap}${mtu} master ${bridge} up` },
      ]);
      const { mac } = await ensureVmMac(spec.diskDir, spec.vmName, { file: 'ERR_NAT_MAC_FILE', invalid: 'ERR_NAT_MAC_INVALID' });

      ipv6 = await this.step(spec, 'ERR_NAT_SYSCTL', 'enable forwarding in the pod namespace', () => this.enableForwarding(spec, ipv6, hooks));

      const vncPort = natVncPort(spec.vnc);
      const exclusions = natExclusions({ vncPort, controlPort: spec.controlPort, extra: config.exclude, stacked: spec.stackedPorts ?? [] });
      const v6 = ipv6 && pod.ip6 !== undefined ? { podIp: pod.ip6, vmIp: natBridgeVmIpv6(mac), subnet: natBridgeIpv6Subnet() } : undefined;
      const ruleset = buildNatRuleset({ podInterface: pod.name, podIp: pod.ip, vmIp: config.vmIp, bridge, gateway: config.vmGateway, exclusions, ...(v6 === undefined ? {} : { ipv6: v6 }) });
      const andIpv6 = v6 === undefined ? '' : ` and ip6 podvisor (${v6.podIp} to ${v6.vmIp})`;
      await this.step(spec, 'ERR_NAT_NFTABLES', `apply the nftables table ip podvisor (DNAT ${pod.name} ${pod.ip} to ${config.vmIp})${andIpv6}`, () =>
        this.runner.run('nft', ['-f', '-'], { input: ruleset, signal: spec.signal }),
      );

      const resolv = await this.readResolvConf(config, hooks);
      const hostname = isDhcpHostname(spec.vmName) ? spec.vmName : undefined;
      if (hostname === undefined) this.log.warn('the VM name is not a valid DHCP host name; the lease carries none', { vmName: spec.vmName });
      const args = buildDnsmasqArgs({
        bridge,
        vmIp: config.vmIp,
        gateway: config.vmGateway,
        mac,
        hostname,
        pidFile: paths.pidFile,
        leaseFile: paths.leaseFile,
        dnsServers: resolv.nameservers,
        searchDomains: resolv.search,
        mtu: pod.mtu,
        ...(v6 === undefined ? {} : { ipv6: { prefix: NAT_BRIDGE_IPV6.prefix, vmIp: v6.vmIp } }),
      });
      const supervisor = new DnsmasqSupervisor({
        runner: this.runner,
        clock: this.clock,
        log: this.log,
        hooks,
        args,
        pidFile: paths.pidFile,
        errorCode: 'ERR_NAT_DNSMASQ',
        startHint: `dnsmasq-base must be installed and ${bridge} must exist`,
      });
      await this.step(spec, 'ERR_NAT_DNSMASQ', `start dnsmasq on ${bridge}`, () => supervisor.start());
      this.supervisor = supervisor;

      const attachment: NetworkAttachment = {
        nics: [{ id: 'net0', mac, backend: { kind: 'tap', ifname: tap }, addresses: [`${config.vmIp}/30`, ...(v6 === undefined ? [] : [`${v6.vmIp}/${NAT_BRIDGE_IPV6.prefixLength}`])] }],
        vnc: natVncListen(spec.vnc, v6 !== undefined),
        detail: {
          podInterface: pod.name,
          podIp: pod.ip,
          vmIp: config.vmIp,
          gateway: config.vmGateway,
          subnet: config.subnet,
          bridge,
          tap,
          mtu: pod.mtu,
          ipv6: v6 ?? null,
          dnat: {
            to: config.vmIp,
            protocols: ['tcp', 'udp'],
            excluded: exclusions.map(formatNatExclusion),
            // The ports the stacked backends listen on, kept with the pod like PODVISOR_NAT_EXCLUDE's.
            keptForStacked: (spec.stackedPorts ?? []).map((p) => ({ port: formatNatExclusion(p), backend: p.backend })),
          },
          dhcp: { dnsServers: resolv.nameservers, searchDomains: resolv.search, hostname: hostname ?? null, dnsmasqPid: supervisor.pid },
        },
      };
      this.log.info('attached', { ...attachment.detail, mac, durationMs: Math.round(performance.now() - started) });
      return attachment;
    } catch (err) {
      await this.detach(spec).catch((cleanupErr: unknown) => this.log.error('cleanup after a failed attach failed', { err: cleanupErr }));
      throw err;
    }
  }

  /**
   * Stops dnsmasq (this run's, or a leftover found through its pid file),
   * deletes the nftables table, the tap and the bridge, and restores
   * `net.ipv4.ip_forward`. Idempotent and safe after a crash: what is already
   * gone is skipped. Throws `ERR_NAT_DETACH` listing the steps that failed for
   * another reason, after trying all of them.
   */
  async detach(spec: NetworkAttachSpec): Promise<void> {
    await this.teardown(spec, { links: true, table: true });
  }

  private async teardown(spec: NetworkAttachSpec, parts: { links: boolean; table: boolean }): Promise<void> {
    const paths = natBridgeStatePaths(spec.stateDir);
    const failures: string[] = [];
    const attempt = async (what: string, fn: () => Promise<unknown>): Promise<void> => {
      try {
        await fn();
      } catch (err) {
        // A missing binary means there is nothing of ours for it to remove.
        if (err instanceof PodvisorError && err.code === 'ERR_PROCESS_NOT_FOUND') return;
        failures.push(`${what}: ${errorMessage(err)}`);
      }
    };
    const supervisor = this.supervisor;
    this.supervisor = undefined;
    if (supervisor !== undefined) await attempt('stop dnsmasq', () => supervisor.stop());
    await attempt(`stop the dnsmasq of ${paths.pidFile}`, () => stopStrayDnsmasq(paths.pidFile, this.log, this.clock));
    if (parts.table) await attempt('delete the nftables tables ip podvisor and ip6 podvisor', () => this.runner.run('nft', ['-f', '-'], { input: buildNatTeardown() }));
    if (parts.links) await attempt(`delete ${NAT_BRIDGE_LINKS.tap} and ${NAT_BRIDGE_LINKS.bridge}`, () => this.links(spec, this.deleteLinkLines(), false));
    // The forwarding values from before attach, restored in one sysctl run.
    await attempt('restore the forwarding sysctls', () => restoreKeptSysctls(this.runner, forwardingSysctls(paths)));
    if (failures.length > 0) {
      throw new PodvisorError('ERR_NAT_DETACH', `nat-bridge: could not remove everything: ${failures.join('; ')}`, {
        hint: 'the pod network namespace goes away with the pod; until then, remove the leftovers by hand (ip link del pvbr0, nft delete table ip podvisor, nft delete table ip6 podvisor)',
        details: { failures },
      });
    }
  }

  /** The batch lines that delete the backend's links; a link that is not there is already done. */
  private deleteLinkLines(): IpBatchLine[] {
    return [NAT_BRIDGE_LINKS.tap, NAT_BRIDGE_LINKS.bridge].map((link) => ({ command: `link del dev ${link}`, absentIsDone: true, code: 'ERR_NAT_DETACH', what: `delete ${link}` }));
  }

  /** Runs one `ip -force -batch -`; throws the coded error of the first line that really failed. */
  private async links(spec: NetworkAttachSpec, lines: IpBatchLine[], abortable = true): Promise<void> {
    const out = await this.runner.run('ip', ['-force', '-batch', '-'], { input: ipBatchScript(lines), check: false, ...(abortable && spec.signal !== undefined ? { signal: spec.signal } : {}) });
    const [failure] = batchFailures(lines, out.stderr, out.exitCode);
    if (failure !== undefined) {
      throw new PodvisorError(failure.line.code, `nat-bridge: cannot ${failure.line.what}: ip ${failure.line.command}: ${failure.message}`, {
        details: { script: ipBatchScript(lines), stderr: out.stderr },
      });
    }
  }

  /** The pod interface and the pod's IPv4 routes (all tables), read in one `ip -batch` (`route` lists IPv4 only, `addr` both families). */
  private async findPodInterface(config: NatBridgeConfig, spec: NetworkAttachSpec): Promise<{ pod: NatPodInterface; routes: PodRoute[] }> {
    const out = await this.runner.run('ip', ['-j', '-batch', '-'], { input: 'route show table all\naddr show\n', signal: spec.signal });
    const [routes = [], links = []] = out.stdout
      .split('\n')
      .filter((line) => line.trim() !== '')
      .map((line) => parseJson<unknown[]>(line)) as [PodRoute[]?, { ifname?: string; mtu?: number; addr_info?: { family?: string; local?: string; scope?: string; tentative?: boolean; dadfailed?: boolean; deprecated?: boolean }[] }[]?];
    let name = config.podInterface;
    if (name === undefined) {
      name = routes.find((r) => r.dst === 'default' && r.table === undefined && typeof r.dev === 'string')?.dev;
      if (name === undefined) {
        throw new PodvisorError('ERR_NAT_NO_POD_INTERFACE', 'nat-bridge: the pod has no IPv4 default route, so there is no pod interface to NAT through', {
          hint: 'name the interface with network.settings.podInterface',
        });
      }
    }
    const link = links.find((l) => l.ifname === name);
    if (link === undefined) {
      throw new PodvisorError('ERR_NAT_NO_POD_INTERFACE', `nat-bridge: the pod has no interface ${name}`, {
        hint: `the pod has: ${links.map((l) => l.ifname).join(', ')}; name another interface with network.settings.podInterface`,
      });
    }
    const ip = link.addr_info?.find((a) => a.family === 'inet' && typeof a.local === 'string')?.local;
    if (ip === undefined) {
      throw new PodvisorError('ERR_NAT_NO_POD_ADDRESS', `nat-bridge: the pod interface ${name} has no IPv4 address for the VM to assume`, {
        hint: 'the CNI gives the pod its address; check the pod network, or name another interface with network.settings.podInterface',
      });
    }
    const ip6 = link.addr_info?.find((a) => a.family === 'inet6' && a.scope === 'global' && typeof a.local === 'string' && a.tentative !== true && a.dadfailed !== true && a.deprecated !== true)?.local;
    return { pod: { name, ip, ip6, mtu: link.mtu }, routes };
  }

  /**
   * Whether the VM can get IPv6: dnsmasq's router advertisements need a raw
   * ICMPv6 socket (CAP_NET_RAW). Warns when it cannot.
   */
  private ipv6Possible(podIp6: string, hooks: NetworkHooks): boolean {
    const mask = ownEffectiveCapabilities();
    if (mask === undefined || hasCapabilities(mask, ['CAP_NET_RAW'])) return true;
    hooks.warn({
      code: 'WARN_NAT_NO_IPV6',
      message: `the pod has the IPv6 address ${podIp6}, but podvisor lacks CAP_NET_RAW, which dnsmasq needs to send the VM router advertisements: the VM gets IPv4 only`,
      hint: 'add NET_RAW to the container securityContext capabilities',
    });
    return false;
  }

  /**
   * Turns on IPv4 forwarding, route_localnet on the bridge, and for a
   * dual-stack pod IPv6 forwarding, in one sysctl run whose output first shows
   * the values from before. A value that was 0 is kept in the state dir for
   * detach. Already on (the pod's sysctls set it): nothing to restore, and the
   * write may fail (an unprivileged container has /proc/sys read-only)
   * without harm. Throws `ERR_NAT_SYSCTL` when IPv4 forwarding stays off;
   * IPv6 forwarding that stays off only warns. Returns whether the VM gets IPv6.
   */
  private async enableForwarding(spec: NetworkAttachSpec, ipv6: boolean, hooks: NetworkHooks): Promise<boolean> {
    const paths = natBridgeStatePaths(spec.stateDir);
    const [v4, v6] = forwardingSysctls(paths) as [{ key: string; file: string }, { key: string; file: string }];
    // route_localnet on the bridge lets traffic the pod sends to 127.0.0.1 be routed to the VM; it goes with the bridge.
    const localnet = `net.ipv4.conf.${NAT_BRIDGE_LINKS.bridge}.route_localnet`;
    const { outcomes, result: out } = await enableSysctlsKeepingPrevious(this.runner, ipv6 ? [v4, v6] : [v4], { extra: [`${localnet}=1`], signal: spec.signal });
    if (sysctlValues(out.stdout, localnet)[0] !== '1') {
      hooks.warn({
        code: 'WARN_NAT_NO_LOCALHOST',
        message: `cannot set ${localnet}=1 (${out.stderr.trim() || 'no output'}): traffic the pod sends to 127.0.0.1 does not reach the VM (to the pod IP it does)`,
        hint: '/proc/sys is read-only in this container; sidecars and kubectl port-forward can use the pod IP instead of localhost',
      });
    }
    if (outcomes.get(v4.key) === 'off') {
      throw new PodvisorError('ERR_NAT_SYSCTL', `cannot enable net.ipv4.ip_forward in the pod: ${out.stderr.trim() || out.stdout.trim() || `sysctl exited with ${out.exitCode}`}`, {
        hint: 'in an unprivileged container /proc/sys is read-only: set it in the pod instead (docker run --sysctl net.ipv4.ip_forward=1, or the pod securityContext.sysctls with the kubelet --allowed-unsafe-sysctls)',
      });
    }
    if (!ipv6 || outcomes.get(v6.key) !== 'off') return ipv6;
    hooks.warn({
      code: 'WARN_NAT_NO_IPV6',
      message: `cannot enable ${v6.key} in the pod (${out.stderr.trim() || 'no output'}): the VM gets IPv4 only`,
      hint: `in an unprivileged container /proc/sys is read-only: set ${v6.key}=1 through the pod's sysctls`,
    });
    return false;
  }

  /** Warns (never throws) when the VM's /30 collides with an address or route the pod has (not through podvisor's own links). */
  private warnOnOverlap(config: NatBridgeConfig, pod: NatPodInterface, routes: readonly PodRoute[], hooks: NetworkHooks): void {
    // Routes through podvisor's own links are an earlier run's leftovers, which the link batch replaces.
    const ours = new Set<string>(Object.values(NAT_BRIDGE_LINKS));
    const clashes = routes
      .filter((r) => typeof r.dst === 'string' && r.dst !== 'default' && !ours.has(r.dev ?? '') && ipv4CidrsOverlap(r.dst, config.subnet))
      .map((r) => `${r.dst} dev ${r.dev ?? '?'}${r.table === undefined ? '' : ` table ${r.table}`}`);
    if (ipv4CidrsOverlap(pod.ip, config.subnet) && !clashes.some((c) => c.startsWith(`${pod.ip} `))) clashes.push(`${pod.ip} (the pod IP)`);
    if (clashes.length === 0) return;
    hooks.warn({
      code: 'WARN_NAT_SUBNET_OVERLAP',
      message: `the VM's subnet ${config.subnet} overlaps what the pod already routes: ${[...new Set(clashes)].join(', ')}`,
      hint: 'set VM_IP and VM_GW to a /30 the pod network does not use',
    });
  }

  private async readResolvConf(config: NatBridgeConfig, hooks: NetworkHooks): Promise<PodResolvConf> {
    let text: string;
    try {
      text = await readFile(config.resolvConf, 'utf8');
    } catch (err) {
      hooks.warn({
        code: 'WARN_NAT_NO_RESOLV_CONF',
        message: `cannot read ${config.resolvConf} (${errorMessage(err)}); the VM gets no name servers or search domains over DHCP`,
        hint: 'point network.settings.resolvConf at the pod resolv.conf',
      });
      return { nameservers: [], nameservers6: [], search: [], skipped: [] };
    }
    const resolv = parseResolvConf(text);
    if (resolv.skipped.length > 0) this.log.warn('name servers the VM cannot use were left out', { resolvConf: config.resolvConf, skipped: resolv.skipped });
    return resolv;
  }

  /** Runs one attach step; an error that is not already an `ERR_NAT_*` one becomes `code`, naming `what`. */
  private step<T>(spec: NetworkAttachSpec, code: string, what: string, fn: () => Promise<T>): Promise<T> {
    return networkStep({ backend: 'nat-bridge', codePrefix: 'ERR_NAT_', code, what, ...(spec.signal === undefined ? {} : { signal: spec.signal }) }, fn);
  }

}

/** The values `sysctl KEY ...` printed for `key`, in order (`KEY = VALUE` lines). */
function parseJson<T>(text: string): T {
  const trimmed = text.trim();
  return (trimmed === '' ? [] : JSON.parse(trimmed)) as T;
}
