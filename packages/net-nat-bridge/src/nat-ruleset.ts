/**
 * The nftables ruleset of the NAT bridge, as text for one atomic `nft -f`.
 * Everything lives in one table that podvisor owns (`table ip podvisor`). The
 * script first declares the table, then deletes it, then defines it again, all
 * in one transaction: applying it any number of times leaves exactly one copy
 * of the rules, and a failed apply changes nothing. The rule order is the one
 * seen to work in FACTS.md (pod networking): on prerouting from the pod
 * interface, the excluded ports return first, then TCP and UDP are DNATed to
 * the VM; on postrouting, the VM's traffic leaving the pod interface is SNATed
 * to the pod IP; forwarded SYNs get their MSS clamped to the route MTU.
 * Traffic that starts inside the pod (sidecars, `kubectl port-forward`, which
 * dials localhost in the pod's namespace) takes the same way, as in KubeVirt's
 * masquerade binding: the `output` hook DNATs what is sent to the pod IP or to
 * 127.0.0.1, with the same exclusions, and postrouting SNATs a 127.0.0.1
 * source to the VM's gateway so that the VM can answer it (the kernel only
 * routes a loopback source off `lo` with `route_localnet` on the bridge,
 * which the backend sets).
 *
 * A dual-stack pod gets a second table, `table ip6 podvisor`, in the same
 * script, with the same chains for the pod's IPv6 address and the VM's
 * (`ipv6`). IPv6 has no `route_localnet`: the kernel drops a reply whose
 * destination turns back into `::1` on the bridge, so `::1` is not forwarded
 * (the pod's own IPv6 address is).
 */
import type { StackedPodPort } from '@podvisor/core';
import { formatNatExclusion, type NatPortExclusion } from './nat-config.js';

/** The nftables family and table podvisor owns in the pod's namespace. */
export const NAT_TABLE = { family: 'ip', name: 'podvisor' } as const;

/** The table of a dual-stack pod's IPv6 side. */
export const NAT_TABLE_IPV6 = { family: 'ip6', name: 'podvisor' } as const;

/** The IPv6 side of a dual-stack pod: the pod's address, the VM's, and the VM's subnet and router on the bridge. */
export interface NatRulesetIpv6 {
  podIp: string;
  vmIp: string;
  /** The VM's /64, e.g. `fd70:7664::/64`. */
  subnet: string;
}

export interface NatRulesetParams {
  podInterface: string;
  podIp: string;
  vmIp: string;
  /** The bridge the VM is on, and its address there (the VM's gateway). */
  bridge: string;
  gateway: string;
  /** Ports that stay with the pod, in rule order. */
  exclusions: readonly NatPortExclusion[];
  /** Present for a dual-stack pod: `table ip6 podvisor` is defined too. */
  ipv6?: NatRulesetIpv6;
}

/**
 * The ports kept out of DNAT, in rule order: the VNC port (unless `NO_VNC`),
 * the control endpoint's port, the operator's list, then the ports the
 * stacked backends listen on (`spec.stackedPorts`), without duplicates.
 */
export function natExclusions(options: { vncPort: number | undefined; controlPort: number; extra: readonly NatPortExclusion[]; stacked?: readonly StackedPodPort[] }): NatPortExclusion[] {
  const all: NatPortExclusion[] = [];
  const add = (e: NatPortExclusion): void => {
    if (!all.some((x) => x.proto === e.proto && x.port === e.port)) all.push(e);
  };
  if (options.vncPort !== undefined) add({ proto: 'tcp', port: options.vncPort });
  add({ proto: 'tcp', port: options.controlPort });
  for (const e of options.extra) add(e);
  for (const e of options.stacked ?? []) add({ proto: e.proto, port: e.port, backend: e.backend });
  return all;
}

/** The script that removes both tables where they exist, and succeeds where they do not. */
export function buildNatTeardown(): string {
  return [NAT_TABLE, NAT_TABLE_IPV6].map(resetLines).flat().join('\n') + '\n';
}

