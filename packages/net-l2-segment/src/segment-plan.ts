/**
 * What the l2-segment backend writes to the host, built from plain data:
 * the link names, the guest NIC's MAC, the WireGuard configuration for
 * `wg syncconf`, the two nftables tables (the guard that keeps VXLAN out of
 * every interface but WireGuard, and the bridge filter that keeps each pod's
 * DHCP server to its own VM), and dnsmasq's arguments. Pure.
 */
import { createHash } from 'node:crypto';
import { dnsmasqBaseArgs } from '@podvisor/net-support';
import { L2_VXLAN_PORT } from './peer-map.js';

/** The links in the pod's namespace; the WireGuard one is named after the VM (see `wireguardInterfaceName`). */
export const L2_SEGMENT_LINKS = { bridge: 'pvl2br0', vxlan: 'pvl2vx0', tap: 'pvl2tap0' } as const;

/** The nftables tables: `inet` (the guard) and `bridge` (the DHCP filter). */
export const L2_NFT_TABLE = 'podvisor_l2';

/**
 * The WireGuard interface: `pvwg` + 8 hex digits of sha256(vmName). wireguard-go's
 * control socket is `/var/run/wireguard/<name>.sock`, one path for every
 * namespace that shares /var/run, so two VMs on one host need two names.
 */
export function wireguardInterfaceName(vmName: string): string {
  return `pvwg${createHash('sha256').update(vmName, 'utf8').digest('hex').slice(0, 8)}`;
}

/** The segment NIC's MAC: qemu's `52:54:00` prefix and sha256("l2-segment/" + vmName), stable across restarts. */
export function segmentMac(vmName: string): string {
  const d = createHash('sha256').update(`l2-segment/${vmName}`, 'utf8').digest();
  return ['52', '54', '00', ...[...d.subarray(0, 3)].map((b) => b.toString(16).padStart(2, '0'))].join(':');
}

export interface WireguardPeerConfig {
  name: string;
  publicKey: string;
  /** `IP:PORT`, or undefined while the name does not resolve (the peer waits, nothing blocks). */
  endpoint: string | undefined;
  tunnelIp: string;
}

/** Seconds between keepalives: a restarted member hears from its peers at once, and NAT mappings stay open. */
export const WIREGUARD_KEEPALIVE_SECONDS = 25;

/** The configuration `wg syncconf` takes (wg(8), CONFIGURATION FILE FORMAT). Holds the private key: piped, never written. */
export function wireguardConfig(privateKey: string, port: number, peers: readonly WireguardPeerConfig[]): string {
  const lines = ['[Interface]', `PrivateKey = ${privateKey}`, `ListenPort = ${port}`];
  for (const p of peers) {
    lines.push('', `# ${p.name}`, '[Peer]', `PublicKey = ${p.publicKey}`, `AllowedIPs = ${p.tunnelIp}/32`, `PersistentKeepalive = ${WIREGUARD_KEEPALIVE_SECONDS}`);
    if (p.endpoint !== undefined) lines.push(`Endpoint = ${p.endpoint}`);
  }
  return `${lines.join('\n')}\n`;
}

export interface SegmentRulesetParams {
  wireguard: string;
  /** The pod's DHCP server address on the segment, when it serves one. */
  dhcpServer: string | undefined;
}

/**
 * Both tables, replaced atomically (`nft -f -`). The guard drops every VXLAN
 * packet the pod would send out of any interface but WireGuard: if the
 * tunnel goes away (wireguard-go killed, a crash), the segment stops instead
 * of leaking plaintext. The bridge filter keeps DHCP, and the DHCP server's
 * address (the same in every pod), on this pod's side of the VXLAN port.
 */
