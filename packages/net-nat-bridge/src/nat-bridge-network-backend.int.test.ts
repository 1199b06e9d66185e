/**
 * The real backend, with real ip/nft/sysctl/dnsmasq, run inside a simulated
 * pod made by test/support/pod.sh in its own node namespace: the test wraps the
 * core runner so that every command runs under `ip netns exec <pod>`, exactly
 * as the supervisor (PID 1 inside the pod) would run it. A "VM" namespace whose
 * veth sits on the bridge in place of qemu's tap checks DHCP, DNAT and SNAT.
 */
import { mkdtemp, readFile, rm, writeFile, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NetnsProcessRunner, deriveVmMac } from '@podvisor/net-support';
import {
  ExecaProcessRunner,
  SilentLogger,
  resolvePluginSettings,
  type ChildHandle,
  type Logger,
  type NetworkAttachSpec,
  type NetworkHooks,
  type PluginWarning,
  type RunOptions,
} from '@podvisor/core';
import { NatBridgeNetworkBackend } from './nat-bridge-network-backend.js';
import { NAT_BRIDGE_SETTINGS } from './nat-config.js';

const POD_SH = fileURLToPath(new URL('../../../test/support/pod.sh', import.meta.url));
const RUN_ID = `${process.pid.toString(36)}${Date.now().toString(36).slice(-4)}`;
const isRoot = process.getuid?.() === 0;


/** Keeps log lines so a test can wait for one. */
class RecordingLogger implements Logger {
  readonly lines: { level: string; msg: string; fields?: Record<string, unknown> }[] = [];
  private waiters: { match: (msg: string) => boolean; resolve: () => void }[] = [];
  debug(msg: string, fields?: Record<string, unknown>) {
    this.push('debug', msg, fields);
  }
  info(msg: string, fields?: Record<string, unknown>) {
    this.push('info', msg, fields);
  }
  warn(msg: string, fields?: Record<string, unknown>) {
    this.push('warn', msg, fields);
  }
  error(msg: string, fields?: Record<string, unknown>) {
    this.push('error', msg, fields);
  }
  child(): Logger {
    return this;
  }
  waitFor(part: string): Promise<void> {
    if (this.lines.some((l) => l.msg.includes(part))) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ match: (m) => m.includes(part), resolve }));
  }
  private push(level: string, msg: string, fields?: Record<string, unknown>) {
    this.lines.push({ level, msg, fields });
    for (const w of this.waiters.filter((x) => x.match(msg))) w.resolve();
  }
}

/** Hooks that record warnings and notices, and let a test wait for a code. */
function recordingHooks(log: Logger = new SilentLogger()) {
  const warnings: PluginWarning[] = [];
  const notices: PluginWarning[] = [];
  const waiters: { code: string; resolve: (w: PluginWarning) => void }[] = [];
  const record = (list: PluginWarning[]) => (w: PluginWarning) => {
    list.push(w);
    for (const x of waiters.filter((y) => y.code === w.code)) x.resolve(w);
  };
  const hooks: NetworkHooks = { log, warn: record(warnings), notice: record(notices) };
  const waitFor = (code: string) => {
    const seen = [...warnings, ...notices].find((w) => w.code === code);
    return seen !== undefined ? Promise.resolve(seen) : new Promise<PluginWarning>((resolve) => waiters.push({ code, resolve }));
  };
  return { hooks, warnings, notices, waitFor };
}

/**
 * A UDP client for `node -e UDP_ASK HOST PORT`: sends `hi` every second until
 * the first datagram comes back, prints it and exits 0; exits 1 after 30 s.
 */
const UDP_ASK = `
const [host, port] = process.argv.slice(1);
const socket = require('dgram').createSocket(host.includes(':') ? 'udp6' : 'udp4');
socket.on('message', (m) => process.stdout.write(m, () => process.exit(0)));
const ask = () => socket.send('hi\\n', Number(port), host);
ask();
setInterval(ask, 1000);
setTimeout(() => process.exit(1), 30000);
`;

