/**
 * IPv4 addresses as unsigned 32-bit numbers: the one parser the network
 * plugins share. A dotted quad is strict: four decimal octets of 0–255 with no
 * leading zeros (`010.0.0.1` is refused, since tools disagree on whether it is
 * octal) and no surrounding space. Pure.
 */

/** A strict dotted quad as an unsigned 32-bit number, or `undefined`. */
export function parseIpv4(text: string): number | undefined {
  const m = /^(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})$/.exec(text);
  if (m === null) return undefined;
  const octets = m.slice(1).map(Number);
  if (octets.some((o) => o > 255)) return undefined;
  return (((octets[0] as number) << 24) | ((octets[1] as number) << 16) | ((octets[2] as number) << 8) | (octets[3] as number)) >>> 0;
}

/** The dotted quad of an unsigned 32-bit number. */
export function formatIpv4(value: number): string {
  const v = value >>> 0;
  return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
}

/** The mask of a prefix length 0–32, as a number (`24` → `0xffffff00`). */
export function ipv4PrefixMask(length: number): number {
  return length === 0 ? 0 : (0xffffffff << (32 - length)) >>> 0;
}

/** The dotted netmask of a prefix length (`24` → `255.255.255.0`). */
export function ipv4Netmask(length: number): string {
  return formatIpv4(ipv4PrefixMask(length));
}

/** Parses `a.b.c.d/len` (or a bare address, as /32) into a network and prefix length. */
export function parseIpv4Cidr(text: string): { network: number; prefixLength: number } | undefined {
  const [addr, len, ...rest] = text.split('/');
  if (addr === undefined || rest.length > 0) return undefined;
  const ip = parseIpv4(addr);
  const prefixLength = len === undefined ? 32 : /^[0-9]{1,2}$/.test(len) ? Number(len) : NaN;
  if (ip === undefined || !(prefixLength >= 0 && prefixLength <= 32)) return undefined;
  return { network: (ip & ipv4PrefixMask(prefixLength)) >>> 0, prefixLength };
}

/** True when two IPv4 prefixes share at least one address. Unparsable input never overlaps. */
export function ipv4CidrsOverlap(a: string, b: string): boolean {
  const x = parseIpv4Cidr(a);
  const y = parseIpv4Cidr(b);
  if (x === undefined || y === undefined) return false;
  const mask = ipv4PrefixMask(Math.min(x.prefixLength, y.prefixLength));
  return ((x.network & mask) >>> 0) === ((y.network & mask) >>> 0);
}
