/**
 * The `l2-segment` network backend: an additional NIC on an L2 segment that
 * spans pods on several nodes, kvm-crate's "one big VLAN" (GRE+IPsec between
 * Open vSwitch bridges) rebuilt as VXLAN over WireGuard between pods. It
 * stacks on the primary backend (`PODVISOR_NETWORK_EXTRA=l2-segment`), which
 * keeps the pod IP. In the pod's namespace: a WireGuard interface (kernel or
 * wireguard-go) with one peer per other member of the peer map, a VXLAN
 * device whose endpoints are the members' tunnel addresses (so every frame
 * crosses the pod network encrypted), a bridge with the VXLAN device and the
 * VM's tap, an nftables guard that drops VXLAN on any other interface, and a
 * dnsmasq that leases this pod's VM its segment address and nothing to any
 * other VM. The peer map and the private key are re-read while the VM runs:
 * peers come and go without a restart. Every host change goes through the
 * injected `ProcessRunner`.
 */
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { randomUUID } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { inject, injectable, optional } from 'inversify';
import {
  Clock,
  ConfigError,
  Logger,
  PodvisorError,
  ProcessRunner,
  SystemClock,
  errorMessage,
  type ConfigProblem,
  type NetworkAttachSpec,
  type NetworkAttachment,
  type NetworkBackend,
  type NetworkHooks,
  type PodPort,
  type Prerequisites,
} from '@podvisor/core';
import { DNSMASQ_PREREQUISITES, DnsmasqSupervisor, ipv4Netmask, networkStep, stopStrayDnsmasq } from '@podvisor/net-support';
import { resolveL2SegmentSettings, type L2SegmentSettings } from './l2-segment-settings.js';
import { L2_DEFAULT_PORT, L2_VXLAN_PORT, parseAddressWithPrefix, parsePeerMap, segmentMtus, wireguardPublicKey, type PeerMap, type PeerMember } from './peer-map.js';
import {
  L2_SEGMENT_LINKS,
  buildSegmentDnsmasqArgs,
  buildSegmentRuleset,
  buildSegmentTeardown,
  segmentLinkScript,
  segmentMac,
  wireguardConfig,
  wireguardInterfaceName,
  type WireguardPeerConfig,
} from './segment-plan.js';
import { L2_HANDSHAKE_WARN_MS, watchHandshakes } from './handshake-watch.js';
import { WireguardDevice } from './wireguard-device.js';

/** What the backend needs from the host (podvisor doctor checks it before anything is pulled). */
export const L2_SEGMENT_PREREQUISITES: Prerequisites = {
  binaries: [
    { name: 'ip', why: 'creates the WireGuard, VXLAN, bridge and tap links of the segment' },
    { name: 'bridge', why: 'adds the VXLAN flood entries, one per peer (iproute2)' },
    { name: 'nft', why: 'applies the guard that keeps VXLAN inside WireGuard, and the DHCP filter' },
    { name: 'wg', why: 'configures WireGuard peers and keys (Debian: wireguard-tools)' },
    { name: 'sh', why: 'pipes the WireGuard configuration into wg, so that the private key is never written to a file' },
    { name: 'cat', why: 'the pipe into wg (see sh)' },
    {
      name: 'wireguard-go',
      why: 'WireGuard in user space, used when the kernel has no WireGuard (Debian: wireguard-go); without either the segment cannot start',
      optional: true,
    },
    ...DNSMASQ_PREREQUISITES.binaries,
  ],
  capabilities: [
    { name: 'NET_ADMIN', why: 'the WireGuard, VXLAN, bridge and tap links, nftables, and the ARP entries dnsmasq adds' },
    ...DNSMASQ_PREREQUISITES.capabilities,
  ],
  devices: [
    {
      path: '/dev/net/tun',
      why: 'creating the tap pvl2tap0, and wireguard-go creating its interface',
      fix: 'give the container /dev/net/tun: a hostPath volume of type CharDevice mounted at /dev/net/tun, or a device plugin (docker: --device /dev/net/tun)',
    },
  ],
};

