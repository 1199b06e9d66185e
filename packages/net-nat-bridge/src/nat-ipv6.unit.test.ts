import { describe, expect, it } from 'vitest';
import { eui64Address, formatIpv6, natBridgeVmIpv6, parseIpv6 } from './nat-ipv6.js';

describe('IPv6 helpers of the NAT bridge', () => {
  it('derives the modified EUI-64 address of a MAC in the VM subnet, as SLAAC does', () => {
    expect(natBridgeVmIpv6('52:54:00:12:34:56')).toBe('fd70:7664::5054:ff:fe12:3456');
    expect(eui64Address('fd00::', '02:00:00:00:00:01')).toBe('fd00::ff:fe00:1');
  });

  it('parses and formats addresses (RFC 5952: the longest zero run becomes ::, no leading zeros)', () => {
    expect(parseIpv6('fd00:0:0:1::5')).toEqual([0xfd00, 0, 0, 1, 0, 0, 0, 5]);
    expect(formatIpv6([0xfd00, 0, 0, 1, 0, 0, 0, 5])).toBe('fd00:0:0:1::5');
    expect(formatIpv6([1, 0, 2, 3, 4, 5, 6, 7])).toBe('1:0:2:3:4:5:6:7');
    expect(parseIpv6('::1')).toEqual([0, 0, 0, 0, 0, 0, 0, 1]);
    for (const bad of ['1:2:3', '1::2::3', 'fe80::1%eth0', '10.0.0.1', '1:2:3:4:5:6:7:8:9', '12345::1']) expect(parseIpv6(bad)).toBeUndefined();
  });
});
