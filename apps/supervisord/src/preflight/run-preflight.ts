/**
 * The preflight as `podvisor run` performs it, after the configuration is
 * valid and before anything is pulled or started: the checks of
 * `podvisor doctor` without the KVM probe (the supervisor probes the
 * accelerator first anyway, before any pull). A failing check ends the run
 * with exit code 3 (Prepare): the findings go to stderr as a JSON log line
 * and as readable lines, and into the event log as `PreflightFailed` when the
 * state dir is writable and this process holds the volume lock. Warnings are logged and recorded as `WarningRaised`.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { Logger, PodvisorError, errorMessage, type DomainEvent } from '@podvisor/core';
import { SqliteEventStore } from '@podvisor/core/sqlite';
import { ExitCode } from '../exit-codes.js';
import type { CommandIo, RunSetup } from '../commands/run-command.js';
import { formatFindings, type PreflightFinding } from './preflight-model.js';
import { runPreflight } from './preflight.js';

/**
 * Returns the exit code when the run must stop here, or null to go on.
 * `holdVolume` takes the VM volume's lock (true when this process holds it):
 * findings are recorded only then, never into another instance's log.
 */
export async function preflightForRun(setup: RunSetup, io: CommandIo, holdVolume: () => boolean): Promise<number | null> {
  const { config, app, network, networkSpec, extraNetworks } = setup;
  const log = app.container.get<Logger>(Logger).child({ name: 'preflight' });
  const report = await runPreflight({ config, container: app.container, network, networkSpec, extraNetworks, probeAccelerator: false });
  const failed = report.findings.filter((f) => f.status === 'fail');
  const warnings = report.findings.filter((f) => f.status === 'warn');
  for (const w of warnings) log.warn('preflight warning', { id: w.id, finding: w.finding, fix: w.fix });
  log.info('preflight checked', { durationMs: report.durationMs, checks: report.findings.length, warnings: warnings.length, failures: failed.length });
  // The event log lives in the state dir: it is written only when that volume passed its check.
  const stateWritable = report.findings.find((f) => f.id === 'volume.state')?.status !== 'fail';

  if (failed.length === 0) {
    if (warnings.length > 0 && stateWritable && holdVolume()) {
      record(config.stateDir, config.name, warnings.map((w) => ({ type: 'WarningRaised', data: { code: 'WARN_PREFLIGHT_CHECK', message: `preflight ${w.id}: ${w.finding}`, ...(w.fix === undefined ? {} : { hint: w.fix }) } })), log);
    }
    return null;
  }
  const findings = [...failed, ...warnings];
  const error = new PodvisorError('ERR_PREFLIGHT_FAILED', `the preflight found ${failed.length} missing prerequisite(s), before anything was pulled or started: ${failed.map((f) => f.finding).join('; ')}`, {
    hint: failed.map((f) => f.fix).join('; '),
    details: { findings },
  });
  io.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), level: 'error', logger: 'podvisor', msg: 'preflight failed', err: error.toJSON() })}\n`);
  io.stderr.write(`podvisor: preflight failed (podvisor doctor shows every check):\n${formatFindings(findings)}`);
  if (stateWritable && holdVolume()) record(config.stateDir, config.name, [{ type: 'PreflightFailed', data: { findings: findings.map(eventFinding) } }], log);
  return ExitCode.Prepare;
}

function eventFinding(f: PreflightFinding): { id: string; status: 'fail' | 'warn'; finding: string; fix: string } {
  return { id: f.id, status: f.status === 'fail' ? 'fail' : 'warn', finding: f.finding, fix: f.fix ?? '' };
}

/** Appends to the VM's event log; a failed write is logged, never thrown (PID 1 must not die of it). */
function record(stateDir: string, vm: string, events: DomainEvent[], log: Logger): void {
  try {
    mkdirSync(stateDir, { recursive: true });
    const store = SqliteEventStore.open({ path: path.join(stateDir, 'events.db') });
    try {
      store.append(vm, events);
    } finally {
      store.close();
    }
  } catch (err) {
    log.warn('preflight findings not recorded in the event log', { stateDir, err: errorMessage(err) });
  }
}
