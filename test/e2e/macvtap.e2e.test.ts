/**
 * The macvtap network end to end (issue 4's acceptance): the real `podvisor`
 * binary runs inside a pod made of network namespaces by test/support/pod.sh
 * (two interfaces on two veth links to a node namespace), boots the test guest
 * under TCG with PODVISOR_NETWORK=macvtap, and the test checks from the node
 * namespace, with curl, that the VM answers on the pod's own addresses and
 * that the pod gets its interfaces back afterwards. In a Calico-style
 * dual-stack pod (issue 13) the VM also takes the pod's IPv6 /128, over
 * DHCPv6 from dnsmasq on the sibling, which the guest's dhcpcd asks because
 * the router advertisement has the M flag; the pod namespace forwards the
 * VM's outbound IPv6.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startNodeHttpProbe } from './support/node-http-probe.js';
import { POD_SH, createPod as createPodNs, curlFromNode, destroyPod, fetchFromNodeUntil, guestPageFromNode, macOf, podView } from './support/pod-namespace.js';
import { GUEST, PodvisorProcess, keepArtifacts, makeVmDirs, readEvents, requireBuilt, waitForEvent, type VmDirs, vmEnv } from './support/podvisor-process.js';

let dirs: VmDirs;
let name: string;
let pod: string;
let running: PodvisorProcess[] = [];
let helpers: ChildProcess[] = [];

function createPod(...ifs: string[]): Record<string, string> {
  return createPodNs(pod, ifs, path.join(dirs.root, 'resolv.conf'));
}

function env(extra: Record<string, string> = {}): Record<string, string> {
  // In the pod, the control endpoint keeps its default address (0.0.0.0:5800).
  return vmEnv(dirs, name, { PODVISOR_NETWORK: 'macvtap', PODVISOR_LISTEN: undefined, ...extra });
}

/** podvisor as the pod's PID 1 would run: inside the pod's namespaces. */
function start(extra: Record<string, string> = {}): PodvisorProcess {
  const p = new PodvisorProcess(['run'], env(extra), { wrapper: ['ip', 'netns', 'exec', pod] });
  running.push(p);
  return p;
}

function guestNics(p: PodvisorProcess): string[] {
  return [...p.stdout.matchAll(/^PODVISOR-GUEST-NIC (.*?)\r?$/gm)].map((m) => m[1] as string);
}

async function stop(p: PodvisorProcess): Promise<void> {
  p.signal('SIGTERM');
  expect((await p.exited).code).toBe(0);
}

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

/** curl's arguments for a literal IPv6 URL. */
const IPV6 = ['-6', '-g'];

beforeAll(() => requireBuilt());

beforeEach(async (ctx) => {
  name = `pv-mvt-${randomBytes(3).toString('hex')}`;
  pod = `pvmvte-${randomBytes(3).toString('hex')}`;
  dirs = await makeVmDirs(name);
  running = [];
  helpers = [];
  await writeFile(path.join(dirs.root, 'resolv.conf'), 'nameserver 10.96.0.10\nsearch default.svc.cluster.local cluster.local\n');
  ctx.onTestFailed(async () => {
    const dest = await keepArtifacts(`macvtap-${ctx.task.name}`, running.at(-1) ?? null, dirs);
    process.stderr.write(`artifacts kept in ${dest}\n`);
  });
});

afterEach(async () => {
  for (const p of running) await p.killed();
  for (const h of helpers) if (h.exitCode === null && h.signalCode === null) h.kill('SIGKILL');
  destroyPod(pod);
  await dirs.cleanup();
});