/** The files the backend keeps in the state dir. */
export function l2SegmentStatePaths(stateDir: string): { dnsmasqPid: string; dnsmasqLeases: string; wireguardPid: string; owner: string } {
  return { dnsmasqPid: join(stateDir, 'l2-dnsmasq.pid'), dnsmasqLeases: join(stateDir, 'l2-dnsmasq.leases'), wireguardPid: join(stateDir, 'l2-wireguard-go.pid'), owner: join(stateDir, 'l2-segment.owner') };
}

/** What one reading of the two mounted files gave. */
interface SegmentSource {
  map: PeerMap;
  self: PeerMember;
  privateKey: string;
  /** Both files' bytes, to tell a change. */
  fingerprint: string;
}

/** What is running, for the reload loop and detach. */
interface Running {
  spec: NetworkAttachSpec;
  settings: L2SegmentSettings;
  hooks: NetworkHooks;
  source: SegmentSource;
  wireguard: WireguardDevice;
  wgName: string;
  wgMtu: number;
  dnsmasq: DnsmasqSupervisor | undefined;
  /** The wg configuration last applied, and the peers' tunnel addresses in the VXLAN flood list. */
  appliedConfig: string;
  appliedPeers: WireguardPeerConfig[];
  flood: Set<string>;
  stop: AbortController;
  loop: Promise<void>;
  /** The watch for peers that complete no handshake (WARN_L2_PEER_NO_HANDSHAKE); ends with `stop`. */
  handshakes: Promise<void>;
  /** Written to the owner file at attach: a reload loop whose token is gone (a newer run took over) stands down. */
  ownerToken: string;
}

@injectable()
export class L2SegmentNetworkBackend implements NetworkBackend {
  readonly name = 'l2-segment';
  readonly stackable = true;
  private readonly log: Logger;
  private running: Running | undefined;

  constructor(
    @inject(ProcessRunner) private readonly runner: ProcessRunner,
    @inject(Logger) log: Logger,
    @inject(Clock) @optional() private readonly clock: Clock = new SystemClock(),
  ) {
    this.log = log.child({ name: 'L2SegmentNetworkBackend' });
  }

  /** Pure: the settings; the mounted files are read (and refused, naming the member) by `attach`. */
  validate(spec: NetworkAttachSpec): ConfigProblem[] {
    return resolveL2SegmentSettings(spec).problems;
  }

  prerequisites(): Prerequisites {
    return L2_SEGMENT_PREREQUISITES;
  }

  /**
   * WireGuard's UDP port, the peer map's `port`: the primary keeps it with
   * the pod (the NAT bridge does not DNAT it to its VM). Asked before any
   * backend attaches, so it reads the peer map itself; a map that cannot be
   * read or parsed gives the default port (attach then refuses the map).
   */
  async podPorts(spec: NetworkAttachSpec): Promise<PodPort[]> {
    const { settings } = resolveL2SegmentSettings(spec);
    const text = settings === undefined ? undefined : await readFile(settings.peers, 'utf8').catch(() => undefined);
    const port = settings === undefined || text === undefined ? undefined : parsePeerMap(text, settings.peers).map?.port;
    return [{ proto: 'udp', port: port ?? L2_DEFAULT_PORT }];
  }

