/**
 * The peer map of an L2 segment, kvm-crate's `gre-connections` made
 * declarative: one YAML file (a ConfigMap) that every member of the segment
 * mounts, naming the segment id and, for each member VM, where its pod's
 * WireGuard listens, its public key, its VXLAN endpoint address inside the
 * tunnel and, optionally, the VM's own address on the segment. Parsing is
 * pure and reports every problem at once, each with its path in the file, the
 * value and what was expected. Also here: WireGuard key handling (base64 of
 * 32 bytes, the public key derived from a private one), the MTU arithmetic and
 * the IPv4 helpers the backend needs.
 */
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { parseYaml, type ConfigProblem } from '@podvisor/core';
import { formatIpv4, parseIpv4, parseIpv4Cidr } from '@podvisor/net-support';

/** The default WireGuard UDP port of every member. */
export const L2_DEFAULT_PORT = 51820;
/** The default network of the VXLAN endpoints inside the tunnel. */
export const L2_DEFAULT_TUNNEL_NETWORK = '10.255.0.0/24';
/** The VXLAN UDP port (IANA's 4789); it is only ever sent into the WireGuard interface. */
export const L2_VXLAN_PORT = 4789;
/**
 * Bytes WireGuard adds around an inner packet: outer IPv6 (40; 20 over IPv4,
 * but a pod network may be IPv6) + UDP 8 + WireGuard's header 16 + tag 16,
 * the same 80 that wg-quick assumes.
 */
export const WIREGUARD_OVERHEAD = 80;
/** Bytes VXLAN adds around an Ethernet frame: inner IPv4 20 + UDP 8 + VXLAN 8 + Ethernet 14. */
export const VXLAN_OVERHEAD = 50;

export interface PeerMember {
  name: string;
  /** `host:port` as written; the host may be a DNS name (a headless Service), resolved by the backend. */
  endpoint: { host: string; port: number };
  publicKey: string;
  tunnelIp: string;
  /** The VM's address on the segment (CIDR), leased to it by its own pod's DHCP server; undefined: the guest sets it itself. */
  address: string | undefined;
}

export interface PeerMap {
  /** The VXLAN network identifier. */
  segment: number;
  port: number;
  /** CIDR of the VXLAN endpoints inside the tunnel. */
  tunnelNetwork: string;
  /** The address each pod's DHCP server uses on its own side of the segment (the same in every pod, never forwarded). */
  dhcpServer: string | undefined;
  members: PeerMember[];
}

export interface ParsedPeerMap {
  /** `undefined` exactly when `problems` is not empty. */
  map: PeerMap | undefined;
  problems: ConfigProblem[];
}

const TOP_KEYS = ['segment', 'port', 'tunnelNetwork', 'dhcpServer', 'members'] as const;
const MEMBER_KEYS = ['endpoint', 'publicKey', 'tunnelIp', 'address'] as const;
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

