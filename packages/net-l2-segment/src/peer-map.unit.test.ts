import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { isWireguardKey, parsePeerMap, segmentMtus, wireguardPublicKey } from './peer-map.js';

const KEY_A = 'WxsZU2z38kaVM71yoqjiG0EjXgshV+twwqpLvNoTRGo=';
const KEY_B = 'NUhHdjmyFhWF7fRrXB4HifWGl6NaRcgQv9mOERsCIHk=';

const good = `segment: 42
members:
  vm-a:
    endpoint: 10.244.1.5
    publicKey: ${KEY_A}
    tunnelIp: 10.255.0.1
    address: 10.77.0.11/24
  vm-b:
    endpoint: vm-b.l2.default.svc.cluster.local:51999
    publicKey: ${KEY_B}
    tunnelIp: 10.255.0.2
    address: 10.77.0.12/24
`;

describe('parsePeerMap', () => {
  it('reads a map, with the defaults for port, tunnel network and DHCP server (the last host of the members\' subnet)', () => {
    const { map, problems } = parsePeerMap(good, '/etc/peers.yaml');
    expect(problems).toEqual([]);
    expect(map).toEqual({
      segment: 42,
      port: 51820,
      tunnelNetwork: '10.255.0.0/24',
      dhcpServer: '10.77.0.254',
      members: [
        { name: 'vm-a', endpoint: { host: '10.244.1.5', port: 51820 }, publicKey: KEY_A, tunnelIp: '10.255.0.1', address: '10.77.0.11/24' },
        { name: 'vm-b', endpoint: { host: 'vm-b.l2.default.svc.cluster.local', port: 51999 }, publicKey: KEY_B, tunnelIp: '10.255.0.2', address: '10.77.0.12/24' },
      ],
    });
  });

  it('reports every problem at once, each with its path in the file, the value and what was expected', () => {
    const bad = `segment: 0
colour: blue
members:
  vm-a:
    endpoint: "10.0.0.1:99999"
    publicKey: nope
    tunnelIp: 10.254.0.1
    address: 10.77.0.0/24
  vm-b:
    endpoint: 10.0.0.2
    publicKey: ${KEY_B}
    tunnelIp: 10.255.0.2
    adress: 10.77.0.12/24
`;
    const { map, problems } = parsePeerMap(bad, '/etc/peers.yaml');
    expect(map).toBeUndefined();
    expect(problems.map((p) => p.path)).toEqual([
      '/etc/peers.yaml: colour',
      '/etc/peers.yaml: segment',
      '/etc/peers.yaml: members.vm-a.endpoint',
      '/etc/peers.yaml: members.vm-a.publicKey',
      '/etc/peers.yaml: members.vm-a.tunnelIp',
      '/etc/peers.yaml: members.vm-a.address',
      '/etc/peers.yaml: members.vm-b.adress',
    ]);
    expect(problems[1]?.expected).toContain('1 to 16777215');
  });

  it('refuses two members with one key, tunnel address or segment address, and addresses in two subnets', () => {
    const clash = good.replace(KEY_B, KEY_A).replace('10.255.0.2', '10.255.0.1').replace('10.77.0.12/24', '10.78.0.12/24');
    const { problems } = parsePeerMap(clash, 'f');
    expect(problems.map((p) => `${p.path}: ${p.expected}`)).toEqual([
      'f: members.vm-b.publicKey: a publicKey of its own (member vm-a has it too)',
      'f: members.vm-b.tunnelIp: a tunnelIp of its own (member vm-a has it too)',
      "f: members.*.address: segment addresses in one subnet (one L2 segment is one IPv4 subnet)",
    ]);
  });

  it('reports YAML syntax errors with the line', () => {
    const { problems } = parsePeerMap('segment: [1\n', 'f');
    expect(problems[0]?.path).toMatch(/^f:\d+:\d+$/);
  });
});

describe('WireGuard keys and MTU', () => {
  it('derives the public key exactly as wg pubkey does', () => {
    const priv = execFileSync('wg', ['genkey'], { encoding: 'utf8' }).trim();
    expect(wireguardPublicKey(priv)).toBe(execFileSync('wg', ['pubkey'], { input: priv, encoding: 'utf8' }).trim());
    expect(isWireguardKey(priv)).toBe(true);
    expect(() => wireguardPublicKey('c2hvcnQ=')).toThrow('not a WireGuard key');
  });

  it('takes WireGuard (80) and VXLAN (50) off the pod MTU', () => {
    expect(segmentMtus(1500)).toEqual({ wireguard: 1420, segment: 1370 });
    expect(segmentMtus(1450)).toEqual({ wireguard: 1370, segment: 1320 });
  });
});
