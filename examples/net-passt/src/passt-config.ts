/**
 * The passt backend's settings and the passt command line they make. The
 * settings, declared in the manifest, are the TCP and UDP ports of the pod
 * that passt forwards to the VM (`PASST_TCP_PORTS`, `PASST_UDP_PORTS`, or the
 * YAML keys `network.settings.tcpPorts`, `udpPorts`): `all` (the default),
 * `none`, or a list such as `22,80,8000-8100`. The control port and qemu's VNC
 * port stay with the pod: `all` leaves them out, and a list that names one is
 * refused. Pure: every problem is returned at once.
 */
import type { ConfigProblem, NetworkAttachSpec, PluginSetting } from '@podvisor/core';

/** The settings of the `passt` provision, as its manifest declares them (podvisor resolves and type-checks them). */
export const PASST_SETTINGS: readonly PluginSetting[] = [
  {
    name: 'tcpPorts',
    key: 'network.settings.tcpPorts',
    env: ['PASST_TCP_PORTS'],
    type: 'string',
    default: 'all',
    doc: 'TCP ports of the pod that passt forwards to the VM: `all` (but the control port and, unless NO_VNC, VNC), `none`, or a list such as `22,80,8000-8100`',
  },
  { name: 'udpPorts', key: 'network.settings.udpPorts', env: ['PASST_UDP_PORTS'], type: 'string', default: 'all', doc: 'UDP ports of the pod that passt forwards to the VM: `all`, `none`, or a list' },
];

/** Ports to forward: every port but the pod's own, none, or ranges (inclusive). */
export type PasstPorts = { kind: 'all' } | { kind: 'none' } | { kind: 'list'; ranges: Array<[number, number]> };

export interface PasstConfig {
  tcp: PasstPorts;
  udp: PasstPorts;
  /** TCP ports that stay with the pod: the control endpoint and, when qemu serves it, VNC. */
  reservedTcp: number[];
}

/** Parses `all`, `none` or `22,80,8000-8100`; `undefined` for anything else. */
export function parsePasstPorts(text: string): PasstPorts | undefined {
  const t = text.trim().toLowerCase();
  if (t === 'all') return { kind: 'all' };
  if (t === 'none') return { kind: 'none' };
  const ranges: Array<[number, number]> = [];
  for (const part of t.split(',')) {
    const m = /^([0-9]{1,5})(?:-([0-9]{1,5}))?$/.exec(part.trim());
    if (m === null) return undefined;
    const from = Number(m[1]);
    const to = m[2] === undefined ? from : Number(m[2]);
    if (from < 1 || to > 65535 || to < from) return undefined;
    ranges.push([from, to]);
  }
  return { kind: 'list', ranges };
}

/** Checks the resolved settings: port lists, and no forwarded port that stays with the pod. */
export function resolvePasstConfig(spec: Pick<NetworkAttachSpec, 'settings' | 'vnc' | 'controlPort'>): { config: PasstConfig | undefined; problems: ConfigProblem[] } {
  const problems: ConfigProblem[] = [];
  const reservedTcp = [spec.controlPort, ...(spec.vnc.enabled ? [spec.vnc.port] : [])];
  const ports = (name: string, fallbackPath: string, reserved: number[]): PasstPorts | undefined => {
    const setting = spec.settings[name];
    const value = setting?.value ?? 'all';
    const path = setting?.path ?? fallbackPath;
    const parsed = typeof value === 'string' ? parsePasstPorts(value) : undefined;
    if (parsed === undefined) {
      problems.push({ path, value, expected: 'all, none, or a list of ports and ranges such as 22,80,8000-8100' });
      return undefined;
    }
    const clash = parsed.kind === 'list' ? reserved.filter((p) => parsed.ranges.some(([a, b]) => p >= a && p <= b)) : [];
    if (clash.length > 0) {
      problems.push({ path, value, expected: `ports other than ${clash.join(', ')}, which stay with the pod (the control endpoint, and qemu's VNC unless NO_VNC is set)` });
      return undefined;
    }
    return parsed;
  };
  const tcp = ports('tcpPorts', 'env PASST_TCP_PORTS', reservedTcp);
  const udp = ports('udpPorts', 'env PASST_UDP_PORTS', []);
  if (problems.length > 0 || tcp === undefined || udp === undefined) return { config: undefined, problems };
  return { config: { tcp, udp, reservedTcp }, problems };
}

/** passt's port spec (`-t`/`-u`): `none`, a list, or every port but the reserved ones (`~5800,~5900`). */
export function passtPortSpec(ports: PasstPorts, reserved: readonly number[]): string {
  switch (ports.kind) {
    case 'none':
      return 'none';
    case 'all':
      return reserved.length === 0 ? 'all' : reserved.map((p) => `~${p}`).join(',');
    case 'list':
      return ports.ranges.map(([a, b]) => (a === b ? `${a}` : `${a}-${b}`)).join(',');
  }
}

/** How many ports passt binds for one protocol (each is a socket, so a file descriptor). */
export function passtPortCount(ports: PasstPorts, reserved: readonly number[]): number {
  switch (ports.kind) {
    case 'none':
      return 0;
    case 'all':
      return 65535 - reserved.length;
    case 'list':
      return ports.ranges.reduce((n, [a, b]) => n + b - a + 1, 0);
  }
}

/** The lowest port forwarded, for the NET_BIND_SERVICE question; `undefined` when none. */
export function lowestPort(ports: PasstPorts): number | undefined {
  if (ports.kind === 'none') return undefined;
  if (ports.kind === 'all') return 1;
  return Math.min(...ports.ranges.map(([a]) => a));
}

export interface PasstArgsParams {
  socket: string;
  config: PasstConfig;
}

/**
 * The argv after `passt`: in the foreground (so the runner owns it), logging
 * to stderr, its socket in the state dir (`--socket=` as one argument: it
 * identifies this run's passt in /proc/PID/cmdline), IPv4 only (the VM
 * takes the pod's IPv4 address; podvisor's other designs are IPv4 too), and
 * the forwarded ports. passt copies the pod's address, routes and name servers
 * to the guest over DHCP by itself.
 */
export function buildPasstArgs(p: PasstArgsParams): string[] {
  return [
    '--foreground',
    '--stderr',
    `--socket=${p.socket}`,
    '--ipv4-only',
    '--tcp-ports', passtPortSpec(p.config.tcp, p.config.reservedTcp),
    '--udp-ports', passtPortSpec(p.config.udp, []),
  ];
}