/** Declares, then deletes a table: the declaration makes the delete succeed when it was not there. */
function resetLines(t: { family: string; name: string }): string[] {
  const table = `table ${t.family} ${t.name}`;
  return [`${table} {`, '}', `delete ${table}`];
}

/**
 * The whole ruleset, replacing any earlier copy atomically: `table ip
 * podvisor`, and `table ip6 podvisor` for a dual-stack pod (without one, a
 * leftover IPv6 table is deleted).
 */
export function buildNatRuleset(p: NatRulesetParams): string {
  const lines = [...ipv4Lines(p), ...(p.ipv6 === undefined ? resetLines(NAT_TABLE_IPV6) : ipv6Lines(p, p.ipv6))];
  return `${lines.join('\n')}\n`;
}

function ipv4Lines(p: NatRulesetParams): string[] {
  return tableLines(NAT_TABLE, p.exclusions, {
    podInterface: p.podInterface,
    podIp: p.podIp,
    ownDestinations: `{ ${p.podIp}, 127.0.0.1 }`,
    vmIp: p.vmIp,
    snat: [`ip saddr ${p.vmIp} snat to ${p.podIp}`],
    bridgeSnat: [`oifname ${quote(p.bridge)} ip saddr 127.0.0.1 snat to ${p.gateway}`],
  });
}

/** The IPv6 table: as the IPv4 one, for the pod's IPv6 address and the VM's whole /64, without a loopback source (see the module comment). */
function ipv6Lines(p: NatRulesetParams, v6: NatRulesetIpv6): string[] {
  return tableLines(NAT_TABLE_IPV6, p.exclusions, {
    podInterface: p.podInterface,
    podIp: v6.podIp,
    ownDestinations: v6.podIp,
    vmIp: v6.vmIp,
    snat: [`ip6 saddr ${v6.subnet} snat to ${v6.podIp}`],
    bridgeSnat: [],
  });
}

/** One family's table: DNAT from the pod interface and from the pod itself, SNAT of the VM, MSS clamping. */
function tableLines(
  t: { family: 'ip' | 'ip6'; name: string },
  exclusions: readonly NatPortExclusion[],
  o: { podInterface: string; podIp: string; ownDestinations: string; vmIp: string; snat: string[]; bridgeSnat: string[] },
): string[] {
  const dnat = (match: string): string[] => dnatLines(exclusions, match, o.vmIp);
  return [
    ...resetLines(t),
    `table ${t.family} ${t.name} {`,
    '\tchain prerouting {',
    '\t\ttype nat hook prerouting priority dstnat; policy accept;',
    ...dnat(`iifname ${quote(o.podInterface)} ${t.family} daddr ${o.podIp}`),
    '\t}',
    '\tchain output {',
    '\t\ttype nat hook output priority -100; policy accept;',
    ...dnat(`${t.family} daddr ${o.ownDestinations}`),
    '\t}',
    '\tchain postrouting {',
    '\t\ttype nat hook postrouting priority srcnat; policy accept;',
    ...o.snat.map((rule) => `\t\toifname ${quote(o.podInterface)} ${rule}`),
    ...o.bridgeSnat.map((rule) => `\t\t${rule}`),
    '\t}',
    '\tchain forward {',
    '\t\ttype filter hook forward priority mangle; policy accept;',
    '\t\ttcp flags syn tcp option maxseg size set rt mtu',
    '\t}',
    '}',
  ];
}

/** The ports kept first, then TCP and UDP to the VM, for packets that `match`. */
function dnatLines(exclusions: readonly NatPortExclusion[], match: string, vmIp: string): string[] {
  return [
    ...exclusions.map((e) => `\t\t${match} ${e.proto} dport ${e.port} return comment ${quote(`keep ${formatNatExclusion(e)}${e.backend === undefined ? '' : ` for ${e.backend}`}`)}`),
    ...['tcp', 'udp'].map((proto) => `\t\t${match} meta l4proto ${proto} dnat to ${vmIp}`),
  ];
}

function quote(s: string): string {
  return `"${s.replace(/["\\]/g, '')}"`;
}
