/**
 * The pod's network as the macvtap backend sees it, and the plan it derives
 * from it: which pod interfaces go to the VM (in the pod's own order), which
 * address of each the VM takes, which routes it gets over DHCP, and the
 * non-conflicting address the pod keeps on a sibling macvlan (BBVA
 * docker-kvm's rule: flip the first host bit outside the prefix, and widen
 * the prefix by one, so the sibling's subnet still holds the VM's address).
 * A dual-stack interface also hands the VM its first global IPv6 address;
 * the sibling then carries a fixed unique-local /64 of its own
 * (`macvtapSiblingIpv6`), which only gives dnsmasq a DHCPv6 context to send
 * router advertisements from: the VM's router is the sibling.
 * Pure: input is the JSON of `ip -j addr show` / `ip -j -4|-6 route show`.
 */
import type { ConfigProblem } from '@podvisor/core';
import { formatIpv4, formatIpv6, ipv4PrefixMask, parseIpv4, parseIpv6 } from '@podvisor/net-support';

export interface PodAddress {
  ip: string;
  prefix: number;
}

/** One route of the pod's main table, as `ip -j -4 route show` (or `-6`, then `family` is `inet6`) gives it. */
export interface PodRoute {
  family?: 'inet6';
  dst: string;
  gateway?: string;
  dev: string;
  protocol?: string;
  scope?: string;
  prefsrc?: string;
  metric?: number;
  flags?: string[];
}

export interface PodInterface {
  name: string;
  ifindex: number;
  mac: string;
  mtu: number;
  /** IPv4 addresses in the kernel's order (the first is the primary). */
  addresses: PodAddress[];
  /** Global IPv6 addresses (a dual-stack pod) in the kernel's order; the VM takes the first. */
  ipv6Addresses: PodAddress[];
  /** `ip -d`'s `linkinfo.info_kind` (veth, macvlan, bridge...), if any. */
  kind: string | undefined;
  linkType: string;
}

/** A DHCP route (option 121): `0.0.0.0` as the gateway means on-link. */
export interface VmRoute {
  dst: string;
  gateway: string;
}

/** Prefix of the links this backend creates: `pvmvt<ifindex>` (macvtap) and `pvmvl<ifindex>` (macvlan). */
export const MACVTAP_LINK_PREFIX = { macvtap: 'pvmvt', macvlan: 'pvmvl' } as const;

/** The names of the macvtap and the sibling macvlan made on the pod interface with this ifindex. */
export function macvtapLinkNames(ifindex: number): { macvtap: string; macvlan: string } {
  return { macvtap: `${MACVTAP_LINK_PREFIX.macvtap}${ifindex}`, macvlan: `${MACVTAP_LINK_PREFIX.macvlan}${ifindex}` };
}

/** The name prefix of the preflight probe's throwaway macvtap: `pvmvtprobe<4 hex>` (14 characters). */
export const MACVTAP_PROBE_PREFIX = 'pvmvtprobe';

/** Whether a link is one this backend makes: attach's macvtap and macvlan, or a probe's macvtap (left by a killed doctor, detach removes it too). */
export function isMacvtapBackendLink(name: string): boolean {
  return new RegExp(`^((${MACVTAP_LINK_PREFIX.macvtap}|${MACVTAP_LINK_PREFIX.macvlan})[0-9]+|${MACVTAP_PROBE_PREFIX}[0-9a-f]{4})$`).test(name);
}

interface IpLinkJson {
  ifindex?: number;
  ifname?: string;
  address?: string;
  mtu?: number;
  link_type?: string;
  linkinfo?: { info_kind?: string };
  addr_info?: { family?: string; local?: string; prefixlen?: number; scope?: string }[];
}

/** Reads `ip -j -d addr show`. Throws a `SyntaxError` on text that is not JSON. */
export function parsePodInterfaces(json: string): PodInterface[] {
  const text = json.trim();
  const links = (text === '' ? [] : JSON.parse(text)) as IpLinkJson[];
  return links
    .filter((l) => typeof l.ifname === 'string' && typeof l.ifindex === 'number')
    .map((l) => ({
      name: l.ifname as string,
      ifindex: l.ifindex as number,
      mac: (l.address ?? '').toLowerCase(),
      mtu: l.mtu ?? 1500,
      addresses: (l.addr_info ?? [])
        .filter((a) => a.family === 'inet' && typeof a.local === 'string' && typeof a.prefixlen === 'number')
        .map((a) => ({ ip: a.local as string, prefix: a.prefixlen as number })),
      ipv6Addresses: (l.addr_info ?? [])
        .filter((a) => a.family === 'inet6' && a.scope === 'global' && typeof a.local === 'string' && typeof a.prefixlen === 'number')
        .map((a) => ({ ip: a.local as string, prefix: a.prefixlen as number })),
      kind: l.linkinfo?.info_kind,
      linkType: l.link_type ?? '',
    }))
    .sort((a, b) => a.ifindex - b.ifindex);
}

