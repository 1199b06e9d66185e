/**
 * The argv of the one dnsmasq that leases each attached NIC of the VM exactly
 * the address its pod interface had. dnsmasq listens on the sibling macvlans
 * (the macvtap's lower device cannot reach the VM, a sibling in bridge mode
 * can), and `--shared-network` lets a sibling whose own address is the
 * derived one serve the VM's original subnet, even a /32. Each NIC's range is
 * tagged, so its router, option 121 routes (Calico's on-link 169.254.1.1 and
 * the default via it) and MTU reach that NIC only; the pod's name servers and
 * search list go to the NIC that holds the default route (else the first).
 * Also here: reading the pod's resolv.conf. Pure.
 */
import { dnsmasqBaseArgs, ipv4Netmask } from '@podvisor/net-support';
import type { PodAddress, VmRoute } from './pod-network.js';

export interface MacvtapDhcpNic {
  /** The tag, e.g. `net0`. */
  tag: string;
  /** The sibling macvlan dnsmasq listens on. */
  listenOn: string;
  mac: string;
  address: PodAddress;
  gateway: string | undefined;
  routes: readonly VmRoute[];
  mtu: number;
}

export interface MacvtapDnsmasqParams {
  nics: readonly MacvtapDhcpNic[];
  hostname: string | undefined;
  pidFile: string;
  leaseFile: string;
  dnsServers: readonly string[];
  searchDomains: readonly string[];
}

/** The arguments after `dnsmasq`; `undefined` when no NIC has an address to lease. */
export function buildMacvtapDnsmasqArgs(p: MacvtapDnsmasqParams): string[] | undefined {
  if (p.nics.length === 0) return undefined;
  const args = [...dnsmasqBaseArgs(p.pidFile, p.leaseFile), '--dhcp-authoritative'];
  const primary = p.nics.find((n) => n.gateway !== undefined) ?? p.nics[0];
  for (const n of p.nics) {
    const { ip, prefix } = n.address;
    args.push(
      `--interface=${n.listenOn}`,
      `--shared-network=${n.listenOn},${ip}`,
      `--dhcp-range=set:${n.tag},${ip},static,${ipv4Netmask(prefix)},infinite`,
      `--dhcp-host=${n.mac},set:${n.tag},${ip}${p.hostname === undefined ? '' : `,${p.hostname}`},infinite`,
      `--dhcp-option=tag:${n.tag},option:mtu,${n.mtu}`,
    );
    if (n.gateway !== undefined) args.push(`--dhcp-option=tag:${n.tag},option:router,${n.gateway}`);
    // Option 121 (RFC 3442); a client that takes it ignores option 3, so the default route is in it too.
    if (n.routes.length > 0) args.push(`--dhcp-option=tag:${n.tag},option:classless-static-route,${n.routes.map((r) => `${r.dst},${r.gateway}`).join(',')}`);
    if (n === primary) {
      if (p.dnsServers.length > 0) args.push(`--dhcp-option=tag:${n.tag},option:dns-server,${p.dnsServers.join(',')}`);
      if (p.searchDomains.length > 0) {
        args.push(`--dhcp-option=tag:${n.tag},option:domain-search,${p.searchDomains.join(',')}`);
        args.push(`--dhcp-option=tag:${n.tag},option:domain-name,${p.searchDomains[0]}`);
      }
    }
  }
  args.push('--log-facility=-', '--log-dhcp');
  return args;
}
