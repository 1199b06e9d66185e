import { describe, expect, it } from 'vitest';
import { resolvePluginSettings } from '@podvisor/core';
import { NAT_BRIDGE_SETTINGS, parseNatExclude, resolveNatBridgeConfig } from './nat-config.js';

/** As podvisor does it: the declared settings resolved and type-checked, then (when their types are right) the backend's checks across them. */
const resolve = (env: Record<string, string | undefined>, settings: Record<string, unknown> = {}) => {
  const typed = resolvePluginSettings(NAT_BRIDGE_SETTINGS, { env, yaml: { network: { settings } } });
  if (typed.problems.length > 0) return { config: undefined, problems: typed.problems };
  return resolveNatBridgeConfig({ settings: typed.settings });
};

describe('resolveNatBridgeConfig', () => {
  it('defaults to 192.168.254.2 behind 192.168.254.1, VNC kept, nothing else excluded', () => {
    expect(resolve({})).toEqual({
      config: {
        vmIp: '192.168.254.2',
        vmGateway: '192.168.254.1',
        subnet: '192.168.254.0/30',
        exclude: [],
        resolvConf: '/etc/resolv.conf',
        podInterface: undefined,
      },
      problems: [],
    });
  });

  it('accepts both orders of the two usable hosts of a /30', () => {
    expect(resolve({ VM_IP: '10.9.8.5', VM_GW: '10.9.8.6' }).config).toMatchObject({ vmIp: '10.9.8.5', vmGateway: '10.9.8.6', subnet: '10.9.8.4/30' });
  });

  it.each([
    ['outside one /30', { VM_IP: '192.168.254.2', VM_GW: '192.168.254.5' }, [['env VM_GW', '192.168.254.5', 'an address in the same /30 as VM_IP 192.168.254.2 (192.168.254.0/30)']]],
    ['VM_GW equal to VM_IP', { VM_IP: '192.168.254.2', VM_GW: '192.168.254.2' }, [['env VM_GW', '192.168.254.2', 'an address different from VM_IP (192.168.254.2) in the same /30']]],
    [
      'the network address',
      { VM_IP: '192.168.254.0', VM_GW: '192.168.254.1' },
      [['env VM_IP', '192.168.254.0', 'a usable host of its /30 192.168.254.0/30 (.1 or .2), not its network address']],
    ],
    [
      'the broadcast address',
      { VM_IP: '192.168.254.2', VM_GW: '192.168.254.3' },
      [['env VM_GW', '192.168.254.3', 'a usable host of its /30 192.168.254.0/30 (.1 or .2), not its broadcast address']],
    ],
    ['garbage', { VM_IP: 'vm.local', VM_GW: '1.2.3' }, [
      ['env VM_IP', 'vm.local', 'a unicast IPv4 address such as 192.168.254.2'],
      ['env VM_GW', '1.2.3', 'a unicast IPv4 address such as 192.168.254.2'],
    ]],
    ['an octet past 255', { VM_IP: '192.168.254.256' }, [['env VM_IP', '192.168.254.256', 'a unicast IPv4 address such as 192.168.254.2']]],
    ['a leading zero', { VM_IP: '192.168.254.02' }, [['env VM_IP', '192.168.254.02', 'a unicast IPv4 address such as 192.168.254.2']]],
    ['loopback', { VM_IP: '127.0.0.2', VM_GW: '127.0.0.1' }, [
      ['env VM_IP', '127.0.0.2', 'a unicast IPv4 address such as 192.168.254.2'],
      ['env VM_GW', '127.0.0.1', 'a unicast IPv4 address such as 192.168.254.2'],
    ]],
  ])('reports %s', (_name, env, expected) => {
    const { config, problems } = resolve(env);
    expect(config).toBeUndefined();
    expect(problems.map((p) => [p.path, p.value, p.expected])).toEqual(expected);
  });

  it('reports every problem at once, network address and wrong /30 together', () => {
    const { problems } = resolve({ VM_IP: '10.0.0.4', VM_GW: '10.0.0.1', PODVISOR_NAT_EXCLUDE: 'tcp/22,sctp/9,udp/0' });
    expect(problems.map((p) => [p.path, p.value])).toEqual([
      ['env VM_IP', '10.0.0.4'],
      ['env VM_GW', '10.0.0.1'],
      ['env PODVISOR_NAT_EXCLUDE', 'sctp/9'],
      ['env PODVISOR_NAT_EXCLUDE', 'udp/0'],
    ]);
  });

  it('reads network.settings, and the environment wins over it', () => {
    const settings = { vmIp: '10.1.1.2', vmGateway: '10.1.1.1', natExclude: ['tcp/22'], resolvConf: '/run/resolv.conf', podInterface: 'net1' };
    expect(resolve({}, settings).config).toEqual({
      vmIp: '10.1.1.2',
      vmGateway: '10.1.1.1',
      subnet: '10.1.1.0/30',
      exclude: [{ proto: 'tcp', port: 22 }],
      resolvConf: '/run/resolv.conf',
      podInterface: 'net1',
    });
    expect(resolve({ VM_IP: '10.2.2.1', VM_GW: '10.2.2.2', PODVISOR_NAT_EXCLUDE: 'udp/53' }, settings).config).toMatchObject({
      vmIp: '10.2.2.1',
      vmGateway: '10.2.2.2',
      exclude: [{ proto: 'udp', port: 53 }],
    });
  });

  it('a mistyped YAML value is refused by its declared type', () => {
    expect(resolve({}, { vmGateway: 7 }).problems.map((p) => [p.path, p.value, p.expected])).toEqual([['yaml network.settings.vmGateway', 7, 'a non-empty string']]);
  });

  it('names YAML paths for YAML values', () => {
    const { problems } = resolve({}, { vmIp: '10.1.1.3', vmGateway: '10.1.1.1', natExclude: 'tcp/x', resolvConf: 'resolv.conf', podInterface: 'a/b' });
    expect(problems.map((p) => [p.path, p.value])).toEqual([
      ['yaml network.settings.vmIp', '10.1.1.3'],
      ['yaml network.settings.natExclude', 'tcp/x'],
      ['yaml network.settings.resolvConf', 'resolv.conf'],
      ['yaml network.settings.podInterface', 'a/b'],
    ]);
  });
});

describe('parseNatExclude', () => {
  it('parses proto/port entries, trims, ignores blanks and drops duplicates', () => {
    expect(parseNatExclude(' tcp/22, udp/53,,TCP/22 ,tcp/65535')).toEqual({
      exclusions: [
        { proto: 'tcp', port: 22 },
        { proto: 'udp', port: 53 },
        { proto: 'tcp', port: 65535 },
      ],
      invalid: [],
    });
  });

  it('lists every bad entry as given', () => {
    expect(parseNatExclude(['tcp/0', 'udp/65536', 'icmp/1', '22', 'tcp/', 'tcp/22/1', 'tcp/-1', 'tcp/22']).invalid).toEqual([
      'tcp/0',
      'udp/65536',
      'icmp/1',
      '22',
      'tcp/',
      'tcp/22/1',
      'tcp/-1',
    ]);
  });
});
