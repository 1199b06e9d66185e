/**
 * The l2-segment backend passes the NetworkBackend contract suite that plugin
 * authors run (from @podvisor/core/testing), in a pod made by
 * test/support/pod.sh, every command run inside it, with a real wireguard-go,
 * VXLAN device, bridge, tap and dnsmasq. Its one peer's endpoint is the pod's
 * own loopback, so the WireGuard keepalives stay in the pod. Needs root.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ExecaProcessRunner, SilentLogger, resolvePluginSettings } from '@podvisor/core';
import { describeNetworkBackendContract } from '@podvisor/core/testing';
import { NetnsProcessRunner } from '@podvisor/net-support';
import { L2SegmentNetworkBackend } from './l2-segment-network-backend.js';
import { L2_SEGMENT_SETTINGS } from './l2-segment-settings.js';
import { wireguardInterfaceName } from './segment-plan.js';

const POD_SH = fileURLToPath(new URL('../../../test/support/pod.sh', import.meta.url));
const RUN_ID = `${process.pid.toString(36)}${Date.now().toString(36).slice(-4)}`;
let seq = 0;

describeNetworkBackendContract('l2-segment', async () => {
  seq += 1;
  const pod = `pvl2c-${RUN_ID}-${seq}`;
  const vmName = `vm-l2c-${RUN_ID}-${seq}`;
  const tmp = await mkdtemp(join(tmpdir(), `podvisor-l2c-${RUN_ID}-`));
  execFileSync(POD_SH, ['create', pod], { stdio: 'ignore' });
  const wg = (...args: string[]) => execFileSync('wg', args.slice(1), { encoding: 'utf8', input: args[0] }).trim();
  const key = wg('', 'genkey');
  const peerKey = wg('', 'genkey');
  await writeFile(join(tmp, 'key'), `${key}\n`, { mode: 0o600 });
  await writeFile(
    join(tmp, 'peers.yaml'),
    [
      'segment: 42',
      'members:',
      `  ${vmName}:`,
      '    endpoint: 127.0.0.1:51820',
      `    publicKey: ${wg(key, 'pubkey')}`,
      '    tunnelIp: 10.255.0.1',
      '    address: 10.77.0.11/24',
      '  vm-l2c-peer:',
      '    endpoint: 127.0.0.1:51999',
      `    publicKey: ${wg(peerKey, 'pubkey')}`,
      '    tunnelIp: 10.255.0.2',
      '',
    ].join('\n'),
  );
  const runner = new ExecaProcessRunner(new SilentLogger());
  const env = { PODVISOR_L2_PEERS: join(tmp, 'peers.yaml'), PODVISOR_L2_PRIVATE_KEY: join(tmp, 'key'), PODVISOR_L2_RELOAD_MS: '200', PODVISOR_L2_WIREGUARD: 'userspace' };
  const settings = resolvePluginSettings(L2_SEGMENT_SETTINGS, { env, yaml: {} }).settings;
  const inPod = (...cmd: string[]) => execFileSync('ip', ['netns', 'exec', pod, ...cmd], { encoding: 'utf8' });
  const wgSocket = `/var/run/wireguard/${wireguardInterfaceName(vmName)}.sock`;
  const stateDir = join(tmp, 'state');
  return {
    create: () => new L2SegmentNetworkBackend(new NetnsProcessRunner(runner, pod), new SilentLogger()),
    createWithRunner: (wrap) => new L2SegmentNetworkBackend(wrap(new NetnsProcessRunner(runner, pod)), new SilentLogger()),
    spec: { vmName, stateDir, diskDir: join(tmp, 'disk'), settings, vnc: { enabled: false, port: 5900 }, controlPort: 5800 },
    // Links beyond the pod's own, nftables tables, processes in the pod, wireguard-go's control socket, pid and owner files.
    leftovers: async () => {
      const links = (JSON.parse(inPod('ip', '-j', 'link', 'show')) as { ifname: string }[]).map((l) => `link ${l.ifname}`).filter((l) => l !== 'link lo' && l !== 'link eth0');
      const tables = inPod('nft', 'list', 'tables').split('\n').filter((l) => l !== '');
      const pids = execFileSync('ip', ['netns', 'pids', pod], { encoding: 'utf8' }).split('\n').filter((l) => l !== '').map((p) => `pid ${p}`);
      const socket = existsSync(wgSocket) ? [`socket ${wgSocket}`] : [];
      const files = (await readdir(stateDir).catch(() => [] as string[])).filter((f) => /\.(pid|owner)$/.test(f)).map((f) => `file ${f}`);
      return [...links, ...tables, ...pids, ...socket, ...files];
    },
    invalid: { spec: { settings: { ...settings, peers: { value: 'peers.yaml', path: 'env PODVISOR_L2_PEERS', given: true } } }, path: 'env PODVISOR_L2_PEERS' },
    cleanup: async () => {
      await runner.stopAll(1000);
      execFileSync(POD_SH, ['destroy', pod], { stdio: 'ignore' });
      await rm(wgSocket, { force: true });
      await rm(tmp, { recursive: true, force: true });
    },
  };
});
