import { describe, expect, it } from 'vitest';
import { isDhcpHostname, parseResolvConf } from './resolv-conf.js';

describe('parseResolvConf', () => {
  it('reads a Kubernetes pod resolv.conf', () => {
    const text = 'search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n';
    expect(parseResolvConf(text)).toEqual({
      nameservers: ['10.96.0.10'],
      nameservers6: [],
      search: ['default.svc.cluster.local', 'svc.cluster.local', 'cluster.local'],
      skipped: [],
    });
  });

  it('skips IPv6 (listed apart) and loopback servers and comments; the last search or domain line wins', () => {
    const text = [
      '# generated',
      'nameserver 127.0.0.53',
      'nameserver fd00::10',
      'nameserver fe80::1',
      'nameserver fd00::10',
      'nameserver 192.0.2.256',
      'nameserver 192.0.2.53 ; trailing',
      'nameserver 192.0.2.53',
      'search a.example b.example.',
      'domain corp.example',
      '',
    ].join('\n');
    expect(parseResolvConf(text)).toEqual({
      nameservers: ['192.0.2.53'],
      nameservers6: ['fd00::10'],
      search: ['corp.example'],
      skipped: ['127.0.0.53', 'fd00::10', 'fe80::1', 'fd00::10', '192.0.2.256'],
    });
  });
});

describe('isDhcpHostname', () => {
  it('accepts one RFC 1123 label only', () => {
    expect(isDhcpHostname('vm-1')).toBe(true);
    expect(isDhcpHostname('7eleven')).toBe(true);
    expect(isDhcpHostname('vm_1')).toBe(false);
    expect(isDhcpHostname('-vm')).toBe(false);
    expect(isDhcpHostname('vm.example')).toBe(false);
    expect(isDhcpHostname('a'.repeat(64))).toBe(false);
  });
});

describe('parseResolvConf (Kubernetes pod style)', () => {
  it('keeps IPv4 non-loopback servers once each, and the last search line', () => {
    expect(parseResolvConf('nameserver 10.96.0.10\nnameserver 127.0.0.53\nnameserver ::1\nnameserver 10.96.0.10\nsearch a.b\nsearch c.d. e # x\noptions ndots:5\n')).toEqual({
      nameservers: ['10.96.0.10'],
      nameservers6: [],
      search: ['c.d', 'e'],
      skipped: ['127.0.0.53', '::1'],
    });
  });
});
