/**
 * The real backend, with real ip/mknod/dnsmasq, inside a simulated pod made by
 * test/support/pod.sh (a Calico-style eth0 and a plain eth1 with two
 * addresses): the test wraps the core runner so that every command runs
 * under `ip netns exec <pod>`, as the supervisor (PID 1 of the pod) would.
 * The tap device nodes are global, so the test process opens them itself.
 * What the guest sees over DHCP is the e2e test's job (test/e2e/macvtap).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, fstatSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NetnsProcessRunner } from '@podvisor/net-support';
import {
  ConfigError,
  ExecaProcessRunner,
  SilentLogger,
  type NetworkAttachSpec,
  type NetworkHooks,
  type PluginWarning,
  type ProcessRunner,
  type RunOptions,
  type RunResult,
} from '@podvisor/core';
import { MacvtapNetworkBackend, macvtapStatePaths } from './macvtap-network-backend.js';
import { MACVTAP_TEST_PODS, createMacvtapTestPod, macvtapTestSpec, nsPids, podView, podView6, uniquePodName, type MacvtapTestPod } from './macvtap-test-pod.test.js';

const isRoot = process.getuid?.() === 0;

describe.skipIf(!isRoot)('MacvtapNetworkBackend in a pod namespace (needs root)', () => {
  let testPod: MacvtapTestPod;
  let pod: string;
  let stateDir: string;
  let runner: ExecaProcessRunner;
  let backends: MacvtapNetworkBackend[];
  let warnings: PluginWarning[];
  let hooks: NetworkHooks;

  const spec = (env: Record<string, string> = {}): NetworkAttachSpec => macvtapTestSpec(stateDir, env);
  const backend = (): MacvtapNetworkBackend => {
    const b = new MacvtapNetworkBackend(new NetnsProcessRunner(runner, pod), new SilentLogger());
    backends.push(b);
    return b;
  };

  beforeEach(async () => {
    testPod = await createMacvtapTestPod(uniquePodName('mvti'), MACVTAP_TEST_PODS.twoInterfaces);
    ({ name: pod, stateDir } = testPod);
    runner = new ExecaProcessRunner(new SilentLogger());
    backends = [];
    warnings = [];
    hooks = { log: new SilentLogger(), warn: (w) => warnings.push(w), notice: (w) => warnings.push(w) };
  });

  afterEach(async () => {
    for (const b of backends) await b.detach(spec()).catch(() => undefined);
    await runner.stopAll(1000);
    await testPod.destroy();
  });

  it('moves each interface identity to a macvtap, serves DHCP from sibling macvlans, and detach puts the pod back exactly', async () => {
    const before = podView(pod);
    const eth0 = before.links.find((l) => l.name === 'eth0');
    const eth1 = before.links.find((l) => l.name === 'eth1');
    const b = backend();
    const attachment = await b.attach(spec({ SELECTED_NETWORK: '10.57.1.2/24' }), hooks);

    // NICs follow the pod's order, with the pod's MACs and addresses (SELECTED_NETWORK picks eth1's second).
    expect(attachment.nics.map((n) => [n.id, n.mac, n.addresses])).toEqual([
      ['net0', eth0?.mac, ['10.55.1.7/32']],
      ['net1', eth1?.mac, ['10.57.1.2/24']],
    ]);
    for (const nic of attachment.nics) {
      expect(nic.backend.kind).toBe('tap-fd');
      if (nic.backend.kind === 'tap-fd') expect(fstatSync(nic.backend.fd).isCharacterDevice()).toBe(true);
    }
    expect(attachment.vnc).toEqual({ kind: 'unix', path: join(stateDir, 'vnc.sock') });
    if (!existsSync('/dev/vhost-net')) expect(warnings.map((w) => w.code)).toContain('WARN_MACVTAP_NO_VHOST_NET');
    expect(warnings.find((w) => w.code === 'WARN_MACVTAP_NO_VHOST_NET')?.hint ?? 'modprobe vhost-net').toContain('modprobe vhost-net');
    expect(warnings.map((w) => w.code)).not.toContain('WARN_MACVTAP_IPV6_NOT_PASSED');

    const during = podView(pod);
    const link = (name: string) => during.links.find((l) => l.name === name);
    expect(link('eth0')?.mac).not.toBe(eth0?.mac);
    expect(link('eth0')?.addresses).toEqual([]);
    expect(link('eth1')?.addresses).toEqual(['10.56.1.2/24']);
    const ifindex = (name: string) => Number(execFileSync('ip', ['netns', 'exec', pod, 'cat', `/sys/class/net/${name}/ifindex`], { encoding: 'utf8' }));
    const [i0, i1] = [ifindex('eth0'), ifindex('eth1')];
    expect(link(`pvmvt${i0}`)).toMatchObject({ kind: 'macvtap', mac: eth0?.mac, addresses: [] });
    expect(link(`pvmvt${i1}`)).toMatchObject({ kind: 'macvtap', mac: eth1?.mac, addresses: [] });
    expect(link(`pvmvl${i0}`)).toMatchObject({ kind: 'macvlan', addresses: ['10.55.1.6/31'] });
    expect(link(`pvmvl${i1}`)).toMatchObject({ kind: 'macvlan', addresses: ['10.57.0.2/23'] });

    // One dnsmasq in the pod, leasing both addresses with the pod's routes and DNS.
    const dnsmasq = nsPids(pod).map((p) => execFileSync('cat', [`/proc/${p}/cmdline`], { encoding: 'utf8' }).split('\0'));
    expect(dnsmasq).toHaveLength(1);
    expect(dnsmasq[0]).toEqual(
      expect.arrayContaining([
        `--dhcp-host=${eth0?.mac},set:net0,10.55.1.7,mvt-vm,infinite`,
        '--dhcp-range=set:net0,10.55.1.7,static,255.255.255.255,infinite',
        `--interface=pvmvl${i0}`,
        `--shared-network=pvmvl${i0},10.55.1.7`,
        '--dhcp-option=tag:net0,option:classless-static-route,169.254.1.1/32,0.0.0.0,0.0.0.0/0,169.254.1.1',
        '--dhcp-option=tag:net0,option:dns-server,10.96.0.10',
        `--dhcp-host=${eth1?.mac},set:net1,10.57.1.2,mvt-vm,infinite`,
        '--dhcp-range=set:net1,10.57.1.2,static,255.255.255.0,infinite',
      ]),
    );

    await b.detach(spec());
    expect(podView(pod)).toEqual(before);
    expect(nsPids(pod)).toEqual([]);
    expect(existsSync(macvtapStatePaths(stateDir).record)).toBe(false);
    // Idempotent.
    await b.detach(spec());
    expect(podView(pod)).toEqual(before);
  });

  it('a new run after a crash (dnsmasq and links left behind) converges: its attach undoes the leftovers first', async () => {
    const before = podView(pod);
    await backend().attach(spec(), hooks); // "crashes": never detached, dnsmasq keeps running
    const leftover = nsPids(pod);
    expect(leftover).toHaveLength(1);
    const second = backend();
    const attachment = await second.attach(spec(), hooks);
    expect(attachment.nics.map((n) => n.mac)).toEqual(before.links.filter((l) => l.name.startsWith('eth')).map((l) => l.mac));
    expect(nsPids(pod)).not.toContain(leftover[0]);
    expect(nsPids(pod)).toHaveLength(1);
    // A fresh backend that only knows the state dir (a restart after kill -9) restores the pod.
    await new MacvtapNetworkBackend(new NetnsProcessRunner(runner, pod), new SilentLogger()).detach(spec());
    expect(podView(pod)).toEqual(before);
    expect(nsPids(pod)).toEqual([]);
  });

  it('ATTACH_IFACES=nope0 is a ConfigError naming the interface and the pod interfaces, and nothing changes', async () => {
    const before = podView(pod);
    const err = await backend()
      .attach(spec({ ATTACH_IFACES: 'nope0' }), hooks)
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).problems).toEqual([{ path: 'env ATTACH_IFACES', value: 'nope0', expected: 'an interface of this pod: eth0, eth1' }]);
    expect((err as Error).message).toContain('nope0');
    expect(podView(pod)).toEqual(before);
    expect(existsSync(macvtapStatePaths(stateDir).record)).toBe(false);
  });

  it('AUTO_ATTACH=no ATTACH_IFACES=eth1 attaches eth1 only; eth0 keeps its MAC, address and routes', async () => {
    const before = podView(pod);
    const attachment = await backend().attach(spec({ AUTO_ATTACH: 'no', ATTACH_IFACES: 'eth1' }), hooks);
    expect(attachment.nics.map((n) => n.addresses)).toEqual([['10.56.1.2/24']]);
    const during = podView(pod);
    expect(during.links.find((l) => l.name === 'eth0')).toEqual(before.links.find((l) => l.name === 'eth0'));
    expect(during.routes.filter((r) => r.includes('"eth0"'))).toEqual(before.routes.filter((r) => r.includes('"eth0"')));
  });

  const dualStackPod = (): Promise<void> => testPod.recreate(MACVTAP_TEST_PODS.dualStack);

  it('a dual-stack pod: the VM takes the IPv6 address too, the sibling is its router, the pod forwards; detach (also after kill -9) gives it all back', async () => {
    await dualStackPod();
    const before = podView(pod);
    const before6 = podView6(pod);
    expect(before6).toMatchObject({ addresses: { eth0: ['fd10:55::7/128'] }, forwarding: '0' });
    const eth0 = before.links.find((l) => l.name === 'eth0');
    const attachment = await backend().attach(spec(), hooks);
    expect(attachment.nics.map((n) => n.addresses)).toEqual([['10.55.1.7/32', 'fd10:55::7/128']]);
    expect(warnings.map((w) => w.code)).not.toContain('WARN_MACVTAP_IPV6_NOT_PASSED');

    const i0 = Number(execFileSync('ip', ['netns', 'exec', pod, 'cat', '/sys/class/net/eth0/ifindex'], { encoding: 'utf8' }));
    const during6 = podView6(pod);
    expect(during6.addresses).toEqual({ [`pvmvl${i0}`]: [`fd70:7664:6d76:${i0.toString(16)}::1/64`] });
    expect(during6.forwarding).toBe('1');
    // The pod keeps its IPv6 default route, and reaches the VM's address through the sibling.
    expect(during6.routes).toEqual(expect.arrayContaining(before6.routes.filter((r) => r.includes('"default"'))));
    expect(during6.routes.some((r) => r.includes('"dst":"fd10:55::7"') && r.includes(`"dev":"pvmvl${i0}"`))).toBe(true);
    const [dnsmasq] = nsPids(pod).map((p) => execFileSync('cat', [`/proc/${p}/cmdline`], { encoding: 'utf8' }).split('\0'));
    expect(dnsmasq).toEqual(
      expect.arrayContaining([
        `--dhcp-host=${eth0?.mac},set:net0,10.55.1.7,[fd10:55::7],mvt-vm,infinite`,
        `--shared-network=pvmvl${i0},fd10:55::7`,
        '--dhcp-range=set:net0,fd10:55::7,static,128,infinite',
        `--ra-param=pvmvl${i0},mtu:1500,high,60,1800`,
        '--dhcp-option=tag:net0,option6:dns-server,[fd00:96::a]',
        '--enable-ra',
      ]),
    );

    // kill -9 of podvisor: a fresh backend that only knows the state dir puts everything back.
    await new MacvtapNetworkBackend(new NetnsProcessRunner(runner, pod), new SilentLogger()).detach(spec());
    expect(podView(pod)).toEqual(before);
    expect(podView6(pod)).toEqual(before6);
    expect(nsPids(pod)).toEqual([]);
    // Idempotent.
    await backend().detach(spec());
    expect(podView6(pod)).toEqual(before6);
  });

  it('a dual-stack pod that cannot forward IPv6: the VM gets IPv4 only, the IPv6 address stays with the pod, and a warning says why', async () => {
    await dualStackPod();
    const before6 = podView6(pod);
    // /proc/sys read-only (an unprivileged container), as sysctl reports it: the value read, the write refused.
    const readOnlySysctl: ProcessRunner = Object.assign(Object.create(new NetnsProcessRunner(runner, pod)) as ProcessRunner, {
      run: async (file: string, args: readonly string[], options?: RunOptions): Promise<RunResult> => {
        const inner = new NetnsProcessRunner(runner, pod);
        if (file !== 'sysctl' || args[0] === '-n') return inner.run(file, args, options);
        const read = await inner.run('sysctl', args.filter((a) => !a.includes('=')), options);
        return { ...read, exitCode: 255, stderr: 'sysctl: permission denied on key "net.ipv6.conf.all.forwarding"' };
      },
    });
    const b = new MacvtapNetworkBackend(readOnlySysctl, new SilentLogger());
    backends.push(b);
    const attachment = await b.attach(spec(), hooks);
    expect(attachment.nics.map((n) => n.addresses)).toEqual([['10.55.1.7/32']]);
    expect(warnings.filter((w) => w.code === 'WARN_MACVTAP_IPV6_NOT_PASSED').map((w) => [w.message, w.hint])).toEqual([
      [
        'the VM gets the IPv4 addresses only: the IPv6 addresses of eth0 (fd10:55::7) stay with the pod: cannot enable net.ipv6.conf.all.forwarding in the pod (sysctl: permission denied on key "net.ipv6.conf.all.forwarding"), which the VM\'s outbound IPv6 needs',
        expect.stringContaining('--allowed-unsafe-sysctls'),
      ],
    ]);
    expect(podView6(pod)).toMatchObject({ addresses: { eth0: ['fd10:55::7/128'] }, forwarding: '0' });
    const [dnsmasq] = nsPids(pod).map((p) => execFileSync('cat', [`/proc/${p}/cmdline`], { encoding: 'utf8' }).split('\0'));
    expect(dnsmasq?.filter((a) => a.includes('fd10:55::7') || a === '--enable-ra')).toEqual([]);
    await b.detach(spec());
    expect(podView6(pod)).toEqual(before6);
  });

  it("probe(): a throwaway macvtap on the pod interface attach would take opens read-write (ok, naming the real major), and nothing of it is left: no link, no node, no directory under /dev", async () => {
    const tapDirs = (): string[] => readdirSync('/dev').filter((n) => n.startsWith('podvisor-tap-'));
    const before = podView(pod);
    const dirsBefore = tapDirs();
    const major = /^(\d+) macvtap$/m.exec(readFileSync('/proc/devices', 'utf8'))?.[1];

    const findings = await backend().probe(spec({ ATTACH_IFACES: 'eth1' }));

    expect(findings).toEqual([{ id: 'device.macvtap', check: expect.stringContaining('macvtap') as string, status: 'ok', finding: `a macvtap device (char major ${major}) on eth1 opens read-write` }]);
    expect(podView(pod)).toEqual(before);
    expect(tapDirs()).toEqual(dirsBefore);
    // Nor in any other namespace: the probe's link was made in the pod.
    expect(execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' })).not.toContain('pvmvtprobe');
  });

  it('detach removes a probe link that a killed doctor left (pvmvtprobe<hex>), and only that', async () => {
    const before = podView(pod);
    execFileSync('ip', ['-n', pod, 'link', 'add', 'link', 'eth1', 'name', 'pvmvtprobe0a9f', 'type', 'macvtap', 'mode', 'bridge']);
    expect(podView(pod).links.map((l) => l.name)).toContain('pvmvtprobe0a9f');
    await backend().detach(spec());
    expect(podView(pod)).toEqual(before);
  });
});
