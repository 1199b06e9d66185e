import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PodvisorError, SilentLogger, resolvePluginSettings, type NetworkAttachSpec, type ProcessRunner, type RunOptions, type RunResult } from '@podvisor/core';
import { NatBridgeNetworkBackend } from './nat-bridge-network-backend.js';
import { NAT_BRIDGE_SETTINGS } from './nat-config.js';

/** A pretend pod namespace: answers the queries the backend makes and tracks the links it creates. */
class FakePodRunner implements ProcessRunner {
  readonly calls: string[] = [];
  readonly links = new Set(['lo', 'eth0']);
  forward = '0';
  forward6 = '0';
  /** Give eth0 a global IPv6 address (a dual-stack pod). */
  ipv6 = false;
  /** The scripts given to `nft -f -`, in order. */
  readonly nftScripts: string[] = [];
  failOn: ((argv: string) => boolean) | undefined;

  async run(file: string, args: readonly string[], options?: RunOptions): Promise<RunResult> {
    const argv = [file, ...args].join(' ');
    const input = options?.input === undefined ? '' : String(options.input);
    const shown = argv === 'nft -f -' ? `${argv} <<${input.includes('dnat') ? 'ruleset' : 'teardown'}` : argv;
    this.calls.push(shown);
    if (argv === 'nft -f -') this.nftScripts.push(input);
    if (this.failOn?.(shown) === true) {
      throw new PodvisorError('ERR_PROCESS_FAILED', `${argv} failed (exit 1): Error: Could not process rule: Operation not supported`);
    }
    let stdout = '';
    let stderr = '';
    if (argv === 'ip -force -batch -') {
      input.split('\n').forEach((line, i) => {
        if (line === '') return;
        this.calls.push(`  ${line}`);
        const add = /^(?:link add name|tuntap add dev) (\S+)/.exec(line);
        const del = /^link del dev (\S+)/.exec(line);
        if (add?.[1] !== undefined) this.links.add(add[1]);
        if (del?.[1] !== undefined && !this.links.delete(del[1])) stderr += `Cannot find device "${del[1]}"\nCommand failed -:${i + 1}\n`;
      });
    }
    if (argv === 'ip -j -batch -') {
      const addrs = [
        { family: 'inet', local: '10.244.0.5', prefixlen: 32, scope: 'global' },
        ...(this.ipv6 ? [{ family: 'inet6', local: 'fd10:244::5', prefixlen: 128, scope: 'global' }] : []),
        { family: 'inet6', local: 'fe80::1', prefixlen: 64, scope: 'link' },
      ];
      stdout = `${JSON.stringify([{ dst: 'default', gateway: '169.254.1.1', dev: 'eth0' }])}\n${JSON.stringify([{ ifname: 'eth0', mtu: 1440, addr_info: addrs }])}\n`;
    }
    if (argv.startsWith('sysctl net.ipv4.ip_forward net.ipv4.ip_forward=1 ')) {
      stdout = `net.ipv4.ip_forward = ${this.forward}\nnet.ipv4.ip_forward = 1\n`;
      this.forward = '1';
      if (argv.includes(' net.ipv6.conf.all.forwarding ')) {
        stdout += `net.ipv6.conf.all.forwarding = ${this.forward6}\nnet.ipv6.conf.all.forwarding = 1\n`;
        this.forward6 = '1';
      }
      stdout += 'net.ipv4.conf.pvbr0.route_localnet = 1\n';
    }
    const set = /^sysctl -w .*net\.ipv4\.ip_forward=(\d)/.exec(argv);
    if (set?.[1] !== undefined) this.forward = set[1];
    const set6 = /^sysctl -w .*net\.ipv6\.conf\.all\.forwarding=(\d)/.exec(argv);
    if (set6?.[1] !== undefined) this.forward6 = set6[1];
    return { argv: [file, ...args], exitCode: stderr === '' ? 0 : 1, signal: undefined, stdout, stderr, durationMs: 0 };
  }
  async spawn(): Promise<never> {
    throw new Error('not used');
  }
  children() {
    return [];
  }
  ownedPids() {
    return new Set<number>();
  }
  async stopAll() {}
}

