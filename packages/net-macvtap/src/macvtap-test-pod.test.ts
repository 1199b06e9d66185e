/**
 * The pod setup the macvtap int tests share (not a suite: vitest runs only
 * `*.unit.test.ts` and `*.int.test.ts`, and the build leaves `*.test.ts` out):
 * a simulated pod made by test/support/pod.sh with a state dir holding its
 * resolv.conf, the spec that attaches there, and views of the pod's network
 * for before/after comparisons. Needs root.
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { resolvePluginSettings, type NetworkAttachSpec } from '@podvisor/core';
import { MACVTAP_SETTINGS } from './macvtap-config.js';

const POD_SH = fileURLToPath(new URL('../../../test/support/pod.sh', import.meta.url));

/** The pod layouts the tests use: pod.sh's interface options and the pod's resolv.conf. */
export const MACVTAP_TEST_PODS = {
  /** A Calico-style eth0 and a plain eth1 with two addresses. */
  twoInterfaces: {
    args: ['--if', 'eth0=10.55.1.7/32', '--if', 'eth1=10.56.1.2/24,10.57.1.2/24'],
    resolv: 'nameserver 10.96.0.10\nsearch default.svc.cluster.local svc.cluster.local\n',
  },
  /** A dual-stack Calico-style eth0. */
  dualStack: {
    args: ['--calico', '--if', 'eth0=10.55.1.7/32,fd10:55::7/128'],
    resolv: 'nameserver 10.96.0.10\nnameserver fd00:96::a\nsearch svc.cluster.local\n',
  },
  /** Both: a dual-stack Calico-style eth0 (addresses pod.sh picks) and a plain eth1 with two addresses. */
  dualStackTwoInterfaces: {
    args: ['--calico', '--ipv6', '--if', 'eth1=10.56.1.2/24,10.57.1.2/24'],
    resolv: 'nameserver 10.96.0.10\nnameserver fd00:96::a\nsearch svc.cluster.local\n',
  },
} as const;
export type MacvtapTestPodLayout = (typeof MACVTAP_TEST_PODS)[keyof typeof MACVTAP_TEST_PODS];

export interface MacvtapTestPod {
  /** The pod's (network namespace's) name. */
  name: string;
  /** A temp dir of the test's own, holding resolv.conf: the spec's state and disk dir. */
  stateDir: string;
  /** Replaces the pod with one of another layout (same name and state dir). */
  recreate: (layout: MacvtapTestPodLayout) => Promise<void>;
  /** Removes the pod and the state dir. */
  destroy: () => Promise<void>;
}

/** A unique name: the prefix, this process and a random suffix. */
export function uniquePodName(prefix: string): string {
  return `${prefix}-${process.pid.toString(36)}${Math.random().toString(36).slice(2, 6)}`;
}

/** Makes a pod named `name` with `layout`, and its state dir. */
export async function createMacvtapTestPod(name: string, layout: MacvtapTestPodLayout): Promise<MacvtapTestPod> {
  const stateDir = await mkdtemp(join(tmpdir(), `${name}-`));
  const create = async (l: MacvtapTestPodLayout): Promise<void> => {
    await writeFile(join(stateDir, 'resolv.conf'), l.resolv);
    execFileSync(POD_SH, ['create', name, ...l.args], { stdio: ['ignore', 'ignore', 'pipe'] });
  };
  const destroyPod = (): void => {
    execFileSync(POD_SH, ['destroy', name], { stdio: 'ignore' });
  };
  try {
    await create(layout);
  } catch (err) {
    await rm(stateDir, { recursive: true, force: true });
    throw err;
  }
  return {
    name,
    stateDir,
    recreate: async (l) => {
      destroyPod();
      await create(l);
    },
    destroy: async () => {
      destroyPod();
      await rm(stateDir, { recursive: true, force: true });
    },
  };
}

/** A spec that attaches in the pod: its state dir, its resolv.conf, the settings `env` gives. */
export function macvtapTestSpec(stateDir: string, env: Record<string, string> = {}, vmName = 'mvt-vm'): NetworkAttachSpec {
  return {
    vmName,
    stateDir,
    diskDir: stateDir,
    settings: resolvePluginSettings(MACVTAP_SETTINGS, { env, yaml: { network: { settings: { resolvConf: join(stateDir, 'resolv.conf') } } } }).settings,
    vnc: { enabled: true, port: 5900 },
    controlPort: 5800,
  };
}

export interface PodView {
  links: { name: string; mac: string; kind: string | null; addresses: string[] }[];
  routes: string[];
}

/** The pod's links, MACs, IPv4 addresses and routes. */
export function podView(pod: string): PodView {
  const links = JSON.parse(execFileSync('ip', ['-n', pod, '-j', '-d', 'addr', 'show'], { encoding: 'utf8' })) as {
    ifname: string;
    address: string;
    linkinfo?: { info_kind?: string };
    addr_info: { family: string; local: string; prefixlen: number }[];
  }[];
  const routes = JSON.parse(execFileSync('ip', ['-n', pod, '-j', '-4', 'route', 'show', 'table', 'main'], { encoding: 'utf8' })) as Record<string, unknown>[];
  return {
    links: links.map((l) => ({
      name: l.ifname,
      mac: l.address,
      kind: l.linkinfo?.info_kind ?? null,
      addresses: l.addr_info.filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`),
    })),
    routes: routes.map((r) => JSON.stringify(r)).sort(),
  };
}

/** The pod's IPv6 side: global addresses per link, IPv6 routes of the main table, and the forwarding sysctl. */
export function podView6(pod: string): { addresses: Record<string, string[]>; routes: string[]; forwarding: string } {
  const links = JSON.parse(execFileSync('ip', ['-n', pod, '-j', '-6', 'addr', 'show', 'scope', 'global'], { encoding: 'utf8' })) as { ifname: string; addr_info: { local: string; prefixlen: number }[] }[];
  const routes = JSON.parse(execFileSync('ip', ['-n', pod, '-j', '-6', 'route', 'show', 'table', 'main'], { encoding: 'utf8' })) as Record<string, unknown>[];
  return {
    addresses: Object.fromEntries(links.map((l) => [l.ifname, l.addr_info.filter((a) => a.local !== undefined).map((a) => `${a.local}/${a.prefixlen}`)] as const).filter(([, a]) => a.length > 0)),
    routes: routes.map((r) => JSON.stringify(r)).sort(),
    forwarding: execFileSync('ip', ['netns', 'exec', pod, 'sysctl', '-n', 'net.ipv6.conf.all.forwarding'], { encoding: 'utf8' }).trim(),
  };
}

/** The pids of the processes in a namespace. */
export function nsPids(ns: string): string[] {
  return execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).split('\n').filter((s) => s !== '');
}