describe('macvtap network (real binary, TCG guest, pod namespaces)', () => {
  it('AUTO_ATTACH=yes: both pod IPs answer with the guest page, on NICs with the pod MACs; the Calico /32 reaches the node; SIGTERM gives the pod back', async () => {
    const facts = createPod('eth0=10.71.3.7/32', 'eth1=10.72.4.2/24');
    const before = podView(pod);
    const [mac0, mac1] = [macOf(pod, 'eth0'), macOf(pod, 'eth1')];
    // A server in the node namespace that the VM must reach through 169.254.1.1.
    const www = path.join(dirs.root, 'www');
    await mkdir(www);
    await writeFile(path.join(www, 'hello.txt'), 'hello from the node\n');
    const nodeIp = facts['NODE_IP'] as string;
    const httpd = spawn('ip', ['netns', 'exec', `${pod}-node`, 'busybox', 'httpd', '-f', '-p', `${nodeIp}:8080`, '-h', www], { stdio: 'ignore' });
    helpers.push(httpd);
    await writeFile(
      path.join(dirs.root, 'userdata'),
      `#!/bin/sh\nfor i in 1 2 3 4 5 6 7 8 9 10; do timeout 5 wget -q -O - http://${nodeIp}:8080/hello.txt && break; sleep 1; done\n`,
    );

    const p = start();
    await p.waitForStdout(/PODVISOR-GUEST-READY/, 120_000);
    expect(guestNics(p)).toEqual([`eth0 ${mac0} 10.71.3.7/32`, `eth1 ${mac1} 10.72.4.2/24`]);
    const page0 = await guestPageFromNode(pod, '10.71.3.7');
    const page1 = await guestPageFromNode(pod, '10.72.4.2');
    for (const page of [page0, page1]) {
      expect(page).toContain('podvisor-test-guest');
      expect(page).toContain(`nic: eth0 ${mac0} 10.71.3.7/32`);
      expect(page).toContain(`nic: eth1 ${mac1} 10.72.4.2/24`);
    }
    expect(page0).toContain('nameserver: 10.96.0.10');
    expect(page0).toContain('search: default.svc.cluster.local cluster.local');
    await p.waitForStdout(/user-data: hello from the node/, 60_000);

    const attached = readEvents(dirs.stateDir).find((e) => e.type === 'NetworkAttached');
    expect(attached?.data).toMatchObject({ backend: 'macvtap', nics: [{ id: 'net0', mac: mac0, addresses: ['10.71.3.7/32'] }, { id: 'net1', mac: mac1, addresses: ['10.72.4.2/24'] }] });

    await stop(p);
    expect(podView(pod)).toEqual(before);
    expect(readEvents(dirs.stateDir).map((e) => e.type)).toContain('NetworkDetached');
  });

  it('AUTO_ATTACH=no ATTACH_IFACES=eth1: only eth1 goes to the VM, and eth0 keeps serving the pod', async () => {
    createPod('eth0=10.73.3.7/32', 'eth1=10.74.4.2/24');
    const before = podView(pod);
    const mac1 = macOf(pod, 'eth1');
    const p = start({ AUTO_ATTACH: 'no', ATTACH_IFACES: 'eth1' });
    await p.waitForStdout(/PODVISOR-GUEST-READY/, 120_000);
    expect(guestNics(p)).toEqual([`eth0 ${mac1} 10.74.4.2/24`]);
    expect(await guestPageFromNode(pod, '10.74.4.2')).toContain(`nic: eth0 ${mac1} 10.74.4.2/24`);
    // The pod still answers on eth0's address: podvisor's own control endpoint.
    expect(curlFromNode(pod, 'http://10.73.3.7:5800/healthz')).not.toBe('');
    expect(podView(pod).links.find((l) => l.startsWith('eth0 '))).toBe(before.links.find((l) => l.startsWith('eth0 ')));
    await stop(p);
    expect(podView(pod)).toEqual(before);
  });

  it('SELECTED_NETWORK names the second address of an interface: the VM gets that one', async () => {
    createPod('eth0=10.75.1.2/24,10.76.1.2/24');
    const before = podView(pod);
    const mac0 = macOf(pod, 'eth0');
    const p = start({ SELECTED_NETWORK: '10.76.1.2/24' });
    await p.waitForStdout(/PODVISOR-GUEST-READY/, 120_000);
    expect(guestNics(p)).toEqual([`eth0 ${mac0} 10.76.1.2/24`]);
    expect(await guestPageFromNode(pod, '10.76.1.2')).toContain(`nic: eth0 ${mac0} 10.76.1.2/24`);
    await stop(p);
    expect(podView(pod)).toEqual(before);
  });

  it('kill -9 of the container, then a restart, converges: the VM is back on the pod IP, and SIGTERM restores the pod', async () => {
    createPod('eth0=10.77.3.7/32', 'eth1=10.78.4.2/24');
    const before = podView(pod);
    const first = start();
    await first.waitForStdout(/PODVISOR-GUEST-READY boot-count=1/, 120_000);
    // The container dies at once: podvisor and everything it started (qemu, dnsmasq); the pod's namespace stays.
    const pids = execFileSync('ip', ['netns', 'pids', pod], { encoding: 'utf8' }).split('\n').filter((s) => s !== '');
    execFileSync('kill', ['-KILL', ...pids]);
    await first.exited;
    expect(podView(pod)).not.toEqual(before);

    const second = start();
    // The pet disk kept what the guest flushed before the kill.
    await second.waitForStdout(/PODVISOR-GUEST-READY boot-count=2/, 120_000);
    expect(await guestPageFromNode(pod, '10.77.3.7')).toContain('nic: eth0');
    expect(await guestPageFromNode(pod, '10.78.4.2')).toContain('nic: eth1');
    const links = podView(pod).links;
    expect(links.filter((l) => / macvtap /.test(l))).toHaveLength(2);
    await stop(second);
    expect(podView(pod)).toEqual(before);
  });

  it('ATTACH_IFACES=nope0 is a clear error naming the interface and the pod interfaces, and nothing changes', async () => {
    createPod('eth0=10.79.3.7/32', 'eth1=10.80.4.2/24');
    const before = podView(pod);
    const p = start({ ATTACH_IFACES: 'nope0' });
    const exit = await p.exited;
    expect(exit.code).not.toBe(0);
    const failed = await waitForEvent(dirs.stateDir, 'VmFailed', { timeoutMs: 10_000 });
    expect(failed.data).toMatchObject({ code: 'ERR_CONFIG_INVALID' });
    expect((failed.data as { message: string }).message).toContain('env ATTACH_IFACES: got "nope0", expected an interface of this pod: eth0, eth1');
    expect(podView(pod)).toEqual(before);
  });

  it('dual stack (Calico-style /128): the VM takes the pod IPv6 address over DHCPv6: the guest page answers on it, the guest has it on eth0, its own request reaches the node from it; SIGTERM gives the pod its IPv6 address, routes and forwarding value back', async () => {
    const out = execFileSync(POD_SH, ['create', pod, '--calico', '--ipv6', '--resolv', path.join(dirs.root, 'resolv.conf')], { encoding: 'utf8' });
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

    const p = start();
    await p.waitForStdout(/PODVISOR-GUEST-READY boot-count=1 /, 120_000);
    const attached = readEvents(dirs.stateDir).find((e) => e.type === 'NetworkAttached');
    expect(attached?.data).toMatchObject({ backend: 'macvtap', nics: [{ id: 'net0', mac, addresses: [`${podIp}/32`, `${podIp6}/128`] }], detail: { ipv6: true } });
    const warnings = readEvents(dirs.stateDir).filter((e) => e.type === 'WarningRaised').map((e) => (e.data as { code: string }).code);
    expect(warnings).not.toContain('WARN_MACVTAP_IPV6_NOT_PASSED');

    // The guest's eth0 has the pod's IPv6 address (DHCPv6), and the page answers on it from the node.
    expect(await fetchFromNodeUntil(pod, `http://[${podIp6}]/cgi-bin/net.cgi`, `inet6: eth0 ${podIp6}/128`, IPV6)).toContain(`inet6: eth0 ${podIp6}/128`);
    expect(curlFromNode(pod, `http://[${podIp6}]/`, IPV6)).toContain(`nic: eth0 ${mac} ${podIp}/32`);
    // The VM's own request leaves through the pod (forwarding) with the pod's IPv6 address.
    expect(await sawRequest).toBe(podIp6);
    await p.waitForStdout(/user-data: pong from the node/, 60_000);

    const during6 = podView6();
    expect(during6.forwarding).toBe('1');
    expect(during6.addresses.filter((a) => a.startsWith('eth0 '))).toEqual([]);

    await stop(p);
    expect(podView(pod)).toEqual(before);
    expect(podView6()).toEqual(before6);
  }, 420_000);
});
