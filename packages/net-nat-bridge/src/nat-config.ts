/**
 * The NAT bridge's configuration, resolved from the seed environment variables
 * (`VM_IP`, `VM_GW`, `NO_VNC`, `PODVISOR_NAT_EXCLUDE`) and the YAML section
 * `network.settings` (`vmIp`, `vmGateway`, `natExclude`, `resolvConf`,
 * `podInterface`), with the environment taking precedence over YAML. Pure: it
 * reads nothing but its argument and reports every problem at once, each with
 * its path, value and what was expected. Also holds the small IPv4 arithmetic
 * the backend needs (a /30, overlap of two prefixes).
 */
import type { ConfigProblem, NetworkAttachSpec } from '@podvisor/core';

/** The environment variables only this backend reads (the plugin manifest names them; `NO_VNC` is everyone's). */
export const NAT_BRIDGE_ENV = ['VM_IP', 'VM_GW', 'PODVISOR_NAT_EXCLUDE'] as const;

export const NAT_BRIDGE_DEFAULTS = {
  vmIp: '192.168.254.2',
  vmGateway: '192.168.254.1',
  resolvConf: '/etc/resolv.conf',
} as const;

/** The YAML keys of `network.settings` this backend understands. */
export const NAT_BRIDGE_SETTINGS = ['vmIp', 'vmGateway', 'natExclude', 'resolvConf', 'podInterface'] as const;

/** One pod port kept out of the DNAT to the VM. */
export interface NatPortExclusion {
  proto: 'tcp' | 'udp';
  port: number;
}

export interface NatBridgeConfig {
  vmIp: string;
  vmGateway: string;
  /** The /30 both live in, e.g. `192.168.254.0/30`. */
  subnet: string;
  /** False when `NO_VNC` is set: 5900 then goes to the VM like any port. */
  vncExcluded: boolean;
  /** `PODVISOR_NAT_EXCLUDE` / `natExclude`, in the order given, without duplicates. */
  exclude: NatPortExclusion[];
  resolvConf: string;
  /** The pod interface to NAT through; `undefined` means the one carrying the default route. */
  podInterface: string | undefined;
}

export interface ResolvedNatBridgeConfig {
  /** `undefined` exactly when `problems` is not empty. */
  config: NatBridgeConfig | undefined;
  problems: ConfigProblem[];
}

const IFNAME = /^[^\s/:]{1,15}$/;

/**
 * Resolves and checks the configuration. Environment variables win over
 * `network.settings`; an empty variable counts as unset (except `NO_VNC`,
 * whose presence with any non-empty value disables the VNC exclusion).
 */
