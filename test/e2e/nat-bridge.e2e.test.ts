/**
 * The NAT bridge end to end (issue 3's acceptance, criteria 1 to 7): the real
 * `podvisor` binary runs inside a Calico-style pod made by test/support/pod.sh
 * (a /32 on eth0, default route via 169.254.1.1, wired to a node namespace of
 * its own, never the root namespace), boots the test guest under TCG with
 * PODVISOR_NETWORK=nat-bridge, and the test checks from the node namespace,
 * with curl, that the VM has taken over the pod IP: its page, qemu's VNC on
 * 5900 (or the VM's own 5900 with NO_VNC), the source address of its outbound
 * traffic, its DNS settings, and that the pod namespace is clean afterwards.
 * The guest boots only where a criterion needs it: four boots in all. One
 * more test shows a bug of the backend in a container with a read-only
 * /proc/sys (it fails today; see its comment).
 */
import { execFileSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startNodeHttpProbe } from './support/node-http-probe.js';
import { curlFromNode, guestPageFromNode } from './support/pod-namespace.js';
import { GUEST, PodvisorProcess, REPO, keepArtifacts, makeVmDirs, readEvents, requireBuilt, types, waitForEvent, type VmDirs, vmEnv } from './support/podvisor-process.js';

const POD_SH = path.join(REPO, 'test/support/pod.sh');
const RESOLV = 'nameserver 10.96.0.10\nnameserver 10.96.0.11\nsearch e2e-ns.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n';

let dirs: VmDirs;
let name: string;
let pod: string;
let facts: Record<string, string>;
let running: PodvisorProcess[] = [];
let helpers: ChildProcess[] = [];

/** Creates the pod (Calico style, node namespace `<pod>-node`) with its own resolv.conf; returns pod.sh's facts. */
function createPod(): Record<string, string> {
  const out = execFileSync(POD_SH, ['create', pod, '--resolv', path.join(dirs.root, 'resolv.conf')], { encoding: 'utf8' });
  return Object.fromEntries(out.trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
}

function inNs(ns: string, ...cmd: string[]): string {
  return execFileSync('ip', ['netns', 'exec', ns, ...cmd], { encoding: 'utf8' });
}

/** What podvisor may leave in the pod namespace: links, nftables tables, processes (by name), ip_forward. */
function podView(): { links: string[]; tables: string[]; processes: string[]; ipForward: string } {
  const links = (JSON.parse(execFileSync('ip', ['-n', pod, '-j', 'link', 'show'], { encoding: 'utf8' })) as { ifname: string }[]).map((l) => l.ifname);
  const tables = inNs(pod, 'nft', 'list', 'tables').split('\n').filter((l) => l !== '');
  const pids = execFileSync('ip', ['netns', 'pids', pod], { encoding: 'utf8' }).split('\n').filter((l) => l !== '');
  const processes = pids.map((p) => {
    try {
      return readFileSync(`/proc/${p}/comm`, 'utf8').trim();
    } catch {
      return `gone:${p}`;
    }
  });
  return { links, tables, processes: processes.sort(), ipForward: inNs(pod, 'sysctl', '-n', 'net.ipv4.ip_forward').trim() };
}

/** The pod as pod.sh made it: podvisor must leave it exactly like this. */
const PRISTINE = { links: ['lo', 'eth0'], tables: [], processes: [], ipForward: '0' };

/** The rules of podvisor's table, as nft prints them (handles left out), or [] when there is no table. */
function podvisorRules(): string[] {
  const tables = inNs(pod, 'nft', 'list', 'tables').split('\n');
  expect(tables.filter((t) => t === 'table ip podvisor').length).toBeLessThanOrEqual(1);
  if (!tables.includes('table ip podvisor')) return [];
  return inNs(pod, 'nft', 'list', 'table', 'ip', 'podvisor')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => /(dnat|snat|return|maxseg)/.test(l));
}

/** The guest's page on the pod IP, fetched from the node namespace (waits for it, bounded). */
function guestPage(port = 80, expected = 'podvisor-test-guest'): Promise<string> {
  return guestPageFromNode(pod, facts['POD_IP'] as string, { port, expected });
}

