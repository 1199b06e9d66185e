/**
 * podvisor's own Linux capabilities (capabilities(7)), read from the
 * `CapEff` line of /proc/self/status. In a container that drops them, what a
 * child may be asked to do depends on them: dnsmasq can drop to `nobody` only
 * with CAP_SETUID and CAP_SETGID, and podvisor can then still signal it only
 * with CAP_KILL.
 */
import { readFileSync } from 'node:fs';

/** The capability numbers used here (linux/capability.h). */
export const CAPABILITY_BITS = { CAP_KILL: 5, CAP_SETGID: 6, CAP_SETUID: 7, CAP_NET_BIND_SERVICE: 10, CAP_NET_ADMIN: 12, CAP_NET_RAW: 13 } as const;
export type CapabilityName = keyof typeof CAPABILITY_BITS;

/** The `CapEff` mask of a /proc/PID/status text; undefined when it has none. Pure. */
export function parseEffectiveCapabilities(statusText: string): bigint | undefined {
  const m = /^CapEff:\s*([0-9a-fA-F]+)\s*$/m.exec(statusText);
  return m === null ? undefined : BigInt(`0x${m[1]}`);
}

/** True when `mask` holds every capability in `names`. Pure. */
export function hasCapabilities(mask: bigint, names: readonly CapabilityName[]): boolean {
  return names.every((n) => (mask >> BigInt(CAPABILITY_BITS[n])) & 1n);
}

/** This process's effective capabilities; undefined when /proc cannot tell (not Linux). */
export function ownEffectiveCapabilities(): bigint | undefined {
  try {
    return parseEffectiveCapabilities(readFileSync('/proc/self/status', 'utf8'));
  } catch {
    return undefined;
  }
}