export function buildSegmentRuleset(p: SegmentRulesetParams): string {
  const { vxlan } = L2_SEGMENT_LINKS;
  const server = p.dhcpServer;
  return [
    `table inet ${L2_NFT_TABLE}`,
    `delete table inet ${L2_NFT_TABLE}`,
    `table inet ${L2_NFT_TABLE} {`,
    '  chain output {',
    '    type filter hook output priority 0; policy accept;',
    `    udp dport ${L2_VXLAN_PORT} oifname != "${p.wireguard}" counter drop`,
    '  }',
    '}',
    `table bridge ${L2_NFT_TABLE}`,
    `delete table bridge ${L2_NFT_TABLE}`,
    `table bridge ${L2_NFT_TABLE} {`,
    '  chain forward {',
    '    type filter hook forward priority 0; policy accept;',
    `    oifname "${vxlan}" udp dport { 67, 68 } counter drop`,
    `    iifname "${vxlan}" udp dport { 67, 68 } counter drop`,
    ...(server === undefined
      ? []
      : [
          `    oifname "${vxlan}" arp daddr ip ${server} counter drop`,
          `    oifname "${vxlan}" arp saddr ip ${server} counter drop`,
          `    oifname "${vxlan}" ip daddr ${server} counter drop`,
        ]),
    '  }',
    '  chain output {',
    '    type filter hook output priority 0; policy accept;',
    `    oifname "${vxlan}" counter drop`,
    '  }',
    '  chain input {',
    '    type filter hook input priority 0; policy accept;',
    `    iifname "${vxlan}" counter drop`,
    '  }',
    '}',
    '',
  ].join('\n');
}

/** Deletes both tables; `nft` fails when one is absent, so each is created empty first. */
export function buildSegmentTeardown(): string {
  return [`table inet ${L2_NFT_TABLE}`, `delete table inet ${L2_NFT_TABLE}`, `table bridge ${L2_NFT_TABLE}`, `delete table bridge ${L2_NFT_TABLE}`, ''].join('\n');
}

export interface SegmentLinkParams {
  wireguard: string;
  wireguardMtu: number;
  segmentMtu: number;
  /** This member's tunnel address with the tunnel network's prefix. */
  tunnelCidr: string;
  tunnelIp: string;
  segment: number;
  bridgeMac: string;
  /** The DHCP server's address, put on the bridge as a /32 (the pod gets no route into the segment). */
  dhcpServer: string | undefined;
}

/** The `ip -batch` script that addresses WireGuard and builds bridge, VXLAN and tap. */
export function segmentLinkScript(p: SegmentLinkParams): string {
  const { bridge, vxlan, tap } = L2_SEGMENT_LINKS;
  const m = p.segmentMtu;
  return [
    `addr add ${p.tunnelCidr} dev ${p.wireguard}`,
    `link set dev ${p.wireguard} mtu ${p.wireguardMtu} up`,
    `link add name ${bridge} address ${p.bridgeMac} mtu ${m} type bridge`,
    `link add name ${vxlan} mtu ${m} type vxlan id ${p.segment} local ${p.tunnelIp} dstport ${L2_VXLAN_PORT}`,
    `link set dev ${vxlan} master ${bridge} up`,
    `tuntap add dev ${tap} mode tap`,
    `link set dev ${tap} mtu ${m} master ${bridge} up`,
    `link set dev ${bridge} up`,
    ...(p.dhcpServer === undefined ? [] : [`addr add ${p.dhcpServer}/32 dev ${bridge}`]),
    '',
  ].join('\n');
}

export interface SegmentDnsmasqParams {
  bridge: string;
  /** The VM's segment address, `10.77.0.11/24`. */
  address: string;
  netmask: string;
  mac: string;
  mtu: number;
  pidFile: string;
  leaseFile: string;
}

/**
 * dnsmasq for the segment NIC: one static lease, the MTU forced (busybox's
 * udhcpc does not ask for option 26), and no router or name server: the
 * segment is a second NIC, the primary network keeps the default route.
 */
export function buildSegmentDnsmasqArgs(p: SegmentDnsmasqParams): string[] {
  const ip = p.address.split('/')[0] as string;
  return [
    ...dnsmasqBaseArgs(p.pidFile, p.leaseFile),
    `--interface=${p.bridge}`,
    `--dhcp-range=${ip},static,${p.netmask},12h`,
    `--dhcp-host=${p.mac},${ip}`,
    '--dhcp-option=option:router',
    '--dhcp-option=option:dns-server',
    `--dhcp-option-force=option:mtu,${p.mtu}`,
    '--dhcp-authoritative',
    '--log-facility=-',
  ];
}
