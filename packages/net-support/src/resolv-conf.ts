/**
 * What the pod's resolv.conf tells a VM's DHCP server. The
 * pod's own nameservers and search list are handed to the guest, so the VM
 * resolves names as the pod does (the seeds' dnsmasq did the same).
 */

import { parseIpv4 } from './ipv4.js';

export interface PodResolvConf {
  /** IPv4 nameservers, in order, without duplicates; loopback ones are not reachable from the VM. */
  nameservers: string[];
  /** The search list (the last `search` or `domain` line wins, as in resolv.conf(5)). */
  search: string[];
  /** Nameserver entries left out (IPv6, loopback, garbage). */
  skipped: string[];
}

export function parseResolvConf(text: string): PodResolvConf {
  const nameservers: string[] = [];
  const skipped: string[] = [];
  let search: string[] = [];
  for (const raw of text.split('\n')) {
    const [keyword, ...values] = raw.replace(/[#;].*$/, '').trim().split(/\s+/);
    if (keyword === 'nameserver' && values[0] !== undefined) {
      const server = values[0];
      if (parseIpv4(server) !== undefined && !server.startsWith('127.')) {
        if (!nameservers.includes(server)) nameservers.push(server);
      } else skipped.push(server);
    } else if ((keyword === 'search' || keyword === 'domain') && values.length > 0) {
      search = values.filter((d) => d !== '.').map((d) => d.replace(/\.$/, '')).filter((d) => d !== '');
    }
  }
  return { nameservers, search, skipped };
}

/**
 * Whether a name can go to dnsmasq as the DHCP host name: one RFC 1123 label
 * (a dotted name would have to match dnsmasq's `--domain`, which has none here).
 */
export function isDhcpHostname(name: string): boolean {
  return /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(name);
}