  /**
   * Builds the segment after removing an earlier run's leftovers. Throws
   * `ERR_L2_PEER_MAP` (every problem of the map, or this VM missing from it),
   * `ERR_L2_KEY` (a missing or malformed private key, or one whose public key
   * is not the one the map gives this VM: nothing is created then), and
   * `ERR_L2_<STEP>` naming the link or command that failed; on failure it has
   * removed everything it created. Peers that are down, or whose names do
   * not resolve yet, do not block: they join when they answer.
   */
  async attach(spec: NetworkAttachSpec, hooks: NetworkHooks): Promise<NetworkAttachment> {
    const { settings, problems } = resolveL2SegmentSettings(spec);
    if (settings === undefined) throw new ConfigError(problems);
    const started = performance.now();
    await this.detach(spec);
    const source = await this.readSource(spec, settings);
    const { self, map } = source;
    const paths = l2SegmentStatePaths(spec.stateDir);
    const wgName = wireguardInterfaceName(spec.vmName);
    const { bridge, vxlan, tap } = L2_SEGMENT_LINKS;
    const wireguard = new WireguardDevice({ runner: this.runner, log: this.log, clock: this.clock, name: wgName, pidFile: paths.wireguardPid, ...(spec.signal === undefined ? {} : { signal: spec.signal }) });
    try {
      const ownerToken = randomUUID();
      await this.step(spec, 'ERR_L2_STATE_DIR', `create the state dir ${spec.stateDir}`, async () => {
        await mkdir(spec.stateDir, { recursive: true });
        await writeFile(paths.owner, `${ownerToken}\n`);
      });
      const podMtu = await this.step(spec, 'ERR_L2_POD_INTERFACE', 'read the pod interface MTU', () => this.podMtu(settings));
      const mtu = segmentMtus(podMtu);
      if (mtu.segment < 576) throw new PodvisorError('ERR_L2_MTU', `l2-segment: the pod interface MTU ${podMtu} leaves ${mtu.segment} bytes for the segment, less than IPv4's 576`);
      // The guard first: from here on, VXLAN leaves only through WireGuard.
      await this.step(spec, 'ERR_L2_NFTABLES', 'apply the nftables tables podvisor_l2 (VXLAN only into WireGuard; DHCP kept to this pod)', () =>
        this.runner.run('nft', ['-f', '-'], { input: buildSegmentRuleset({ wireguard: wgName, dhcpServer: self.address === undefined ? undefined : map.dhcpServer }) }),
      );
      const implementation = await wireguard.create(settings.wireguard);
      const tunnelPrefix = (parseAddressWithPrefix(map.tunnelNetwork) as { prefix: number }).prefix;
      const peers = await this.peerConfigs(source, hooks);
      const config = wireguardConfig(source.privateKey, map.port, peers);
      await this.step(spec, 'ERR_L2_WIREGUARD', `configure ${wgName} (key, port ${map.port}, ${peers.length} peers)`, () => this.syncWireguard(wgName, config));
      const serves = self.address !== undefined && map.dhcpServer !== undefined;
      // One ip process for every link (ip stops at the first line that fails and names it).
      const links = segmentLinkScript({ wireguard: wgName, wireguardMtu: mtu.wireguard, segmentMtu: mtu.segment, tunnelCidr: `${self.tunnelIp}/${tunnelPrefix}`, segment: map.segment, tunnelIp: self.tunnelIp, bridgeMac: segmentMac(`${spec.vmName}/bridge`), dhcpServer: serves ? map.dhcpServer : undefined });
      await this.step(spec, 'ERR_L2_LINKS', `create the segment links (${wgName} up, ${bridge}, ${vxlan} with id ${map.segment}, ${tap})`, () => this.runner.run('ip', ['-batch', '-'], { input: links }));
      const flood = new Set<string>();
      await this.syncFlood(flood, peers.map((p) => p.tunnelIp));

      const mac = segmentMac(spec.vmName);
      let dnsmasq: DnsmasqSupervisor | undefined;
      if (serves && self.address !== undefined) {
        const args = buildSegmentDnsmasqArgs({
          bridge,
          address: self.address,
          netmask: ipv4Netmask((parseAddressWithPrefix(self.address) as { prefix: number }).prefix),
          mac,
          mtu: mtu.segment,
          pidFile: paths.dnsmasqPid,
          leaseFile: paths.dnsmasqLeases,
        });
        dnsmasq = new DnsmasqSupervisor({ runner: this.runner, clock: this.clock, log: this.log, hooks, args, pidFile: paths.dnsmasqPid, errorCode: 'ERR_L2_DNSMASQ', startHint: `dnsmasq-base must be installed and ${bridge} must exist` });
        await this.step(spec, 'ERR_L2_DNSMASQ', `start dnsmasq on ${bridge}`, () => dnsmasq!.start());
      }
      const stop = new AbortController();
      const running: Running = { spec, settings, hooks, source, wireguard, wgName, wgMtu: mtu.wireguard, dnsmasq, appliedConfig: config, appliedPeers: peers, flood, stop, loop: Promise.resolve(), handshakes: Promise.resolve(), ownerToken };
      running.loop = this.reloadLoop(running);
      running.handshakes = watchHandshakes({
        runner: this.runner,
        clock: this.clock,
        log: this.log,
        hooks,
        wgName,
        peers: () => running.appliedPeers,
        boundMs: L2_HANDSHAKE_WARN_MS,
        pollMs: Math.min(settings.reloadMs, L2_HANDSHAKE_WARN_MS),
        signal: stop.signal,
      });
      this.running = running;
      const detail = {
        segment: map.segment,
        wireguard: { interface: wgName, implementation, port: map.port, tunnelIp: self.tunnelIp, publicKey: wireguardPublicKey(source.privateKey) },
        members: map.members.map((m) => m.name),
        peers: peers.map((p) => ({ name: p.name, endpoint: p.endpoint ?? null })),
        mtu: { pod: podMtu, wireguard: mtu.wireguard, segment: mtu.segment },
        bridge,
        vxlan,
        tap,
        address: self.address ?? null,
        dhcpServer: dnsmasq === undefined ? null : map.dhcpServer,
        peerMap: settings.peers,
      };
      this.log.info('attached', { ...detail, mac, durationMs: Math.round(performance.now() - started) });
      return { nics: [{ id: 'l2seg0', mac, backend: { kind: 'tap', ifname: tap }, addresses: self.address === undefined ? [] : [self.address], mtu: mtu.segment }], detail };
    } catch (err) {
      await this.teardown(spec, wireguard).catch((cleanupErr: unknown) => this.log.error('cleanup after a failed attach failed', { err: cleanupErr }));
      throw err;
    }
  }

