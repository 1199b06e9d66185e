/**
 * The one qcow2 header reader: what a pet disk's reuse and a base's check at
 * every use need (virtual size, backing file and its format, an external data
 * file, the corrupt bit) straight from the header, instead of starting
 * `qemu-img info` (~15 ms on every pod start). Layout: qemu's
 * docs/interop/qcow2.txt, "Header" and "Header extensions". Returns null for
 * anything it does not fully understand, and the caller asks qemu-img then.
 */
import { open } from 'node:fs/promises';

export interface Qcow2Header {
  version: number;
  virtualSize: number;
  backingFilename: string | undefined;
  backingFormat: string | undefined;
  /**
   * An external data file (incompatible feature bit 2, and its name in the
   * "external data file name" extension): like a backing file, it makes qemu
   * read another host file. `''` when the bit is set but no name is given.
   */
  dataFile: string | undefined;
  /** Incompatible feature bit 1: qemu found the metadata inconsistent. */
  corrupt: boolean;
}

const MAGIC = 0x514649fb; // "QFI\xfb"
const EXT_END = 0;
const EXT_BACKING_FORMAT = 0xe2792aca;
const EXT_DATA_FILE = 0x44415441;
const INCOMPAT_CORRUPT = 2n;
const INCOMPAT_DATA_FILE = 4n;

/** True when `buf` starts with the qcow2 magic (whatever else it holds). */
export function hasQcow2Magic(buf: Buffer): boolean {
  return buf.length >= 4 && buf.readUInt32BE(0) === MAGIC;
}

/** Parses a header from the first bytes of a file (the first cluster is enough). */
export function parseQcow2Header(buf: Buffer): Qcow2Header | null {
  if (buf.length < 72 || buf.readUInt32BE(0) !== MAGIC) return null;
  const version = buf.readUInt32BE(4);
  if (version !== 2 && version !== 3) return null;
  const backingOffset = Number(buf.readBigUInt64BE(8));
  const backingSize = buf.readUInt32BE(16);
  const virtualSize = Number(buf.readBigUInt64BE(24));
  if (version === 3 && buf.length < 104) return null;
  const headerLength = version === 3 ? buf.readUInt32BE(100) : 72;
  const incompatible = version === 3 ? buf.readBigUInt64BE(72) : 0n;
  if (headerLength > buf.length) return null;
  let backingFilename: string | undefined;
  if (backingOffset !== 0) {
    if (backingSize === 0 || backingSize > 1023 || backingOffset + backingSize > buf.length) return null;
    backingFilename = buf.toString('utf8', backingOffset, backingOffset + backingSize);
  }
  let backingFormat: string | undefined;
  let dataFile: string | undefined = (incompatible & INCOMPAT_DATA_FILE) !== 0n ? '' : undefined;
  for (let off = headerLength; ; ) {
    if (off + 8 > buf.length) return null;
    const type = buf.readUInt32BE(off);
    const len = buf.readUInt32BE(off + 4);
    if (type === EXT_END) break;
    if (off + 8 + len > buf.length) return null;
    if (type === EXT_BACKING_FORMAT) backingFormat = buf.toString('utf8', off + 8, off + 8 + len);
    if (type === EXT_DATA_FILE) dataFile = buf.toString('utf8', off + 8, off + 8 + len);
    off += 8 + Math.ceil(len / 8) * 8;
  }
  return { version, virtualSize, backingFilename, backingFormat, dataFile, corrupt: (incompatible & INCOMPAT_CORRUPT) !== 0n };
}

/** Reads and parses `file`'s header; null when it is not a qcow2 this parser understands. */
export async function readQcow2Header(file: string): Promise<Qcow2Header | null> {
  const fh = await open(file, 'r');
  try {
    const buf = Buffer.alloc(64 * 1024);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    return parseQcow2Header(buf.subarray(0, bytesRead));
  } finally {
    await fh.close();
  }
}
