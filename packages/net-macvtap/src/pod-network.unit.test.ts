import { describe, expect, it } from 'vitest';
import { resolvePluginSettings } from '@podvisor/core';
import { MACVTAP_SETTINGS, resolveMacvtapConfig } from './macvtap-config.js';
import { deriveSiblingAddress, ipv6Network64, isMacvtapBackendLink, macvtapSiblingIpv6, parsePodInterfaces, parsePodRoutes, planMacvtapNics, restorableRoutes, routeReplaceArgs, selectAddress, vmRoutesOf } from './pod-network.js';

const ADDR = JSON.stringify([
  { ifindex: 1, ifname: 'lo', address: '00:00:00:00:00:00', mtu: 65536, link_type: 'loopback', addr_info: [{ family: 'inet', local: '127.0.0.1', prefixlen: 8 }] },
  { ifindex: 3, ifname: 'eth1', address: 'AA:00:00:00:00:03', mtu: 1450, link_type: 'ether', linkinfo: { info_kind: 'veth' }, addr_info: [{ family: 'inet', local: '10.56.1.2', prefixlen: 24 }, { family: 'inet', local: '10.57.1.2', prefixlen: 24 }] },
  { ifindex: 2, ifname: 'eth0', address: 'aa:00:00:00:00:02', mtu: 1500, link_type: 'ether', linkinfo: { info_kind: 'veth' }, addr_info: [{ family: 'inet', local: '10.55.1.7', prefixlen: 32 }, { family: 'inet6', local: 'fd10:55::7', prefixlen: 128, scope: 'global' }, { family: 'inet6', local: 'fe80::1', prefixlen: 64, scope: 'link' }] },
  { ifindex: 4, ifname: 'br0', address: 'aa:00:00:00:00:04', mtu: 1500, link_type: 'ether', linkinfo: { info_kind: 'bridge' }, addr_info: [] },
]);
const ROUTES = JSON.stringify([
  { dst: 'default', gateway: '169.254.1.1', dev: 'eth0', flags: [] },
  { dst: '10.56.1.0/24', dev: 'eth1', protocol: 'kernel', scope: 'link', prefsrc: '10.56.1.2', flags: [] },
  { dst: '169.254.1.1', dev: 'eth0', scope: 'link', flags: [] },
  { dst: '10.99.0.0/16', gateway: '10.56.1.1', dev: 'eth1', flags: [] },
]);
const interfaces = parsePodInterfaces(ADDR);
const routes = parsePodRoutes(ROUTES);
const plan = (env: Record<string, string>) => planMacvtapNics(resolveMacvtapConfig({ settings: resolvePluginSettings(MACVTAP_SETTINGS, { env, yaml: {} }).settings }).config!, interfaces, routes);

