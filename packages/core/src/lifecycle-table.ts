/**
 * The lifecycle as a table: one representative state per status (two for
 * Stopping) × every signal, operator action, qemu exit and deadline, each cell
 * saying what the decider does: the events that follow, `refused`, or `—`
 * (a no-op), and how the run ends when it ends. docs/lifecycle.md carries this
 * table, and unit tests check both the cells and the docs against the code.
 */
import type { DomainEvent, VmAction } from './events.js';
import { VM_ACTIONS } from './events.js';
import { isPodvisorError } from './errors.js';
import {
  lifecycleDecider,
  splitStopBudget,
  type LifecycleCommand,
  type LifecycleDecider,
  type LifecycleDecision,
  type LifecycleSettings,
  type LifecycleState,
  type TimedEvent,
} from './lifecycle-decider.js';
import { DEFAULT_RESTART_SETTINGS } from './restart-policy.js';

/** The settings the table is made with: the defaults (30 s budget, on-failure). */
export const TABLE_SETTINGS: LifecycleSettings = {
  restart: DEFAULT_RESTART_SETTINGS,
  stop: splitStopBudget(30),
  powerdownIntervalMs: 1000,
  qmpTimeoutMs: 2000,
};

/** The time the table's histories start at (epoch ms); each event is 10 ms after the one before. */
export const T0 = Date.parse('2026-01-01T00:00:00.000Z');

const started: DomainEvent = { type: 'SupervisorStarted', data: { version: '0', pid: 1, hostname: 'vm', accel: 'tcg', restartPolicy: 'on-failure', network: 'none' } };
const probed: DomainEvent = { type: 'AcceleratorProbed', data: { requested: 'tcg', selected: 'tcg', kvmWorks: false, probeMs: 1, detail: '' } };
const starting: DomainEvent = { type: 'VmStarting', data: { attempt: 1, accel: 'tcg' } };
const vmStarted: DomainEvent = { type: 'VmStarted', data: { attempt: 1, pid: 4242, qmpVersion: '7.2.0', startMs: 1, argv: [] } };
const requested = (action: VmAction, by = 'unix'): DomainEvent => ({ type: 'VmActionRequested', data: { action, by } });
const press: DomainEvent = { type: 'VmPowerdownRequested', data: { by: 'unix', attempt: 1 } };
const crashed: DomainEvent = { type: 'VmExited', data: { attempt: 1, exit: { code: null, signal: 'SIGKILL', reason: 'crashed' }, uptimeMs: 10 } };

/** Each row: a name and the history that leads to it. */
export const TABLE_ROWS: ReadonlyArray<{ name: string; history: DomainEvent[] }> = [
  { name: 'Pending', history: [started] },
  { name: 'Preparing', history: [started, probed] },
  { name: 'Starting', history: [started, probed, starting] },
  { name: 'Running', history: [started, probed, starting, vmStarted] },
  { name: 'Paused', history: [started, probed, starting, vmStarted, requested('pause'), { type: 'VmPaused', data: { by: 'unix', reason: 'qmp STOP' } }] },
  { name: 'Stopping (SIGTERM, ACPI)', history: [started, probed, starting, vmStarted, requested('stop', 'signal:SIGTERM'), press] },
  { name: 'Stopping (SIGTERM, quit sent)', history: [started, probed, starting, vmStarted, requested('stop', 'signal:SIGTERM'), press, { type: 'VmQuitRequested', data: { by: 'signal:SIGTERM' } }] },
  { name: 'Stopping (stop action, ACPI)', history: [started, probed, starting, vmStarted, requested('stop'), press] },
  { name: 'Stopping (restart)', history: [started, probed, starting, vmStarted, requested('restart'), press] },
  { name: 'Stopping (no qemu yet)', history: [started, probed, requested('stop')] },
  { name: 'Crashed', history: [started, probed, starting, vmStarted, crashed] },
  { name: 'BackingOff', history: [started, probed, starting, vmStarted, crashed, { type: 'VmRestartScheduled', data: { attempt: 2, delayMs: 1000, reason: 'qemu was killed by SIGKILL' } }] },
  { name: 'Stopped', history: [started, probed, starting, vmStarted, requested('stop'), press, { type: 'VmExited', data: { attempt: 1, exit: { code: 0, signal: null, reason: 'host-shutdown' }, uptimeMs: 10 } }, { type: 'VmStopped', data: { reason: 'stopped by unix' } }] },
  { name: 'Failed', history: [started, probed, { type: 'VmFailed', data: { code: 'ERR_IMAGE_HTTP_STATUS', message: 'HTTP 404' } }] },
];

