/**
 * The NAT bridge's IPv6 side, for dual-stack pods. The VM lives on a fixed
 * unique-local /64 behind the bridge (`NAT_BRIDGE_IPV6`), takes its address
 * there by SLAAC from dnsmasq's router advertisements (also offered by
 * DHCPv6, for guests that ask), and podvisor maps the pod's IPv6 address 1:1
 * to it, as it maps the IPv4 one. The address is the modified EUI-64 of the
 * VM's MAC (RFC 4291, appendix A), which is what a guest that does SLAAC
 * without privacy or stable-privacy addresses configures, and what DHCPv6
 * hands out. Pure: the EUI-64 arithmetic (IPv6 text is parsed and formatted by
 * @podvisor/net-support).
 */
import { formatIpv6, parseIpv6 } from '@podvisor/net-support';

export { formatIpv6, parseIpv6 };

/** The VM's IPv6 subnet behind the bridge, and the bridge's (the VM's router's) address in it. */
export const NAT_BRIDGE_IPV6 = { prefix: 'fd70:7664::', prefixLength: 64, gateway: 'fd70:7664::1' } as const;

/** `fd70:7664::/64`. */
export function natBridgeIpv6Subnet(): string {
  return `${NAT_BRIDGE_IPV6.prefix}/${NAT_BRIDGE_IPV6.prefixLength}`;
}

/** The VM's address in `NAT_BRIDGE_IPV6`: the prefix plus the modified EUI-64 interface id of `mac`. */
export function natBridgeVmIpv6(mac: string): string {
  return eui64Address(NAT_BRIDGE_IPV6.prefix, mac);
}

/** `prefix` (a /64, written with `::`) plus the modified EUI-64 of `mac` (the universal/local bit flipped, ff:fe in the middle). */
export function eui64Address(prefix: string, mac: string): string {
  const network = parseIpv6(prefix);
  const bytes = mac.split(':').map((b) => parseInt(b, 16));
  if (network === undefined || bytes.length !== 6 || bytes.some((b) => !(b >= 0 && b <= 255))) throw new Error(`not a /64 prefix and a MAC: ${prefix} ${mac}`);
  const [a, b, c, d, e, f] = bytes as [number, number, number, number, number, number];
  const id = [((a ^ 0x02) << 8) | b, (c << 8) | 0xff, 0xfe00 | d, (e << 8) | f];
  return formatIpv6([...network.slice(0, 4), ...id]);
}
