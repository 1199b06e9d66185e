/**
 * The NAT bridge in a dual-stack pod and in a pod with a small MTU (issue 13,
 * items 2 and 3), end to end: the real `podvisor` binary runs inside a
 * Calico-style pod made by test/support/pod.sh (IPv4 /32 and IPv6 /128 on
 * eth0, default routes via 169.254.1.1 and the node veth's link-local
 * address), boots the test guest under TCG, and the test checks from the node
 * namespace that the VM has taken over the pod's IPv6 address as it has the
 * IPv4 one (page, kept ports, the source of its outbound traffic), and that
 * the VM's interface follows the pod's MTU with large transfers both ways.
 * The guest's /cgi-bin/net.cgi reports its MTU and IPv6 addresses.
 */
import { execFileSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startNodeHttpProbe } from './support/node-http-probe.js';
import { PodvisorProcess, REPO, keepArtifacts, makeVmDirs, readEvents, requireBuilt, type VmDirs, vmEnv } from './support/podvisor-process.js';

const POD_SH = path.join(REPO, 'test/support/pod.sh');
const BIG = 20 * 1024 * 1024;
/** A TCG boot, then (MTU test) 20 MiB each way through the emulated NIC: over two minutes on a loaded 2-core machine. */
const BOOT_AND_TRANSFER_MS = 420_000;

let dirs: VmDirs;
let name: string;
let pod: string;
let running: PodvisorProcess[] = [];
let helpers: ChildProcess[] = [];

