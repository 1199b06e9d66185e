/**
 * Linux capabilities (capabilities(7)), by name: the one table of names and
 * bits, decoding the hex masks of /proc/<pid>/status (`CapEff`, `CapBnd`)
 * into the names Kubernetes and Docker use in
 * `securityContext.capabilities.add` (without the `CAP_` prefix), and
 * podvisor's own effective set. In a container that drops them, what a child
 * may be asked to do depends on them: dnsmasq can drop to `nobody` only with
 * CAP_SETUID and CAP_SETGID, and podvisor can then still signal it only with
 * CAP_KILL; `podvisor doctor` names what is missing.
 */
import { readFileSync } from 'node:fs';

/** Capability numbers, from linux/capability.h (bit n of the mask is capability n). */
export const CAPABILITY_NAMES: readonly string[] = [
  'CHOWN', 'DAC_OVERRIDE', 'DAC_READ_SEARCH', 'FOWNER', 'FSETID', 'KILL', 'SETGID', 'SETUID',
  'SETPCAP', 'LINUX_IMMUTABLE', 'NET_BIND_SERVICE', 'NET_BROADCAST', 'NET_ADMIN', 'NET_RAW', 'IPC_LOCK', 'IPC_OWNER',
  'SYS_MODULE', 'SYS_RAWIO', 'SYS_CHROOT', 'SYS_PTRACE', 'SYS_PACCT', 'SYS_ADMIN', 'SYS_BOOT', 'SYS_NICE',
  'SYS_RESOURCE', 'SYS_TIME', 'SYS_TTY_CONFIG', 'MKNOD', 'LEASE', 'AUDIT_WRITE', 'AUDIT_CONTROL', 'SETFCAP',
  'MAC_OVERRIDE', 'MAC_ADMIN', 'SYSLOG', 'WAKE_ALARM', 'BLOCK_SUSPEND', 'AUDIT_READ', 'PERFMON', 'BPF',
  'CHECKPOINT_RESTORE',
];

/** The capability sets of one process, by name. */
export interface ProcessCapabilities {
  effective: ReadonlySet<string>;
  bounding: ReadonlySet<string>;
}

/**
 * Decodes one hex mask (`000001ffffffffff`) into capability names, in bit
 * order. A bit this table does not know yet becomes `CAP_<n>`. Throws a
 * `TypeError` naming the value when it is not hex.
 */
export function decodeCapabilities(hex: string): string[] {
  const text = hex.trim();
  if (!/^[0-9a-fA-F]{1,16}$/.test(text)) throw new TypeError(`not a capability mask: ${JSON.stringify(hex)}`);
  const mask = BigInt(`0x${text}`);
  const names: string[] = [];
  for (let bit = 0; bit < 64; bit++) {
    if ((mask >> BigInt(bit)) & 1n) names.push(CAPABILITY_NAMES[bit] ?? `CAP_${bit}`);
  }
  return names;
}

/** Normalises a capability name as operators write it: `cap_net_admin`, `CAP_NET_ADMIN` and `NET_ADMIN` are one. */
export function capabilityName(name: string): string {
  return name.trim().toUpperCase().replace(/^CAP_/, '');
}

/**
 * Reads `CapEff` and `CapBnd` from the text of /proc/<pid>/status. Throws a
 * `TypeError` when either line is missing or malformed.
 */
export function parseStatusCapabilities(status: string): ProcessCapabilities {
  const field = (name: string): Set<string> => {
    const m = new RegExp(`^${name}:\\s*(\\S+)\\s*$`, 'm').exec(status);
    if (m === null) throw new TypeError(`no ${name} line in the process status`);
    return new Set(decodeCapabilities(m[1] as string));
  };
  return { effective: field('CapEff'), bounding: field('CapBnd') };
}

/** The bit of a capability, in any spelling `capabilityName` accepts; -1 when unknown. */
export function capabilityBit(name: string): number {
  return CAPABILITY_NAMES.indexOf(capabilityName(name));
}

/** The `CapEff` mask of a /proc/PID/status text; undefined when it has none. Pure. */
export function parseEffectiveCapabilities(statusText: string): bigint | undefined {
  const m = /^CapEff:\s*([0-9a-fA-F]+)\s*$/m.exec(statusText);
  return m === null ? undefined : BigInt(`0x${m[1]}`);
}

/** True when `mask` holds every capability in `names` (any spelling; an unknown name is never held). Pure. */
export function hasCapabilities(mask: bigint, names: readonly string[]): boolean {
  return names.every((n) => {
    const bit = capabilityBit(n);
    return bit >= 0 && ((mask >> BigInt(bit)) & 1n) === 1n;
  });
}

/** This process's effective capabilities; undefined when /proc cannot tell (not Linux). */
export function ownEffectiveCapabilities(): bigint | undefined {
  try {
    return parseEffectiveCapabilities(readFileSync('/proc/self/status', 'utf8'));
  } catch {
    return undefined;
  }
}
