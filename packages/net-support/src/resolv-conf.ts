/**
 * What the pod's resolv.conf tells a VM's DHCP server. The
 * pod's own nameservers and search list are handed to the guest, so the VM
 * resolves names as the pod does (the seeds' dnsmasq did the same).
 */

import { parseIpv4 } from './ipv4.js';
import { parseIpv6 } from './ipv6.js';

export interface PodResolvConf {
  /** IPv4 nameservers, in order, without duplicates; loopback ones are not reachable from the VM. */
  nameservers: string[];
  /** The search list (the last `search` or `domain` line wins, as in resolv.conf(5)). */
  search: string[];
  /** IPv6 nameservers, in order, without duplicates (not `::1`, no link-local zone), for a VM that gets IPv6. */
  nameservers6: string[];
  /** Nameserver entries that are neither (loopback, link-local with a zone, garbage); IPv6 ones also count here for a VM without IPv6. */
  skipped: string[];
}

export function parseResolvConf(text: string): PodResolvConf {
  const nameservers: string[] = [];
  const nameservers6: string[] = [];
  const skipped: string[] = [];
  let search: string[] = [];
  for (const raw of text.split('\n')) {
    const [keyword, ...values] = raw.replace(/[#;].*$/, '').trim().split(/\s+/);
    if (keyword === 'nameserver' && values[0] !== undefined) {
      const server = values[0];
      if (parseIpv4(server) !== undefined && !server.startsWith('127.')) {
        if (!nameservers.includes(server)) nameservers.push(server);
      } else {
        const groups = parseIpv6(server);
        if (groups !== undefined && server !== '::1' && (groups[0] as number) >> 6 !== 0x3fa && !nameservers6.includes(server)) nameservers6.push(server);
        skipped.push(server);
      }
    } else if ((keyword === 'search' || keyword === 'domain') && values.length > 0) {
      search = values.filter((d) => d !== '.').map((d) => d.replace(/\.$/, '')).filter((d) => d !== '');
    }
  }
  return { nameservers, nameservers6, search, skipped };
}

/**
 * Whether a name can go to dnsmasq as the DHCP host name: one RFC 1123 label
 * (a dotted name would have to match dnsmasq's `--domain`, which has none here).
 */
export function isDhcpHostname(name: string): boolean {
  return /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(name);
}
