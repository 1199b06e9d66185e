/**
 * The macvtap network in a dual-stack pod (issue 13), end to end: the real
 * `podvisor` binary runs inside a Calico-style pod made by
 * test/support/pod.sh (IPv4 /32 and IPv6 /128 on eth0, default routes via
 * 169.254.1.1 and the node veth's link-local address), boots the test guest
 * under TCG, and the test checks from the node namespace that the VM has
 * taken the pod's IPv6 address (over DHCPv6, from dnsmasq on the sibling,
 * which the guest's dhcpcd asks because the router advertisement has the M
 * flag) as it has the IPv4 one: the guest page on it, the address on the
 * guest's eth0, and the guest's own request arriving at the node from it (the
 * pod namespace forwards). SIGTERM gives the pod back its IPv6 address, its
 * IPv6 default route and its forwarding value.
 */
import { execFileSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startNodeHttpProbe } from './support/node-http-probe.js';
import { POD_SH, destroyPod, macOf, podView } from './support/pod-namespace.js';
import { PodvisorProcess, keepArtifacts, makeVmDirs, readEvents, requireBuilt, type VmDirs, vmEnv } from './support/podvisor-process.js';

let dirs: VmDirs;
let name: string;
let pod: string;
let running: PodvisorProcess[] = [];
let helpers: ChildProcess[] = [];

/** The pod's IPv6 side: global addresses, IPv6 routes and the forwarding sysctl. */
function podView6(): { addresses: string[]; routes: string[]; forwarding: string } {
  const addresses = execFileSync('ip', ['-n', pod, '-6', '-o', 'addr', 'show', 'scope', 'global'], { encoding: 'utf8' })
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => l.split(/\s+/).slice(1, 4).join(' '));
  const routes = (JSON.parse(execFileSync('ip', ['-n', pod, '-j', '-6', 'route', 'show', 'table', 'main'], { encoding: 'utf8' })) as unknown[]).map((r) => JSON.stringify(r)).sort();
  const forwarding = execFileSync('ip', ['netns', 'exec', pod, 'sysctl', '-n', 'net.ipv6.conf.all.forwarding'], { encoding: 'utf8' }).trim();
  return { addresses, routes, forwarding };
}

/** curl -6 from the node namespace; '' when it fails. */
function curl6FromNode(url: string): string {
  try {
    return execFileSync('ip', ['netns', 'exec', `${pod}-node`, 'curl', '-sS', '-6', '-g', '--max-time', '10', url], { encoding: 'utf8' });
  } catch {
    return '';
  }
}

/** Fetches `url` over IPv6 from the node namespace until the body contains `expected` (bounded). */
async function fetch6Until(url: string, expected: string): Promise<string> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const body = curl6FromNode(url);
    if (body.includes(expected) || Date.now() > deadline) return body;
    await new Promise((r) => setTimeout(r, 250));
  }
}

beforeAll(() => requireBuilt());

beforeEach(async (ctx) => {
  const tag = randomBytes(3).toString('hex');
  name = `pv-mv6-${tag}`;
  pod = `pvmv6e-${tag}`;
  dirs = await makeVmDirs(name);
  running = [];
  helpers = [];
  ctx.onTestFailed(async () => {
    const dest = await keepArtifacts(`macvtap-dual-stack-${ctx.task.name}`, running.at(-1) ?? null, dirs);
    process.stderr.write(`artifacts kept in ${dest}\n`);
  });
});

afterEach(async () => {
  for (const p of running) await p.killed();
  for (const h of helpers) if (h.exitCode === null && h.signalCode === null) h.kill('SIGKILL');
  destroyPod(pod);
  await dirs.cleanup();
});

describe('macvtap in a dual-stack pod (real binary, TCG guest, Calico-style pod namespaces)', () => {
  it('the VM takes the pod IPv6 address: the guest page answers on it, the guest has it on eth0, its own request reaches the node from it; SIGTERM gives the pod its IPv6 address, routes and forwarding value back', async () => {
    const resolv = path.join(dirs.root, 'resolv.conf');
    await writeFile(resolv, 'nameserver 10.96.0.10\nsearch default.svc.cluster.local\n');
    const out = execFileSync(POD_SH, ['create', pod, '--calico', '--ipv6', '--resolv', resolv], { encoding: 'utf8' });
    const facts = Object.fromEntries(out.trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
    const podIp = facts['POD_IP'] as string;
    const podIp6 = facts['POD_IP6'] as string;
    const nodeIp6 = facts['NODE_IP6'] as string;
    expect(podIp6).toMatch(/:/);
    const before = podView(pod);
    const before6 = podView6();
    expect(before6.addresses).toEqual([`eth0 inet6 ${podIp6}/128`]);
    expect(before6.forwarding).toBe('0');
    const mac = macOf(pod, 'eth0');

    const probe = await startNodeHttpProbe(`${pod}-node`, nodeIp6);
    helpers.push(probe.process);
    const sawRequest = probe.sourceOf('/from-vm');
    // The guest asks DHCPv6 in the background: its request is retried until it has the address.
    await writeFile(
      path.join(dirs.root, 'userdata'),
      `#!/bin/sh\nfor i in $(seq 1 30); do timeout 5 wget -q -O - 'http://[${nodeIp6}]:8080/from-vm' && break; sleep 1; done\n`,
    );

    const p = new PodvisorProcess(['run'], vmEnv(dirs, name, { PODVISOR_NETWORK: 'macvtap', PODVISOR_LISTEN: undefined }), { wrapper: ['ip', 'netns', 'exec', pod] });
    running.push(p);
    await p.waitForStdout(/PODVISOR-GUEST-READY boot-count=1 /, 120_000);
    const attached = readEvents(dirs.stateDir).find((e) => e.type === 'NetworkAttached');
    expect(attached?.data).toMatchObject({ backend: 'macvtap', nics: [{ id: 'net0', mac, addresses: [`${podIp}/32`, `${podIp6}/128`] }], detail: { ipv6: true } });
    const warnings = readEvents(dirs.stateDir).filter((e) => e.type === 'WarningRaised').map((e) => (e.data as { code: string }).code);
    expect(warnings).not.toContain('WARN_MACVTAP_IPV6_NOT_PASSED');

    // The guest's eth0 has the pod's IPv6 address (DHCPv6), and the page answers on it from the node.
    expect(await fetch6Until(`http://[${podIp6}]/cgi-bin/net.cgi`, `inet6: eth0 ${podIp6}/128`)).toContain(`inet6: eth0 ${podIp6}/128`);
    expect(curl6FromNode(`http://[${podIp6}]/`)).toContain(`nic: eth0 ${mac} ${podIp}/32`);
    // The VM's own request leaves through the pod (forwarding) with the pod's IPv6 address.
    expect(await sawRequest).toBe(podIp6);
    await p.waitForStdout(/user-data: pong from the node/, 60_000);

    const during6 = podView6();
    expect(during6.forwarding).toBe('1');
    expect(during6.addresses.filter((a) => a.startsWith('eth0 '))).toEqual([]);

    p.signal('SIGTERM');
    expect((await p.exited).code).toBe(0);
    expect(podView(pod)).toEqual(before);
    expect(podView6()).toEqual(before6);
  }, 420_000);
});
