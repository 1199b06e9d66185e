/**
 * Sysctls a network backend turns on in the pod's namespace (forwarding) and
 * turns back off at detach: the value from before is kept in a state file,
 * so that a detach after a crash (kill -9) still restores it. One `sysctl`
 * run shows each value before setting it (`sysctl K K=1`), so a value that
 * was on already needs nothing restored, and a write refused by a read-only
 * /proc/sys (an unprivileged container) is harmless when the pod's own
 * sysctls turned it on. Every command goes through the injected runner.
 */
import { readFile, rm, writeFile } from 'node:fs/promises';
import { errorMessage, type ProcessRunner, type RunResult } from '@podvisor/core';

/** A sysctl to turn on (`1`), and the state file that keeps its value from before. */
export interface KeptSysctl {
  key: string;
  file: string;
}

/** `on`: it was 1 already (nothing to restore); `set`: now 1, its old value kept; `off`: it stays off. */
export type SysctlOutcome = 'on' | 'set' | 'off';

/**
 * Turns on each of `kept` (and sets `extra`, `KEY=VALUE` entries whose outcome
 * the caller reads from `result` with `sysctlValues`) in one `sysctl` run that
 * does not throw on a refused write. Keeps the old value of each one it turned
 * on in its file. Returns each key's outcome and the run's result.
 */
export async function enableSysctlsKeepingPrevious(
  runner: ProcessRunner,
  kept: readonly KeptSysctl[],
  options: { extra?: readonly string[]; signal?: AbortSignal } = {},
): Promise<{ outcomes: Map<string, SysctlOutcome>; result: RunResult }> {
  const result = await runner.run('sysctl', [...kept.flatMap(({ key }) => [key, `${key}=1`]), ...(options.extra ?? [])], { signal: options.signal, check: false });
  const outcomes = new Map<string, SysctlOutcome>();
  for (const { key, file } of kept) {
    const [previous, now] = sysctlValues(result.stdout, key);
    if (previous === '1') outcomes.set(key, 'on');
    else if (previous !== undefined && /^[01]$/.test(previous) && now === '1') {
      await writeFile(file, `${previous}\n`);
      outcomes.set(key, 'set');
    } else outcomes.set(key, 'off');
  }
  return { outcomes, result };
}

/**
 * Puts back the values kept by `enableSysctlsKeepingPrevious`, in one
 * `sysctl -w` run, and removes their files (a file without a 0 or 1 in it is
 * removed unread). Returns the keys restored; throws, keeping the files for a
 * retry, when sysctl fails. Idempotent.
 */
export async function restoreKeptSysctls(runner: ProcessRunner, kept: readonly KeptSysctl[]): Promise<string[]> {
  const restore: (KeptSysctl & { previous: string })[] = [];
  for (const { key, file } of kept) {
    const previous = await readFile(file, 'utf8').then(
      (text) => text.trim(),
      () => undefined,
    );
    if (previous !== undefined && /^[01]$/.test(previous)) restore.push({ key, file, previous });
    else await rm(file, { force: true });
  }
  if (restore.length === 0) return [];
  const keys = restore.map((r) => r.key);
  try {
    await runner.run('sysctl', ['-w', ...restore.map((r) => `${r.key}=${r.previous}`)]);
  } catch (err) {
    throw new Error(`cannot restore ${keys.join(' and ')}: ${errorMessage(err)}`, { cause: err });
  }
  for (const r of restore) await rm(r.file, { force: true });
  return keys;
}

/** The values `sysctl` printed for `key`, in order (`key = value` lines). */
export function sysctlValues(stdout: string, key: string): string[] {
  return stdout.split('\n').flatMap((line) => {
    const [k, v] = line.split('=').map((x) => x.trim());
    return k === key && v !== undefined ? [v] : [];
  });
}