function createPod(...options: string[]): Record<string, string> {
  const out = execFileSync(POD_SH, ['create', pod, ...options], { encoding: 'utf8' });
  return Object.fromEntries(out.trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
}

function inNs(ns: string, ...cmd: string[]): string {
  return execFileSync('ip', ['netns', 'exec', ns, ...cmd], { encoding: 'utf8' });
}

/** curl from the node namespace; '' when it fails. */
function curlFromNode(...args: string[]): string {
  try {
    return execFileSync('ip', ['netns', 'exec', `${pod}-node`, 'curl', '-sS', '--max-time', '10', ...args], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  } catch {
    return '';
  }
}

/** Fetches `url` from the node namespace until the body contains `expected` (bounded). */
async function fetchUntil(url: string, expected: string | RegExp, extra: string[] = []): Promise<string> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const body = curlFromNode(...extra, url);
    if ((typeof expected === 'string' ? body.includes(expected) : expected.test(body)) || Date.now() > deadline) return body;
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** The first 12 bytes sent by whatever answers HOST:5900 from the node (an RFB server speaks first); retried, bounded, as a loaded TCG host can be slow to accept. */
async function vncBanner(host: string): Promise<string> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    let banner = '';
    try {
      banner = inNs(`${pod}-node`, 'timeout', '20', 'bash', '-c', `exec 3<>/dev/tcp/${host}/5900 && head -c 12 <&3`);
    } catch (err) {
      banner = (err as { stdout?: string }).stdout ?? '';
    }
    if (banner.startsWith('RFB') || Date.now() > deadline) return banner;
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** What podvisor may leave in the pod namespace: links, nftables tables, both forwarding sysctls. */
function podView(): { links: string[]; tables: string[]; forwarding: string[] } {
  const links = (JSON.parse(execFileSync('ip', ['-n', pod, '-j', 'link', 'show'], { encoding: 'utf8' })) as { ifname: string }[]).map((l) => l.ifname);
  const tables = inNs(pod, 'nft', 'list', 'tables').split('\n').filter((l) => l !== '');
  const forwarding = inNs(pod, 'sysctl', '-n', 'net.ipv4.ip_forward', 'net.ipv6.conf.all.forwarding').trim().split('\n');
  return { links, tables, forwarding };
}

const PRISTINE = { links: ['lo', 'eth0'], tables: [], forwarding: ['0', '0'] };

function start(extra: Record<string, string> = {}): PodvisorProcess {
  const env = vmEnv(dirs, name, { PODVISOR_NETWORK: 'nat-bridge', PODVISOR_LISTEN: undefined, NO_VNC: undefined, ...extra });
  const p = new PodvisorProcess(['run'], env, { wrapper: ['ip', 'netns', 'exec', pod] });
  running.push(p);
  return p;
}

async function stop(p: PodvisorProcess): Promise<void> {
  p.signal('SIGTERM');
  expect((await p.exited).code).toBe(0);
}

beforeAll(() => requireBuilt());

beforeEach(async (ctx) => {
  const tag = randomBytes(3).toString('hex');
  name = `pv-nat6-${tag}`;
  pod = `pvnat6-${tag}`;
  dirs = await makeVmDirs(name);
  running = [];
  helpers = [];
  ctx.onTestFailed(async () => {
    const dest = await keepArtifacts(`nat-bridge-dual-stack-${ctx.task.name}`, running.at(-1) ?? null, dirs);
    process.stderr.write(`artifacts kept in ${dest}\n`);
  });
});

afterEach(async () => {
  for (const p of running) await p.killed();
  for (const h of helpers) if (h.exitCode === null && h.signalCode === null) h.kill('SIGKILL');
  execFileSync(POD_SH, ['destroy', pod], { stdio: 'ignore' });
  await dirs.cleanup();
});

describe('nat-bridge in a dual-stack pod and with the pod MTU (real binary, TCG guest, Calico-style pod namespaces)', () => {
  it('dual stack: the pod IPv6 address serves the guest page, qemu keeps 5900 and podvisor 5800 on it too, the VM leaves as the pod IPv6 address, and SIGTERM leaves the pod clean', async () => {
    const facts = createPod('--ipv6');
    const podIp6 = facts['POD_IP6'] as string;
    const nodeIp6 = facts['NODE_IP6'] as string;
    expect(podIp6).toMatch(/:/);
    expect(podView()).toEqual(PRISTINE);
    const probe = await startNodeHttpProbe(`${pod}-node`, nodeIp6);
    helpers.push(probe.process);
    const sawRequest = probe.sourceOf('/from-vm');
    await writeFile(
      path.join(dirs.root, 'userdata'),
      `#!/bin/sh\nfor i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15; do timeout 5 wget -q -O - 'http://[${nodeIp6}]:8080/from-vm' && break; sleep 1; done\n`,
    );

    const p = start();
    await p.waitForStdout(/PODVISOR-GUEST-READY boot-count=1 /, 120_000);
    const mac = readFileSync(path.join(dirs.diskDir, `${name}.mac`), 'utf8').trim();
    const attached = readEvents(dirs.stateDir).find((e) => e.type === 'NetworkAttached');
    const ipv6 = (attached?.data as { detail?: { ipv6?: { podIp: string; vmIp: string; subnet: string } } }).detail?.ipv6;
    expect(ipv6).toEqual({ podIp: podIp6, vmIp: expect.stringMatching(/^fd70:7664::/), subnet: 'fd70:7664::/64' });
    expect(attached?.data).toMatchObject({ nics: [{ id: 'net0', mac, addresses: ['192.168.254.2/30', `${ipv6?.vmIp}/64`] }] });

    // The guest took its address by SLAAC from dnsmasq's router advertisements: the one podvisor DNATs to.
    const net = await fetchUntil(`http://[${podIp6}]/cgi-bin/net.cgi`, `inet6: eth0 ${ipv6?.vmIp}/64`, ['-6', '-g']);
    expect(net).toContain(`inet6: eth0 ${ipv6?.vmIp}/64`);
    expect(curlFromNode('-6', '-g', `http://[${podIp6}]/`)).toContain(`nic: eth0 ${mac} 192.168.254.2/30`);

    // The kept ports are kept on IPv6 too: qemu's VNC answers on 5900, and 5800 does not reach the VM.
    expect(await vncBanner(podIp6)).toBe('RFB 003.008\n');
    expect(curlFromNode('-6', '-g', `http://[${podIp6}]:5800/`)).not.toContain('podvisor-test-guest');

    // From inside the pod, its own IPv6 address reaches the guest.
    expect(inNs(pod, 'curl', '-sS', '-6', '-g', '--max-time', '10', `http://[${podIp6}]/`)).toContain('podvisor-test-guest');

    // The VM's own request reaches the node from the pod's IPv6 address.
    expect(await sawRequest).toBe(podIp6);
    await p.waitForStdout(/user-data: pong from the node/, 60_000);

    const during = podView();
    expect(during.tables).toEqual(['table ip podvisor', 'table ip6 podvisor']);
    expect(during.forwarding).toEqual(['1', '1']);
    await stop(p);
    expect(podView()).toEqual(PRISTINE);
  }, BOOT_AND_TRANSFER_MS);

  it('MTU 1400: the guest interface gets 1400 over DHCP, and 20 MiB go through in each direction', async () => {
    const facts = createPod('--mtu', '1400');
    expect(facts['MTU']).toBe('1400');
    const podIp = facts['POD_IP'] as string;
    // The guest counts what it receives on 9000 and serves 20 MiB on its page port.
    await writeFile(
      path.join(dirs.root, 'userdata'),
      `#!/bin/sh\ndd if=/dev/zero of=/srv/www/big bs=1048576 count=20 2>/dev/null\necho big-ready\necho "received $(nc -l -p 9000 | wc -c)"\n`,
    );
    const p = start();
    await p.waitForStdout(/user-data: big-ready/, 120_000);
    expect(await fetchUntil(`http://${podIp}/cgi-bin/net.cgi`, 'mtu: eth0')).toContain('mtu: eth0 1400\n');
    const attached = readEvents(dirs.stateDir).find((e) => e.type === 'NetworkAttached');
    expect(attached?.data).toMatchObject({ detail: { mtu: 1400 } });

    // VM to node: 20 MiB through the pod's 1400-byte link.
    const size = curlFromNode('--max-time', '300', '-o', '/dev/null', '-w', '%{size_download}', `http://${podIp}/big`);
    expect(Number(size)).toBe(BIG);
    // Node to VM: 20 MiB into the guest's nc.
    execFileSync('ip', ['netns', 'exec', `${pod}-node`, 'bash', '-c', `head -c ${BIG} /dev/zero | socat -u - TCP4:${podIp}:9000,retry=60,interval=0.5`], { timeout: 300_000 });
    await p.waitForStdout(new RegExp(`user-data: received ${BIG}\\r?\\n`), 120_000);
    await stop(p);
    expect(podView()).toEqual(PRISTINE);
  }, BOOT_AND_TRANSFER_MS);
});
