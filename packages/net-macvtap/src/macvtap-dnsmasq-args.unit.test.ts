import { describe, expect, it } from 'vitest';
import { buildMacvtapDnsmasqArgs } from './macvtap-dnsmasq-args.js';

describe('the macvtap dnsmasq', () => {
  it('leases each NIC its exact address on its sibling, with its own routes; DNS goes to the NIC with the default route', () => {
    const args = buildMacvtapDnsmasqArgs({
      nics: [
        { tag: 'net0', listenOn: 'pvmvl2', mac: 'aa:00:00:00:00:02', address: { ip: '10.55.1.7', prefix: 32 }, gateway: undefined, routes: [], mtu: 1500 },
        { tag: 'net1', listenOn: 'pvmvl3', mac: 'aa:00:00:00:00:03', address: { ip: '10.56.1.2', prefix: 24 }, gateway: '169.254.1.1', routes: [{ dst: '169.254.1.1/32', gateway: '0.0.0.0' }, { dst: '0.0.0.0/0', gateway: '169.254.1.1' }], mtu: 1450 },
      ],
      hostname: 'vm1',
      pidFile: '/s/d.pid',
      leaseFile: '/s/d.leases',
      dnsServers: ['10.96.0.10'],
      searchDomains: ['ns.svc.cluster.local', 'cluster.local'],
    });
    expect(args).toEqual([
      '--keep-in-foreground', '--conf-file=/dev/null', '--port=0', '--pid-file=/s/d.pid', '--dhcp-leasefile=/s/d.leases', '--bind-interfaces', '--no-ping', '--dhcp-authoritative',
      '--interface=pvmvl2', '--shared-network=pvmvl2,10.55.1.7', '--dhcp-range=set:net0,10.55.1.7,static,255.255.255.255,infinite',
      '--dhcp-host=aa:00:00:00:00:02,set:net0,10.55.1.7,vm1,infinite', '--dhcp-option=tag:net0,option:mtu,1500',
      '--interface=pvmvl3', '--shared-network=pvmvl3,10.56.1.2', '--dhcp-range=set:net1,10.56.1.2,static,255.255.255.0,infinite',
      '--dhcp-host=aa:00:00:00:00:03,set:net1,10.56.1.2,vm1,infinite', '--dhcp-option=tag:net1,option:mtu,1450',
      '--dhcp-option=tag:net1,option:router,169.254.1.1',
      '--dhcp-option=tag:net1,option:classless-static-route,169.254.1.1/32,0.0.0.0,0.0.0.0/0,169.254.1.1',
      '--dhcp-option=tag:net1,option:dns-server,10.96.0.10',
      '--dhcp-option=tag:net1,option:domain-search,ns.svc.cluster.local,cluster.local',
      '--dhcp-option=tag:net1,option:domain-name,ns.svc.cluster.local',
      '--log-facility=-', '--log-dhcp',
    ]);
    expect(buildMacvtapDnsmasqArgs({ nics: [], hostname: undefined, pidFile: 'p', leaseFile: 'l', dnsServers: [], searchDomains: [] })).toBeUndefined();
  });

  it('a dual-stack NIC also gets its IPv6 address over DHCPv6, and router advertisements from its sibling', () => {
    const args = buildMacvtapDnsmasqArgs({
      nics: [
        {
          tag: 'net0',
          listenOn: 'pvmvl2',
          mac: 'aa:00:00:00:00:02',
          address: { ip: '10.55.1.7', prefix: 32 },
          ipv6: { address: { ip: 'fd10:55::7', prefix: 128 }, sibling: { ip: 'fd70:7664:6d76:2::1', prefix: 64 } },
          gateway: '169.254.1.1',
          routes: [],
          mtu: 1400,
        },
      ],
      hostname: undefined,
      pidFile: '/s/d.pid',
      leaseFile: '/s/d.leases',
      dnsServers: ['10.96.0.10'],
      dnsServers6: ['fd00::a', 'fd00::b'],
      searchDomains: ['cluster.local'],
    });
    expect(args?.slice(8)).toEqual([
      '--interface=pvmvl2', '--shared-network=pvmvl2,10.55.1.7', '--dhcp-range=set:net0,10.55.1.7,static,255.255.255.255,infinite',
      '--shared-network=pvmvl2,fd10:55::7', '--dhcp-range=set:net0,fd70:7664:6d76:2::,static,64,infinite', '--dhcp-range=set:net0,fd10:55::7,static,128,infinite',
      '--ra-param=pvmvl2,mtu:1400,high,60,1800',
      '--dhcp-host=aa:00:00:00:00:02,set:net0,10.55.1.7,[fd10:55::7],infinite', '--dhcp-option=tag:net0,option:mtu,1400',
      '--dhcp-option=tag:net0,option:router,169.254.1.1',
      '--dhcp-option=tag:net0,option:dns-server,10.96.0.10',
      '--dhcp-option=tag:net0,option:domain-search,cluster.local',
      '--dhcp-option=tag:net0,option:domain-name,cluster.local',
      '--dhcp-option=tag:net0,option6:dns-server,[fd00::a],[fd00::b]',
      '--dhcp-option=tag:net0,option6:domain-search,cluster.local',
      '--enable-ra',
      '--log-facility=-', '--log-dhcp',
    ]);
  });
});
