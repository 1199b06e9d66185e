/**
 * A stacked backend's own pod ports reach the primary before it attaches:
 * with nat-bridge as the primary and l2-segment stacked, the composition root
 * asks l2-segment for WireGuard's port (the peer map's `port`) and hands it
 * to nat-bridge in `spec.stackedPorts`, whose nftables ruleset then keeps it
 * with the pod like a PODVISOR_NAT_EXCLUDE entry, without one being set.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError, type NetworkBackend, type NetworkAttachSpec } from '@podvisor/core';
import { buildNatRuleset, natExclusions } from '@podvisor/net-nat-bridge';
import { resolveRunSetup, stackedPodPorts } from './commands/run-command.js';

let dir: string;
const sink = (): Writable => new Writable({ write: (_c, _e, done) => done() });

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pv-stacked-ports-'));
  await writeFile(join(dir, 'base.qcow2'), '');
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function setupWith(peerMap: string | undefined, env: Record<string, string> = {}) {
  if (peerMap !== undefined) await writeFile(join(dir, 'peers.yaml'), peerMap);
  return resolveRunSetup({}, [], {
    stdout: sink(),
    stderr: sink(),
    env: {
      HOSTNAME: 'vm-a',
      IMG_SOURCE: join(dir, 'base.qcow2'),
      PODVISOR_DISK_DIR: join(dir, 'disk'),
      PODVISOR_LOG_LEVEL: 'error',
      PODVISOR_NETWORK: 'nat-bridge',
      PODVISOR_NETWORK_EXTRA: 'l2-segment',
      PODVISOR_L2_PEERS: join(dir, 'peers.yaml'),
      PODVISOR_L2_PRIVATE_KEY: join(dir, 'key'),
      ...env,
    },
  });
}

const KEY = 'HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=';

describe('stacked backends declare their pod ports; the primary keeps them with the pod', () => {
  it("l2-segment's WireGuard port (the peer map's) reaches nat-bridge, whose ruleset does not DNAT it to the VM", async () => {
    const setup = await setupWith(`segment: 7\nport: 51999\nmembers:\n  vm-a:\n    endpoint: 10.0.0.1\n    publicKey: ${KEY}\n    tunnelIp: 10.255.0.1\n`);
    expect(setup.networkSpec.stackedPorts).toEqual([{ proto: 'udp', port: 51999, backend: 'l2-segment' }]);
    const ruleset = buildNatRuleset({
      podInterface: 'eth0',
      podIp: '10.244.1.7',
      vmIp: '192.168.254.2',
      bridge: 'pvbr0',
      gateway: '192.168.254.1',
      exclusions: natExclusions({ vncPort: 5900, controlPort: setup.networkSpec.controlPort, extra: [], stacked: setup.networkSpec.stackedPorts ?? [] }),
    });
    expect(ruleset).toContain('\t\tiifname "eth0" ip daddr 10.244.1.7 udp dport 51999 return comment "keep udp/51999 for l2-segment"');
    // The exclusion comes before the DNAT, also for what the pod itself sends.
    expect(ruleset.indexOf('udp dport 51999 return')).toBeLessThan(ruleset.indexOf('meta l4proto udp dnat to 192.168.254.2'));
    expect(ruleset.match(/udp dport 51999 return/g)?.length).toBe(2);
  });

  it('a peer map that cannot be read yet gives the default port 51820 (attach reports the map)', async () => {
    const setup = await setupWith(undefined);
    expect(setup.networkSpec.stackedPorts).toEqual([{ proto: 'udp', port: 51820, backend: 'l2-segment' }]);
  });

  it('without stacked backends, the primary is handed none', async () => {
    const setup = await setupWith(undefined, { PODVISOR_NETWORK_EXTRA: '' });
    expect(setup.networkSpec.stackedPorts).toBeUndefined();
  });

  it("refuses a plugin's pod port that is not a TCP or UDP port 1-65535, or a podPorts that throws, naming the backend", async () => {
    const spec = {} as NetworkAttachSpec;
    const backend = (name: string, podPorts: () => Promise<unknown>): { backend: NetworkBackend; spec: NetworkAttachSpec } => ({ backend: { name, podPorts } as unknown as NetworkBackend, spec });
    const err = await stackedPodPorts(
      [backend('ok', () => Promise.resolve([{ proto: 'tcp', port: 22 }])), backend('odd', () => Promise.resolve([{ proto: 'sctp', port: 70000 }])), backend('broken', () => Promise.reject(new Error('no map')))],
      'env PODVISOR_NETWORK_EXTRA',
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).problems).toEqual([
      { path: 'env PODVISOR_NETWORK_EXTRA', value: 'odd podPorts {"proto":"sctp","port":70000}', expected: 'pod ports as {proto: "tcp" or "udp", port: 1-65535}' },
      { path: 'env PODVISOR_NETWORK_EXTRA', value: 'broken', expected: 'a stacked backend whose podPorts answers (it threw: no map)' },
    ]);
    await expect(stackedPodPorts([backend('ok', () => Promise.resolve([{ proto: 'tcp', port: 22 }]))], 'p')).resolves.toEqual([{ proto: 'tcp', port: 22, backend: 'ok' }]);
  });
});
