import { describe, expect, it } from 'vitest';
import { resolvePluginSettings } from '@podvisor/core';
import { MACVTAP_SETTINGS, resolveMacvtapConfig } from './macvtap-config.js';
import { deriveSiblingAddress, parsePodInterfaces, parsePodRoutes, planMacvtapNics, routeReplaceArgs, selectAddress, vmRoutesOf } from './pod-network.js';

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
  it('parses ip -j output in ifindex order, IPv4 only, MACs lower-case', () => {
    expect(interfaces.map((i) => [i.name, i.ifindex, i.mac, i.addresses.map((a) => `${a.ip}/${a.prefix}`)])).toEqual([
      ['lo', 1, '00:00:00:00:00:00', ['127.0.0.1/8']],
      ['eth0', 2, 'aa:00:00:00:00:02', ['10.55.1.7/32']],
      ['eth1', 3, 'aa:00:00:00:00:03', ['10.56.1.2/24', '10.57.1.2/24']],
      ['br0', 4, 'aa:00:00:00:00:04', []],
    ]);
    // The global IPv6 addresses are read too (for the warning that they are not handed over); link-local ones are not.
    expect(interfaces.map((i) => i.ipv6Addresses)).toEqual([[], ['fd10:55::7'], [], []]);
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
