/**
 * The l2-segment network end to end (issue 14's acceptance): three nodes are
 * network namespaces joined by an underlay bridge (in a namespace of its
 * own), each with one Calico-style pod made by test/support/pod.sh and routes
 * to the other nodes' pods, as a BGP-routed CNI would have. In each pod the
 * real `podvisor` binary runs the test guest under TCG with nat-bridge as the
 * primary network and `PODVISOR_NETWORK_EXTRA=l2-segment`. The guests talk to
 * each other over their second NIC through the guest's fetch CGI (the guest
 * fetches another guest's page itself and reports its neighbour entry),
 * which the test reaches on each pod IP from that pod's node. The tests run
 * in order on the same three pods: A and B reach each other; a capture on the
 * underlay shows only WireGuard; C on another segment id reaches nothing; C
 * with a wrong key is refused; C added to the peer map joins without a
 * restart of A or B; kill -9 of A's podvisor converges; SIGTERM leaves every
 * pod as it was. Three TCG guests on two cores: every wait is on state, with
 * generous bounds.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { segmentMac, wireguardInterfaceName } from '@podvisor/net-l2-segment';
import { PodvisorProcess, REPO, collectEvents, keepArtifacts, makeVmDirs, readEvents, requireBuilt, vmEnv, type VmDirs } from './support/podvisor-process.js';

const POD_SH = path.join(REPO, 'test/support/pod.sh');
const TAG = randomBytes(3).toString('hex');
const UNDERLAY = `pvl2ul-${TAG}`;
const PAGE_TEXT = 'podvisor-test-guest';

interface Member {
  key: 'a' | 'b' | 'c';
  name: string;
  pod: string;
  node: string;
  /** The node's address on the underlay. */
  underlayIp: string;
  dirs: VmDirs;
  podIp: string;
  tunnelIp: string;
  address: string;
  privateKey: string;
  publicKey: string;
  process: PodvisorProcess | null;
}

const members: Record<'a' | 'b' | 'c', Member> = {} as Record<'a' | 'b' | 'c', Member>;
const started: PodvisorProcess[] = [];
const helpers: ChildProcess[] = [];

function sh(cmd: string, args: string[], input?: string): string {
  return execFileSync(cmd, args, { encoding: 'utf8', ...(input === undefined ? {} : { input }) });
}

function inNs(ns: string, ...cmd: string[]): string {
  return sh('ip', ['netns', 'exec', ns, ...cmd]);
}

/** The peer map, written the way a ConfigMap update lands (a new file renamed into place). */
async function writePeerMap(m: Member, segment: number, names: Array<'a' | 'b' | 'c'>): Promise<void> {
  const lines = [`segment: ${segment}`, 'tunnelNetwork: 10.255.0.0/24', 'members:'];
  for (const k of names) {
    const x = members[k];
    lines.push(`  ${x.name}:`, `    endpoint: ${x.podIp}:51820`, `    publicKey: ${x.publicKey}`, `    tunnelIp: ${x.tunnelIp}`, `    address: ${x.address}`);
  }
  const file = path.join(m.dirs.root, 'peers.yaml');
  await writeFile(`${file}.new`, `${lines.join('\n')}\n`);
  await rename(`${file}.new`, file);
}

async function writeKey(m: Member, key: string): Promise<void> {
  await writeFile(path.join(m.dirs.root, 'private-key'), `${key}\n`, { mode: 0o600 });
}

function start(m: Member): PodvisorProcess {
  const env = vmEnv(m.dirs, m.name, {
    PODVISOR_NETWORK: 'nat-bridge',
    // WireGuard listens on the pod IP: l2-segment declares its port, and nat-bridge keeps it out of the DNAT to the VM
    // without a PODVISOR_NAT_EXCLUDE (otherwise A and B would not reach each other).
    PODVISOR_NETWORK_EXTRA: 'l2-segment',
    PODVISOR_L2_PEERS: path.join(m.dirs.root, 'peers.yaml'),
    PODVISOR_L2_PRIVATE_KEY: path.join(m.dirs.root, 'private-key'),
    PODVISOR_L2_RELOAD_MS: '500',
    PODVISOR_LISTEN: undefined,
  });
  const p = new PodvisorProcess(['run'], env, { wrapper: ['ip', 'netns', 'exec', m.pod] });
  m.process = p;
  started.push(p);
  return p;
}