  /**
   * Stops the reload loop and dnsmasq, deletes the links (wireguard-go ends
   * with its interface) and, last, the nftables tables. Idempotent and safe
   * after a crash: leftovers are found by name and through pid files.
   */
  async detach(spec: NetworkAttachSpec): Promise<void> {
    const running = this.running;
    this.running = undefined;
    if (running !== undefined) {
      running.stop.abort();
      await Promise.all([running.loop, running.handshakes]);
    }
    const paths = l2SegmentStatePaths(spec.stateDir);
    await this.teardown(spec, running?.wireguard ?? new WireguardDevice({ runner: this.runner, log: this.log, clock: this.clock, name: wireguardInterfaceName(spec.vmName), pidFile: paths.wireguardPid }), running?.dnsmasq);
  }

  private async teardown(spec: NetworkAttachSpec, wireguard: WireguardDevice, dnsmasq?: DnsmasqSupervisor): Promise<void> {
    const paths = l2SegmentStatePaths(spec.stateDir);
    // First: the reload loop of an earlier instance still running (a run that never detached) stands down.
    await rm(paths.owner, { force: true });
    const failures: string[] = [];
    const attempt = async (what: string, fn: () => Promise<unknown>): Promise<void> => {
      try {
        await fn();
      } catch (err) {
        if (err instanceof PodvisorError && err.code === 'ERR_PROCESS_NOT_FOUND') return;
        failures.push(`${what}: ${errorMessage(err)}`);
      }
    };
    if (dnsmasq !== undefined) await attempt('stop dnsmasq', () => dnsmasq.stop());
    await attempt(`stop the dnsmasq of ${paths.dnsmasqPid}`, () => stopStrayDnsmasq(paths.dnsmasqPid, this.log, this.clock));
    const names = [L2_SEGMENT_LINKS.tap, L2_SEGMENT_LINKS.vxlan, L2_SEGMENT_LINKS.bridge, wireguard.name];
    await attempt(`delete ${names.join(', ')}`, async () => {
      const out = await this.runner.run('ip', ['-force', '-batch', '-'], { input: names.map((n) => `link del dev ${n}\n`).join(''), check: false });
      // A link that is not there is deleted already.
      const real = out.stderr.split('\n').filter((l) => l.trim() !== '' && !/Cannot find device|^Command failed/.test(l.trim()));
      if (real.length > 0) throw new Error(real.join(' '));
    });
    // wireguard-go ends with its interface; a leftover one is found through its pid file.
    await attempt('stop wireguard-go', () => wireguard.destroy({ linkDeleted: true }));
    // Last: until the VXLAN device is gone, the guard keeps its packets off every other interface.
    await attempt('delete the nftables tables podvisor_l2', () => this.runner.run('nft', ['-f', '-'], { input: buildSegmentTeardown() }));
    if (failures.length > 0) {
      throw new PodvisorError('ERR_L2_DETACH', `l2-segment: could not remove everything: ${failures.join('; ')}`, {
        hint: 'the pod network namespace goes away with the pod; until then, remove the leftovers by hand (ip link del pvl2br0, nft delete table inet podvisor_l2)',
        details: { failures },
      });
    }
  }

