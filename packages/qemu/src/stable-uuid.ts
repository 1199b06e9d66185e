/**
 * The VM's SMBIOS UUID, derived from its name so that it stays the same
 * across restarts and pod restarts (cloud-init and licensing read it).
 */
import { createHash } from 'node:crypto';

/** A name-derived RFC 4122 version-5-style UUID. */
export function stableUuid(name: string): string {
  const h = createHash('sha1').update(`podvisor:${name}`).digest();
  h[6] = ((h[6] ?? 0) & 0x0f) | 0x50;
  h[8] = ((h[8] ?? 0) & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString('hex');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20, 32)}`;
}
