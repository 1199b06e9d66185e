/**
 * The free space of the images volume, and the margin a download leaves on
 * it: a pull never takes the last of a volume that other pods (and their
 * pulls, and the cache's own small writes) share.
 */
import { statfs } from 'node:fs/promises';

export interface FreeSpace {
  available: number;
  margin: number;
  /** What a download may still write: the free space less the margin. */
  budget: number;
}

/** The margin: 2% of the volume, at least 1 MiB and at most 256 MiB. */
export function freeSpaceMargin(volumeBytes: number): number {
  return Math.max(1024 * 1024, Math.min(256 * 1024 * 1024, Math.floor(volumeBytes * 0.02)));
}

/** The free space of the filesystem that holds `dir` (statfs, as an unprivileged writer sees it). */
export async function freeSpace(dir: string): Promise<FreeSpace> {
  const fs = await statfs(dir);
  const available = fs.bavail * fs.bsize;
  const margin = freeSpaceMargin(fs.blocks * fs.bsize);
  return { available, margin, budget: available - margin };
}
