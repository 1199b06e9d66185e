import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PodvisorError, SilentLogger, type NetworkAttachSpec, type ProcessRunner, type RunOptions, type RunResult } from '@podvisor/core';
import { NatBridgeNetworkBackend } from './nat-bridge-network-backend.js';

/** A pretend pod namespace: answers the queries the backend makes and tracks the links it creates. */
class FakePodRunner implements ProcessRunner {
  readonly calls: string[] = [];
  readonly links = new Set(['lo', 'eth0']);
  forward = '0';
  failOn: ((argv: string) => boolean) | undefined;

  async run(file: string, args: readonly string[], options?: RunOptions): Promise<RunResult> {
    const argv = [file, ...args].join(' ');
    this.calls.push(options?.input === undefined ? argv : `${argv} <<${String(options.input).includes('dnat') ? 'ruleset' : 'teardown'}`);
    if (this.failOn?.(this.calls.at(-1) as string) === true) {
      throw new PodvisorError('ERR_PROCESS_FAILED', `${argv} failed (exit 1): Error: Could not process rule: Operation not supported`);
    }
    let stdout = '';
    const add = /^ip (?:link add name|tuntap add dev) (\S+)/.exec(argv);
    const del = /^ip link del dev (\S+)/.exec(argv);
    if (add?.[1] !== undefined) this.links.add(add[1]);
    if (del?.[1] !== undefined) this.links.delete(del[1]);
    if (argv === 'ip -j -4 route show default') stdout = JSON.stringify([{ dst: 'default', gateway: '169.254.1.1', dev: 'eth0' }]);
    if (argv === 'ip -j -4 addr show dev eth0') stdout = JSON.stringify([{ ifname: 'eth0', mtu: 1440, addr_info: [{ family: 'inet', local: '10.244.0.5', prefixlen: 32 }] }]);
    if (argv === 'ip -j -4 route show table all') stdout = '[]';
    if (argv === 'ip -j link show') stdout = JSON.stringify([...this.links].map((ifname) => ({ ifname })));
    if (argv === 'sysctl -n net.ipv4.ip_forward') stdout = `${this.forward}\n`;
    const set = /^sysctl -w net.ipv4.ip_forward=(\d)$/.exec(argv);
    if (set?.[1] !== undefined) this.forward = set[1];
    return { argv: [file, ...args], exitCode: 0, signal: undefined, stdout, stderr: '', durationMs: 0 };
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
      env: {},
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
      'ip -j link show',
      'ip link del dev pvtap0',
      'ip link del dev pvbr0',
      'sysctl -w net.ipv4.ip_forward=0',
    ]);
  });

  it('reports bad configuration before touching anything', async () => {
    const runner = new FakePodRunner();
    const backend = new NatBridgeNetworkBackend(runner, new SilentLogger());
    await expect(backend.attach({ ...spec, env: { VM_IP: '10.0.0.1', VM_GW: '10.0.0.5' } }, { log: new SilentLogger(), warn: () => undefined, notice: () => undefined })).rejects.toMatchObject({
      code: 'ERR_CONFIG_INVALID',
      problems: [{ path: 'env VM_GW', value: '10.0.0.5' }],
    });
    expect(runner.calls).toEqual([]);
  });
});