  /** Reads and checks the peer map and the private key. Throws `ERR_L2_PEER_MAP` or `ERR_L2_KEY`, naming the member and files. */
  private async readSource(spec: NetworkAttachSpec, settings: L2SegmentSettings): Promise<SegmentSource> {
    const text = await readFile(settings.peers, 'utf8').catch((err: unknown) => {
      throw new PodvisorError('ERR_L2_PEER_MAP', `l2-segment: cannot read the peer map ${settings.peers}: ${errorMessage(err)}`, {
        hint: 'mount the peer map (a ConfigMap) there, or point PODVISOR_L2_PEERS at it',
      });
    });
    const { map, problems } = parsePeerMap(text, settings.peers);
    if (map === undefined) {
      throw new PodvisorError('ERR_L2_PEER_MAP', `l2-segment: the peer map ${settings.peers} is invalid: ${problems.map((p) => `${p.path}: got ${JSON.stringify(p.value)}, expected ${p.expected}`).join('; ')}`, {
        hint: 'see docs/l2-segment.md for the format',
        details: { problems },
      });
    }
    const self = map.members.find((m) => m.name === spec.vmName);
    if (self === undefined) {
      throw new PodvisorError('ERR_L2_PEER_MAP', `l2-segment: the peer map ${settings.peers} has no member ${spec.vmName} (this VM); its members are ${map.members.map((m) => m.name).join(', ')}`, {
        hint: 'add this VM (the pod host name) under members',
      });
    }
    const keyText = await readFile(settings.privateKey, 'utf8').catch((err: unknown) => {
      throw new PodvisorError('ERR_L2_KEY', `l2-segment: member ${self.name} has no private key: cannot read ${settings.privateKey}: ${errorMessage(err)}`, {
        hint: 'mount the private key (a Secret made with `wg genkey`) there, or point PODVISOR_L2_PRIVATE_KEY at it; nothing was created',
      });
    });
    const privateKey = keyText.trim();
    let publicKey: string;
    try {
      publicKey = wireguardPublicKey(privateKey);
    } catch {
      throw new PodvisorError('ERR_L2_KEY', `l2-segment: member ${self.name}: ${settings.privateKey} does not hold a WireGuard private key (base64 of 32 bytes, as wg genkey writes)`, {
        hint: 'nothing was created; the key is not shown',
      });
    }
    if (publicKey !== self.publicKey) {
      throw new PodvisorError(
        'ERR_L2_KEY',
        `l2-segment: the private key ${settings.privateKey} is not member ${self.name}'s: its public key is ${publicKey}, but the peer map ${settings.peers} gives ${self.name} the public key ${self.publicKey}; the peers would drop everything it sends`,
        { hint: 'mount the Secret that belongs to this VM, or put its public key (wg pubkey < key) in the peer map; nothing was created' },
      );
    }
    return { map, self, privateKey, fingerprint: `${text}\0${keyText}` };
  }

  /** The other members as WireGuard peers; a name that does not resolve yet leaves that peer without an endpoint, with a warning. */
  private async peerConfigs(source: SegmentSource, hooks: Pick<NetworkHooks, 'warn'>, previous?: readonly WireguardPeerConfig[]): Promise<WireguardPeerConfig[]> {
    const others = source.map.members.filter((m) => m.name !== source.self.name);
    return Promise.all(
      others.map(async (m) => {
        let endpoint: string | undefined;
        if (isIP(m.endpoint.host) === 4) endpoint = `${m.endpoint.host}:${m.endpoint.port}`;
        else {
          try {
            endpoint = `${(await lookup(m.endpoint.host, { family: 4 })).address}:${m.endpoint.port}`;
          } catch (err) {
            const before = previous?.find((p) => p.name === m.name)?.endpoint;
            endpoint = before;
            if (previous === undefined) {
              hooks.warn({
                code: 'WARN_L2_PEER_UNRESOLVED',
                message: `l2-segment: peer ${m.name}'s endpoint ${m.endpoint.host} does not resolve (${errorMessage(err)}); it joins once it does`,
                hint: 'a headless Service publishes a pod\'s record only while it is ready; the name is looked up again at every reload tick',
              });
            }
          }
        }
        return { name: m.name, publicKey: m.publicKey, endpoint, tunnelIp: m.tunnelIp };
      }),
    );
  }