/** The guest of `from` fetches `path` from `toAddress` over the segment; its report (fetch line, neigh line, body). */
function fetchVia(from: Member, toAddress: string, urlPath = ''): string {
  try {
    return inNs(from.node, 'curl', '-sS', '--max-time', '45', `http://${from.podIp}/cgi-bin/fetch.cgi?${toAddress}${urlPath === '' ? '' : `/${urlPath}`}`);
  } catch (err) {
    return `curl failed: ${(err as Error).message}`;
  }
}

/** Retries `fetchVia` until the guest's fetch succeeded (bounded); returns the last report. */
async function fetchUntilOk(from: Member, toAddress: string, boundMs = 120_000): Promise<string> {
  const deadline = Date.now() + boundMs;
  for (;;) {
    const report = fetchVia(from, toAddress);
    if (/^fetch: exit=0 /m.test(report) || Date.now() > deadline) return report;
    await new Promise((r) => setTimeout(r, 1000));
  }
}

function booted(m: Member, count: number): Promise<RegExpMatchArray> {
  return (m.process as PodvisorProcess).waitForStdout(new RegExp(`PODVISOR-GUEST-READY boot-count=${count} `), 240_000);
}

function vmStarts(m: Member): number {
  return readEvents(m.dirs.stateDir).filter((e) => e.type === 'VmStarted').length;
}

/** What podvisor may leave in a pod: links, nftables tables, processes. */
function podView(m: Member): { links: string[]; tables: string[]; processes: string[] } {
  const links = (JSON.parse(sh('ip', ['-n', m.pod, '-j', 'link', 'show'])) as { ifname: string }[]).map((l) => l.ifname).sort();
  const tables = inNs(m.pod, 'nft', 'list', 'tables').split('\n').filter((l) => l !== '');
  const processes = sh('ip', ['netns', 'pids', m.pod]).split('\n').filter((l) => l !== '').map((p) => {
    try {
      return readFileSync(`/proc/${p}/comm`, 'utf8').trim();
    } catch {
      return `gone:${p}`;
    }
  });
  return { links, tables, processes };
}

const PRISTINE = { links: ['eth0', 'lo'], tables: [], processes: [] };

/** tcpdump on an interface of a namespace, writing a pcap; resolves once it listens. */
async function capture(ns: string, ifname: string, file: string): Promise<{ stop: () => Promise<void> }> {
  const child = spawn('ip', ['netns', 'exec', ns, 'tcpdump', '-i', ifname, '-U', '-s', '0', '-n', '-w', file], { stdio: ['ignore', 'ignore', 'pipe'] });
  helpers.push(child);
  let err = '';
  await new Promise<void>((resolve, reject) => {
    child.stderr?.setEncoding('utf8').on('data', (d: string) => {
      err += d;
      if (err.includes('listening on')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`tcpdump exited (${code}): ${err}`)));
  });
  return {
    stop: () =>
      new Promise<void>((resolve) => {
        child.once('close', () => resolve());
        child.kill('SIGINT');
      }),
  };
}

function summary(file: string): string[] {
  return sh('tcpdump', ['-r', file, '-n', '-q']).split('\n').filter((l) => l.trim() !== '');
}