/** Parses and checks a peer map; `file` names it in every problem. Pure. */
export function parsePeerMap(text: string, file: string): ParsedPeerMap {
  const problems: ConfigProblem[] = [];
  const at = (path: string): string => `${file}: ${path}`;
  const parsed = parseYaml(text);
  if (!parsed.ok) {
    return {
      map: undefined,
      problems: parsed.problems.map((p) => ({ path: `${file}${p.line === undefined ? '' : `:${p.line}:${p.column}`}`, value: `(${p.code})`, expected: `${p.expected} (${p.message})` })),
    };
  }
  const doc = parsed.value;
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return { map: undefined, problems: [{ path: file, value: doc, expected: 'a mapping with segment and members' }] };
  const top = doc as Record<string, unknown>;
  for (const k of Object.keys(top)) if (!(TOP_KEYS as readonly string[]).includes(k)) problems.push({ path: at(k), value: top[k], expected: `one of the peer map keys: ${TOP_KEYS.join(', ')}` });

  const segment = integer(top.segment, 1, 16_777_215);
  if (segment === undefined) problems.push({ path: at('segment'), value: top.segment, expected: 'the segment id, a VXLAN network identifier from 1 to 16777215' });
  const port = top.port === undefined ? L2_DEFAULT_PORT : integer(top.port, 1, 65535);
  if (port === undefined) problems.push({ path: at('port'), value: top.port, expected: 'a UDP port from 1 to 65535' });
  const tunnelNetwork = top.tunnelNetwork === undefined ? L2_DEFAULT_TUNNEL_NETWORK : top.tunnelNetwork;
  const tunnel = typeof tunnelNetwork === 'string' ? parseAddressWithPrefix(tunnelNetwork) : undefined;
  if (tunnel === undefined || tunnel.prefix > 30) problems.push({ path: at('tunnelNetwork'), value: tunnelNetwork, expected: 'an IPv4 network such as 10.255.0.0/24 (at most /30), used by no pod or service' });
  let dhcpServer: string | undefined;
  if (top.dhcpServer !== undefined) {
    if (typeof top.dhcpServer === 'string' && parseIpv4(top.dhcpServer) !== undefined) dhcpServer = top.dhcpServer;
    else problems.push({ path: at('dhcpServer'), value: top.dhcpServer, expected: 'an IPv4 address in the members\' subnet that no VM uses' });
  }

  const members: PeerMember[] = [];
  const rawMembers = top.members;
  if (typeof rawMembers !== 'object' || rawMembers === null || Array.isArray(rawMembers) || Object.keys(rawMembers).length === 0) {
    problems.push({ path: at('members'), value: rawMembers, expected: 'a mapping of VM names (pod host names) to {endpoint, publicKey, tunnelIp, address}' });
  } else {
    for (const [name, raw] of Object.entries(rawMembers as Record<string, unknown>)) {
      const p = (k: string): string => at(`members.${name}${k === '' ? '' : `.${k}`}`);
      if (!NAME.test(name)) problems.push({ path: p(''), value: name, expected: 'a VM name: letters, digits, dot, dash, underscore (at most 63)' });
      if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
        problems.push({ path: p(''), value: raw, expected: 'a mapping with endpoint, publicKey, tunnelIp and optionally address' });
        continue;
      }
      const m = raw as Record<string, unknown>;
      for (const k of Object.keys(m)) if (!(MEMBER_KEYS as readonly string[]).includes(k)) problems.push({ path: p(k), value: m[k], expected: `one of the member keys: ${MEMBER_KEYS.join(', ')}` });
      const endpoint = parseEndpoint(m.endpoint, port ?? L2_DEFAULT_PORT);
      if (endpoint === undefined) problems.push({ path: p('endpoint'), value: m.endpoint, expected: 'HOST or HOST:PORT, the pod IP or a DNS name (such as a headless Service\'s pod record)' });
      const publicKey = typeof m.publicKey === 'string' && isWireguardKey(m.publicKey.trim()) ? m.publicKey.trim() : undefined;
      if (publicKey === undefined) problems.push({ path: p('publicKey'), value: m.publicKey, expected: 'a WireGuard public key: base64 of 32 bytes (wg pubkey)' });
      const tunnelIp = typeof m.tunnelIp === 'string' ? m.tunnelIp : undefined;
      const tip = tunnelIp === undefined ? undefined : parseIpv4(tunnelIp);
      if (tip === undefined || (tunnel !== undefined && !hostOf(tip, tunnel))) {
        problems.push({ path: p('tunnelIp'), value: m.tunnelIp, expected: `a host address of tunnelNetwork ${typeof tunnelNetwork === 'string' ? tunnelNetwork : ''}, one per member`.trim() });
      }
      let address: string | undefined;
      if (m.address !== undefined) {
        const a = typeof m.address === 'string' ? parseAddressWithPrefix(m.address) : undefined;
        if (a === undefined || a.prefix > 30 || !hostOf(a.ip, a)) problems.push({ path: p('address'), value: m.address, expected: 'the VM\'s segment address as a host CIDR such as 10.77.0.11/24' });
        else address = m.address as string;
      }
      if (endpoint !== undefined && publicKey !== undefined && tunnelIp !== undefined) members.push({ name, endpoint, publicKey, tunnelIp, address });
    }
  }

  // One member per key, tunnel address and segment address; one subnet for all segment addresses.
  for (const [what, key] of [
    ['publicKey', (m: PeerMember) => m.publicKey],
    ['tunnelIp', (m: PeerMember) => m.tunnelIp],
    ['address', (m: PeerMember) => (m.address === undefined ? undefined : m.address.split('/')[0])],
  ] as const) {
    const seen = new Map<string, string>();
    for (const m of members) {
      const v = key(m);
      if (v === undefined) continue;
      const other = seen.get(v);
      if (other !== undefined) problems.push({ path: at(`members.${m.name}.${what}`), value: v, expected: `a ${what} of its own (member ${other} has it too)` });
      else seen.set(v, m.name);
    }
  }
  const subnets = new Set(members.flatMap((m) => (m.address === undefined ? [] : [subnetOf(m.address)])));
  if (subnets.size > 1) problems.push({ path: at('members.*.address'), value: [...subnets], expected: 'segment addresses in one subnet (one L2 segment is one IPv4 subnet)' });
  const subnet = [...subnets][0];
  if (dhcpServer !== undefined && subnet !== undefined) {
    const net = parseAddressWithPrefix(subnet);
    if (net !== undefined && !hostOf(parseIpv4(dhcpServer) as number, net)) problems.push({ path: at('dhcpServer'), value: dhcpServer, expected: `a host address of the members' subnet ${subnet}` });
    if (members.some((m) => m.address?.split('/')[0] === dhcpServer)) problems.push({ path: at('dhcpServer'), value: dhcpServer, expected: 'an address that no member VM uses' });
  }
  if (problems.length > 0) return { map: undefined, problems };
  return {
    map: { segment: segment as number, port: port as number, tunnelNetwork: tunnelNetwork as string, dhcpServer: dhcpServer ?? (subnet === undefined ? undefined : lastHost(subnet)), members },
    problems,
  };
}

