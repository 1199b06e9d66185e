/**
 * The dnsmasq that gives the VM its one address over DHCP: its argv, built
 * from plain data, with the name servers and search domains of the pod's
 * resolv.conf that the VM inherits (kvm-manager's design). dnsmasq
 * runs in the foreground with no configuration file and no DNS service
 * (`--port=0`), bound to the bridge only, and serves exactly one static host.
 * For a dual-stack pod it also sends router advertisements on the bridge
 * (SLAAC in the VM's /64, the MTU) and offers the same address by DHCPv6.
 * Pure: nothing here touches the host.
 */
import { dnsmasqBaseArgs } from '@podvisor/net-support';

export interface DnsmasqParams {
  bridge: string;
  vmIp: string;
  gateway: string;
  /** The VM's MAC, the only client that gets a lease. */
  mac: string;
  /** The VM's host name, sent as option 12; left out when `undefined`. */
  hostname: string | undefined;
  pidFile: string;
  leaseFile: string;
  /** Option 6; left out when empty. */
  dnsServers: readonly string[];
  /** Option 119 (and option 15, the first of them); left out when empty. */
  searchDomains: readonly string[];
  /** Option 26 and the router advertisements' MTU: the pod interface's. */
  mtu: number | undefined;
  /** Present for a dual-stack pod: the VM's IPv6 address (its EUI-64 in `prefix`/64). */
  ipv6?: { prefix: string; vmIp: string };
}

/** How long a lease lasts; the VM renews at half of it. */
export const DNSMASQ_LEASE_TIME = '12h';


/** The arguments after `dnsmasq`. */
export function buildDnsmasqArgs(p: DnsmasqParams): string[] {
  const args = [
    ...dnsmasqBaseArgs(p.pidFile, p.leaseFile),
    `--interface=${p.bridge}`,
    `--dhcp-range=${p.vmIp},static,255.255.255.252,${DNSMASQ_LEASE_TIME}`,
    `--dhcp-host=${p.mac},${p.vmIp}${p.hostname === undefined ? '' : `,${p.hostname}`}`,
    `--dhcp-option=option:router,${p.gateway}`,
  ];
  if (p.dnsServers.length > 0) args.push(`--dhcp-option=option:dns-server,${p.dnsServers.join(',')}`);
  if (p.searchDomains.length > 0) {
    args.push(`--dhcp-option=option:domain-search,${p.searchDomains.join(',')}`);
    args.push(`--dhcp-option=option:domain-name,${p.searchDomains[0]}`);
  }
  if (p.mtu !== undefined) args.push(`--dhcp-option=option:mtu,${p.mtu}`);
  if (p.ipv6 !== undefined) {
    // slaac: the A flag, so the VM configures its EUI-64 address itself; static: DHCPv6
    // offers only the reserved address, the same one, to a guest that asks.
    args.push('--enable-ra', `--dhcp-range=${p.ipv6.prefix},static,slaac,64,${DNSMASQ_LEASE_TIME}`, `--dhcp-host=${p.mac},[${p.ipv6.vmIp}]`);
    // The RA's MTU option (interval 0: dnsmasq's default).
    if (p.mtu !== undefined) args.push(`--ra-param=${p.bridge},mtu:${p.mtu},0`);
  }
  args.push('--dhcp-authoritative', '--log-facility=-', '--log-dhcp');
  return args;
}