export function resolveNatBridgeConfig(spec: Pick<NetworkAttachSpec, 'env' | 'settings'>): ResolvedNatBridgeConfig {
  const problems: ConfigProblem[] = [];
  const settings = spec.settings ?? {};

  for (const key of Object.keys(settings)) {
    if (!(NAT_BRIDGE_SETTINGS as readonly string[]).includes(key)) {
      problems.push({ path: `yaml network.settings.${key}`, value: settings[key], expected: `one of the nat-bridge settings: ${NAT_BRIDGE_SETTINGS.join(', ')}` });
    }
  }

  const vmIp = pickString(spec, 'VM_IP', 'vmIp', NAT_BRIDGE_DEFAULTS.vmIp, problems);
  const vmGateway = pickString(spec, 'VM_GW', 'vmGateway', NAT_BRIDGE_DEFAULTS.vmGateway, problems);
  const ip = vmIp.value === undefined ? undefined : parseIpv4(vmIp.value);
  const gw = vmGateway.value === undefined ? undefined : parseIpv4(vmGateway.value);
  const usable = (value: number | undefined): value is number => value !== undefined && isUnicast(value);
  for (const [field, value] of [
    [vmIp, ip],
    [vmGateway, gw],
  ] as const) {
    if (field.value === undefined) continue;
    if (!usable(value)) {
      problems.push({ path: field.path, value: field.value, expected: 'a unicast IPv4 address such as 192.168.254.2' });
      continue;
    }
    const host = value & 3;
    if (host === 0 || host === 3) {
      const net = value & ~3;
      problems.push({
        path: field.path,
        value: field.value,
        expected: `a usable host of its /30 ${formatIpv4(net)}/30 (.${(net & 255) + 1} or .${(net & 255) + 2}), not its ${host === 0 ? 'network' : 'broadcast'} address`,
      });
    }
  }
  if (usable(ip) && usable(gw)) {
    if (ip === gw) {
      problems.push({ path: vmGateway.path, value: vmGateway.value, expected: `an address different from VM_IP (${vmIp.value}) in the same /30` });
    } else if ((ip & ~3) !== (gw & ~3)) {
      problems.push({
        path: vmGateway.path,
        value: vmGateway.value,
        expected: `an address in the same /30 as VM_IP ${vmIp.value} (${formatIpv4(ip & ~3)}/30)`,
      });
    }
  }

  const exclude = pickExclude(spec, problems);
  const resolvConf = pickString(spec, undefined, 'resolvConf', NAT_BRIDGE_DEFAULTS.resolvConf, problems);
  if (resolvConf.value !== undefined && !resolvConf.value.startsWith('/')) problems.push({ path: resolvConf.path, value: resolvConf.value, expected: 'an absolute path to a resolv.conf file' });
  const podInterface = settings.podInterface;
  if (podInterface !== undefined && (typeof podInterface !== 'string' || !IFNAME.test(podInterface))) {
    problems.push({ path: 'yaml network.settings.podInterface', value: podInterface, expected: 'a network interface name (1-15 characters, no "/", ":" or spaces)' });
  }

  if (problems.length > 0) return { config: undefined, problems };
  return {
    config: {
      vmIp: vmIp.value as string,
      vmGateway: vmGateway.value as string,
      subnet: `${formatIpv4((ip as number) & ~3)}/30`,
      vncExcluded: (spec.env.NO_VNC ?? '') === '',
      exclude,
      resolvConf: resolvConf.value as string,
      podInterface: podInterface as string | undefined,
    },
    problems,
  };
}

/** Where a value came from, for problem paths; `undefined` when it was unusable (and already reported). */
interface Sourced<T> {
  value: T;
  path: string;
}

function pickString(
  spec: Pick<NetworkAttachSpec, 'env' | 'settings'>,
  envKey: string | undefined,
  settingsKey: string,
  fallback: string,
  problems: ConfigProblem[],
): Sourced<string | undefined> {
  const fromEnv = envKey === undefined ? undefined : spec.env[envKey];
  if (envKey !== undefined && fromEnv !== undefined && fromEnv !== '') return { value: fromEnv.trim(), path: `env ${envKey}` };
  const path = `yaml network.settings.${settingsKey}`;
  const fromYaml = spec.settings?.[settingsKey];
  if (fromYaml === undefined) return { value: fallback, path: envKey === undefined ? path : `env ${envKey}` };
  if (typeof fromYaml !== 'string') {
    problems.push({ path, value: fromYaml, expected: 'a string' });
    return { value: undefined, path };
  }
  return { value: fromYaml.trim(), path };
}