  /** Makes the VXLAN flood list (all-zero FDB entries) hold exactly `tunnelIps`. */
  private async syncFlood(flood: Set<string>, tunnelIps: readonly string[]): Promise<void> {
    const want = new Set(tunnelIps);
    const lines: string[] = [];
    for (const ip of want) if (!flood.has(ip)) lines.push(`fdb append 00:00:00:00:00:00 dev ${L2_SEGMENT_LINKS.vxlan} dst ${ip}`);
    for (const ip of flood) if (!want.has(ip)) lines.push(`fdb del 00:00:00:00:00:00 dev ${L2_SEGMENT_LINKS.vxlan} dst ${ip}`);
    if (lines.length === 0) return;
    await this.runner.run('bridge', ['-batch', '-'], { input: `${lines.join('\n')}\n` }).catch((err: unknown) => {
      throw new PodvisorError('ERR_L2_VXLAN', `l2-segment: cannot update the flood list of ${L2_SEGMENT_LINKS.vxlan}: ${errorMessage(err)}`, { cause: err });
    });
    flood.clear();
    for (const ip of want) flood.add(ip);
  }

  /**
   * Every `reloadMs`: re-reads both files and applies a changed peer list
   * (`wg syncconf` keeps the sessions of unchanged peers); resolves peer
   * names again; restarts wireguard-go if it died. A map or key that does
   * not check out is refused with a warning naming the member, and the
   * running configuration stays. Changes that need a new segment (its id,
   * port, this VM's addresses) are reported, not applied.
   */
  private async reloadLoop(r: Running): Promise<void> {
    let lastRefusal = '';
    while (!r.stop.signal.aborted) {
      try {
        await this.clock.sleep(r.settings.reloadMs, r.stop.signal);
      } catch {
        return;
      }
      try {
        await this.reloadOnce(r);
        lastRefusal = '';
      } catch (err) {
        const message = errorMessage(err);
        if (message === lastRefusal) continue;
        lastRefusal = message;
        r.hooks.warn({
          code: 'WARN_L2_RELOAD_REFUSED',
          message: `l2-segment: the new peer map or key was refused, the running segment is kept: ${message}`,
          ...(err instanceof PodvisorError && err.hint !== undefined ? { hint: err.hint } : {}),
        });
      }
    }
  }

