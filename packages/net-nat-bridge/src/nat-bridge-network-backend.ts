/**
 * The NAT bridge network backend (kvm-manager / Berth design): inside the
 * pod's network namespace, a linux bridge holding the VM's gateway address of
 * a small /30, a tap for qemu enslaved to it, a dnsmasq that leases the VM its
 * one address with the pod's name servers and search domains, and one
 * nftables table that maps every TCP and UDP port of the pod IP 1:1 to the VM
 * (except VNC, the control endpoint and the operator's exclusions) and SNATs
 * the VM's traffic to the pod IP. The VM thereby assumes the pod's IP, which
 * works with CNIs such as Calico whose /32 addresses and link-local gateways
 * cannot be handed to a VM over DHCP. Every host change goes through the
 * injected `ProcessRunner` (`ip`, `nft`, `sysctl`, `dnsmasq`), in whatever
 * namespace the runner runs commands: the supervisor's own, in production.
 */
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { inject, injectable } from 'inversify';
import {
  ConfigError,
  Logger,
  PodvisorError,
  ProcessRunner,
  errorMessage,
  type ConfigProblem,
  type NetworkAttachSpec,
  type NetworkAttachment,
  type NetworkBackend,
  type NetworkHooks,
  DnsmasqSupervisor,
  isDhcpHostname,
  networkStep,
  parseResolvConf,
  stopStrayDnsmasq,
  type PodResolvConf,
} from '@podvisor/core';
import { buildDnsmasqArgs } from './dnsmasq-args.js';
import { formatNatExclusion, ipv4CidrsOverlap, resolveNatBridgeConfig, type NatBridgeConfig } from './nat-config.js';
import { buildNatRuleset, buildNatTeardown, natExclusions } from './nat-ruleset.js';
import { deriveVmMac, ensureVmMac } from './vm-mac.js';

/** The links the backend creates in the pod's namespace. */
export const NAT_BRIDGE_LINKS = { bridge: 'pvbr0', tap: 'pvtap0' } as const;

/** The files the backend keeps in the state dir. */
export function natBridgeStatePaths(stateDir: string): { pidFile: string; leaseFile: string; ipForwardFile: string } {
  return {
    pidFile: join(stateDir, 'dnsmasq.pid'),
    leaseFile: join(stateDir, 'dnsmasq.leases'),
    ipForwardFile: join(stateDir, 'nat-bridge.ip_forward'),
  };
}