describe('NatBridgeNetworkBackend.attach failing half-way', () => {
  let dir: string;
  let spec: NetworkAttachSpec;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'podvisor-natunit-'));
    spec = {
      vmName: 'vm-1',
      stateDir: join(dir, 'state'),
      diskDir: join(dir, 'disk'),
      settings: {},
      vnc: { enabled: true, port: 5900 },
      controlPort: 5800,
    };
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('throws ERR_NAT_NFTABLES naming the command, and undoes the links and ip_forward', async () => {
    const runner = new FakePodRunner();
    runner.failOn = (argv) => argv.endsWith('<<ruleset');
    const backend = new NatBridgeNetworkBackend(runner, new SilentLogger());
    const hooks = { log: new SilentLogger(), warn: () => undefined, notice: () => undefined };

    const err = await backend.attach(spec, hooks).catch((e: unknown) => e);

    expect(err).toMatchObject({ code: 'ERR_NAT_NFTABLES' });
    expect((err as Error).message).toMatch(/^nat-bridge: cannot apply the nftables table ip podvisor \(DNAT eth0 10\.244\.0\.5 to 192\.168\.254\.2\): nft -f - failed/);
    expect(runner.links).toEqual(new Set(['lo', 'eth0']));
    expect(runner.forward).toBe('0');
    expect(await readdir(spec.stateDir)).toEqual([]);
    const afterFailure = runner.calls.slice(runner.calls.lastIndexOf('nft -f - <<ruleset') + 1);
    expect(afterFailure).toEqual([
      'nft -f - <<teardown',
      'ip -force -batch -',
      '  link del dev pvtap0',
      '  link del dev pvbr0',
      'sysctl -w net.ipv4.ip_forward=0',
    ]);
  });

  it('sets up with four commands before dnsmasq: the pod read, one link batch, one sysctl, one nft load', async () => {
    const runner = new FakePodRunner();
    runner.failOn = (argv) => argv === 'dnsmasq';
    const backend = new NatBridgeNetworkBackend(runner, new SilentLogger());
    await backend.attach(spec, { log: new SilentLogger(), warn: () => undefined, notice: () => undefined }).catch(() => undefined);
    const attach = runner.calls.slice(0, runner.calls.indexOf('nft -f - <<ruleset') + 1);
    expect(attach).toEqual([
      'ip -j -batch -',
      'ip -force -batch -',
      '  link del dev pvtap0',
      '  link del dev pvbr0',
      expect.stringMatching(/^ {2}link add name pvbr0 address 52:54:00(:[0-9a-f]{2}){3} mtu 1440 type bridge$/),
      '  addr add 192.168.254.1/30 dev pvbr0',
      '  link set dev pvbr0 up',
      '  tuntap add dev pvtap0 mode tap',
      '  link set dev pvtap0 mtu 1440 master pvbr0 up',
      'sysctl net.ipv4.ip_forward net.ipv4.ip_forward=1 net.ipv4.conf.pvbr0.route_localnet=1',
      'nft -f - <<ruleset',
    ]);
  });

  it('in a dual-stack pod: the bridge gets the IPv6 router address, IPv6 forwarding goes on with IPv4, the one nft load holds both tables, and a failure undoes both', async () => {
    const runner = new FakePodRunner();
    runner.ipv6 = true;
    runner.failOn = (argv) => argv.endsWith('<<ruleset');
    const backend = new NatBridgeNetworkBackend(runner, new SilentLogger());
    const err = await backend.attach(spec, { log: new SilentLogger(), warn: () => undefined, notice: () => undefined }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ERR_NAT_NFTABLES' });
    expect((err as Error).message).toContain('and ip6 podvisor (fd10:244::5 to fd70:7664::');
    expect(runner.calls).toContain('  addr add fd70:7664::1/64 dev pvbr0 nodad');
    expect(runner.calls).toContain('sysctl net.ipv4.ip_forward net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding net.ipv6.conf.all.forwarding=1 net.ipv4.conf.pvbr0.route_localnet=1');
    const ruleset = runner.nftScripts.find((script) => script.includes('dnat'));
    expect(ruleset).toContain('table ip podvisor {');
    expect(ruleset).toMatch(/iifname "eth0" ip6 daddr fd10:244::5 meta l4proto tcp dnat to fd70:7664::5054:ff:fe[0-9a-f]{2}:[0-9a-f]{1,4}\n/);
    expect(runner.calls.slice(runner.calls.lastIndexOf('nft -f - <<ruleset') + 1)).toEqual([
      'nft -f - <<teardown',
      'ip -force -batch -',
      '  link del dev pvtap0',
      '  link del dev pvbr0',
      'sysctl -w net.ipv4.ip_forward=0 net.ipv6.conf.all.forwarding=0',
    ]);
    expect([runner.forward, runner.forward6]).toEqual(['0', '0']);
  });

  it('reports bad configuration before touching anything', async () => {
    const runner = new FakePodRunner();
    const backend = new NatBridgeNetworkBackend(runner, new SilentLogger());
    await expect(backend.attach({ ...spec, settings: resolvePluginSettings(NAT_BRIDGE_SETTINGS, { env: { VM_IP: '10.0.0.1', VM_GW: '10.0.0.5' }, yaml: {} }).settings }, { log: new SilentLogger(), warn: () => undefined, notice: () => undefined })).rejects.toMatchObject({
      code: 'ERR_CONFIG_INVALID',
      problems: [{ path: 'env VM_GW', value: '10.0.0.5' }],
    });
    expect(runner.calls).toEqual([]);
  });
});