/** Each column: a name and the commands it sends (a second SIGTERM sends two; the cell shows the last one's decision). */
export const TABLE_COLUMNS: ReadonlyArray<{ name: string; commands: (now: number) => LifecycleCommand[] }> = [
  { name: 'SIGTERM', commands: (now) => [{ type: 'SignalReceived', now, signal: 'SIGTERM' }] },
  { name: 'second SIGTERM', commands: (now) => [{ type: 'SignalReceived', now, signal: 'SIGTERM' }, { type: 'SignalReceived', now: now + 1, signal: 'SIGTERM' }] },
  { name: 'SIGINT', commands: (now) => [{ type: 'SignalReceived', now, signal: 'SIGINT' }] },
  { name: 'SIGQUIT', commands: (now) => [{ type: 'SignalReceived', now, signal: 'SIGQUIT' }] },
  { name: 'SIGHUP', commands: (now) => [{ type: 'SignalReceived', now, signal: 'SIGHUP' }] },
  ...VM_ACTIONS.map((action) => ({ name: action, commands: (now: number): LifecycleCommand[] => [{ type: 'ActionRequested', now, action, by: 'unix' }] })),
  { name: 'qemu exits 0', commands: (now) => [{ type: 'QemuExited', now, code: 0, signal: null, stderrTail: '' }] },
  { name: 'qemu crashes', commands: (now) => [{ type: 'QemuExited', now, code: null, signal: 'SIGSEGV', stderrTail: '' }] },
  { name: 'QMP call times out', commands: (now) => [{ type: 'QmpCallFailed', now, command: 'system_powerdown', timedOut: true, message: 'timeout' }] },
  // QMP silence past the deadline: the stop timer fires after the whole budget (a stale timer elsewhere).
  { name: 'stop deadline passed', commands: (now) => [{ type: 'DeadlineReached', now: now + TABLE_SETTINGS.stop.totalMs, timer: 'stop' }] },
];

/** Folds a history, one event every 10 ms from T0. */
export function stateAfter(decider: LifecycleDecider, history: readonly DomainEvent[]): { state: LifecycleState; now: number } {
  let state = decider.initialState();
  history.forEach((e, i) => {
    state = decider.evolve(state, { ...e, at: new Date(T0 + i * 10).toISOString() } as TimedEvent);
  });
  return { state, now: T0 + history.length * 10 };
}

/** Runs commands one after the other (evolving in between); returns the last decision, or the refusal. */
export function runCommands(decider: LifecycleDecider, state: LifecycleState, commands: readonly LifecycleCommand[]): LifecycleDecision | 'refused' {
  let s = state;
  let last: LifecycleDecision = { events: [], effects: [] };
  for (const c of commands) {
    try {
      last = decider.decide(c, s);
    } catch (err) {
      if (isPodvisorError(err) && err.code === 'ERR_VM_ACTION_REFUSED') return 'refused';
      throw err;
    }
    for (const e of last.events) s = decider.evolve(s, { ...e, at: new Date(c.now).toISOString() } as TimedEvent);
  }
  return last;
}

/** One cell: the events, then `⇒ exit <outcome>` when the run ends. */
export function renderCell(d: LifecycleDecision | 'refused'): string {
  if (d === 'refused') return 'refused';
  const finish = d.effects.find((e) => e.type === 'Finish');
  const parts = [d.events.length === 0 ? '—' : d.events.map((e) => e.type).join(', ')];
  if (finish?.type === 'Finish') parts.push(`⇒ exit: ${finish.outcome.kind}`);
  return parts.join(' ');
}

/** The whole table as rows of cells, by row and column name. */
export function lifecycleTable(settings: LifecycleSettings = TABLE_SETTINGS): Array<{ row: string; cells: Record<string, string> }> {
  const decider = lifecycleDecider(settings);
  return TABLE_ROWS.map(({ name, history }) => {
    const { state, now } = stateAfter(decider, history);
    const cells: Record<string, string> = {};
    for (const col of TABLE_COLUMNS) cells[col.name] = renderCell(runCommands(decider, state, col.commands(now)));
    return { row: name, cells };
  });
}

/** The table as Markdown, states as rows (docs/lifecycle.md). */
export function renderLifecycleTable(settings: LifecycleSettings = TABLE_SETTINGS): string {
  const table = lifecycleTable(settings);
  const header = `| state | ${TABLE_COLUMNS.map((c) => c.name).join(' | ')} |`;
  const rule = `|---|${TABLE_COLUMNS.map(() => '---').join('|')}|`;
  const rows = table.map((r) => `| ${r.row} | ${TABLE_COLUMNS.map((c) => r.cells[c.name]).join(' | ')} |`);
  return [header, rule, ...rows].join('\n');
}