/** The first 12 bytes sent by whatever answers POD_IP:5900 (an RFB server speaks first). */
function bannerOn5900(): string {
  try {
    return execFileSync('ip', ['netns', 'exec', `${pod}-node`, 'timeout', '10', 'bash', '-c', `exec 3<>/dev/tcp/${facts['POD_IP']}/5900 && head -c 12 <&3`], { encoding: 'utf8' });
  } catch (err) {
    return (err as { stdout?: string }).stdout ?? '';
  }
}

function env(extra: Record<string, string> = {}): Record<string, string> {
  // In the pod, the control endpoint keeps 0.0.0.0:5800 and qemu's VNC keeps 5900 (both stay with the pod).
  return vmEnv(dirs, name, { PODVISOR_NETWORK: 'nat-bridge', PODVISOR_LISTEN: undefined, NO_VNC: undefined, ...extra });
}

/** podvisor as the pod's PID 1 would run: inside the pod's network namespace (and its resolv.conf). */
function start(extra: Record<string, string> = {}): PodvisorProcess {
  const p = new PodvisorProcess(['run'], env(extra), { wrapper: ['ip', 'netns', 'exec', pod] });
  running.push(p);
  return p;
}

async function stop(p: PodvisorProcess): Promise<void> {
  p.signal('SIGTERM');
  expect((await p.exited).code).toBe(0);
}

/** Metadata the way a ConfigMap mounted at /metadata holds it (NoCloud key names, which both formats map). */
async function writeMetadata(instanceId: string, hostname: string): Promise<void> {
  await writeFile(path.join(dirs.root, 'metadata'), `instance-id: ${instanceId}\nlocal-hostname: ${hostname}\n`);
}

beforeAll(() => requireBuilt());

beforeEach(async (ctx) => {
  const tag = randomBytes(3).toString('hex');
  name = `pv-nat-${tag}`;
  pod = `pvnate-${tag}`;
  dirs = await makeVmDirs(name);
  running = [];
  helpers = [];
  await writeFile(path.join(dirs.root, 'resolv.conf'), RESOLV);
  ctx.onTestFailed(async () => {
    const dest = await keepArtifacts(`nat-bridge-${ctx.task.name}`, running.at(-1) ?? null, dirs);
    process.stderr.write(`artifacts kept in ${dest}\n`);
  });
  facts = createPod();
});

afterEach(async () => {
  for (const p of running) await p.killed();
  for (const h of helpers) if (h.exitCode === null && h.signalCode === null) h.kill('SIGKILL');
  // Kills whatever is left in the pod namespace (qemu, dnsmasq after a kill -9), then removes both namespaces.
  execFileSync(POD_SH, ['destroy', pod], { stdio: 'ignore' });
  await dirs.cleanup();
});

