/**
 * The dnsmasq that gives the VM its one address over DHCP: its argv, built
 * from plain data, and the reading of the pod's resolv.conf whose name
 * servers and search domains the VM inherits (kvm-manager's design). dnsmasq
 * runs in the foreground with no configuration file and no DNS service
 * (`--port=0`), bound to the bridge only, and serves exactly one static host.
 * Pure: nothing here touches the host.
 */

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
  /** Option 26, the pod interface's MTU. */
  mtu: number | undefined;
}

/** How long a lease lasts; the VM renews at half of it. */
export const DNSMASQ_LEASE_TIME = '12h';

/** The arguments after `dnsmasq`. */
export function buildDnsmasqArgs(p: DnsmasqParams): string[] {
  const args = [
    '--keep-in-foreground',
    '--conf-file=/dev/null',
    '--port=0',
    `--pid-file=${p.pidFile}`,
    `--dhcp-leasefile=${p.leaseFile}`,
    '--bind-interfaces',
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
  args.push('--dhcp-authoritative', '--log-facility=-', '--log-dhcp');
  return args;
}

export interface PodResolvConf {
  /** IPv4 name servers the VM can reach, in order. */
  nameservers: string[];
  /** `search` (or `domain`) domains, in order; the last such line wins, as in resolv.conf(5). */
  search: string[];
  /** Name servers left out: IPv6 ones (DHCPv4 cannot carry them) and loopback ones (the VM cannot reach the pod's loopback). */
  skipped: string[];
}

/** Reads resolv.conf text the way the resolver does (resolv.conf(5)). */
export function parseResolvConf(text: string): PodResolvConf {
  const nameservers: string[] = [];
  const skipped: string[] = [];
  let search: string[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/[#;].*$/, '').trim();
    const [keyword, ...values] = line.split(/\s+/);
    if (keyword === 'nameserver' && values[0] !== undefined) {
      const server = values[0];
      if (/^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$/.test(server) && !server.startsWith('127.')) {
        if (!nameservers.includes(server)) nameservers.push(server);
      } else skipped.push(server);
    } else if ((keyword === 'search' || keyword === 'domain') && values.length > 0) {
      search = values.filter((d) => d !== '.').map((d) => d.replace(/\.$/, ''));
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
