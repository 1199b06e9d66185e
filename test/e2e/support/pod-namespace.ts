/**
 * What e2e tests read of a pod made by test/support/pod.sh: its interfaces
 * and routes (to compare before and after a run), an interface's MAC, the
 * guest's page fetched with curl from the pod's node namespace, the processes
 * in its network namespace and its nftables ruleset.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { REPO } from './podvisor-process.js';

export const POD_SH = path.join(REPO, 'test/support/pod.sh');

/** Creates pod `pod` (its node namespace is `<pod>-node`) and returns pod.sh's facts. */
export function createPod(pod: string, interfaces: readonly string[], resolvConf: string): Record<string, string> {
  const out = execFileSync(POD_SH, ['create', pod, ...interfaces.flatMap((i) => ['--if', i]), '--resolv', resolvConf], { encoding: 'utf8' });
  return Object.fromEntries(out.trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
}

/** Removes the pod and its node namespace; idempotent. */
export function destroyPod(pod: string): void {
  execFileSync(POD_SH, ['destroy', pod], { stdio: 'ignore' });
}

/** The pod's interfaces (name, MAC, IPv4 addresses, link kind) and routes, for before/after comparisons. */
export function podView(pod: string): { links: string[]; routes: string[] } {
  const links = JSON.parse(execFileSync('ip', ['-n', pod, '-j', '-d', 'addr', 'show'], { encoding: 'utf8' })) as {
    ifname: string;
    address: string;
    linkinfo?: { info_kind?: string };
    addr_info: { family: string; local: string; prefixlen: number }[];
  }[];
  const routes = JSON.parse(execFileSync('ip', ['-n', pod, '-j', '-4', 'route', 'show', 'table', 'main'], { encoding: 'utf8' })) as unknown[];
  return {
    links: links.map((l) => `${l.ifname} ${l.address} ${l.linkinfo?.info_kind ?? '-'} ${l.addr_info.filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`).join(',')}`),
    routes: routes.map((r) => JSON.stringify(r)).sort(),
  };
}

export function macOf(pod: string, ifname: string): string {
  return (JSON.parse(execFileSync('ip', ['-n', pod, '-j', 'link', 'show', 'dev', ifname], { encoding: 'utf8' })) as { address: string }[])[0]?.address ?? '';
}

/** curl from the pod's node namespace; returns the body, or '' when it fails. */
export function curlFromNode(pod: string, url: string, curlArgs: readonly string[] = []): string {
  try {
    return execFileSync('ip', ['netns', 'exec', `${pod}-node`, 'curl', '-sS', '--max-time', '15', ...curlArgs, url], { encoding: 'utf8' });
  } catch {
    return '';
  }
}

/**
 * The guest's page on `ip` (port 80 unless given), fetched from the node namespace: retried until it contains
 * `expected` (the test guest's page by default) while the guest's server comes up, bounded.
 * The page is a CGI script that runs several programs in the guest: under TCG on a loaded machine, one answer
 * can take seconds, hence the generous bounds (they only matter when the page never comes).
 */
export async function guestPageFromNode(pod: string, ip: string, options: { port?: number; expected?: string } = {}): Promise<string> {
  const url = `http://${ip}${options.port === undefined ? '' : `:${options.port}`}/`;
  return fetchFromNodeUntil(pod, url, options.expected ?? 'podvisor-test-guest');
}

/** `url` fetched from the node namespace (with `curlArgs`, e.g. `-6 -g`), retried until the body contains `expected`, bounded at 60 s. */
export async function fetchFromNodeUntil(pod: string, url: string, expected: string, curlArgs: readonly string[] = []): Promise<string> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const body = curlFromNode(pod, url, curlArgs);
    if (body.includes(expected) || Date.now() > deadline) return body;
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** The pids of the processes named `comm` (as /proc shows it: 15 characters at most) in the pod's namespace. */
export function podPids(pod: string, comm: string): number[] {
  return execFileSync('ip', ['netns', 'pids', pod], { encoding: 'utf8' })
    .split('\n')
    .filter((l) => l !== '')
    .filter((p) => {
      try {
        return readFileSync(`/proc/${p}/comm`, 'utf8').trim() === comm;
      } catch {
        return false;
      }
    })
    .map(Number);
}

/** The pod's links (`ifindex:name`), its nftables ruleset (handles left out) and its dnsmasq pids. */
export function podState(pod: string): { links: string[]; rules: string; dnsmasq: number[] } {
  const links = (JSON.parse(execFileSync('ip', ['-n', pod, '-j', 'link', 'show'], { encoding: 'utf8' })) as { ifname: string; ifindex: number }[]).map((l) => `${l.ifindex}:${l.ifname}`);
  const rules = execFileSync('ip', ['netns', 'exec', pod, 'nft', 'list', 'ruleset'], { encoding: 'utf8' }).replace(/ # handle \d+/g, '');
  return { links, rules, dnsmasq: podPids(pod, 'dnsmasq') };
}

/**
 * The macvtap character devices' major: the kernel chooses it when macvtap
 * loads. A macvtap made and deleted in the pod's node namespace loads it
 * first when no line names it yet.
 */
export function macvtapMajor(pod: string): number {
  const find = (): number | undefined => {
    const m = /^\s*(\d+) macvtap$/m.exec(readFileSync('/proc/devices', 'utf8'));
    return m === null ? undefined : Number(m[1]);
  };
  const known = find();
  if (known !== undefined) return known;
  const ns = `${pod}-probe`;
  execFileSync('sh', ['-c', `ip netns add ${ns} && ip -n ${ns} link add pvprobe0 type veth peer name pvprobe1 && ip -n ${ns} link add link pvprobe0 name pvprobe2 type macvtap; ip netns del ${ns}`]);
  const loaded = find();
  if (loaded === undefined) throw new Error('no "macvtap" line in /proc/devices after making a macvtap: the kernel lacks macvtap');
  return loaded;
}
