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
 */
import { formatNatExclusion, type NatPortExclusion } from './nat-config.js';

/** The nftables family and table podvisor owns in the pod's namespace. */
export const NAT_TABLE = { family: 'ip', name: 'podvisor' } as const;

export interface NatRulesetParams {
  podInterface: string;
  podIp: string;
  vmIp: string;
  /** The bridge the VM is on, and its address there (the VM's gateway). */
  bridge: string;
  gateway: string;
  /** Ports that stay with the pod, in rule order. */
  exclusions: readonly NatPortExclusion[];
}

/**
 * The ports kept out of DNAT, in rule order: the VNC port (unless `NO_VNC`),
 * the control endpoint's port, then the operator's list, without duplicates.
 */
export function natExclusions(options: { vncPort: number | undefined; controlPort: number; extra: readonly NatPortExclusion[] }): NatPortExclusion[] {
  const all: NatPortExclusion[] = [];
  const add = (e: NatPortExclusion): void => {
    if (!all.some((x) => x.proto === e.proto && x.port === e.port)) all.push(e);
  };
  if (options.vncPort !== undefined) add({ proto: 'tcp', port: options.vncPort });
  add({ proto: 'tcp', port: options.controlPort });
  for (const e of options.extra) add(e);
  return all;
}

/** The script that removes the table if it exists, and succeeds if it does not. */
export function buildNatTeardown(): string {
  const table = `table ${NAT_TABLE.family} ${NAT_TABLE.name}`;
  return `${table} {\n}\ndelete ${table}\n`;
}

/** The whole ruleset, replacing any earlier copy atomically. */
export function buildNatRuleset(p: NatRulesetParams): string {
  const table = `table ${NAT_TABLE.family} ${NAT_TABLE.name}`;
  // The ports kept first, then TCP and UDP to the VM, for packets that `match`.
  const dnat = (match: string): string[] => [
    ...p.exclusions.map((e) => `\t\t${match} ${e.proto} dport ${e.port} return comment ${quote(`keep ${formatNatExclusion(e)}`)}`),
    ...['tcp', 'udp'].map((proto) => `\t\t${match} meta l4proto ${proto} dnat to ${p.vmIp}`),
  ];
  const lines = [
    `${table} {`,
    '}',
    `delete ${table}`,
    `${table} {`,
    '\tchain prerouting {',
    '\t\ttype nat hook prerouting priority dstnat; policy accept;',
    ...dnat(`iifname ${quote(p.podInterface)} ip daddr ${p.podIp}`),
    '\t}',
    '\tchain output {',
    '\t\ttype nat hook output priority -100; policy accept;',
    ...dnat(`ip daddr { ${p.podIp}, 127.0.0.1 }`),
    '\t}',
    '\tchain postrouting {',
    '\t\ttype nat hook postrouting priority srcnat; policy accept;',
    `\t\toifname ${quote(p.podInterface)} ip saddr ${p.vmIp} snat to ${p.podIp}`,
    `\t\toifname ${quote(p.bridge)} ip saddr 127.0.0.1 snat to ${p.gateway}`,
    '\t}',
    '\tchain forward {',
    '\t\ttype filter hook forward priority mangle; policy accept;',
    '\t\ttcp flags syn tcp option maxseg size set rt mtu',
    '\t}',
    '}',
  ];
  return `${lines.join('\n')}\n`;
}

function quote(s: string): string {
  return `"${s.replace(/["\\]/g, '')}"`;
}