  private async reloadOnce(r: Running): Promise<void> {
    const owner = await readFile(l2SegmentStatePaths(r.spec.stateDir).owner, 'utf8').catch(() => '');
    if (owner.trim() !== r.ownerToken) {
      this.log.info('the segment was taken over or torn down by another run; this reload loop stops', { stateDir: r.spec.stateDir });
      r.stop.abort();
      return;
    }
    const child = r.wireguard.userspaceChild;
    if (r.wireguard.implementation === 'userspace' && child !== undefined && !child.running) {
      const exit = await child.exited;
      await this.restartWireguard(r);
      r.hooks.notice({ code: 'NOTICE_L2_WIREGUARD_RESTARTED', message: `l2-segment: wireguard-go (pid ${child.pid}) exited (${exit.signal ?? `exit ${exit.code}`}); restarted, the segment was closed meanwhile` });
    }
    const text = await readFile(r.settings.peers, 'utf8').catch(() => undefined);
    const key = await readFile(r.settings.privateKey, 'utf8').catch(() => undefined);
    let source = r.source;
    if (text === undefined || key === undefined || `${text}\0${key}` !== r.source.fingerprint) {
      source = await this.readSource(r.spec, r.settings);
      const before = r.source;
      const fixed = (s: SegmentSource): string => JSON.stringify([s.map.segment, s.map.port, s.map.tunnelNetwork, s.map.dhcpServer, s.self.tunnelIp, s.self.address]);
      if (fixed(source) !== fixed(before)) {
        throw new PodvisorError('ERR_L2_RELOAD_NEEDS_RESTART', `the segment id, port, tunnel network, DHCP server or member ${before.self.name}'s own addresses changed in ${r.settings.peers}; that takes a restart of the pod`, {
          hint: 'peers may be added, removed or changed live; the rest applies at the next start',
        });
      }
    }
    const peers = await this.peerConfigs(source, r.hooks, r.appliedPeers);
    const config = wireguardConfig(source.privateKey, source.map.port, peers);
    const changedMembers = source !== r.source;
    if (config !== r.appliedConfig) {
      await this.syncWireguard(r.wgName, config);
      r.appliedConfig = config;
    }
    r.appliedPeers = peers;
    await this.syncFlood(r.flood, peers.map((p) => p.tunnelIp));
    if (changedMembers) {
      const was = new Set(r.source.map.members.map((m) => m.name));
      const now = new Set(source.map.members.map((m) => m.name));
      const added = [...now].filter((n) => !was.has(n));
      const removed = [...was].filter((n) => !now.has(n));
      r.source = source;
      r.hooks.notice({
        code: 'NOTICE_L2_PEERS_RELOADED',
        message: `l2-segment: peer map reloaded without a restart: ${now.size} members${added.length > 0 ? `, added ${added.join(', ')}` : ''}${removed.length > 0 ? `, removed ${removed.join(', ')}` : ''}`,
      });
    }
  }

  private async restartWireguard(r: Running): Promise<void> {
    await r.wireguard.destroy();
    await r.wireguard.create('userspace');
    const prefix = (parseAddressWithPrefix(r.source.map.tunnelNetwork) as { prefix: number }).prefix;
    await this.syncWireguard(r.wgName, r.appliedConfig);
    await this.runner.run('ip', ['-batch', '-'], { input: `addr add ${r.source.self.tunnelIp}/${prefix} dev ${r.wgName}\nlink set dev ${r.wgName} mtu ${r.wgMtu} up\n` });
  }

  /**
   * `wg syncconf` from a pipe: the configuration holds the private key, so it
   * is never written to a file. wg opens its argument with fopen, which
   * refuses the socket Node gives a child as stdin, hence `cat |`.
   */
  private async syncWireguard(wgName: string, config: string): Promise<void> {
    await this.runner.run('sh', ['-c', 'cat | exec wg syncconf "$0" /dev/stdin', wgName], { input: config });
  }

  /** The MTU of the pod interface: the named one, or the one carrying the IPv4 default route. */
  private async podMtu(settings: L2SegmentSettings): Promise<number> {
    let name = settings.podInterface;
    if (name === undefined) {
      const routes = JSON.parse((await this.runner.run('ip', ['-4', '-j', 'route', 'show', 'default'])).stdout || '[]') as { dev?: string }[];
      name = routes.find((r) => typeof r.dev === 'string')?.dev;
      if (name === undefined) throw new PodvisorError('ERR_L2_POD_INTERFACE', 'l2-segment: the pod has no IPv4 default route to take the MTU from', { hint: 'name the interface with PODVISOR_L2_POD_INTERFACE' });
    }
    const links = JSON.parse((await this.runner.run('ip', ['-j', 'link', 'show', 'dev', name])).stdout || '[]') as { mtu?: number }[];
    const mtu = links[0]?.mtu;
    if (mtu === undefined) throw new PodvisorError('ERR_L2_POD_INTERFACE', `l2-segment: cannot read the MTU of the pod interface ${name}`);
    return mtu;
  }

  private step<T>(spec: NetworkAttachSpec, code: string, what: string, fn: () => Promise<T>): Promise<T> {
    return networkStep({ backend: 'l2-segment', codePrefix: 'ERR_L2_', code, what, ...(spec.signal === undefined ? {} : { signal: spec.signal }) }, fn);
  }
}