describe('pod interfaces and the attach plan', () => {
  it("recognises the backend's links (attach's pvmvt<n>, pvmvl<n>, the probe's pvmvtprobe<4 hex>) and nothing else", () => {
    expect(['pvmvt3', 'pvmvl12', 'pvmvtprobe0a9f'].filter(isMacvtapBackendLink)).toEqual(['pvmvt3', 'pvmvl12', 'pvmvtprobe0a9f']);
    expect(['eth0', 'pvmvt', 'pvmvtx1', 'pvmvtprobe', 'pvmvtprobe0a9', 'pvmvtprobe0A9F', 'pvmvtprobe0a9f1'].filter(isMacvtapBackendLink)).toEqual([]);
  });

  it('parses ip -j output in ifindex order, IPv4 only, MACs lower-case', () => {
    expect(interfaces.map((i) => [i.name, i.ifindex, i.mac, i.addresses.map((a) => `${a.ip}/${a.prefix}`)])).toEqual([
      ['lo', 1, '00:00:00:00:00:00', ['127.0.0.1/8']],
      ['eth0', 2, 'aa:00:00:00:00:02', ['10.55.1.7/32']],
      ['eth1', 3, 'aa:00:00:00:00:03', ['10.56.1.2/24', '10.57.1.2/24']],
      ['br0', 4, 'aa:00:00:00:00:04', []],
    ]);
    // The global IPv6 addresses are read too (the VM takes the first); link-local ones are not.
    expect(interfaces.map((i) => i.ipv6Addresses)).toEqual([[], [{ ip: 'fd10:55::7', prefix: 128 }], [], []]);
  });

  it('AUTO_ATTACH takes the ethernet interfaces in the pod order, with routes for option 121 (Calico on-link first, default last)', () => {
    const { plans, problems } = plan({});
    expect(problems).toEqual([]);
    expect(plans.map((p) => [p.id, p.pod.name, p.vmAddress, p.siblingAddress, p.gateway, p.links])).toEqual([
      ['net0', 'eth0', { ip: '10.55.1.7', prefix: 32 }, { ip: '10.55.1.6', prefix: 31 }, '169.254.1.1', { macvtap: 'pvmvt2', macvlan: 'pvmvl2' }],
      ['net1', 'eth1', { ip: '10.56.1.2', prefix: 24 }, { ip: '10.56.0.2', prefix: 23 }, undefined, { macvtap: 'pvmvt3', macvlan: 'pvmvl3' }],
    ]);
    expect(plans[0]?.vmRoutes).toEqual([{ dst: '169.254.1.1/32', gateway: '0.0.0.0' }, { dst: '0.0.0.0/0', gateway: '169.254.1.1' }]);
    expect(plans[1]?.vmRoutes).toEqual([{ dst: '10.99.0.0/16', gateway: '10.56.1.1' }]);
    // The dual-stack eth0 also hands over its IPv6 address; its sibling gets a unique-local /64 to be the VM's router from.
    expect(plans.map((p) => [p.vmAddress6, p.siblingAddress6])).toEqual([
      [{ ip: 'fd10:55::7', prefix: 128 }, { ip: 'fd70:7664:6d76:2::1', prefix: 64 }],
      [undefined, undefined],
    ]);
  });

  it('the sibling IPv6 address is per ifindex, and its /64 is the DHCPv6 range start', () => {
    expect(macvtapSiblingIpv6(300)).toEqual({ ip: 'fd70:7664:6d76:12c::1', prefix: 64 });
    expect(ipv6Network64(macvtapSiblingIpv6(2))).toBe('fd70:7664:6d76:2::');
  });

  it('records the IPv6 routes (not the kernel ones) and puts them back with -6', () => {
    const routes6 = parsePodRoutes(
      JSON.stringify([
        { dst: 'fd10:55::7', dev: 'eth0', protocol: 'kernel', metric: 256, flags: [], pref: 'medium' },
        { dst: 'fe80::/64', dev: 'eth0', protocol: 'kernel', metric: 256, flags: [], pref: 'medium' },
        { dst: 'default', gateway: 'fe80::ecee:eeff:feee:eeee', dev: 'eth0', metric: 1024, flags: [], pref: 'medium' },
      ]),
      'inet6',
    );
    const kept = restorableRoutes([...routes, ...routes6], 'eth0');
    expect(kept.map((r) => routeReplaceArgs(r).join(' '))).toEqual([
      'route replace 169.254.1.1 dev eth0 scope link',
      'route replace default via 169.254.1.1 dev eth0',
      '-6 route replace default via fe80::ecee:eeff:feee:eeee dev eth0 metric 1024',
    ]);
  });

  it('SELECTED_NETWORK picks the matching address on the interfaces that have one', () => {
    expect(plan({ SELECTED_NETWORK: '10.57.1.2/24' }).plans.map((p) => p.vmAddress)).toEqual([{ ip: '10.55.1.7', prefix: 32 }, { ip: '10.57.1.2', prefix: 24 }]);
    expect(selectAddress(interfaces[2]!.addresses, { ip: '10.57.1.0', prefix: 24 })).toEqual({ ip: '10.57.1.2', prefix: 24 });
    expect(plan({ SELECTED_NETWORK: '192.168.0.1/24' }).problems[0]).toMatchObject({ path: 'env SELECTED_NETWORK', expected: expect.stringContaining('eth1 10.57.1.2/24') });
  });

  it('an unknown or non-ethernet interface is a problem that lists the pod interfaces', () => {
    expect(plan({ ATTACH_IFACES: 'nope0 br0 eth1' }).problems).toEqual([
      { path: 'env ATTACH_IFACES', value: 'nope0', expected: 'an interface of this pod: eth0, eth1' },
      { path: 'env ATTACH_IFACES', value: 'br0', expected: 'an ethernet interface of this pod (br0 is bridge): eth0, eth1' },
    ]);
  });

  it('derives the sibling address BBVA docker-kvm style, skipping taken ones', () => {
    expect(deriveSiblingAddress({ ip: '10.0.0.7', prefix: 32 })).toEqual({ ip: '10.0.0.6', prefix: 31 });
    expect(deriveSiblingAddress({ ip: '172.19.0.2', prefix: 24 })).toEqual({ ip: '172.19.1.2', prefix: 23 });
    expect(deriveSiblingAddress({ ip: '10.0.0.7', prefix: 32 }, new Set(['10.0.0.6']))).toEqual({ ip: '10.0.0.5', prefix: 30 });
  });

  it('builds route arguments that put a recorded route back', () => {
    expect(routeReplaceArgs(routes[0]!)).toEqual(['route', 'replace', 'default', 'via', '169.254.1.1', 'dev', 'eth0']);
    expect(routeReplaceArgs(routes[2]!)).toEqual(['route', 'replace', '169.254.1.1', 'dev', 'eth0', 'scope', 'link']);
    expect(vmRoutesOf([routes[1]!])).toEqual([]);
  });
});
