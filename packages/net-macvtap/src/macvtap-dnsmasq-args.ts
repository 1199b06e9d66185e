/**
 * The argv of the one dnsmasq that leases each attached NIC of the VM exactly
 * the address its pod interface had. dnsmasq listens on the sibling macvlans
 * (the macvtap's lower device cannot reach the VM, a sibling in bridge mode
 * can), and `--shared-network` lets a sibling whose own address is the
 * derived one serve the VM's original subnet, even a /32. Each NIC's range is
 * tagged, so its router, option 121 routes (Calico's on-link 169.254.1.1 and
 * the default via it) and MTU reach that NIC only; the pod's name servers and
 * search list go to the NIC that holds the default route (else the first).
 *
 * A NIC that also takes the pod's IPv6 address gets it over DHCPv6: dnsmasq
 * sends router advertisements on its sibling with the M (managed) flag, the
 * MTU and a router lifetime, so the sibling becomes the VM's IPv6 router (the
 * pod namespace forwards), and leases the NIC's MAC exactly that address. The
 * sibling's unique-local /64 is a static range only so that dnsmasq has a
 * context on the interface (it sends no advertisement without one); the
 * pod's /128 is a second static range, reached by `--shared-network` as the
 * IPv4 address is. Proven in a netns experiment with dnsmasq 2.90 and dhcpcd
 * 9.4.1 (docs/macvtap.md, "IPv6").
 */
import { dnsmasqBaseArgs, ipv4Netmask } from '@podvisor/net-support';
import { ipv6Network64 } from './pod-network.js';
import type { PodAddress, VmRoute } from './pod-network.js';

export interface MacvtapDhcpNic {
  /** The tag, e.g. `net0`. */
  tag: string;
  /** The sibling macvlan dnsmasq listens on. */
  listenOn: string;
  mac: string;
  /** The IPv4 address it leases, if any. */
  address: PodAddress | undefined;
  /** The IPv6 address it leases over DHCPv6, and the sibling's own unique-local /64 address. */
  ipv6?: { address: PodAddress; sibling: PodAddress } | undefined;
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
  /** The pod's IPv6 name servers, for a primary NIC that gets IPv6. */
  dnsServers6?: readonly string[];
  searchDomains: readonly string[];
}

/** Router advertisements: every 60 s (and at once on a solicitation), the router valid for 30 minutes. */
export const MACVTAP_RA_INTERVAL_S = 60;
export const MACVTAP_RA_ROUTER_LIFETIME_S = 1800;

/** The arguments after `dnsmasq`; `undefined` when no NIC has an address to lease. */
export function buildMacvtapDnsmasqArgs(p: MacvtapDnsmasqParams): string[] | undefined {
  if (p.nics.length === 0) return undefined;
  const args = [...dnsmasqBaseArgs(p.pidFile, p.leaseFile), '--dhcp-authoritative'];
  const primary = p.nics.find((n) => n.gateway !== undefined) ?? p.nics[0];
  for (const n of p.nics) {
    const v4 = n.address;
    const v6 = n.ipv6;
    args.push(`--interface=${n.listenOn}`);
    if (v4 !== undefined) {
      args.push(`--shared-network=${n.listenOn},${v4.ip}`, `--dhcp-range=set:${n.tag},${v4.ip},static,${ipv4Netmask(v4.prefix)},infinite`);
    }
    if (v6 !== undefined) {
      args.push(
        `--shared-network=${n.listenOn},${v6.address.ip}`,
        `--dhcp-range=set:${n.tag},${ipv6Network64(v6.sibling)},static,${v6.sibling.prefix},infinite`,
        `--dhcp-range=set:${n.tag},${v6.address.ip},static,128,infinite`,
        `--ra-param=${n.listenOn},mtu:${n.mtu},high,${MACVTAP_RA_INTERVAL_S},${MACVTAP_RA_ROUTER_LIFETIME_S}`,
      );
    }
    const leased = [...(v4 === undefined ? [] : [v4.ip]), ...(v6 === undefined ? [] : [`[${v6.address.ip}]`])];
    args.push(`--dhcp-host=${n.mac},set:${n.tag},${leased.join(',')}${p.hostname === undefined ? '' : `,${p.hostname}`},infinite`);
    if (v4 !== undefined) args.push(`--dhcp-option=tag:${n.tag},option:mtu,${n.mtu}`);
    if (v4 !== undefined && n.gateway !== undefined) args.push(`--dhcp-option=tag:${n.tag},option:router,${n.gateway}`);
    // Option 121 (RFC 3442); a client that takes it ignores option 3, so the default route is in it too.
    if (v4 !== undefined && n.routes.length > 0) args.push(`--dhcp-option=tag:${n.tag},option:classless-static-route,${n.routes.map((r) => `${r.dst},${r.gateway}`).join(',')}`);
    if (n === primary) {
      if (v4 !== undefined && p.dnsServers.length > 0) args.push(`--dhcp-option=tag:${n.tag},option:dns-server,${p.dnsServers.join(',')}`);
      if (v4 !== undefined && p.searchDomains.length > 0) {
        args.push(`--dhcp-option=tag:${n.tag},option:domain-search,${p.searchDomains.join(',')}`);
        args.push(`--dhcp-option=tag:${n.tag},option:domain-name,${p.searchDomains[0]}`);
      }
      const dns6 = p.dnsServers6 ?? [];
      if (v6 !== undefined && dns6.length > 0) args.push(`--dhcp-option=tag:${n.tag},option6:dns-server,${dns6.map((d) => `[${d}]`).join(',')}`);
      if (v6 !== undefined && p.searchDomains.length > 0) args.push(`--dhcp-option=tag:${n.tag},option6:domain-search,${p.searchDomains.join(',')}`);
    }
  }
  if (p.nics.some((n) => n.ipv6 !== undefined)) args.push('--enable-ra');
  args.push('--log-facility=-', '--log-dhcp');
  return args;
}