beforeAll(async () => {
  requireBuilt();
  // The underlay: a bridge in a namespace of its own, one leg per node.
  sh('ip', ['netns', 'add', UNDERLAY]);
  sh('ip', ['-n', UNDERLAY, 'link', 'add', 'ul0', 'type', 'bridge']);
  inNs(UNDERLAY, 'sysctl', '-q', '-w', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1');
  sh('ip', ['-n', UNDERLAY, 'link', 'set', 'ul0', 'up']);
  const keys = ['a', 'b', 'c'] as const;
  for (const [i, k] of keys.entries()) {
    const name = `pv-l2${k}-${TAG}`;
    const dirs = await makeVmDirs(name);
    const privateKey = sh('wg', ['genkey']).trim();
    const m: Member = {
      key: k,
      name,
      pod: `pvl2${k}-${TAG}`,
      node: `pvl2${k}-${TAG}-node`,
      underlayIp: `10.98.0.${i + 1}`,
      dirs,
      podIp: '',
      tunnelIp: `10.255.0.${i + 1}`,
      address: `10.77.0.${11 + i}/24`,
      privateKey,
      publicKey: sh('wg', ['pubkey'], privateKey).trim(),
      process: null,
    };
    members[k] = m;
    const out = sh(POD_SH, ['create', m.pod, '--node', m.node]);
    m.podIp = /^POD_IP=(.*)$/m.exec(out)?.[1] as string;
    sh('ip', ['-n', m.node, 'link', 'add', 'pvul0', 'type', 'veth', 'peer', 'name', `ul${k}`, 'netns', UNDERLAY]);
    inNs(m.node, 'sysctl', '-q', '-w', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.pvul0.disable_ipv6=1');
    sh('ip', ['-n', m.node, 'addr', 'add', `${m.underlayIp}/24`, 'dev', 'pvul0']);
    sh('ip', ['-n', m.node, 'link', 'set', 'pvul0', 'up']);
    sh('ip', ['-n', UNDERLAY, 'link', 'set', `ul${k}`, 'master', 'ul0', 'up']);
  }
  // Each node routes the other nodes' pods through the underlay.
  for (const m of Object.values(members)) {
    for (const o of Object.values(members)) if (o !== m) sh('ip', ['-n', m.node, 'route', 'add', `${o.podIp}/32`, 'via', o.underlayIp]);
  }
  for (const m of Object.values(members)) await writeKey(m, m.privateKey);
}, 120_000);

afterAll(async () => {
  for (const p of started) await p.killed();
  for (const h of helpers) if (h.exitCode === null && h.signalCode === null) h.kill('SIGKILL');
  for (const m of Object.values(members)) {
    execFileSync(POD_SH, ['destroy', m.pod], { stdio: 'ignore' });
    await m.dirs.cleanup();
  }
  execFileSync('ip', ['netns', 'del', UNDERLAY], { stdio: 'ignore' });
}, 120_000);

async function keep(label: string): Promise<void> {
  for (const m of Object.values(members)) if (m.process !== null) await keepArtifacts(`l2-segment-${label}-${m.key}`, m.process, m.dirs);
}

describe('l2-segment: VMs on three nodes, VXLAN inside WireGuard (real binary, TCG guests)', () => {
  it('A and B boot with a second NIC on the segment and reach each other there: HTTP to the guest page, ARP resolved across nodes', async (ctx) => {
    ctx.onTestFailed(() => keep('reach'));
    const { a, b } = members;
    await writePeerMap(a, 42, ['a', 'b']);
    await writePeerMap(b, 42, ['a', 'b']);
    start(a);
    start(b);
    await Promise.all([booted(a, 1), booted(b, 1)]);
    for (const m of [a, b]) {
      // The second NIC got the segment address from its own pod's DHCP server, and the segment MTU.
      expect(m.process?.stdout).toMatch(new RegExp(`^PODVISOR-GUEST-NIC eth1 ${segmentMac(m.name)} ${m.address.replace(/\./g, '\\.')}\\r?$`, 'm'));
      const attached = readEvents(m.dirs.stateDir).filter((e) => e.type === 'NetworkAttached').map((e) => e.data as { backend: string; detail: Record<string, unknown> });
      expect(attached.map((x) => x.backend)).toEqual(['nat-bridge', 'l2-segment']);
      expect(attached[0]?.detail).toMatchObject({ dnat: { excluded: expect.arrayContaining(['udp/51820']), keptForStacked: [{ port: 'udp/51820', backend: 'l2-segment' }] } });
      expect(attached[1]?.detail).toMatchObject({ segment: 42, mtu: { pod: 1500, wireguard: 1420, segment: 1370 }, wireguard: { implementation: 'userspace', interface: wireguardInterfaceName(m.name) } });
    }
    const ab = await fetchUntilOk(a, b.address.split('/')[0] as string);
    expect(ab).toMatch(/^fetch: exit=0 /m);
    expect(ab).toContain(PAGE_TEXT);
    expect(ab).toContain(`hostname: `);
    expect(ab).toContain(`nic: eth1 ${segmentMac(b.name)} ${b.address}`);
    // A's guest resolved B's segment address to B's MAC by ARP, across the nodes.
    expect(ab).toMatch(new RegExp(`^neigh: 10\\.77\\.0\\.12 dev eth1 lladdr ${segmentMac(b.name)}`, 'm'));
    const ba = await fetchUntilOk(b, a.address.split('/')[0] as string);
    expect(ba).toContain(`nic: eth1 ${segmentMac(a.name)} ${a.address}`);
    expect(ba).toMatch(new RegExp(`^neigh: 10\\.77\\.0\\.11 dev eth1 lladdr ${segmentMac(a.name)}`, 'm'));
  }, 400_000);

  it('a capture on the underlay during an HTTP transfer over the segment holds only WireGuard UDP, and the page text nowhere (while the tunnel inside carries it)', async (ctx) => {
    ctx.onTestFailed(() => keep('capture'));
    const { a, b } = members;
    const underlayPcap = path.join(a.dirs.root, 'underlay.pcap');
    const insidePcap = path.join(a.dirs.root, 'inside.pcap');
    const underlay = await capture(UNDERLAY, 'ul0', underlayPcap);
    const inside = await capture(a.pod, wireguardInterfaceName(a.name), insidePcap);
    const report = fetchVia(a, b.address.split('/')[0] as string);
    const big = fetchVia(a, b.address.split('/')[0] as string, 'cgi-bin/blob.cgi?1');
    await underlay.stop();
    await inside.stop();
    expect(report).toContain(PAGE_TEXT);
    expect(big).toMatch(/^fetch: exit=0 bytes=1048576 /m);

    const lines = summary(underlayPcap);
    expect(lines.length).toBeGreaterThan(20);
    const pods = [a.podIp, b.podIp].map((ip) => ip.replace(/\./g, '\\.')).join('|');
    const wireguard = new RegExp(`^\\S+ IP (${pods})\\.51820 > (${pods})\\.51820: UDP, length \\d+$`);
    const arp = /^\S+ ARP, /;
    // Everything is WireGuard between the two pods, save the nodes' own ARP on the underlay.
    expect(lines.filter((l) => !wireguard.test(l) && !arp.test(l))).toEqual([]);
    expect(readFileSync(underlayPcap).includes(PAGE_TEXT)).toBe(false);
    // The control: the same transfer, seen inside the tunnel, is VXLAN in the clear.
    expect(readFileSync(insidePcap).includes(PAGE_TEXT)).toBe(true);
  }, 200_000);

  it('C, on another segment id, reaches neither A nor B, nor they C; SIGTERM leaves its pod as it was', async (ctx) => {
    ctx.onTestFailed(() => keep('other-segment'));
    const { a, b, c } = members;
    // C knows A and B (their keys and endpoints) but on segment 99; A and B know nothing of C.
    await writePeerMap(c, 99, ['a', 'b', 'c']);
    start(c);
    await booted(c, 1);
    expect(c.process?.stdout).toMatch(new RegExp(`^PODVISOR-GUEST-NIC eth1 ${segmentMac(c.name)} 10\\.77\\.0\\.13/24\\r?$`, 'm'));
    const toA = fetchVia(c, '10.77.0.11');
    expect(toA).toMatch(/^fetch: exit=[1-9]/m);
    expect(toA).not.toContain('lladdr');
    expect(toA).not.toContain(PAGE_TEXT);
    const fromB = fetchVia(b, '10.77.0.13');
    expect(fromB).toMatch(/^fetch: exit=[1-9]/m);
    expect(fromB).not.toContain(PAGE_TEXT);
    c.process?.signal('SIGTERM');
    expect((await (c.process as PodvisorProcess).exited).code).toBe(0);
    expect(podView(c)).toEqual(PRISTINE);
    // A is untouched: still its first boot, still reaching B.
    expect(vmStarts(a)).toBe(1);
  }, 400_000);

  it('a wrong key on C is refused with an error naming the member, nothing is created, and nothing from C crosses the underlay', async (ctx) => {
    ctx.onTestFailed(() => keep('wrong-key'));
    const { c } = members;
    await writePeerMap(c, 42, ['a', 'b', 'c']);
    await writeKey(c, sh('wg', ['genkey']).trim());
    const pcap = path.join(c.dirs.root, 'wrong-key.pcap');
    const underlay = await capture(UNDERLAY, 'ul0', pcap);
    const p = start(c);
    const exit = await p.exited;
    await underlay.stop();
    expect(exit.code).toBe(3);
    expect(p.stderr).toContain('ERR_L2_KEY');
    expect(p.stderr).toContain(`is not member ${c.name}'s`);
    expect(p.stderr).toContain(path.join(c.dirs.root, 'private-key'));
    expect(p.stderr).not.toContain(c.privateKey);
    expect(p.stdout).not.toContain('PODVISOR-GUEST-READY');
    expect(podView(c)).toEqual(PRISTINE);
    // `IP.port` in tcpdump's lines: the trailing dot keeps 10.0.0.5 from matching 10.0.0.53.
    expect(summary(pcap).filter((l) => l.includes(`${c.podIp}.`))).toEqual([]);
  }, 200_000);

  it('a peer added to the map joins without restarting A or B: C reaches A and B reaches C', async (ctx) => {
    ctx.onTestFailed(() => keep('peer-added'));
    const { a, b, c } = members;
    await writeKey(c, c.privateKey);
    await writePeerMap(c, 42, ['a', 'b', 'c']);
    await writePeerMap(a, 42, ['a', 'b', 'c']);
    await writePeerMap(b, 42, ['a', 'b', 'c']);
    const reloaded = (e: { type: string; data: unknown }): boolean => e.type === 'WarningRaised' && (e.data as { code: string }).code === 'NOTICE_L2_PEERS_RELOADED';
    for (const m of [a, b]) {
      const [notice] = await collectEvents(m.dirs.stateDir, reloaded, 1, 60_000);
      expect((notice?.data as { message: string }).message).toContain(`added ${c.name}`);
    }
    start(c);
    await booted(c, 2);
    expect(await fetchUntilOk(c, '10.77.0.11')).toContain(`nic: eth1 ${segmentMac(a.name)} ${a.address}`);
    expect(await fetchUntilOk(b, '10.77.0.13')).toContain(`nic: eth1 ${segmentMac(c.name)} ${c.address}`);
    expect([vmStarts(a), vmStarts(b)]).toEqual([1, 1]);
  }, 400_000);

  it('kill -9 of podvisor on A, then a restart: the segment converges and B reaches A again without restarting B', async (ctx) => {
    ctx.onTestFailed(() => keep('kill-9'));
    const { a, b } = members;
    a.process?.signal('SIGKILL');
    await a.process?.exited;
    start(a);
    await booted(a, 2);
    const report = await fetchUntilOk(b, '10.77.0.11');
    expect(report).toMatch(/^fetch: exit=0 /m);
    expect(report).toContain('boot-count: 2');
    expect(vmStarts(b)).toBe(1);
    // One set of segment links in A's pod, not two.
    expect(podView(a).links.filter((l) => l.startsWith('pvl2') || l.startsWith('pvwg')).sort()).toEqual(['pvl2br0', 'pvl2tap0', 'pvl2vx0', wireguardInterfaceName(a.name)].sort());
  }, 400_000);

  it('SIGTERM on every node: each podvisor exits 0 and leaves its pod as pod.sh made it', async (ctx) => {
    ctx.onTestFailed(() => keep('sigterm'));
    const all = Object.values(members);
    for (const m of all) m.process?.signal('SIGTERM');
    for (const m of all) expect((await (m.process as PodvisorProcess).exited).code).toBe(0);
    for (const m of all) expect(podView(m)).toEqual(PRISTINE);
  }, 200_000);
});
