import { describe, expect, it } from 'vitest';
import { resolvePluginSettings } from '@podvisor/core';
import { L2_SEGMENT_SETTINGS, resolveL2SegmentSettings } from './l2-segment-settings.js';
import { buildSegmentDnsmasqArgs, buildSegmentRuleset, segmentLinkScript, segmentMac, wireguardConfig, wireguardInterfaceName } from './segment-plan.js';
import { wireguardOrder } from './wireguard-device.js';

describe('segment plan', () => {
  it('names the WireGuard interface after the VM (one control socket per VM on a shared /var/run), in 15 characters', () => {
    expect(wireguardInterfaceName('vm-a')).toMatch(/^pvwg[0-9a-f]{8}$/);
    expect(wireguardInterfaceName('vm-a')).not.toBe(wireguardInterfaceName('vm-b'));
    expect(segmentMac('vm-a')).toMatch(/^52:54:00(:[0-9a-f]{2}){3}$/);
    expect(segmentMac('vm-a')).toBe(segmentMac('vm-a'));
  });

  it('writes the wg configuration with keepalives, and no endpoint for a peer whose name does not resolve yet', () => {
    expect(
      wireguardConfig('PRIV', 51820, [
        { name: 'vm-b', publicKey: 'PUBB', endpoint: '10.0.0.2:51820', tunnelIp: '10.255.0.2' },
        { name: 'vm-c', publicKey: 'PUBC', endpoint: undefined, tunnelIp: '10.255.0.3' },
      ]),
    ).toBe(
      '[Interface]\nPrivateKey = PRIV\nListenPort = 51820\n\n# vm-b\n[Peer]\nPublicKey = PUBB\nAllowedIPs = 10.255.0.2/32\nPersistentKeepalive = 25\nEndpoint = 10.0.0.2:51820\n\n# vm-c\n[Peer]\nPublicKey = PUBC\nAllowedIPs = 10.255.0.3/32\nPersistentKeepalive = 25\n',
    );
  });

  it('guards VXLAN to the WireGuard interface and keeps DHCP and the server address off the VXLAN port', () => {
    const rules = buildSegmentRuleset({ wireguard: 'pvwg12345678', dhcpServer: '10.77.0.254' });
    expect(rules).toContain('udp dport 4789 oifname != "pvwg12345678" counter drop');
    expect(rules).toContain('oifname "pvl2vx0" udp dport { 67, 68 } counter drop');
    expect(rules).toContain('oifname "pvl2vx0" arp daddr ip 10.77.0.254 counter drop');
    expect(buildSegmentRuleset({ wireguard: 'w', dhcpServer: undefined })).not.toContain('arp daddr');
  });

  it('builds the links in one ip batch and the one-lease dnsmasq without router or name server', () => {
    const script = segmentLinkScript({ wireguard: 'pvwgx', wireguardMtu: 1420, segmentMtu: 1370, tunnelCidr: '10.255.0.1/24', tunnelIp: '10.255.0.1', segment: 42, bridgeMac: '52:54:00:aa:bb:cc', dhcpServer: '10.77.0.254' });
    expect(script.split('\n')).toContain('link add name pvl2vx0 mtu 1370 type vxlan id 42 local 10.255.0.1 dstport 4789');
    expect(script.split('\n')).toContain('addr add 10.77.0.254/32 dev pvl2br0');
    const args = buildSegmentDnsmasqArgs({ bridge: 'pvl2br0', address: '10.77.0.11/24', netmask: '255.255.255.0', mac: '52:54:00:01:02:03', mtu: 1370, pidFile: '/s/p', leaseFile: '/s/l' });
    expect(args).toEqual(expect.arrayContaining(['--dhcp-range=10.77.0.11,static,255.255.255.0,12h', '--dhcp-host=52:54:00:01:02:03,10.77.0.11', '--dhcp-option=option:router', '--dhcp-option-force=option:mtu,1370']));
  });

  it('tries kernel WireGuard first under auto, and only the chosen one otherwise', () => {
    expect(wireguardOrder('auto')).toEqual(['kernel', 'userspace']);
    expect(wireguardOrder('userspace')).toEqual(['userspace']);
  });
});

describe('resolveL2SegmentSettings', () => {
  const resolve = (env: Record<string, string>, yaml: Record<string, unknown>) => {
    const declared = resolvePluginSettings(L2_SEGMENT_SETTINGS, { env, yaml: { network: { extra: { 'l2-segment': yaml } } } });
    return { declared: declared.problems, ...resolveL2SegmentSettings({ settings: declared.settings }) };
  };

  it('takes the environment over the YAML section, with defaults', () => {
    const r = resolve({ PODVISOR_L2_RELOAD_MS: '500' }, { peers: '/cm/peers.yaml', wireguard: 'userspace' });
    expect(r).toEqual({ declared: [], settings: { peers: '/cm/peers.yaml', privateKey: '/etc/podvisor/l2-segment/private-key', wireguard: 'userspace', reloadMs: 500, podInterface: undefined }, problems: [] });
  });

  it('the types are checked with the declarations; the paths and the interface name here, each with where it came from', () => {
    const r = resolve({ PODVISOR_L2_PEERS: 'relative.yaml', PODVISOR_L2_WIREGUARD: 'ipsec' }, { reloadMs: 5, podInterface: 'a/b' });
    expect(r.declared.map((p) => p.path)).toEqual(['env PODVISOR_L2_WIREGUARD', 'yaml network.extra.l2-segment.reloadMs']);
    const checked = resolveL2SegmentSettings({ settings: { peers: { value: 'relative.yaml', path: 'env PODVISOR_L2_PEERS', given: true }, podInterface: { value: 'a/b', path: 'yaml network.extra.l2-segment.podInterface', given: true } } });
    expect(checked.problems.map((p) => p.path)).toEqual(['env PODVISOR_L2_PEERS', 'yaml network.extra.l2-segment.podInterface']);
  });
});