/** Reads `ip -j -4 route show table main`, or with `inet6` the `-6` one (its routes are marked `family: 'inet6'`). */
export function parsePodRoutes(json: string, family: 'inet' | 'inet6' = 'inet'): PodRoute[] {
  const text = json.trim();
  return ((text === '' ? [] : JSON.parse(text)) as PodRoute[])
    .filter((r) => typeof r.dst === 'string' && typeof r.dev === 'string')
    .map((r) => (family === 'inet6' ? { family: 'inet6' as const, ...r } : r));
}

/** Whether AUTO_ATTACH=yes takes this interface: an ethernet link that is not loopback, a bridge or one of ours. */
export function isAttachable(i: PodInterface): boolean {
  return i.linkType === 'ether' && i.kind !== 'bridge' && i.kind !== 'macvtap' && !isMacvtapBackendLink(i.name);
}

/** What attach does to one pod interface. */
export interface MacvtapNicPlan {
  /** `net0`, `net1`... in the pod's interface order. */
  id: string;
  pod: PodInterface;
  /** The address the VM takes; `undefined` when the interface has no IPv4 address (the VM gets no lease on it). */
  vmAddress: PodAddress | undefined;
  /** The address the sibling macvlan carries, in a subnet one bit wider that still holds `vmAddress`. */
  siblingAddress: PodAddress | undefined;
  /** The first global IPv6 address of the interface, which the VM takes over DHCPv6 (when the pod can forward IPv6). */
  vmAddress6: PodAddress | undefined;
  /** The sibling's unique-local /64 address (dnsmasq's DHCPv6 and router advertisement context), with `vmAddress6`. */
  siblingAddress6: PodAddress | undefined;
  /** The routes of the pod through this interface, for option 121, the default one last. */
  vmRoutes: VmRoute[];
  /** The default gateway, when the pod's default route goes through this interface. */
  gateway: string | undefined;
  links: { macvtap: string; macvlan: string };
}

/** What the plan needs of the backend's settings (`MacvtapConfig` holds it). */
export interface MacvtapNicChoice {
  /** `auto`: every ethernet interface of the pod; `list`: only the named ones. */
  attach: { mode: 'auto'; origin: string } | { mode: 'list'; interfaces: string[]; origin: string };
  /** SELECTED_NETWORK: which address of an interface the VM takes (the first when unset). */
  selectedNetwork: (PodAddress & { origin: string }) | undefined;
}

/**
 * Chooses the interfaces and plans each one. Returns the problems instead
 * (with the interfaces the pod has, so the message names them) when a named
 * interface does not exist, is not an ethernet link, or SELECTED_NETWORK
 * matches no address. Pure.
 */
export function planMacvtapNics(
  config: MacvtapNicChoice,
  interfaces: readonly PodInterface[],
  routes: readonly PodRoute[],
): { plans: MacvtapNicPlan[]; problems: ConfigProblem[] } {
  const problems: ConfigProblem[] = [];
  const candidates = interfaces.filter(isAttachable);
  const available = candidates.map((i) => i.name).join(', ') || '(none)';
  let chosen: PodInterface[];
  if (config.attach.mode === 'auto') chosen = candidates;
  else {
    chosen = [];
    for (const name of config.attach.interfaces) {
      const found = interfaces.find((i) => i.name === name);
      if (found === undefined || !isAttachable(found)) {
        problems.push({
          path: config.attach.origin,
          value: name,
          expected: found === undefined ? `an interface of this pod: ${available}` : `an ethernet interface of this pod (${name} is ${found.kind ?? found.linkType}): ${available}`,
        });
      } else if (!chosen.includes(found)) chosen.push(found);
    }
    chosen.sort((a, b) => a.ifindex - b.ifindex);
  }
  if (problems.length === 0 && chosen.length === 0) {
    problems.push({ path: config.attach.origin, value: config.attach.mode === 'auto' ? 'yes' : [], expected: 'at least one ethernet interface in the pod to give the VM' });
  }
  const selected = config.selectedNetwork;
  if (selected !== undefined && !chosen.some((i) => selectAddress(i.addresses, selected) !== undefined)) {
    const seen = chosen.flatMap((i) => i.addresses.map((a) => `${i.name} ${a.ip}/${a.prefix}`)).join(', ') || 'none';
    problems.push({ path: selected.origin, value: `${selected.ip}/${selected.prefix}`, expected: `an address of an attached interface (they have: ${seen})` });
  }
  if (problems.length > 0) return { plans: [], problems };

  const taken = new Set(interfaces.flatMap((i) => i.addresses.map((a) => a.ip)));
  const plans = chosen.map((pod, n): MacvtapNicPlan => {
    const vmAddress = (selected === undefined ? undefined : selectAddress(pod.addresses, selected)) ?? pod.addresses[0];
    const siblingAddress = vmAddress === undefined ? undefined : deriveSiblingAddress(vmAddress, taken);
    if (siblingAddress !== undefined) taken.add(siblingAddress.ip);
    const own = routes.filter((r) => r.dev === pod.name);
    const gateway = own.find((r) => r.dst === 'default')?.gateway;
    const vmAddress6 = pod.ipv6Addresses[0];
    const siblingAddress6 = vmAddress6 === undefined ? undefined : macvtapSiblingIpv6(pod.ifindex);
    return { id: `net${n}`, pod, vmAddress, siblingAddress, vmAddress6, siblingAddress6, vmRoutes: vmRoutesOf(own), gateway, links: macvtapLinkNames(pod.ifindex) };
  });
  return { plans, problems };
}

