/**
 * Reads the process table from `/proc/[0-9]*\/stat`: the I/O half of
 * proc-stat.ts. Synchronous on purpose: the orphan reaper's sweep must finish
 * within the one event-loop phase it started in (see select-orphans.ts).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { parseProcStat, type ProcStat } from './proc-stat.js';

/**
 * Every process visible in `/proc` (of this pid namespace). Processes that
 * vanish between the listing and the read are skipped. Throws only if `/proc`
 * itself cannot be listed. Changes nothing.
 */
export function readProcStats(): ProcStat[] {
  const out: ProcStat[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(name)) continue;
    let text: string;
    try {
      text = readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue;
    }
    const stat = parseProcStat(text);
    if (stat !== undefined) out.push(stat);
  }
  return out;
}
