/**
 * The link work of the NAT bridge as `ip -batch -` scripts, one process per
 * step instead of one per command (bench/network-setup: the cost of the NAT
 * bridge's set-up is the cost of starting processes). The scripts run with
 * `-force`, so every line is tried and every failure is reported as
 * `Command failed -:<line>`; `batchFailures` reads those reports back so the
 * caller can tell a missing link on a delete (done already) from a real
 * failure, and name the step that failed. Pure.
 */

/** One line of an `ip -batch` script, with what it is for. */
export interface IpBatchLine {
  /** The line, without `ip`: `link del dev pvtap0`. */
  command: string;
  /** True when "Cannot find device" on this line means there was nothing to do (a delete). */
  absentIsDone?: boolean;
  /** The coded error a failure of this line becomes. */
  code: string;
  /** What the line is part of, for the error message: `create bridge pvbr0 with 192.168.254.1/30`. */
  what: string;
}

/** The script to pipe into `ip -force -batch -`. */
export function ipBatchScript(lines: readonly IpBatchLine[]): string {
  return `${lines.map((l) => l.command).join('\n')}\n`;
}

export interface IpBatchFailure {
  line: IpBatchLine;
  /** ip's own message for that line, e.g. `Cannot find device "pvtap0"`. */
  message: string;
}

/**
 * The lines that really failed, in order, read from ip's stderr (each failed
 * line prints its message, then `Command failed -:<n>`). Deletes of links
 * that were already gone are not failures. When ip failed (exit status not 0)
 * but reported no line, the whole batch is one failure of its first line.
 */
export function batchFailures(lines: readonly IpBatchLine[], stderr: string, exitCode: number): IpBatchFailure[] {
  const failures: IpBatchFailure[] = [];
  let message: string[] = [];
  let reported = false;
  for (const raw of stderr.split('\n')) {
    const m = /^Command failed -:(\d+)$/.exec(raw.trim());
    if (m === null) {
      if (raw.trim() !== '') message.push(raw.trim());
      continue;
    }
    reported = true;
    const line = lines[Number(m[1]) - 1];
    const text = message.join(' ');
    message = [];
    if (line === undefined) continue;
    if (line.absentIsDone === true && /Cannot find device/.test(text)) continue;
    failures.push({ line, message: text || '(no message)' });
  }
  const first = lines[0];
  if (exitCode !== 0 && !reported && first !== undefined) failures.push({ line: first, message: stderr.trim() || `ip exited with ${exitCode}` });
  return failures;
}