/** The pod interface the NAT goes through. */
export interface NatPodInterface {
  name: string;
  ip: string;
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
  ) {
    this.log = log.child({ name: 'NatBridgeNetworkBackend' });
  }

  /** Pure; see `resolveNatBridgeConfig`. */
  validate(spec: NetworkAttachSpec): ConfigProblem[] {
    return resolveNatBridgeConfig(spec).problems;
  }

  /**
   * Builds the bridge, tap, forwarding, NAT rules and dnsmasq in the runner's
   * namespace, after removing leftovers of an earlier run. Throws a
   * `ConfigError` for bad settings, `ERR_NAT_NO_POD_INTERFACE` /
   * `ERR_NAT_NO_POD_ADDRESS` when there is nothing to NAT through, and
   * `ERR_NAT_<STEP>` naming the link or command that failed; on failure it
   * has removed everything it created. Changes: links pvbr0 and pvtap0,
   * `net.ipv4.ip_forward` (to 1 if it is not already, the old value kept in the state dir), nftables
   * table `ip podvisor`, a dnsmasq child, and `<diskDir>/<vmName>.mac`.
   */
  async attach(spec: NetworkAttachSpec, hooks: NetworkHooks): Promise<NetworkAttachment> {
    const { config, problems } = resolveNatBridgeConfig(spec);
    if (config === undefined) throw new ConfigError(problems);
    const started = performance.now();
    await this.detach(spec);
    const paths = natBridgeStatePaths(spec.stateDir);
    const { bridge, tap } = NAT_BRIDGE_LINKS;
    try {
      await this.step(spec, 'ERR_NAT_STATE_DIR', `create the state dir ${spec.stateDir}`, async () => {
        await mkdir(spec.stateDir, { recursive: true });
      });
      const pod = await this.step(spec, 'ERR_NAT_NO_POD_INTERFACE', 'find the pod interface', () => this.findPodInterface(config, spec));
      await this.warnOnOverlap(config, pod, hooks, spec);

      await this.step(spec, 'ERR_NAT_BRIDGE', `create bridge ${bridge} with ${config.vmGateway}/30`, async () => {
        // A fixed bridge MAC: the VM's ARP entry for its gateway survives restarts.
        await this.ip(spec, 'link', 'add', 'name', bridge, 'address', deriveVmMac(`${spec.vmName}/gateway`), 'type', 'bridge');
        if (pod.mtu !== undefined) await this.ip(spec, 'link', 'set', 'dev', bridge, 'mtu', String(pod.mtu));
        await this.ip(spec, 'addr', 'add', `${config.vmGateway}/30`, 'dev', bridge);
        await this.ip(spec, 'link', 'set', 'dev', bridge, 'up');
      });
      await this.step(spec, 'ERR_NAT_TAP', `create tap ${tap} on ${bridge}`, async () => {
        await this.ip(spec, 'tuntap', 'add', 'dev', tap, 'mode', 'tap');
        if (pod.mtu !== undefined) await this.ip(spec, 'link', 'set', 'dev', tap, 'mtu', String(pod.mtu));
        await this.ip(spec, 'link', 'set', 'dev', tap, 'master', bridge);
        await this.ip(spec, 'link', 'set', 'dev', tap, 'up');
      });
      const { mac } = await ensureVmMac(spec.diskDir, spec.vmName);

      await this.step(spec, 'ERR_NAT_SYSCTL', 'enable net.ipv4.ip_forward in the pod namespace', async () => {
        const previous = (await this.runner.run('sysctl', ['-n', 'net.ipv4.ip_forward'], { signal: spec.signal })).stdout.trim();
        // Already on (the pod's sysctls set it): nothing to write, nothing to restore. An
        // unprivileged container has /proc/sys read-only, so an unneeded write would fail.
        if (previous === '1') return;
        await writeFile(paths.ipForwardFile, `${previous}\n`);
        await this.runner.run('sysctl', ['-w', 'net.ipv4.ip_forward=1'], { signal: spec.signal }).catch((err: unknown) => {
          throw new PodvisorError('ERR_NAT_SYSCTL', `cannot enable net.ipv4.ip_forward in the pod: ${errorMessage(err)}`, {
            hint: 'in an unprivileged container /proc/sys is read-only: set it in the pod instead (docker run --sysctl net.ipv4.ip_forward=1, or the pod securityContext.sysctls with the kubelet --allowed-unsafe-sysctls)',
            cause: err,
          });
        });
      });

      const vncPort = config.vncExcluded && spec.vnc.enabled ? spec.vnc.port : undefined;
      const exclusions = natExclusions({ vncPort, controlPort: spec.controlPort, extra: config.exclude });
      const ruleset = buildNatRuleset({ podInterface: pod.name, podIp: pod.ip, vmIp: config.vmIp, exclusions });
      await this.step(spec, 'ERR_NAT_NFTABLES', `apply the nftables table ip podvisor (DNAT ${pod.name} ${pod.ip} to ${config.vmIp})`, () =>
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
      });
      const supervisor = new DnsmasqSupervisor({
        runner: this.runner,
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
        nics: [{ id: 'net0', mac, backend: { kind: 'tap', ifname: tap }, addresses: [`${config.vmIp}/30`] }],
        vnc: vncPort === undefined || vncPort < 5900 ? undefined : { kind: 'tcp', host: '0.0.0.0', display: vncPort - 5900 },
        detail: {
          podInterface: pod.name,
          podIp: pod.ip,
          vmIp: config.vmIp,
          gateway: config.vmGateway,
          subnet: config.subnet,
          bridge,
          tap,
          mtu: pod.mtu,
          dnat: { to: config.vmIp, protocols: ['tcp', 'udp'], excluded: exclusions.map(formatNatExclusion) },
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
    await attempt(`stop the dnsmasq of ${paths.pidFile}`, () => stopStrayDnsmasq(paths.pidFile, this.log));
    await attempt('delete the nftables table ip podvisor', () => this.runner.run('nft', ['-f', '-'], { input: buildNatTeardown() }));
    let present: Set<string> | undefined;
    await attempt('list links', async () => {
      present = await this.linkNames();
    });
    for (const link of [NAT_BRIDGE_LINKS.tap, NAT_BRIDGE_LINKS.bridge]) {
      if (present?.has(link) === true) await attempt(`delete ${link}`, () => this.runner.run('ip', ['link', 'del', 'dev', link]));
    }
    const previous = await readFile(paths.ipForwardFile, 'utf8').then(
      (text) => text.trim(),
      () => undefined,
    );
    if (previous !== undefined && /^[01]$/.test(previous)) {
      await attempt('restore net.ipv4.ip_forward', async () => {
        await this.runner.run('sysctl', ['-w', `net.ipv4.ip_forward=${previous}`]);
        await rm(paths.ipForwardFile, { force: true });
      });
    } else await rm(paths.ipForwardFile, { force: true });
    if (failures.length > 0) {
      throw new PodvisorError('ERR_NAT_DETACH', `nat-bridge: could not remove everything: ${failures.join('; ')}`, {
        hint: 'the pod network namespace goes away with the pod; until then, remove the leftovers by hand (ip link del pvbr0, nft delete table ip podvisor)',
        details: { failures },
      });
    }
  }

  private async findPodInterface(config: NatBridgeConfig, spec: NetworkAttachSpec): Promise<NatPodInterface> {
    let name = config.podInterface;
    if (name === undefined) {
      const routes = parseJson<{ dev?: string }[]>((await this.ip(spec, '-j', '-4', 'route', 'show', 'default')).stdout);
      name = routes.find((r) => typeof r.dev === 'string')?.dev;
      if (name === undefined) {
        throw new PodvisorError('ERR_NAT_NO_POD_INTERFACE', 'nat-bridge: the pod has no IPv4 default route, so there is no pod interface to NAT through', {
          hint: 'name the interface with network.settings.podInterface',
        });
      }
    }
    const links = parseJson<{ ifname?: string; mtu?: number; addr_info?: { family?: string; local?: string }[] }[]>(
      (await this.ip(spec, '-j', '-4', 'addr', 'show', 'dev', name)).stdout,
    );
    const ip = links[0]?.addr_info?.find((a) => a.family === 'inet' && typeof a.local === 'string')?.local;
    if (ip === undefined) {
      throw new PodvisorError('ERR_NAT_NO_POD_ADDRESS', `nat-bridge: the pod interface ${name} has no IPv4 address for the VM to assume`, {
        hint: 'the CNI gives the pod its address; check the pod network, or name another interface with network.settings.podInterface',
      });
    }
    return { name, ip, mtu: links[0]?.mtu };
  }

  /** Warns (never throws) when the VM's /30 collides with an address or route the pod has. */
  private async warnOnOverlap(config: NatBridgeConfig, pod: NatPodInterface, hooks: NetworkHooks, spec: NetworkAttachSpec): Promise<void> {
    let routes: { dst?: string; dev?: string; table?: string }[];
    try {
      routes = parseJson((await this.ip(spec, '-j', '-4', 'route', 'show', 'table', 'all')).stdout);
    } catch (err) {
      this.log.warn('cannot list the pod routes to check the VM subnet against them', { err });
      routes = [];
    }
    const clashes = routes
      .filter((r) => typeof r.dst === 'string' && r.dst !== 'default' && ipv4CidrsOverlap(r.dst, config.subnet))
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
      return { nameservers: [], search: [], skipped: [] };
    }
    const resolv = parseResolvConf(text);
    if (resolv.skipped.length > 0) this.log.warn('name servers the VM cannot use were left out', { resolvConf: config.resolvConf, skipped: resolv.skipped });
    return resolv;
  }

  private async linkNames(): Promise<Set<string>> {
    const links = parseJson<{ ifname?: string }[]>((await this.runner.run('ip', ['-j', 'link', 'show'])).stdout);
    return new Set(links.flatMap((l) => (typeof l.ifname === 'string' ? [l.ifname] : [])));
  }

  private ip(spec: NetworkAttachSpec, ...args: string[]): ReturnType<ProcessRunner['run']> {
    return this.runner.run('ip', args, { signal: spec.signal });
  }

  /** Runs one attach step; an error that is not already an `ERR_NAT_*` one becomes `code`, naming `what`. */
  private step<T>(spec: NetworkAttachSpec, code: string, what: string, fn: () => Promise<T>): Promise<T> {
    return networkStep({ backend: 'nat-bridge', codePrefix: 'ERR_NAT_', code, what, ...(spec.signal === undefined ? {} : { signal: spec.signal }) }, fn);
  }

}

function parseJson<T>(text: string): T {
  const trimmed = text.trim();
  return (trimmed === '' ? [] : JSON.parse(trimmed)) as T;
}
