import { describe, expect, it } from 'vitest';
import { formatIpv4, ipv4CidrsOverlap, ipv4Netmask, parseIpv4, parseIpv4Cidr } from './ipv4.js';

describe('IPv4', () => {
  it('parses dotted quads strictly', () => {
    expect(parseIpv4('255.255.255.255')).toBe(0xffffffff);
    expect(parseIpv4('10.0.0.1')).toBe(0x0a000001);
    expect(parseIpv4('0.0.0.0')).toBe(0);
    for (const bad of [' 10.0.0.1', '10.0.0.1.', '010.0.0.1', '10.0.0.256', '10.0.0', '1.2.3.4/8', 'fe80::1', '']) expect(parseIpv4(bad), bad).toBeUndefined();
  });

  it('formats what it parses', () => {
    for (const ip of ['0.0.0.0', '10.1.2.3', '169.254.1.1', '255.255.255.255']) expect(formatIpv4(parseIpv4(ip) as number)).toBe(ip);
    expect(ipv4Netmask(0)).toBe('0.0.0.0');
    expect(ipv4Netmask(24)).toBe('255.255.255.0');
    expect(ipv4Netmask(32)).toBe('255.255.255.255');
  });

  it('parses prefixes, a bare address as /32', () => {
    expect(parseIpv4Cidr('10.1.2.3/24')).toEqual({ network: 0x0a010200, prefixLength: 24 });
    expect(parseIpv4Cidr('10.1.2.3')).toEqual({ network: 0x0a010203, prefixLength: 32 });
    for (const bad of ['10.1.2.3/33', '10.1.2.3/', '10.1.2.3/2/3', '10.1.2.3/x']) expect(parseIpv4Cidr(bad), bad).toBeUndefined();
  });

  it('tells whether two prefixes overlap', () => {
    expect(ipv4CidrsOverlap('192.168.254.0/24', '192.168.254.0/30')).toBe(true);
    expect(ipv4CidrsOverlap('192.168.254.1', '192.168.254.0/30')).toBe(true);
    expect(ipv4CidrsOverlap('192.168.254.4/30', '192.168.254.0/30')).toBe(false);
    expect(ipv4CidrsOverlap('0.0.0.0/0', '10.0.0.0/30')).toBe(true);
    expect(ipv4CidrsOverlap('fe80::/64', '10.0.0.0/30')).toBe(false);
  });
});
