/**
 * The NAT bridge passes the NetworkBackend contract suite that plugin authors
 * run (from @podvisor/core/testing), in a Calico-style pod made by
 * test/support/pod.sh, every command run inside it. Needs root.
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ExecaProcessRunner, SilentLogger, resolvePluginSettings } from '@podvisor/core';
import { describeNetworkBackendContract } from '@podvisor/core/testing';
import { NetnsProcessRunner } from '@podvisor/net-support';
import { NatBridgeNetworkBackend } from './nat-bridge-network-backend.js';
import { NAT_BRIDGE_SETTINGS } from './nat-config.js';

const POD_SH = fileURLToPath(new URL('../../../test/support/pod.sh', import.meta.url));
const RUN_ID = `${process.pid.toString(36)}${Date.now().toString(36).slice(-4)}`;
let seq = 0;

describeNetworkBackendContract('nat-bridge', async () => {
  seq += 1;
  const pod = `pvnatc-${RUN_ID}-${seq}`;
  const tmp = await mkdtemp(join(tmpdir(), `podvisor-natc-${RUN_ID}-`));
  await writeFile(join(tmp, 'resolv.conf'), 'nameserver 10.96.0.10\n');
  execFileSync(POD_SH, ['create', pod, '--resolv', join(tmp, 'resolv.conf')], { stdio: 'ignore' });
  const runner = new ExecaProcessRunner(new SilentLogger());
  const settings = (yaml: Record<string, unknown>) => resolvePluginSettings(NAT_BRIDGE_SETTINGS, { env: {}, yaml: { network: { settings: yaml } } }).settings;
  const inPod = (...cmd: string[]) => execFileSync('ip', ['netns', 'exec', pod, ...cmd], { encoding: 'utf8' });
  return {
    create: () => new NatBridgeNetworkBackend(new NetnsProcessRunner(runner, pod), new SilentLogger()),
    createWithRunner: (wrap) => new NatBridgeNetworkBackend(wrap(new NetnsProcessRunner(runner, pod)), new SilentLogger()),
    spec: {
      vmName: 'vm-natc',
      stateDir: join(tmp, 'state'),
      diskDir: join(tmp, 'disk'),
      settings: settings({ resolvConf: `/etc/netns/${pod}/resolv.conf` }),
      vnc: { enabled: true, port: 5900 },
      controlPort: 5800,
    },
    // Links beyond the pod's own, nftables tables, processes in the pod.
    leftovers: async () => {
      const links = (JSON.parse(inPod('ip', '-j', 'link', 'show')) as { ifname: string }[]).map((l) => `link ${l.ifname}`).filter((l) => l !== 'link lo' && l !== 'link eth0');
      const tables = inPod('nft', 'list', 'tables').split('\n').filter((l) => l !== '');
      const pids = execFileSync('ip', ['netns', 'pids', pod], { encoding: 'utf8' }).split('\n').filter((l) => l !== '').map((p) => `pid ${p}`);
      return [...links, ...tables, ...pids];
    },
    invalid: { spec: { settings: settings({ vmIp: '192.168.254.5', resolvConf: '/etc/resolv.conf' }) }, path: 'env VM_GW' },
    cleanup: async () => {
      await runner.stopAll(1000);
      execFileSync(POD_SH, ['destroy', pod], { stdio: 'ignore' });
      await rm(tmp, { recursive: true, force: true });
    },
  };
});
