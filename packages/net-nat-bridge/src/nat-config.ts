/**
 * The NAT bridge's configuration: the settings its manifest declares (the
 * seed variables `VM_IP`, `VM_GW`, `PODVISOR_NAT_EXCLUDE` and the YAML keys
 * under `network.settings`), which podvisor resolves and type-checks with its
 * own settings, and the cross-field checks on them (a /30, ports). Pure: it
 * reads nothing but its argument and reports every problem at once, each with
 * its path, value and what was expected. Whether 5900 is podvisor's VNC is
 * not a setting of this backend: `NO_VNC` is decided by podvisor and arrives
 * as `spec.vnc`. Also holds the small IPv4 arithmetic the backend needs.
 */
import type { ConfigProblem, NetworkAttachSpec, PluginSetting, PodPort, VncListen } from '@podvisor/core';
import { formatIpv4, parseIpv4 } from '@podvisor/net-support';

export const NAT_BRIDGE_DEFAULTS = {
  vmIp: '192.168.254.2',
  vmGateway: '192.168.254.1',
  resolvConf: '/etc/resolv.conf',
} as const;

/** The settings of the `nat-bridge` provision, as its manifest declares them. */
export const NAT_BRIDGE_SETTINGS: readonly PluginSetting[] = [
  { name: 'vmIp', key: 'network.settings.vmIp', env: ['VM_IP'], type: 'string', default: NAT_BRIDGE_DEFAULTS.vmIp, doc: "the VM's address, in one /30 with its gateway" },
  { name: 'vmGateway', key: 'network.settings.vmGateway', env: ['VM_GW'], type: 'string', default: NAT_BRIDGE_DEFAULTS.vmGateway, doc: "the VM's gateway (the bridge's address), in the same /30" },
  {
    name: 'natExclude',
    key: 'network.settings.natExclude',
    env: ['PODVISOR_NAT_EXCLUDE'],
    type: 'string-list',
    default: [],
    doc: "more pod ports kept out of DNAT, as proto/port (`tcp/22,udp/53`); VNC (unless NO_VNC), the control port and the stacked backends' own ports (l2-segment's WireGuard) always are",
  },
  { name: 'resolvConf', key: 'network.settings.resolvConf', type: 'string', default: NAT_BRIDGE_DEFAULTS.resolvConf, doc: "the pod's resolv.conf, whose servers and search list the VM gets" },
  { name: 'podInterface', key: 'network.settings.podInterface', type: 'string', doc: 'the pod interface to NAT through (default: the one with the default route)' },
];

/** One pod port kept out of the DNAT to the VM; `backend` names the stacked backend that listens on it, if one does. */
export interface NatPortExclusion extends PodPort {
  backend?: string;
}

export interface NatBridgeConfig {
  vmIp: string;
  vmGateway: string;
  /** The /30 both live in, e.g. `192.168.254.0/30`. */
  subnet: string;
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
 * The TCP port kept out of the DNAT for podvisor's VNC: the spec's port when
 * VNC is on, none when it is off (`NO_VNC`), so that 5900 then reaches the VM.
 */
export function natVncPort(vnc: NetworkAttachSpec['vnc']): number | undefined {
  return vnc.enabled ? vnc.port : undefined;
}

/**
 * Where the NAT bridge has qemu serve VNC: on every address of the pod at the
 * port kept out of the DNAT, when VNC is on. In a dual-stack pod that is
 * `::`, which listens on both families (qemu clears IPV6_V6ONLY), so VNC
 * answers on the pod's IPv6 address too.
 */
export function natVncListen(vnc: NetworkAttachSpec['vnc'], dualStack = false): VncListen | undefined {
  const port = natVncPort(vnc);
  return port === undefined || port < 5900 ? undefined : { kind: 'tcp', host: dualStack ? '::' : '0.0.0.0', display: port - 5900 };
}

/** Checks the resolved settings across fields (a /30, the port list, paths, the interface name). */
export function resolveNatBridgeConfig(spec: Pick<NetworkAttachSpec, 'settings'>): ResolvedNatBridgeConfig {
  const problems: ConfigProblem[] = [];
  const vmIp = pick(spec, 'vmIp', NAT_BRIDGE_DEFAULTS.vmIp);
  const vmGateway = pick(spec, 'vmGateway', NAT_BRIDGE_DEFAULTS.vmGateway);
  const ip = parseIpv4(vmIp.value);
  const gw = parseIpv4(vmGateway.value);
  const usable = (value: number | undefined): value is number => value !== undefined && isUnicast(value);
  for (const [field, value] of [
    [vmIp, ip],
    [vmGateway, gw],
  ] as const) {
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

  const excludeSetting = spec.settings['natExclude'];
  const entries = Array.isArray(excludeSetting?.value) ? (excludeSetting.value as string[]) : [];
  const { exclusions: exclude, invalid } = parseNatExclude(entries);
  for (const bad of invalid) problems.push({ path: excludeSetting?.path ?? 'env PODVISOR_NAT_EXCLUDE', value: bad, expected: 'proto/port with proto tcp or udp and port 1-65535, e.g. tcp/22' });
  const resolvConf = pick(spec, 'resolvConf', NAT_BRIDGE_DEFAULTS.resolvConf);
  if (!resolvConf.value.startsWith('/')) problems.push({ path: resolvConf.path, value: resolvConf.value, expected: 'an absolute path to a resolv.conf file' });
  const podInterface = spec.settings['podInterface'];
  if (podInterface?.value !== undefined && (typeof podInterface.value !== 'string' || !IFNAME.test(podInterface.value))) {
    problems.push({ path: podInterface.path, value: podInterface.value, expected: 'a network interface name (1-15 characters, no "/", ":" or spaces)' });
  }

  if (problems.length > 0) return { config: undefined, problems };
  return {
    config: {
      vmIp: vmIp.value,
      vmGateway: vmGateway.value,
      subnet: `${formatIpv4((ip as number) & ~3)}/30`,
      exclude,
      resolvConf: resolvConf.value,
      podInterface: podInterface?.value as string | undefined,
    },
    problems,
  };
}

/** A string setting's value and path (the default when the spec does not hold it). */
function pick(spec: Pick<NetworkAttachSpec, 'settings'>, name: string, fallback: string): { value: string; path: string } {
  const s = spec.settings[name];
  const declared = NAT_BRIDGE_SETTINGS.find((d) => d.name === name);
  const path = s?.path ?? (declared?.env?.[0] === undefined ? `yaml ${declared?.key ?? name}` : `env ${declared.env[0]}`);
  return { value: typeof s?.value === 'string' ? s.value : fallback, path };
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

/** Not 0.0.0.0/8, loopback, multicast or reserved (224.0.0.0 and up). */
function isUnicast(value: number): boolean {
  const first = value >>> 24;
  return first !== 0 && first !== 127 && first < 224;
}