/** True for base64 of exactly 32 bytes, the form of every WireGuard key. */
export function isWireguardKey(text: string): boolean {
  return /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/.test(text);
}

/** The public key of a WireGuard private key (X25519, as `wg pubkey` computes it). Throws for anything that is not a key. */
export function wireguardPublicKey(privateKey: string): string {
  const raw = Buffer.from(privateKey.trim(), 'base64');
  if (!isWireguardKey(privateKey.trim()) || raw.length !== 32) throw new Error('not a WireGuard key (base64 of 32 bytes)');
  // PKCS#8 wrapping of a raw X25519 private key (RFC 8410).
  const der = Buffer.concat([Buffer.from('302e020100300506032b656e04220420', 'hex'), raw]);
  const spki = createPublicKey(createPrivateKey({ key: der, format: 'der', type: 'pkcs8' })).export({ format: 'der', type: 'spki' });
  return spki.subarray(spki.length - 32).toString('base64');
}

/** MTUs from the pod interface's: WireGuard's, and the segment's (the bridge, VXLAN, tap and the guest). */
export function segmentMtus(podMtu: number): { wireguard: number; segment: number } {
  const wireguard = podMtu - WIREGUARD_OVERHEAD;
  return { wireguard, segment: wireguard - VXLAN_OVERHEAD };
}

function integer(raw: unknown, min: number, max: number): number | undefined {
  const n = typeof raw === 'number' ? raw : typeof raw === 'string' && /^\d+$/.test(raw.trim()) ? Number(raw) : Number.NaN;
  return Number.isInteger(n) && n >= min && n <= max ? n : undefined;
}

function parseEndpoint(raw: unknown, defaultPort: number): { host: string; port: number } | undefined {
  if (typeof raw !== 'string' || raw.trim() === '') return undefined;
  const m = /^([A-Za-z0-9.-]+)(?::(\d{1,5}))?$/.exec(raw.trim());
  if (m === null) return undefined;
  const port = m[2] === undefined ? defaultPort : Number(m[2]);
  return port >= 1 && port <= 65535 ? { host: m[1] as string, port } : undefined;
}

/**
 * `a.b.c.d/len` with the prefix length required (an interface address or a
 * network): the address, the prefix length and the network, read with
 * net-support's one IPv4 parser.
 */
export function parseAddressWithPrefix(text: string): { ip: number; prefix: number; network: number } | undefined {
  const slash = text.indexOf('/');
  if (slash < 0) return undefined;
  const net = parseIpv4Cidr(text);
  const ip = parseIpv4(text.slice(0, slash));
  return net === undefined || ip === undefined ? undefined : { ip, prefix: net.prefixLength, network: net.network };
}

/** True when `ip` is a host address (neither network nor broadcast) of `net`. */
function hostOf(ip: number, net: { prefix: number; network: number }): boolean {
  const size = 2 ** (32 - net.prefix);
  return ip > net.network && ip < net.network + size - 1;
}

/** `10.77.0.11/24` -> `10.77.0.0/24`. */
export function subnetOf(cidr: string): string {
  const c = parseAddressWithPrefix(cidr) as { network: number; prefix: number };
  return `${formatIpv4(c.network)}/${c.prefix}`;
}

/** The last host address of a subnet: the default DHCP server address. */
function lastHost(subnet: string): string {
  const c = parseAddressWithPrefix(subnet) as { network: number; prefix: number };
  return formatIpv4(c.network + 2 ** (32 - c.prefix) - 2);
}
