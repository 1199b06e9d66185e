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
});