/** Polls a condition (state, not time): resolves once it holds, fails after `timeoutMs`. */
async function until(what: string, check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe.skipIf(!isRoot)('NatBridgeNetworkBackend in a simulated pod (needs root: network namespaces)', () => {
  const host = new ExecaProcessRunner(new SilentLogger());
  let seq = 0;
  let pod: string;
  let vmNs: string;
  let tmp: string;
  let facts: Record<string, string>;
  let podRunner: NetnsProcessRunner;
  let backends: NatBridgeNetworkBackend[];
  let resolvConf: string;

  const sh = (file: string, args: string[], options?: RunOptions) => host.run(file, args, options);
  const inNs = (ns: string, file: string, args: string[], options?: RunOptions) => host.run('ip', ['netns', 'exec', ns, file, ...args], options);
  const inPod = (file: string, args: string[], options?: RunOptions) => inNs(pod, file, args, options);

  const newBackend = (log: Logger = new SilentLogger()) => {
    const b = new NatBridgeNetworkBackend(podRunner, log);
    backends.push(b);
    return b;
  };
  const settingsOf = (yamlSettings: Record<string, unknown>) => resolvePluginSettings(NAT_BRIDGE_SETTINGS, { env: {}, yaml: { network: { settings: yamlSettings } } }).settings;
  const spec = (over: Partial<NetworkAttachSpec> = {}): NetworkAttachSpec => ({
    vmName: 'vm-nat',
    stateDir: join(tmp, 'state'),
    diskDir: join(tmp, 'disk'),
    settings: settingsOf({ resolvConf }),
    vnc: { enabled: true, port: 5900 },
    controlPort: 5800,
    ...over,
  });

  const linkNames = async (ns?: string) => {
    const out = ns === undefined ? await sh('ip', ['-j', 'link', 'show']) : await inNs(ns, 'ip', ['-j', 'link', 'show']);
    return (JSON.parse(out.stdout) as { ifname: string }[]).map((l) => l.ifname);
  };
  const tables = async (ns?: string) => {
    const out = ns === undefined ? await sh('nft', ['list', 'tables']) : await inNs(ns, 'nft', ['list', 'tables']);
    return out.stdout.trim().split('\n').filter(Boolean);
  };
  const ruleCount = async () => {
    const out = await inPod('nft', ['-j', 'list', 'table', 'ip', 'podvisor']);
    return (JSON.parse(out.stdout) as { nftables: Record<string, unknown>[] }).nftables.filter((x) => 'rule' in x).length;
  };
  const dnsmasqPidsInPod = async () => {
    const pids = (await sh('ip', ['netns', 'pids', pod])).stdout.split('\n').filter(Boolean);
    const comms = await Promise.all(pids.map(async (p) => [p, (await readFile(`/proc/${p}/comm`, 'utf8').catch(() => '')).trim()] as const));
    return comms.filter(([, c]) => c === 'dnsmasq').map(([p]) => Number(p));
  };
  const podForward = async () => (await inPod('sysctl', ['-n', 'net.ipv4.ip_forward'])).stdout.trim();

  beforeEach(async () => {
    seq += 1;
    pod = `pvnat-${RUN_ID}-${seq}`;
    vmNs = `${pod}-vm`;
    backends = [];
    tmp = await mkdtemp(join(tmpdir(), `podvisor-nat-${RUN_ID}-`));
    resolvConf = join(tmp, 'pod-resolv.conf');
    await writeFile(resolvConf, 'search ns1.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n');
    const out = await sh(POD_SH, ['create', pod, '--resolv', resolvConf]);
    facts = Object.fromEntries(
      out.stdout
        .trim()
        .split('\n')
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    );
    // The backend reads the pod's resolv.conf as the pod would see it.
    resolvConf = `/etc/netns/${pod}/resolv.conf`;
    podRunner = new NetnsProcessRunner(new ExecaProcessRunner(new SilentLogger()), pod);
    // A new namespace inherits IPv4 forwarding from the host's (net.core.devconf_inherit_init_net=0),
    // which other software may have turned on: start from off, so that the restore is what is tested.
    await inPod('sysctl', ['-q', '-w', 'net.ipv4.ip_forward=0']);
  });

  afterEach(async () => {
    for (const b of backends) await b.detach(spec()).catch(() => undefined);
    await podRunner.stopAll(1000);
    await host.stopAll(1000);
    await sh('ip', ['netns', 'del', vmNs], { check: false });
    await sh(POD_SH, ['destroy', pod], { check: false });
    await rm(tmp, { recursive: true, force: true });
  });

  it('attaches inside the pod namespace only, and detach removes everything, twice', async () => {
    // The namespace the test runs in is shared with everything else on the machine (podman's
    // veths and its ip_forward, other pods wired to the root namespace): only what the backend
    // would have made, by name, is compared.
    const ours = (names: string[]) => names.filter((n) => n === 'pvbr0' || n === 'pvtap0' || n === 'table ip podvisor');
    const rootBefore = [...ours(await linkNames()), ...ours(await tables())];
    const { hooks, warnings } = recordingHooks();
    const backend = newBackend();

    const attachment = await backend.attach(spec(), hooks);

    expect(attachment).toEqual({
      nics: [{ id: 'net0', mac: deriveVmMac('vm-nat'), backend: { kind: 'tap', ifname: 'pvtap0' }, addresses: ['192.168.254.2/30'] }],
      vnc: { kind: 'tcp', host: '0.0.0.0', display: 0 },
      detail: expect.objectContaining({
        podInterface: 'eth0',
        podIp: facts.POD_IP,
        vmIp: '192.168.254.2',
        gateway: '192.168.254.1',
        bridge: 'pvbr0',
        tap: 'pvtap0',
        dnat: { to: '192.168.254.2', protocols: ['tcp', 'udp'], excluded: ['tcp/5900', 'tcp/5800'], keptForStacked: [] },
      }),
    });
    expect(warnings).toEqual([]);
    expect(await readFile(join(tmp, 'disk', 'vm-nat.mac'), 'utf8')).toBe(`${deriveVmMac('vm-nat')}\n`);

    const br = JSON.parse((await inPod('ip', ['-j', '-4', 'addr', 'show', 'dev', 'pvbr0'])).stdout) as { addr_info: { local: string; prefixlen: number }[] }[];
    expect(br[0]?.addr_info.map((a) => `${a.local}/${a.prefixlen}`)).toEqual(['192.168.254.1/30']);
    const tap = JSON.parse((await inPod('ip', ['-j', '-d', 'link', 'show', 'dev', 'pvtap0'])).stdout) as { master?: string; linkinfo?: { info_kind?: string } }[];
    expect(tap[0]).toMatchObject({ master: 'pvbr0', linkinfo: { info_kind: 'tun' } });
    expect(await tables(pod)).toEqual(['table ip podvisor']);
    expect(await ruleCount()).toBe(11);
    expect(await podForward()).toBe('1');
    const [pid] = await dnsmasqPidsInPod();
    expect(pid).toBeDefined();
    expect((await readFile(join(tmp, 'state', 'dnsmasq.pid'), 'utf8')).trim()).toBe(String(pid));

    // Nothing leaked into the namespace the test runs in. (Its ip_forward is not compared: podman
    // turns it on whenever a container starts. The backend sets the pod's through the runner,
    // which is checked above: a write that missed the pod would have left the pod's at 0.)
    expect([...ours(await linkNames()), ...ours(await tables())]).toEqual(rootBefore);

    await backend.detach(spec());
    const gone = async () => {
      expect(await linkNames(pod)).toEqual(['lo', 'eth0']);
      expect(await tables(pod)).toEqual([]);
      expect(await dnsmasqPidsInPod()).toEqual([]);
      expect(await podForward()).toBe('0');
    };
    await gone();
    await backend.detach(spec());
    await newBackend().detach(spec());
    await gone();
  });

  it('re-attaching from a new instance (a restart after a crash) leaves one table, one rule set and one dnsmasq', async () => {
    const firstLog = new RecordingLogger();
    const first = newBackend(firstLog);
    await first.attach(spec(), recordingHooks().hooks);
    const [firstPid] = await dnsmasqPidsInPod();

    const second = newBackend();
    const { hooks, notices, warnings } = recordingHooks();
    await second.attach(spec(), hooks);
    // The first run's bridge still routed the VM's /30: that is a leftover to replace, not an overlap.
    expect(warnings).toEqual([]);
    // The first instance sees its dnsmasq die, and stands down instead of fighting.
    await firstLog.waitFor('no longer owns the network');

    expect(await tables(pod)).toEqual(['table ip podvisor']);
    expect(await ruleCount()).toBe(11);
    const pids = await dnsmasqPidsInPod();
    expect(pids).toHaveLength(1);
    expect(pids[0]).not.toBe(firstPid);
    expect(notices).toEqual([]);
    expect(await podForward()).toBe('1');

    await second.detach(spec());
    expect(await podForward()).toBe('0');
    expect(await dnsmasqPidsInPod()).toEqual([]);
  });

  it('restarts dnsmasq when it dies, and says so through the notice hook', async () => {
    const backend = newBackend();
    const { hooks, waitFor } = recordingHooks();
    await backend.attach(spec(), hooks);
    const [pid] = await dnsmasqPidsInPod();
    process.kill(pid as number, 'SIGKILL');

    const notice = await waitFor('NOTICE_DNSMASQ_RESTARTED');
    expect(notice.message).toMatch(new RegExp(`^dnsmasq \\(pid ${pid}\\) exited \\(SIGKILL\\); restarted as pid \\d+`));
    const pids = await dnsmasqPidsInPod();
    expect(pids).toHaveLength(1);
    expect(pids[0]).not.toBe(pid);
    expect((await readFile(join(tmp, 'state', 'dnsmasq.pid'), 'utf8')).trim()).toBe(String(pids[0]));
  });

  it('fails with a coded error naming the interface, and leaves nothing behind', async () => {
    const backend = newBackend();
    await expect(backend.attach(spec({ settings: settingsOf({ resolvConf, podInterface: 'nosuch0' }) }), recordingHooks().hooks)).rejects.toMatchObject({
      code: 'ERR_NAT_NO_POD_INTERFACE',
      message: expect.stringContaining('nosuch0'),
    });
    expect(await linkNames(pod)).toEqual(['lo', 'eth0']);
    expect(await tables(pod)).toEqual([]);
  });

  it('warns when the /30 overlaps a route the pod has', async () => {
    await inPod('ip', ['route', 'add', '192.168.254.0/24', 'dev', 'eth0']);
    const { hooks, warnings } = recordingHooks();
    await newBackend().attach(spec(), hooks);
    expect(warnings.map((w) => w.code)).toEqual(['WARN_NAT_SUBNET_OVERLAP']);
    expect(warnings[0]?.message).toContain('192.168.254.0/24 dev eth0');
  });

  it('leases the VM its address with the pod DNS, DNATs the pod IP (from outside and inside the pod) and localhost to it except 5900, and SNATs it to the pod IP', async () => {
    const backend = newBackend();
    const attachment = await backend.attach(spec(), recordingHooks().hooks);
    const mac = attachment.nics[0]?.mac as string;

    // A "VM": a namespace whose veth is plugged into the bridge in place of the tap.
    await sh('ip', ['netns', 'add', vmNs]);
    await inPod('ip', ['link', 'add', 'name', 'pvvm0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', vmNs]);
    const plug = () => inPod('ip', ['link', 'set', 'dev', 'pvvm0', 'master', 'pvbr0', 'up']);
    await plug();
    await inNs(vmNs, 'ip', ['link', 'set', 'dev', 'lo', 'up']);
    await inNs(vmNs, 'ip', ['link', 'set', 'dev', 'eth0', 'address', mac, 'up']);

    const script = join(tmp, 'udhcpc.sh');
    const leaseOut = join(tmp, 'lease.env');
    await writeFile(script, `#!/bin/sh\n[ "$1" = bound ] && env > ${leaseOut}\nexit 0\n`);
    await chmod(script, 0o755);
    await inNs(vmNs, 'busybox', ['udhcpc', '-i', 'eth0', '-f', '-q', '-n', '-t', '10', '-T', '1', '-O', 'search', '-O', 'mtu', '-s', script], { timeoutMs: 30_000 });
    const lease = Object.fromEntries(
      (await readFile(leaseOut, 'utf8'))
        .split('\n')
        .filter((l) => l.includes('='))
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    );
    expect(lease).toMatchObject({
      ip: '192.168.254.2',
      subnet: '255.255.255.252',
      router: '192.168.254.1',
      dns: '10.96.0.10',
      search: 'ns1.svc.cluster.local svc.cluster.local cluster.local',
      hostname: 'vm-nat',
    });
    await inNs(vmNs, 'ip', ['addr', 'add', '192.168.254.2/30', 'dev', 'eth0']);
    await inNs(vmNs, 'ip', ['route', 'add', 'default', 'via', '192.168.254.1']);

    const serve = async (ns: string, listen: string, reply: string): Promise<ChildHandle> => {
      const child = await host.spawn('ip', ['netns', 'exec', ns, 'socat', listen, `SYSTEM:${reply}`], { name: 'socat' });
      const port = /:(\d+)/.exec(listen)?.[1] as string;
      const proto = listen.startsWith('UDP') ? '-lun' : '-ltn';
      await until(`socat ${listen} in ${ns}`, async () => (await inNs(ns, 'ss', ['-H', proto, `sport = :${port}`])).stdout.trim() !== '');
      return child;
    };
    const nodeNs = facts.NODE_NS as string;
    const podIp = facts.POD_IP as string;
    const nodeIp = facts.NODE_IP as string;
    // TCP: read-only (`-u`), so the client never half-closes before the answer, which makes socat's
    // SYSTEM servers drop it now and then. UDP has no end of stream: a socat client waits a fixed
    // time (`-t`) for the answer, which a busy machine outlasts (the server forks a shell per
    // datagram). So a UDP client sends a datagram every second until the first answer, and prints it
    // as soon as it comes (bounded, printing nothing when no answer comes).
    const connect = (ns: string, target: string) => {
      const udp = /^UDP:(.+):(\d+)$/.exec(target);
      return udp !== null
        ? inNs(ns, process.execPath, ['-e', UDP_ASK, udp[1] as string, udp[2] as string], { check: false, timeoutMs: 40_000 })
        : inNs(ns, 'socat', ['-T', '10', '-u', `${target},connect-timeout=5`, '-'], { check: false, timeoutMs: 20_000 });
    };

    await serve(vmNs, 'TCP-LISTEN:8080,reuseaddr,fork', 'echo tcp-from-vm');
    await serve(vmNs, 'TCP-LISTEN:5900,reuseaddr,fork', 'echo vnc-from-vm');
    await serve(vmNs, 'UDP-RECVFROM:7000,fork', 'echo udp-from-vm');
    await serve(nodeNs, `TCP-LISTEN:9000,bind=${nodeIp},reuseaddr,fork`, 'echo peer=$SOCAT_PEERADDR');

    expect((await connect(nodeNs, `TCP:${podIp}:8080`)).stdout).toBe('tcp-from-vm\n');
    expect((await connect(nodeNs, `UDP:${podIp}:7000`)).stdout).toBe('udp-from-vm\n');
    const vnc = await connect(nodeNs, `TCP:${podIp}:5900`);
    expect(vnc.exitCode).not.toBe(0);
    expect(vnc.stdout).toBe('');
    expect((await connect(vmNs, `TCP:${nodeIp}:9000`)).stdout).toBe(`peer=${podIp}\n`);

    // From inside the pod (a sidecar, kubectl port-forward): to localhost and to the pod IP, TCP and UDP.
    expect((await connect(pod, 'TCP:127.0.0.1:8080')).stdout).toBe('tcp-from-vm\n');
    expect((await connect(pod, `TCP:${podIp}:8080`)).stdout).toBe('tcp-from-vm\n');
    expect((await connect(pod, 'UDP:127.0.0.1:7000')).stdout).toBe('udp-from-vm\n');
    // ... except the ports podvisor keeps: nothing of the VM answers on them.
    for (const target of ['TCP:127.0.0.1:5900', `TCP:${podIp}:5900`]) expect((await connect(pod, target)).stdout).toBe('');

    // With VNC off (NO_VNC), 5900 goes to the VM like any other port.
    await backend.attach(spec({ vnc: { enabled: false, port: 5900 } }), recordingHooks().hooks);
    await plug();
    expect((await connect(nodeNs, `TCP:${podIp}:5900`)).stdout).toBe('vnc-from-vm\n');
  });
});
