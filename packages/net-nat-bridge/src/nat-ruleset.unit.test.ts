import { describe, expect, it } from 'vitest';
import { buildNatRuleset, buildNatTeardown, natExclusions } from './nat-ruleset.js';

describe('natExclusions', () => {
  it('keeps VNC, then the control port, then the operator list, without duplicates', () => {
    expect(natExclusions({ vncPort: 5900, controlPort: 5800, extra: [{ proto: 'tcp', port: 22 }, { proto: 'tcp', port: 5800 }, { proto: 'udp', port: 5900 }] })).toEqual([
      { proto: 'tcp', port: 5900 },
      { proto: 'tcp', port: 5800 },
      { proto: 'tcp', port: 22 },
      { proto: 'udp', port: 5900 },
    ]);
  });

  it("keeps the stacked backends' pod ports after the operator list, each naming its backend; one the operator listed already stays the operator's", () => {
    const stacked = [
      { proto: 'udp' as const, port: 51820, backend: 'l2-segment' },
      { proto: 'tcp' as const, port: 22, backend: 'sshd-extra' },
    ];
    expect(natExclusions({ vncPort: 5900, controlPort: 5800, extra: [{ proto: 'tcp', port: 22 }], stacked })).toEqual([
      { proto: 'tcp', port: 5900 },
      { proto: 'tcp', port: 5800 },
      { proto: 'tcp', port: 22 },
      { proto: 'udp', port: 51820, backend: 'l2-segment' },
    ]);
  });

  it('forwards 5900 like any port when VNC is not excluded (NO_VNC)', () => {
    expect(natExclusions({ vncPort: undefined, controlPort: 5800, extra: [] })).toEqual([{ proto: 'tcp', port: 5800 }]);
  });
});

describe('buildNatRuleset', () => {
  it('creates, deletes and redefines table ip podvisor in one script, returns before DNAT, DNATs what the pod itself sends to its IP or localhost, SNATs the VM and loopback sources, and clamps MSS', () => {
    const text = buildNatRuleset({
      podInterface: 'eth0',
      podIp: '10.244.1.7',
      vmIp: '192.168.254.2',
      bridge: 'pvbr0',
      gateway: '192.168.254.1',
      exclusions: natExclusions({ vncPort: 5900, controlPort: 5800, extra: [{ proto: 'udp', port: 53 }] }),
    });
    expect(text).toBe(
      [
        'table ip podvisor {',
        '}',
        'delete table ip podvisor',
        'table ip podvisor {',
        '\tchain prerouting {',
        '\t\ttype nat hook prerouting priority dstnat; policy accept;',
        '\t\tiifname "eth0" ip daddr 10.244.1.7 tcp dport 5900 return comment "keep tcp/5900"',
        '\t\tiifname "eth0" ip daddr 10.244.1.7 tcp dport 5800 return comment "keep tcp/5800"',
        '\t\tiifname "eth0" ip daddr 10.244.1.7 udp dport 53 return comment "keep udp/53"',
        '\t\tiifname "eth0" ip daddr 10.244.1.7 meta l4proto tcp dnat to 192.168.254.2',
        '\t\tiifname "eth0" ip daddr 10.244.1.7 meta l4proto udp dnat to 192.168.254.2',
        '\t}',
        '\tchain output {',
        '\t\ttype nat hook output priority -100; policy accept;',
        '\t\tip daddr { 10.244.1.7, 127.0.0.1 } tcp dport 5900 return comment "keep tcp/5900"',
        '\t\tip daddr { 10.244.1.7, 127.0.0.1 } tcp dport 5800 return comment "keep tcp/5800"',
        '\t\tip daddr { 10.244.1.7, 127.0.0.1 } udp dport 53 return comment "keep udp/53"',
        '\t\tip daddr { 10.244.1.7, 127.0.0.1 } meta l4proto tcp dnat to 192.168.254.2',
        '\t\tip daddr { 10.244.1.7, 127.0.0.1 } meta l4proto udp dnat to 192.168.254.2',
        '\t}',
        '\tchain postrouting {',
        '\t\ttype nat hook postrouting priority srcnat; policy accept;',
        '\t\toifname "eth0" ip saddr 192.168.254.2 snat to 10.244.1.7',
        '\t\toifname "pvbr0" ip saddr 127.0.0.1 snat to 192.168.254.1',
        '\t}',
        '\tchain forward {',
        '\t\ttype filter hook forward priority mangle; policy accept;',
        '\t\ttcp flags syn tcp option maxseg size set rt mtu',
        '\t}',
        '}',
        'table ip6 podvisor {',
        '}',
        'delete table ip6 podvisor',
        '',
      ].join('\n'),
    );
  });

  it('for a dual-stack pod, defines table ip6 podvisor too: the same exclusions and DNAT for the pod IPv6 address, SNAT of the VM /64, MSS clamping, and no ::1', () => {
    const text = buildNatRuleset({
      podInterface: 'eth0',
      podIp: '10.244.1.7',
      vmIp: '192.168.254.2',
      bridge: 'pvbr0',
      gateway: '192.168.254.1',
      exclusions: natExclusions({ vncPort: undefined, controlPort: 5800, extra: [{ proto: 'udp', port: 53 }] }),
      ipv6: { podIp: 'fd00:10::7', vmIp: 'fd70:7664::5054:ff:fe12:3456', subnet: 'fd70:7664::/64' },
    });
    expect(text.slice(text.indexOf('table ip6 podvisor {'))).toBe(
      [
        'table ip6 podvisor {',
        '}',
        'delete table ip6 podvisor',
        'table ip6 podvisor {',
        '\tchain prerouting {',
        '\t\ttype nat hook prerouting priority dstnat; policy accept;',
        '\t\tiifname "eth0" ip6 daddr fd00:10::7 tcp dport 5800 return comment "keep tcp/5800"',
        '\t\tiifname "eth0" ip6 daddr fd00:10::7 udp dport 53 return comment "keep udp/53"',
        '\t\tiifname "eth0" ip6 daddr fd00:10::7 meta l4proto tcp dnat to fd70:7664::5054:ff:fe12:3456',
        '\t\tiifname "eth0" ip6 daddr fd00:10::7 meta l4proto udp dnat to fd70:7664::5054:ff:fe12:3456',
        '\t}',
        '\tchain output {',
        '\t\ttype nat hook output priority -100; policy accept;',
        '\t\tip6 daddr fd00:10::7 tcp dport 5800 return comment "keep tcp/5800"',
        '\t\tip6 daddr fd00:10::7 udp dport 53 return comment "keep udp/53"',
        '\t\tip6 daddr fd00:10::7 meta l4proto tcp dnat to fd70:7664::5054:ff:fe12:3456',
        '\t\tip6 daddr fd00:10::7 meta l4proto udp dnat to fd70:7664::5054:ff:fe12:3456',
        '\t}',
        '\tchain postrouting {',
        '\t\ttype nat hook postrouting priority srcnat; policy accept;',
        '\t\toifname "eth0" ip6 saddr fd70:7664::/64 snat to fd00:10::7',
        '\t}',
        '\tchain forward {',
        '\t\ttype filter hook forward priority mangle; policy accept;',
        '\t\ttcp flags syn tcp option maxseg size set rt mtu',
        '\t}',
        '}',
        '',
      ].join('\n'),
    );
  });

  it('tears the table down idempotently', () => {
    expect(buildNatTeardown()).toBe('table ip podvisor {\n}\ndelete table ip podvisor\ntable ip6 podvisor {\n}\ndelete table ip6 podvisor\n');
  });
});
