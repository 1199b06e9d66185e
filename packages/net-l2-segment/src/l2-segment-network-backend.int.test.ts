/**
 * The real backend, with real ip/bridge/nft/wg/wireguard-go/dnsmasq, run
 * inside a simulated pod (test/support/pod.sh, its own node namespace) through
 * a runner that wraps every command in `ip netns exec <pod>`, as PID 1 in the
 * pod would run it. No VM: these are the behaviours around the data path (the
 * e2e test has the VMs): a peer whose name does not resolve does not block, a
 * wrong key at run time is refused and the running key stays, a killed
 * wireguard-go comes back, and detach (also of a crashed run) leaves the pod
 * as it was.
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NetnsProcessRunner } from '@podvisor/net-support';
import { ExecaProcessRunner, SilentLogger, resolvePluginSettings, type NetworkAttachSpec, type NetworkHooks, type PluginWarning } from '@podvisor/core';
import { L2SegmentNetworkBackend } from './l2-segment-network-backend.js';
import { L2_SEGMENT_SETTINGS } from './l2-segment-settings.js';
import { wireguardInterfaceName } from './segment-plan.js';

const POD_SH = fileURLToPath(new URL('../../../test/support/pod.sh', import.meta.url));
const RUN_ID = `${process.pid.toString(36)}${Date.now().toString(36).slice(-4)}`;

function recordingHooks() {
  const seen: PluginWarning[] = [];
  const waiters: { code: string; resolve: (w: PluginWarning) => void }[] = [];
  const record = (w: PluginWarning): void => {
    seen.push(w);
    for (const x of waiters.filter((y) => y.code === w.code)) x.resolve(w);
  };
  const hooks: NetworkHooks = { log: new SilentLogger(), warn: record, notice: record };
  const waitFor = (code: string): Promise<PluginWarning> => {
    const found = seen.find((w) => w.code === code);
    return found !== undefined ? Promise.resolve(found) : new Promise((resolve) => waiters.push({ code, resolve }));
  };
  return { hooks, seen, waitFor };
}

const sh = (cmd: string, args: string[], input?: string): string => execFileSync(cmd, args, { encoding: 'utf8', ...(input === undefined ? {} : { input }) });

let pod: string;
let dir: string;
let runner: ExecaProcessRunner;
let spec: NetworkAttachSpec;
let key: string;
const vmName = `vm-l2int-${RUN_ID}`;

function podView(): { links: string[]; tables: string[]; processes: string[] } {
  const links = (JSON.parse(sh('ip', ['-n', pod, '-j', 'link', 'show'])) as { ifname: string }[]).map((l) => l.ifname).sort();
  const tables = sh('ip', ['netns', 'exec', pod, 'nft', 'list', 'tables']).split('\n').filter((l) => l !== '');
  const processes = sh('ip', ['netns', 'pids', pod]).split('\n').filter((l) => l !== '');
  return { links, tables, processes };
}

async function writeMap(members: string): Promise<void> {
  await writeFile(join(dir, 'peers.yaml.new'), `segment: 7\nmembers:\n${members}`);
  sh('mv', [join(dir, 'peers.yaml.new'), join(dir, 'peers.yaml')]);
}

function member(name: string, endpoint: string, publicKey: string, tunnelIp: string, address?: string): string {
  return `  ${name}:\n    endpoint: ${endpoint}\n    publicKey: ${publicKey}\n    tunnelIp: ${tunnelIp}\n${address === undefined ? '' : `    address: ${address}\n`}`;
}

beforeEach(async () => {
  pod = `pvl2i-${RUN_ID}-${Math.random().toString(36).slice(2, 6)}`;
  dir = await mkdtemp(join(tmpdir(), 'pv-l2-int-'));
  sh(POD_SH, ['create', pod]);
  runner = new ExecaProcessRunner(new SilentLogger());
  key = sh('wg', ['genkey']).trim();
  await writeFile(join(dir, 'key'), `${key}\n`, { mode: 0o600 });
  spec = {
    vmName,
    stateDir: join(dir, 'state'),
    diskDir: dir,
    settings: resolvePluginSettings(L2_SEGMENT_SETTINGS, {
      env: { PODVISOR_L2_PEERS: join(dir, 'peers.yaml'), PODVISOR_L2_PRIVATE_KEY: join(dir, 'key'), PODVISOR_L2_RELOAD_MS: '200', PODVISOR_L2_WIREGUARD: 'userspace' },
      yaml: {},
    }).settings,
    vnc: { enabled: false, port: 5900 },
    controlPort: 5800,
  };
});

afterEach(async () => {
  await runner.stopAll(1000);
  execFileSync(POD_SH, ['destroy', pod], { stdio: 'ignore' });
  await rm(dir, { recursive: true, force: true });
});

describe('L2SegmentNetworkBackend in a pod namespace (real wireguard-go, no VM)', () => {
  it('a peer whose name does not resolve does not block; a wrong key at run time is refused and the running key stays; a killed wireguard-go comes back; detach leaves the pod clean', async () => {
    const publicKey = sh('wg', ['pubkey'], key).trim();
    const other = sh('wg', ['pubkey'], sh('wg', ['genkey'])).trim();
    await writeMap(member(vmName, '10.0.0.1', publicKey, '10.255.0.1', '10.77.0.11/24') + member('vm-far', 'nowhere.invalid:51820', other, '10.255.0.2'));
    const backend = new L2SegmentNetworkBackend(new NetnsProcessRunner(runner, pod), new SilentLogger());
    const { hooks, waitFor } = recordingHooks();
    const attached = await backend.attach(spec, hooks);
    expect(attached.nics).toEqual([{ id: 'l2seg0', mac: expect.stringMatching(/^52:54:00:/), backend: { kind: 'tap', ifname: 'pvl2tap0' }, addresses: ['10.77.0.11/24'], mtu: 1370 }]);
    expect((await waitFor('WARN_L2_PEER_UNRESOLVED')).message).toContain('vm-far');
    const wg = wireguardInterfaceName(vmName);
    expect(podView().links).toEqual(['eth0', 'lo', 'pvl2br0', 'pvl2tap0', 'pvl2vx0', wg].sort());
    expect(podView().tables).toEqual(['table inet podvisor_l2', 'table bridge podvisor_l2']);
    expect(sh('ip', ['netns', 'exec', pod, 'wg', 'show', wg, 'peers']).trim()).toBe(other);
    // The pod port it declares to the primary (before attach) is the one WireGuard listens on.
    expect(await backend.podPorts(spec)).toEqual([{ proto: 'udp', port: Number(sh('ip', ['netns', 'exec', pod, 'wg', 'show', wg, 'listen-port']).trim()) }]);

    // A wrong key while running: refused, naming the member; WireGuard keeps the right one.
    await writeFile(join(dir, 'key'), `${sh('wg', ['genkey']).trim()}\n`);
    const refused = await waitFor('WARN_L2_RELOAD_REFUSED');
    expect(refused.message).toContain(`is not member ${vmName}'s`);
    expect(sh('ip', ['netns', 'exec', pod, 'wg', 'show', wg, 'public-key']).trim()).toBe(publicKey);

    // wireguard-go killed from outside: restarted with the same configuration.
    const pid = sh('cat', [join(spec.stateDir, 'l2-wireguard-go.pid')]).trim();
    process.kill(Number(pid), 'SIGKILL');
    await waitFor('NOTICE_L2_WIREGUARD_RESTARTED');
    expect(sh('ip', ['netns', 'exec', pod, 'wg', 'show', wg, 'public-key']).trim()).toBe(publicKey);

    await backend.detach(spec);
    await backend.detach(spec);
    expect(podView()).toEqual({ links: ['eth0', 'lo'], tables: [], processes: [] });
  }, 60_000);

  it('detach by a new instance removes what a crashed run left: links, tables, wireguard-go and dnsmasq', async () => {
    await writeMap(member(vmName, '10.0.0.1', sh('wg', ['pubkey'], key).trim(), '10.255.0.1', '10.77.0.11/24'));
    // The crashed run: its own runner, whose children are left running.
    const crashedRunner = new ExecaProcessRunner(new SilentLogger());
    await new L2SegmentNetworkBackend(new NetnsProcessRunner(crashedRunner, pod), new SilentLogger()).attach(spec, recordingHooks().hooks);
    expect(podView().processes.length).toBe(2);
    await new L2SegmentNetworkBackend(new NetnsProcessRunner(runner, pod), new SilentLogger()).detach(spec);
    expect(podView()).toEqual({ links: ['eth0', 'lo'], tables: [], processes: [] });
    await crashedRunner.stopAll(1000);
  }, 60_000);
});
