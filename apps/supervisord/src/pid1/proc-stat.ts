/**
 * Parsing of `/proc/[pid]/stat` (proc(5)), the one line the kernel keeps per
 * process. The orphan reaper needs three fields from it: the state (`Z` for a
 * zombie), the parent pid, and the command name for its logs. The name (field
 * 2) is in parentheses and may itself contain spaces and `)`, so the fields
 * after it are read from the LAST `)`. Pure: no I/O here.
 */

/** The fields of one `/proc/[pid]/stat` line that podvisor uses. */
export interface ProcStat {
  readonly pid: number;
  /** The command name (at most 15 bytes, as the kernel truncates it). */
  readonly comm: string;
  /** One letter: R, S, D, Z (zombie), T, t, X, I, ... */
  readonly state: string;
  readonly ppid: number;
}

/** Parses one stat line; returns `undefined` for anything malformed. Never throws. */
export function parseProcStat(text: string): ProcStat | undefined {
  const open = text.indexOf(' (');
  const close = text.lastIndexOf(')');
  if (open <= 0 || close < open) return undefined;
  const pid = Number(text.slice(0, open));
  const [state, ppidText] = text.slice(close + 1).trimStart().split(' ', 2);
  const ppid = Number(ppidText);
  if (!isPid(pid) || state === undefined || !/^[A-Za-z]$/.test(state) || !Number.isInteger(ppid) || ppid < 0) return undefined;
  return { pid, comm: text.slice(open + 2, close), state, ppid };
}

function isPid(n: number): boolean {
  return Number.isInteger(n) && n > 0;
}
