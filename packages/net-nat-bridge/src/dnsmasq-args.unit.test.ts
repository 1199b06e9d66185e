import { describe, expect, it } from 'vitest';
import { buildDnsmasqArgs } from './dnsmasq-args.js';

const base = {
  bridge: 'pvbr0',
  vmIp: '192.168.254.2',
  gateway: '192.168.254.1',
  mac: '52:54:00:ab:cd:ef',
  hostname: 'vm-1',
  pidFile: '/state/dnsmasq.pid',
  leaseFile: '/state/dnsmasq.leases',
  dnsServers: ['10.96.0.10', '10.96.0.11'],
  searchDomains: ['default.svc.cluster.local', 'svc.cluster.local', 'cluster.local'],
  mtu: 1440,
};

describe('buildDnsmasqArgs', () => {
  /** What every argv starts with: foreground, no config file, no DNS, the bridge only, one static /30. */
  const fixed = [
    '--keep-in-foreground',
    '--conf-file=/dev/null',
    '--port=0',
    '--pid-file=/state/dnsmasq.pid',
    '--dhcp-leasefile=/state/dnsmasq.leases',
    '--bind-interfaces',
    '--no-ping',
    '--interface=pvbr0',
    '--dhcp-range=192.168.254.2,static,255.255.255.252,12h',
  ];

  it('serves one static host on the bridge only, with no DNS, in the foreground', () => {
    expect(buildDnsmasqArgs(base)).toEqual([
      ...fixed,
      '--dhcp-host=52:54:00:ab:cd:ef,192.168.254.2,vm-1',
      '--dhcp-option=option:router,192.168.254.1',
      '--dhcp-option=option:dns-server,10.96.0.10,10.96.0.11',
      '--dhcp-option=option:domain-search,default.svc.cluster.local,svc.cluster.local,cluster.local',
      '--dhcp-option=option:domain-name,default.svc.cluster.local',
      '--dhcp-option=option:mtu,1440',
      '--dhcp-authoritative',
      '--log-facility=-',
      '--log-dhcp',
    ]);
  });

  it('leaves out the host name, name servers, search domains and MTU it does not have', () => {
    expect(buildDnsmasqArgs({ ...base, hostname: undefined, dnsServers: [], searchDomains: [], mtu: undefined })).toEqual([
      ...fixed,
      '--dhcp-host=52:54:00:ab:cd:ef,192.168.254.2',
      '--dhcp-option=option:router,192.168.254.1',
      '--dhcp-authoritative',
      '--log-facility=-',
      '--log-dhcp',
    ]);
  });

  it('for a dual-stack pod, sends router advertisements (SLAAC, the MTU) and reserves the same address for DHCPv6', () => {
    const ipv6 = { prefix: 'fd70:7664::', vmIp: 'fd70:7664::5054:ff:feab:cdef' };
    expect(buildDnsmasqArgs({ ...base, ipv6 }).slice(-7)).toEqual([
      '--enable-ra',
      '--dhcp-range=fd70:7664::,static,slaac,64,12h',
      '--dhcp-host=52:54:00:ab:cd:ef,[fd70:7664::5054:ff:feab:cdef]',
      '--ra-param=pvbr0,mtu:1440,0',
      '--dhcp-authoritative',
      '--log-facility=-',
      '--log-dhcp',
    ]);
    expect(buildDnsmasqArgs({ ...base, ipv6, mtu: undefined })).not.toContainEqual(expect.stringMatching(/^--ra-param/));
  });
});