function pickExclude(spec: Pick<NetworkAttachSpec, 'env' | 'settings'>, problems: ConfigProblem[]): NatPortExclusion[] {
  const fromEnv = spec.env.PODVISOR_NAT_EXCLUDE;
  let entries: string[];
  let path: string;
  if (fromEnv !== undefined && fromEnv !== '') {
    path = 'env PODVISOR_NAT_EXCLUDE';
    entries = fromEnv.split(',');
  } else {
    path = 'yaml network.settings.natExclude';
    const fromYaml = spec.settings?.natExclude;
    if (fromYaml === undefined) return [];
    if (typeof fromYaml === 'string') entries = fromYaml.split(',');
    else if (Array.isArray(fromYaml) && fromYaml.every((e) => typeof e === 'string')) entries = fromYaml as string[];
    else {
      problems.push({ path, value: fromYaml, expected: 'a list of proto/port strings such as ["tcp/22", "udp/53"], or one comma-separated string' });
      return [];
    }
  }
  const { exclusions, invalid } = parseNatExclude(entries);
  for (const bad of invalid) problems.push({ path, value: bad, expected: 'proto/port with proto tcp or udp and port 1-65535, e.g. tcp/22' });
  return exclusions;
}

/**
 * Parses `tcp/22,udp/53` style entries (already split, or one string). Blank
 * entries are ignored and duplicates dropped; `invalid` lists the bad entries
 * as given.
 */
export function parseNatExclude(input: string | readonly string[]): { exclusions: NatPortExclusion[]; invalid: string[] } {
  const entries = typeof input === 'string' ? input.split(',') : input;
  const exclusions: NatPortExclusion[] = [];
  const invalid: string[] = [];
  for (const raw of entries) {
    const entry = raw.trim();
    if (entry === '') continue;
    const m = /^(tcp|udp)\/([0-9]{1,5})$/i.exec(entry);
    const port = m === null ? NaN : Number(m[2]);
    if (m === null || !(port >= 1 && port <= 65535)) {
      invalid.push(entry);
      continue;
    }
    const proto = (m[1] as string).toLowerCase() as 'tcp' | 'udp';
    if (!exclusions.some((e) => e.proto === proto && e.port === port)) exclusions.push({ proto, port });
  }
  return { exclusions, invalid };
}

/** `tcp/22`. */
export function formatNatExclusion(e: NatPortExclusion): string {
  return `${e.proto}/${e.port}`;
}

/** A strict dotted quad (no leading zeros) as an unsigned 32-bit number, or `undefined`. */
export function parseIpv4(text: string): number | undefined {
  const m = /^(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})$/.exec(text);
  if (m === null) return undefined;
  const octets = m.slice(1).map(Number);
  if (octets.some((o) => o > 255)) return undefined;
  return (((octets[0] as number) << 24) | ((octets[1] as number) << 16) | ((octets[2] as number) << 8) | (octets[3] as number)) >>> 0;
}

export function formatIpv4(value: number): string {
  const v = value >>> 0;
  return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
}

/** Not 0.0.0.0/8, loopback, multicast or reserved (224.0.0.0 and up). */
function isUnicast(value: number): boolean {
  const first = value >>> 24;
  return first !== 0 && first !== 127 && first < 224;
}

/** Parses `a.b.c.d/len` (or a bare address, as /32) into a network and prefix length. */
export function parseIpv4Cidr(text: string): { network: number; prefixLength: number } | undefined {
  const [addr, len, ...rest] = text.split('/');
  if (addr === undefined || rest.length > 0) return undefined;
  const ip = parseIpv4(addr);
  const prefixLength = len === undefined ? 32 : /^[0-9]{1,2}$/.test(len) ? Number(len) : NaN;
  if (ip === undefined || !(prefixLength >= 0 && prefixLength <= 32)) return undefined;
  return { network: (ip & prefixMask(prefixLength)) >>> 0, prefixLength };
}

/** True when two IPv4 prefixes share at least one address. Unparsable input never overlaps. */
export function ipv4CidrsOverlap(a: string, b: string): boolean {
  const x = parseIpv4Cidr(a);
  const y = parseIpv4Cidr(b);
  if (x === undefined || y === undefined) return false;
  const mask = prefixMask(Math.min(x.prefixLength, y.prefixLength));
  return ((x.network & mask) >>> 0) === ((y.network & mask) >>> 0);
}

function prefixMask(length: number): number {
  return length === 0 ? 0 : (0xffffffff << (32 - length)) >>> 0;
}