/** The unique-local prefix of the siblings' IPv6 addresses: `fd70:7664:6d76:<ifindex>::/64` ("pv", "mv"). */
export const MACVTAP_SIBLING_IPV6_PREFIX = [0xfd70, 0x7664, 0x6d76] as const;

/**
 * The sibling's IPv6 address on the pod interface with this ifindex:
 * `fd70:7664:6d76:<ifindex in hex>::1/64`. dnsmasq sends router
 * advertisements and answers DHCPv6 only on an interface with an address in
 * one of its ranges; `--shared-network` then lets it lease the pod's /128.
 */
export function macvtapSiblingIpv6(ifindex: number): PodAddress {
  return { ip: formatIpv6([...MACVTAP_SIBLING_IPV6_PREFIX, ifindex & 0xffff, 0, 0, 0, 1]), prefix: 64 };
}

/** The /64 network of a sibling address, as dnsmasq's range start: `fd70:7664:6d76:5::`. */
export function ipv6Network64(address: PodAddress): string {
  const groups = parseIpv6(address.ip);
  if (groups === undefined) throw new Error(`not an IPv6 address: ${address.ip}`);
  return formatIpv6([...groups.slice(0, 4), 0, 0, 0, 0]);
}

/** The address equal to `selected`'s IP, else the first one inside `selected`'s network. */
export function selectAddress(addresses: readonly PodAddress[], selected: PodAddress): PodAddress | undefined {
  const exact = addresses.find((a) => a.ip === selected.ip);
  if (exact !== undefined) return exact;
  const mask = ipv4PrefixMask(selected.prefix);
  const net = ((parseIpv4(selected.ip) ?? 0) & mask) >>> 0;
  return addresses.find((a) => (((parseIpv4(a.ip) ?? 0) & mask) >>> 0) === net);
}

/**
 * BBVA docker-kvm's non-conflicting address: the VM's IP with the bit just
 * outside its prefix flipped, with a prefix one shorter, so the two share a
 * subnet. When that address is taken (by another address of the pod), the
 * next bit out is tried with the prefix widened again. Returns `undefined`
 * for a /0 or when every candidate is taken.
 */
export function deriveSiblingAddress(vm: PodAddress, taken: ReadonlySet<string> = new Set()): PodAddress | undefined {
  const ip = parseIpv4(vm.ip) ?? 0;
  for (let prefix = vm.prefix - 1; prefix >= Math.max(vm.prefix - 8, 1); prefix--) {
    const candidate = formatIpv4((ip ^ (1 << (31 - prefix))) >>> 0);
    if (!taken.has(candidate) && candidate !== vm.ip) return { ip: candidate, prefix };
  }
  return undefined;
}

/**
 * The pod's routes through one interface as DHCP option 121 routes: on-link
 * routes (Calico's `169.254.1.1`) with gateway `0.0.0.0` first, then routes
 * via a gateway, the default last. The kernel's own subnet routes are left
 * out: the lease's netmask gives them.
 */
export function vmRoutesOf(routes: readonly PodRoute[]): VmRoute[] {
  const out: VmRoute[] = [];
  const ordered = [...routes].sort((a, b) => rank(a) - rank(b));
  for (const r of ordered) {
    if (r.protocol === 'kernel' && r.gateway === undefined) continue;
    const dst = r.dst === 'default' ? '0.0.0.0/0' : r.dst.includes('/') ? r.dst : `${r.dst}/32`;
    out.push({ dst, gateway: r.gateway ?? '0.0.0.0' });
  }
  return out;
}

function rank(r: PodRoute): number {
  if (r.dst === 'default') return 2;
  return r.gateway === undefined ? 0 : 1;
}

/** The pod routes attach must put back on `dev` (all but the kernel's own subnet routes), on-link ones first. */
export function restorableRoutes(routes: readonly PodRoute[], dev: string): PodRoute[] {
  return routes.filter((r) => r.dev === dev && !(r.protocol === 'kernel' && r.gateway === undefined)).sort((a, b) => rank(a) - rank(b));
}

/** The `ip route replace` arguments that put one recorded route back. */
export function routeReplaceArgs(r: PodRoute): string[] {
  const args = [...(r.family === 'inet6' ? ['-6'] : []), 'route', 'replace', r.dst];
  if (r.gateway !== undefined) args.push('via', r.gateway);
  args.push('dev', r.dev);
  if (r.flags?.includes('onlink') === true) args.push('onlink');
  if (r.protocol !== undefined && r.protocol !== 'boot') args.push('proto', r.protocol);
  if (r.scope !== undefined && r.scope !== 'global') args.push('scope', r.scope);
  if (r.prefsrc !== undefined) args.push('src', r.prefsrc);
  if (r.metric !== undefined) args.push('metric', String(r.metric));
  return args;
}