describe('nat-bridge network (real binary, TCG guest, Calico-style pod namespaces)', () => {
  it('criteria 1-5: the VM answers on the pod IP with the /metadata identity, qemu keeps 5900, outbound traffic leaves as the pod IP, DNS comes from the pod, SIGTERM leaves the pod clean', async () => {
    const podIp = facts['POD_IP'] as string;
    const nodeIp = facts['NODE_IP'] as string;
    const rootTables = execFileSync('nft', ['list', 'tables'], { encoding: 'utf8' });
    expect(podView()).toEqual(PRISTINE);

    // Criterion 3: a server in the node namespace that prints the source address of each request.
    const probe = await startNodeHttpProbe(`${pod}-node`, nodeIp);
    helpers.push(probe.process);
    const sawRequest = probe.sourceOf('/from-vm');

    await writeMetadata(`iid-${name}`, `host-${name}`);
    await writeFile(
      path.join(dirs.root, 'userdata'),
      `#!/bin/sh\nfor i in 1 2 3 4 5 6 7 8 9 10; do timeout 5 wget -q -O - http://${nodeIp}:8080/from-vm && break; sleep 1; done\n`,
    );

    const p = start();
    const ready = await p.waitForStdout(/PODVISOR-GUEST-READY boot-count=1 instance-id=(\S+) hostname=(\S+)\r?\n/, 120_000);
    expect(ready.slice(1, 3)).toEqual([`iid-${name}`, `host-${name}`]);
    // The guest leased VM_IP (the default /30) from dnsmasq, with the MAC podvisor persisted.
    const mac = readFileSync(path.join(dirs.diskDir, `${name}.mac`), 'utf8').trim();
    expect(p.stdout).toMatch(new RegExp(`^PODVISOR-GUEST-NIC eth0 ${mac} 192\\.168\\.254\\.2/30\\r?$`, 'm'));

    // 1. The pod IP serves the guest's page, with the identity from /metadata.
    const page = await guestPage();
    expect(page).toContain('podvisor-test-guest');
    expect(page).toContain(`instance-id: iid-${name}`);
    expect(page).toContain(`hostname: host-${name}`);
    expect(page).toContain(`nic: eth0 ${mac} 192.168.254.2/30`);

    // 2. 5900 stays with the pod: qemu's own VNC server speaks first.
    expect(bannerOn5900()).toBe('RFB 003.008\n');
    // ...and so does the control port (podvisor answers, not the VM).
    expect(curlFromNode(pod, `http://${podIp}:5800/healthz`)).not.toBe('');

    // From inside the pod (a sidecar): localhost and the pod IP reach the guest; 5800 stays podvisor's.
    for (const host of ['127.0.0.1', podIp]) {
      expect(inNs(pod, 'curl', '-sS', '--max-time', '10', `http://${host}/`)).toContain(`instance-id: iid-${name}`);
      expect(inNs(pod, 'curl', '-sS', '--max-time', '10', `http://${host}:5800/healthz`)).not.toContain('podvisor-test-guest');
    }
    // A port-forward the way the kubelet makes one: a socat in the pod's namespace that dials localhost:80.
    const forwarded = execFileSync('ip', ['netns', 'exec', pod, 'socat', '-T', '10', '-', 'TCP4:localhost:80'], {
      input: 'GET / HTTP/1.0\r\nHost: localhost\r\n\r\n',
      encoding: 'utf8',
      timeout: 20_000,
    });
    expect(forwarded).toMatch(/^HTTP\/1\.[01] 200/);
    expect(forwarded).toContain(`instance-id: iid-${name}`);
    // ...and VNC too, from inside: qemu answers on localhost:5900.
    expect(execFileSync('ip', ['netns', 'exec', pod, 'timeout', '10', 'bash', '-c', 'exec 3<>/dev/tcp/127.0.0.1/5900 && head -c 12 <&3'], { encoding: 'utf8' })).toBe('RFB 003.008\n');

    // 3. The VM's request reaches the node with the pod IP as its source.
    expect(await sawRequest).toBe(podIp);
    await p.waitForStdout(/user-data: pong from the node/, 60_000);

    // 4. The guest's resolv.conf holds the pod's name servers and search list.
    expect(page).toContain('nameserver: 10.96.0.10\nnameserver: 10.96.0.11\n');
    expect(page).toContain('search: e2e-ns.svc.cluster.local svc.cluster.local cluster.local');

    const attached = readEvents(dirs.stateDir).find((e) => e.type === 'NetworkAttached');
    expect(attached?.data).toMatchObject({
      backend: 'nat-bridge',
      nics: [{ id: 'net0', mac, addresses: ['192.168.254.2/30'] }],
      detail: { podInterface: 'eth0', podIp, vmIp: '192.168.254.2', dnat: { excluded: ['tcp/5900', 'tcp/5800'] } },
    });
    const during = podView();
    expect(during.links).toEqual(['lo', 'eth0', 'pvbr0', 'pvtap0']);
    expect(during.tables).toEqual(['table ip podvisor']);
    expect(during.processes).toEqual(['dnsmasq', 'node', 'qemu-system-x86']);
    expect(during.ipForward).toBe('1');

    // 5. SIGTERM: the guest powers off, and the pod namespace is as pod.sh made it.
    await stop(p);
    expect(p.stdout).toContain('PODVISOR-GUEST-POWEROFF');
    expect(podView()).toEqual(PRISTINE);
    const log = types(readEvents(dirs.stateDir));
    expect(log.slice(log.indexOf('VmExited'))).toEqual(['VmExited', 'VmStopped', 'NetworkDetached', 'SupervisorExited']);
    // Nothing reached the namespace the test runs in.
    expect(execFileSync('nft', ['list', 'tables'], { encoding: 'utf8' })).toBe(rootTables);
  });

  it('criteria 2 and 6: with NO_VNC, 5900 reaches the VM; the NoCloud drive boots the same guest with the same identity; PODVISOR_NAT_EXCLUDE keeps a port with the pod', async () => {
    await writeMetadata(`iid-${name}`, `host-${name}`);
    await writeFile(
      path.join(dirs.root, 'userdata'),
      '#!/bin/sh\nmkdir -p /tmp/vnc-www && echo vm-owns-5900 > /tmp/vnc-www/index.html && httpd -p 5900 -h /tmp/vnc-www && echo serving-5900\n',
    );
    const p = start({ NO_VNC: '1', PODVISOR_CONFIGDRIVE: 'nocloud', PODVISOR_NAT_EXCLUDE: 'tcp/2222,udp/5353', AUTO_ATTACH: 'yes' });
    const ready = await p.waitForStdout(/PODVISOR-GUEST-READY boot-count=1 instance-id=(\S+) hostname=(\S+)\r?\n/, 120_000);
    expect(ready.slice(1, 3)).toEqual([`iid-${name}`, `host-${name}`]);
    expect(readEvents(dirs.stateDir).find((e) => e.type === 'ConfigDriveBuilt')?.data).toMatchObject({ format: 'nocloud', instanceId: `iid-${name}` });

    // 6. Same page, same identity as the config-2 run above.
    const page = await guestPage();
    expect(page).toContain(`instance-id: iid-${name}`);
    expect(page).toContain(`hostname: host-${name}`);

    // 2. NO_VNC: qemu runs no VNC server, and 5900 goes to the VM like any port.
    await p.waitForStdout(/user-data: serving-5900/, 60_000);
    expect(await guestPage(5900, 'vm-owns-5900')).toBe('vm-owns-5900\n');
    expect(bannerOn5900()).not.toContain('RFB');

    const attached = readEvents(dirs.stateDir).find((e) => e.type === 'NetworkAttached');
    expect(attached?.data).toMatchObject({ detail: { dnat: { excluded: ['tcp/5800', 'tcp/2222', 'udp/5353'] } } });
    const kept = [expect.stringMatching(/tcp dport 5800 return/), expect.stringMatching(/tcp dport 2222 return/), expect.stringMatching(/udp dport 5353 return/)];
    // The same ports are kept from outside (prerouting, on eth0) and from inside the pod (output).
    expect(podvisorRules().filter((r) => r.includes(' return ') && r.startsWith('iifname'))).toEqual(kept);
    expect(podvisorRules().filter((r) => r.includes(' return ') && r.startsWith('ip daddr {'))).toEqual(kept);
    // AUTO_ATTACH is macvtap's: under the NAT bridge it has no effect, and a warning event says so.
    expect(readEvents(dirs.stateDir).find((e) => e.type === 'SettingsIgnored')?.data).toEqual({ settings: ['AUTO_ATTACH'], backend: 'nat-bridge', usedBy: 'macvtap' });
    await stop(p);
    expect(podView()).toEqual(PRISTINE);
  });

  it('criterion 5: after kill -9 of the container, a new start removes the leftovers and sets up exactly one set of rules', async () => {
    // In a container podvisor is PID 1: when it dies, the kernel kills every
    // other process of the container's PID namespace (and the runtime kills the
    // container's cgroup), so qemu and dnsmasq die with it, while the pod's
    // network namespace, held by the pause container, keeps the bridge, the tap,
    // the nftables table and ip_forward. That is what this simulates: SIGKILL
    // podvisor; the new start must clean up whatever survived.
    await writeMetadata(`iid-${name}`, `host-${name}`);
    const first = start();
    const started = await waitForEvent(dirs.stateDir, 'VmStarted', { timeoutMs: 120_000 });
    const rulesBefore = podvisorRules();
    expect(rulesBefore).toHaveLength(11);
    first.signal('SIGKILL');
    await first.exited;
    // SIGKILL runs no cleanup. qemu dies with podvisor (it is started with
    // PR_SET_PDEATHSIG); dnsmasq drops its privileges, which clears that
    // setting, so it lives on until the next start stops it through its pid file.
    await until(() => podView().processes.join(',') === 'dnsmasq', 10_000, 'qemu to die with podvisor, leaving only dnsmasq');
    const leftovers = podView();
    expect(leftovers.links).toEqual(['lo', 'eth0', 'pvbr0', 'pvtap0']);
    expect(leftovers.tables).toEqual(['table ip podvisor']);
    expect(leftovers.ipForward).toBe('1');

    const second = start();
    await second.waitForStdout(/PODVISOR-GUEST-READY/, 120_000);
    expect(await guestPage()).toContain(`instance-id: iid-${name}`);
    // Exactly one table with exactly the rules of the first run, one bridge, one tap, one dnsmasq.
    expect(podvisorRules()).toEqual(rulesBefore);
    const view = podView();
    expect(view.links).toEqual(['lo', 'eth0', 'pvbr0', 'pvtap0']);
    expect(view.tables).toEqual(['table ip podvisor']);
    expect(view.processes).toEqual(['dnsmasq', 'node', 'qemu-system-x86']);
    const secondRun = readEvents(dirs.stateDir).filter((e) => e.position > started.position);
    expect(types(secondRun)).toContain('NetworkAttached');

    await stop(second);
    expect(podView()).toEqual(PRISTINE);
  });

  it('in a container, /proc/sys is read-only: with ip_forward already 1 (set through the pod sysctls), attach works without writing it', async () => {
    // Docker and Kubernetes mount /proc/sys read-only in an unprivileged
    // container; the operator sets net.ipv4.ip_forward=1 through the pod's
    // sysctls (docker --sysctl, securityContext.sysctls) instead. This runs
    // podvisor in a mount namespace with /proc/sys bound read-only, like runc.
    inNs(pod, 'sysctl', '-q', '-w', 'net.ipv4.ip_forward=1');
    const p = new PodvisorProcess(['run'], env({ NO_VNC: '1', PODVISOR_STOP_GRACE: '5' }), {
      wrapper: ['ip', 'netns', 'exec', pod, 'unshare', '--mount', 'sh', '-c', 'mount -o bind,ro /proc/sys /proc/sys && exec "$0" "$@"'],
    });
    running.push(p);
    const outcome = await Promise.race([
      waitForEvent(dirs.stateDir, 'NetworkAttached', { timeoutMs: 60_000 }),
      waitForEvent(dirs.stateDir, 'VmFailed', { timeoutMs: 60_000 }),
    ]);
    expect(outcome.type === 'VmFailed' ? outcome.data : outcome.type).toBe('NetworkAttached');
    p.signal('SIGTERM');
    await p.exited;
    expect(podView()).toEqual({ ...PRISTINE, ipForward: '1' });
  });

  describe('criterion 7: bad input is a clear error and leaves the pod namespace untouched', () => {
    it.each([
      ['VM_IP outside the /30 of VM_GW', '192.168.254.6', '192.168.254.1', 'env VM_GW: got "192.168.254.1", expected an address in the same /30 as VM_IP 192.168.254.6 (192.168.254.4/30)'],
      ['VM_IP on the network address of its /30', '10.9.9.0', '10.9.9.1', 'env VM_IP: got "10.9.9.0", expected a usable host of its /30 10.9.9.0/30'],
      ['VM_GW equal to VM_IP', '192.168.254.2', '192.168.254.2', 'env VM_GW: got "192.168.254.2", expected an address different from VM_IP (192.168.254.2)'],
    ])('%s: exit 2, the problem named', async (_case, vmIp, vmGw, problem) => {
      const p = start({ VM_IP: vmIp, VM_GW: vmGw });
      expect((await p.exited).code).toBe(2);
      expect(p.stderr).toContain(problem);
      expect(podView()).toEqual(PRISTINE);
    });

    it('broken YAML in /metadata: the error names the file and line, no network is attached and qemu never starts', async () => {
      const metadata = path.join(dirs.root, 'metadata');
      await writeFile(metadata, `instance-id: iid-${name}\nlocal-hostname: [unclosed\n`);
      const p = start();
      expect((await p.exited).code).toBe(3);
      const failed = readEvents(dirs.stateDir).find((e) => e.type === 'VmFailed');
      expect((failed?.data as { message?: string } | undefined)?.message).toMatch(new RegExp(`${metadata.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}.*line \\d+`));
      const log = types(readEvents(dirs.stateDir));
      expect(log).not.toContain('NetworkAttached');
      expect(log).not.toContain('VmStarting');
      expect(podView()).toEqual(PRISTINE);
    });
  });
});

/** Waits (bounded) until `check` holds, re-checking the state every 50 ms. */
async function until(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
