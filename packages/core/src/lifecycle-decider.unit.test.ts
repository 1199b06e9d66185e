import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { DomainEvent } from './events.js';
import {
  lifecycleDecider,
  splitStopBudget,
  type LifecycleCommand,
  type LifecycleDecision,
  type LifecycleEffect,
  type LifecycleState,
  type TimedEvent,
} from './lifecycle-decider.js';
import { TABLE_COLUMNS, TABLE_ROWS, TABLE_SETTINGS, T0, renderCell, renderLifecycleTable, runCommands, stateAfter } from './lifecycle-table.js';

const decider = lifecycleDecider(TABLE_SETTINGS);
const budget = TABLE_SETTINGS.stop;

/**
 * The whole lifecycle, state × command: the events that follow, `refused`, or
 * `—` (a no-op), and `⇒ exit: <outcome>` when the run ends. This is the
 * specification; docs/lifecycle.md renders the same table from the code.
 */
const EXPECTED: Array<[string, string[]]> = [
  ["Pending", ["VmActionRequested", "—", "VmActionRequested", "VmActionRequested, VmStopped ⇒ exit: forced", "WarningRaised", "refused", "refused", "refused", "refused", "refused", "VmActionRequested", "—", "—", "—", "—"]],
  ["Preparing", ["VmActionRequested", "—", "VmActionRequested", "VmActionRequested, VmStopped ⇒ exit: forced", "WarningRaised", "refused", "refused", "refused", "refused", "refused", "VmActionRequested", "—", "—", "—", "—"]],
  ["Starting", ["VmActionRequested", "—", "VmActionRequested", "VmActionRequested, VmStopped ⇒ exit: forced", "WarningRaised", "refused", "refused", "refused", "refused", "refused", "VmActionRequested", "—", "—", "—", "—"]],
  ["Running", ["VmActionRequested, VmPowerdownRequested", "VmQuitRequested", "VmActionRequested, VmPowerdownRequested", "VmActionRequested, VmKillRequested", "WarningRaised", "VmActionRequested, VmPowerdownRequested", "VmActionRequested", "VmActionRequested", "—", "VmActionRequested, VmPowerdownRequested", "VmActionRequested, VmPowerdownRequested", "VmExited, VmRestartScheduled", "VmExited, VmRestartScheduled", "WarningRaised", "—"]],
  ["Paused", ["VmActionRequested, VmPowerdownRequested", "VmQuitRequested", "VmActionRequested, VmPowerdownRequested", "VmActionRequested, VmKillRequested", "WarningRaised", "refused", "VmActionRequested", "—", "VmActionRequested", "VmActionRequested, VmPowerdownRequested", "VmActionRequested, VmPowerdownRequested", "VmExited, VmRestartScheduled", "VmExited, VmRestartScheduled", "WarningRaised", "—"]],
  ["Stopping (SIGTERM, ACPI)", ["VmQuitRequested", "—", "VmQuitRequested", "VmKillRequested", "WarningRaised", "—", "refused", "refused", "refused", "refused", "—", "VmExited, VmStopped ⇒ exit: stopped", "VmExited, VmStopped ⇒ exit: stopped", "WarningRaised", "VmKillRequested"]],
  ["Stopping (SIGTERM, quit sent)", ["—", "—", "—", "VmKillRequested", "WarningRaised", "—", "refused", "refused", "refused", "refused", "—", "VmExited, VmStopped ⇒ exit: forced", "VmExited, VmStopped ⇒ exit: forced", "WarningRaised", "VmKillRequested"]],
  ["Stopping (stop action, ACPI)", ["—", "—", "—", "VmKillRequested", "WarningRaised", "—", "refused", "refused", "refused", "refused", "—", "VmExited, VmStopped ⇒ exit: stopped", "VmExited, VmStopped ⇒ exit: stopped", "WarningRaised", "VmKillRequested"]],
  ["Stopping (restart)", ["VmActionRequested", "VmQuitRequested", "VmActionRequested", "VmActionRequested, VmKillRequested", "WarningRaised", "—", "refused", "refused", "refused", "—", "VmActionRequested", "VmExited, VmRestartScheduled, VmStarting", "VmExited, VmRestartScheduled, VmStarting", "WarningRaised", "VmKillRequested"]],
  ["Stopping (no qemu yet)", ["—", "—", "—", "VmStopped ⇒ exit: forced", "WarningRaised", "—", "refused", "refused", "refused", "refused", "—", "—", "—", "—", "WarningRaised, VmStopped ⇒ exit: forced"]],
  ["Crashed", ["VmActionRequested, VmStopped ⇒ exit: stopped", "—", "VmActionRequested, VmStopped ⇒ exit: stopped", "VmActionRequested, VmStopped ⇒ exit: forced", "WarningRaised", "refused", "refused", "refused", "refused", "refused", "VmActionRequested, VmStopped ⇒ exit: stopped", "—", "—", "—", "—"]],
  ["BackingOff", ["VmActionRequested, VmStopped ⇒ exit: stopped", "—", "VmActionRequested, VmStopped ⇒ exit: stopped", "VmActionRequested, VmStopped ⇒ exit: forced", "WarningRaised", "refused", "refused", "refused", "refused", "refused", "VmActionRequested, VmStopped ⇒ exit: stopped", "—", "—", "—", "—"]],
  ["Stopped", ["—", "—", "—", "—", "WarningRaised", "refused", "refused", "refused", "refused", "refused", "—", "—", "—", "—", "—"]],
  ["Failed", ["—", "—", "—", "—", "WarningRaised", "refused", "refused", "refused", "refused", "refused", "—", "—", "—", "—", "—"]],
];

describe('the lifecycle table: every state × every signal, action, exit and deadline', () => {
  it('covers every row and column of the table', () => {
    expect(EXPECTED.map(([row]) => row)).toEqual(TABLE_ROWS.map((r) => r.name));
    for (const [, cells] of EXPECTED) expect(cells).toHaveLength(TABLE_COLUMNS.length);
  });
  const cases = EXPECTED.flatMap(([row, cells]) => TABLE_COLUMNS.map((col, i) => ({ row, col: col.name, expected: cells[i] as string })));
  it.each(cases)('given $row, when $col, then $expected', ({ row, col, expected }) => {
    const history = TABLE_ROWS.find((r) => r.name === row)?.history ?? [];
    const column = TABLE_COLUMNS.find((c) => c.name === col);
    const { state, now } = stateAfter(decider, history);
    expect(renderCell(runCommands(decider, state, column?.commands(now) ?? []))).toBe(expected);
  });

  it('docs/lifecycle.md carries the table as the code decides it', () => {
    const doc = readFileSync(fileURLToPath(new URL('../../../docs/lifecycle.md', import.meta.url)), 'utf8');
    const begin = '<!-- BEGIN GENERATED: lifecycle table -->\n';
    const inDoc = doc.slice(doc.indexOf(begin) + begin.length, doc.indexOf('\n<!-- END GENERATED -->'));
    expect(inDoc).toBe(renderLifecycleTable());
  });
});

// ------------------------------------------------------------------ given / when / then

interface Scenario {
  state: LifecycleState;
  now: number;
}

/** given(history) at T0 + 10 ms per event. */
function given(history: DomainEvent[]): Scenario {
  return stateAfter(decider, history);
}

/** when(command) → the decision, and the state after its events. */
function when(s: Scenario, command: (now: number) => LifecycleCommand): Scenario & { decision: LifecycleDecision } {
  const c = command(s.now);
  const decision = decider.decide(c, s.state);
  let state = s.state;
  for (const e of decision.events) state = decider.evolve(state, { ...e, at: new Date(c.now).toISOString() } as TimedEvent);
  return { state, now: c.now, decision };
}

const types = (d: LifecycleDecision): string[] => d.events.map((e) => e.type);
const effects = (d: LifecycleDecision): string[] => d.effects.map((e) => describeEffect(e));
function describeEffect(e: LifecycleEffect): string {
  switch (e.type) {
    case 'SendQmp':
      return `qmp ${e.command}`;
    case 'StartTimer':
      return `timer ${e.timer} +${e.at - T0}`;
    case 'Finish':
      return `finish ${e.outcome.kind}`;
    case 'KillQemu':
      return `kill ${e.signal}`;
    case 'CancelTimer':
      return `cancel ${e.timer}`;
    default:
      return e.type;
  }
}

const started: DomainEvent = { type: 'SupervisorStarted', data: { version: '0', pid: 1, hostname: 'vm', accel: 'tcg', restartPolicy: 'on-failure', network: 'none' } };
const probed: DomainEvent = { type: 'AcceleratorProbed', data: { requested: 'tcg', selected: 'tcg', kvmWorks: false, probeMs: 1, detail: '' } };
const starting = (attempt = 1): DomainEvent => ({ type: 'VmStarting', data: { attempt, accel: 'tcg' } });
const vmStarted = (attempt = 1): DomainEvent => ({ type: 'VmStarted', data: { attempt, pid: 4242, qmpVersion: '7.2.0', startMs: 1, argv: [] } });
const running: DomainEvent[] = [started, probed, starting(), vmStarted()];
const sig = (signal: 'SIGTERM' | 'SIGINT' | 'SIGQUIT' | 'SIGHUP', dt = 0) => (now: number): LifecycleCommand => ({ type: 'SignalReceived', now: now + dt, signal });
const deadline = (at: number) => (): LifecycleCommand => ({ type: 'DeadlineReached', now: at, timer: 'stop' });
const exited = (code: number | null, signal: string | null = null, dt = 0) => (now: number): LifecycleCommand => ({ type: 'QemuExited', now: now + dt, code, signal, stderrTail: '' });

describe('the stop budget', () => {
  it('30 s (Kubernetes default) splits into ACPI 20 s, quit 4 s, SIGKILL wait 3 s, teardown 3 s', () => {
    expect(splitStopBudget(30)).toEqual({ totalMs: 30_000, acpiMs: 20_000, quitMs: 4000, killWaitMs: 3000, teardownMs: 3000 });
  });
  it.each([0, 1, 2, 5, 10, 60, 3600])('%i s: the slices add up to the budget, none negative', (seconds) => {
    const b = splitStopBudget(seconds);
    expect(b.acpiMs + b.quitMs + b.killWaitMs + b.teardownMs).toBe(seconds * 1000);
    expect(Math.min(b.acpiMs, b.quitMs, b.killWaitMs, b.teardownMs)).toBeGreaterThanOrEqual(0);
  });
});

describe('given a running VM, when SIGTERM arrives', () => {
  it('presses the power button once a second for the ACPI slice, then QMP quit, then SIGKILL, then gives up: all within the budget', () => {
    const s0 = given(running);
    const t = s0.now;
    const s1 = when(s0, sig('SIGTERM'));
    expect(types(s1.decision)).toEqual(['VmActionRequested', 'VmPowerdownRequested']);
    expect(effects(s1.decision)).toEqual(['qmp system_powerdown', `timer stop +${t - T0 + 1000}`]);
    const s2 = when(s1, deadline(t + 1000));
    expect(s2.decision.events).toEqual([{ type: 'VmPowerdownRequested', data: { by: 'signal:SIGTERM', attempt: 2 } }]);
    // qemu does not answer (SIGSTOPped): the ACPI slice ends, then quit.
    const s3 = when(s2, deadline(t + budget.acpiMs));
    expect(types(s3.decision)).toEqual(['VmQuitRequested']);
    expect(effects(s3.decision)).toEqual(['qmp quit', `timer stop +${t - T0 + budget.acpiMs + budget.quitMs}`]);
    const s4 = when(s3, deadline(t + budget.acpiMs + budget.quitMs));
    expect(types(s4.decision)).toEqual(['VmKillRequested']);
    expect(effects(s4.decision)).toEqual(['kill SIGKILL', `timer stop +${t - T0 + budget.acpiMs + budget.quitMs + budget.killWaitMs}`]);
    // SIGKILL works: qemu exits, the stop is over, forced.
    const s5 = when(s4, exited(null, 'SIGKILL', 10));
    expect(s5.decision.events[0]).toMatchObject({ type: 'VmExited', data: { exit: { reason: 'killed' } } });
    expect(effects(s5.decision)).toEqual(['cancel stop', 'AbortPrepare', 'finish forced']);
    // qemu stuck in the kernel even after SIGKILL: give up and tear down, before the teardown slice.
    const stuck = when(s4, deadline(t + budget.acpiMs + budget.quitMs + budget.killWaitMs));
    expect(types(stuck.decision)).toEqual(['WarningRaised', 'VmStopped']);
    expect(effects(stuck.decision)).toContain('finish forced');
    expect(t + budget.acpiMs + budget.quitMs + budget.killWaitMs + budget.teardownMs).toBe(t + budget.totalMs);
  });

  it('the guest powering off within the ACPI slice ends the run cleanly', () => {
    const s1 = when(given(running), sig('SIGTERM'));
    const s2 = when(s1, (now) => ({ type: 'QmpEventObserved', now, event: 'SHUTDOWN', data: { guest: true, reason: 'guest-shutdown' } }));
    expect(types(s2.decision)).toEqual(['GuestShutdownObserved']);
    const s3 = when(s2, exited(0));
    expect(s3.decision.events).toEqual([
      { type: 'VmExited', data: { attempt: 1, exit: { code: 0, signal: null, reason: 'host-shutdown' }, uptimeMs: 20 } },
      { type: 'VmStopped', data: { reason: 'stopped by signal:SIGTERM' } },
    ]);
    expect(effects(s3.decision)).toContain('finish stopped');
  });

  it('once the guest is powering off, the press timer presses no more: it waits out the ACPI slice for the exit, then quits', () => {
    // Seen under load: the next press's timer fired 13 ms after SHUTDOWN, while qemu was exiting.
    const s1 = when(given(running), sig('SIGTERM'));
    const t = s1.now;
    const s2 = when(s1, (now) => ({ type: 'QmpEventObserved', now: now + 950, event: 'SHUTDOWN', data: { guest: true, reason: 'guest-shutdown' } }));
    const s3 = when(s2, deadline(t + 1000));
    expect(s3.decision.events).toEqual([]);
    expect(effects(s3.decision)).toEqual([`timer stop +${t - T0 + budget.acpiMs}`]);
    // A guest that says SHUTDOWN but whose qemu never exits is still bounded by the budget.
    expect(types(when(s3, deadline(t + budget.acpiMs)).decision)).toEqual(['VmQuitRequested']);
    expect(when(s3, exited(0, null, 100)).decision.events.map((e) => e.type)).toEqual(['VmExited', 'VmStopped']);
  });

  it('a second SIGTERM skips to QMP quit; SIGQUIT then kills at once', () => {
    const s1 = when(given(running), sig('SIGTERM'));
    const s2 = when(s1, sig('SIGTERM', 5));
    expect(s2.decision.events).toEqual([{ type: 'VmQuitRequested', data: { by: 'signal:SIGTERM' } }]);
    expect(effects(s2.decision)[0]).toBe('qmp quit');
    const s3 = when(s2, sig('SIGQUIT', 5));
    expect(s3.decision.events).toEqual([{ type: 'VmKillRequested', data: { by: 'signal:SIGQUIT', signal: 'SIGKILL' } }]);
  });

  it('a paused guest is resumed first: ACPI needs running vCPUs', () => {
    const paused = given([...running, { type: 'VmActionRequested', data: { action: 'pause', by: 'unix' } }, { type: 'VmPaused', data: { by: 'unix', reason: 'qmp STOP' } }]);
    expect(effects(when(paused, sig('SIGINT')).decision).slice(0, 2)).toEqual(['qmp cont', 'qmp system_powerdown']);
  });
});

describe('a stop wherever the run is', () => {
  it('during an operator restart: SIGTERM turns the restart into a stop, qemu is not relaunched, the budget keeps its start', () => {
    const s1 = when(given(running), (now) => ({ type: 'ActionRequested', now, action: 'restart', by: 'unix' }));
    expect(types(s1.decision)).toEqual(['VmActionRequested', 'VmPowerdownRequested']);
    const s2 = when(s1, sig('SIGTERM', 100));
    expect(s2.decision.events).toEqual([{ type: 'VmActionRequested', data: { action: 'stop', by: 'signal:SIGTERM' } }]);
    const s3 = when(s2, exited(0, null, 100));
    expect(types(s3.decision)).toEqual(['VmExited', 'VmStopped']);
    expect(effects(s3.decision)).not.toContain('Launch');
    expect(effects(s3.decision)).toContain('finish stopped');
  });

  it('during a pull: the preparation is aborted, and whatever error it ends with (an aborted copy too), the run ends cleanly', () => {
    const s1 = when(given([started, probed]), sig('SIGTERM'));
    expect(effects(s1.decision)).toEqual(['AbortPrepare', `timer stop +${s1.now - T0 + budget.acpiMs + budget.quitMs + budget.killWaitMs}`]);
    const s2 = when(s1, (now) => ({ type: 'PrepareFailed', now, error: { code: 'ERR_INTERNAL', message: 'The operation was aborted' } }));
    expect(s2.decision.events).toEqual([{ type: 'VmStopped', data: { reason: 'stopped by signal:SIGTERM during preparation' } }]);
    expect(effects(s2.decision)).toContain('finish stopped');
  });

  it('during a preparation step that cannot be aborted: gives up within the budget, forced', () => {
    const s1 = when(given([started, probed]), sig('SIGTERM'));
    const s2 = when(s1, deadline(s1.now + budget.acpiMs + budget.quitMs + budget.killWaitMs));
    expect(types(s2.decision)).toEqual(['WarningRaised', 'VmStopped']);
    expect(s2.decision.events[0]).toMatchObject({ data: { code: 'WARN_STOP_GRACE_EXCEEDED' } });
    expect(effects(s2.decision)).toContain('finish forced');
  });

  it('during a launch: qemu joins the stop where its budget stands (here past the ACPI slice: straight to quit)', () => {
    const s1 = when(given([started, probed, starting()]), sig('SIGTERM'));
    const s2 = when(s1, (now) => ({ type: 'LaunchSucceeded', now: now + budget.acpiMs + 1, pid: 7, qmpVersion: '7.2.0', argv: [], startMs: 1 }));
    expect(types(s2.decision)).toEqual(['VmStarted', 'VmQuitRequested']);
    expect(s2.state).toMatchObject({ status: 'Stopping', pid: 7 });
  });

  it('during the restart backoff: stops at once, the backoff timer cancelled', () => {
    const s1 = when(given(running), exited(null, 'SIGKILL'));
    expect(types(s1.decision)).toEqual(['VmExited', 'VmRestartScheduled']);
    const s2 = when(s1, sig('SIGTERM', 10));
    expect(types(s2.decision)).toEqual(['VmActionRequested', 'VmStopped']);
    expect(effects(s2.decision)).toEqual(['cancel backoff', 'finish stopped']);
    // A stale backoff timer firing later does nothing.
    expect(when(s2, () => ({ type: 'DeadlineReached', now: s2.now + 5000, timer: 'backoff' })).decision.events).toEqual([]);
  });
});

describe('restarts', () => {
  it('a forced restart does not make a later clean stop forced (nothing leaks across restarts)', () => {
    const s1 = when(given(running), (now) => ({ type: 'ActionRequested', now, action: 'restart', by: 'unix' }));
    const s2 = when(s1, deadline(s1.now + budget.acpiMs));
    expect(types(s2.decision)).toEqual(['VmQuitRequested']);
    const s3 = when(s2, exited(0, null, 100));
    expect(types(s3.decision)).toEqual(['VmExited', 'VmRestartScheduled', 'VmStarting']);
    expect(effects(s3.decision)).toEqual(['cancel stop', 'Launch']);
    const s4 = when(s3, (now) => ({ type: 'LaunchSucceeded', now, pid: 8, qmpVersion: '7.2.0', argv: [], startMs: 1 }));
    expect(s4.state).toMatchObject({ status: 'Running', attempt: 2 });
    const s5 = when(when(s4, sig('SIGTERM')), exited(0, null, 100));
    expect(effects(s5.decision)).toContain('finish stopped');
  });

  it('crashes back off exponentially and the crash-loop limit ends the run in Failed', () => {
    const limited = lifecycleDecider({ ...TABLE_SETTINGS, restart: { policy: 'always', backoffInitialMs: 100, backoffMaxMs: 1000, maxRestarts: 2, windowSeconds: 60 } });
    let state = stateAfter(limited, running).state;
    let now = T0 + 1000;
    const step = (c: LifecycleCommand): LifecycleDecision => {
      const d = limited.decide(c, state);
      for (const e of d.events) state = limited.evolve(state, { ...e, at: new Date(c.now).toISOString() } as TimedEvent);
      return d;
    };
    const delays: number[] = [];
    for (let i = 0; i < 2; i += 1) {
      const d = step({ type: 'QemuExited', now: (now += 10), code: 1, signal: null, stderrTail: 'boom' });
      const scheduled = d.events.find((e) => e.type === 'VmRestartScheduled');
      delays.push((scheduled?.data as { delayMs: number }).delayMs);
      expect(types(step({ type: 'DeadlineReached', now: (now += 1000), timer: 'backoff' }))).toEqual(['VmStarting']);
      step({ type: 'LaunchSucceeded', now: (now += 10), pid: 9 + i, qmpVersion: '7.2.0', argv: [], startMs: 1 });
    }
    expect(delays).toEqual([100, 200]);
    const last = step({ type: 'QemuExited', now: (now += 10), code: 1, signal: null, stderrTail: 'boom' });
    expect(types(last)).toEqual(['VmExited', 'VmCrashLoopDetected', 'VmFailed']);
    expect(effects(last)).toEqual(['finish crash-loop']);
    expect(state.status).toBe('Failed');
  });

  it('a guest power-off under on-failure ends the run, not forced', () => {
    const s1 = when(given(running), (now) => ({ type: 'QmpEventObserved', now, event: 'SHUTDOWN', data: { guest: true, reason: 'guest-shutdown' } }));
    const s2 = when(s1, exited(0));
    expect(s2.decision.events[0]).toMatchObject({ data: { exit: { reason: 'guest-shutdown' } } });
    expect(effects(s2.decision)).toEqual(['finish guest-stopped']);
  });

  it('the first launch failing fails the run with its code; a later one counts as a crash', () => {
    const first = when(given([started, probed, starting()]), (now) => ({ type: 'LaunchFailed', now, error: { code: 'ERR_QEMU_EXITED', message: 'qemu exited' } }));
    expect(effects(first.decision)).toEqual(['finish failed']);
    const later = when(given([...running, { type: 'VmExited', data: { attempt: 1, exit: { code: 1, signal: null, reason: 'crashed' }, uptimeMs: 1 } }, { type: 'VmRestartScheduled', data: { attempt: 2, delayMs: 0, reason: 'x' } }, starting(2)]), (now) => ({ type: 'LaunchFailed', now, error: { code: 'ERR_QEMU_EXITED', message: 'qemu exited' } }));
    expect(types(later.decision)).toEqual(['VmExited', 'VmRestartScheduled']);
  });
});

describe('QMP events and operator actions', () => {
  it('a pause names who asked when qemu confirms it; a repeated pause is a no-op', () => {
    const s1 = when(given(running), (now) => ({ type: 'ActionRequested', now, action: 'pause', by: 'token:ops' }));
    expect(effects(s1.decision)).toEqual(['qmp stop']);
    const s2 = when(s1, (now) => ({ type: 'QmpEventObserved', now, event: 'STOP', data: {} }));
    expect(s2.decision.events).toEqual([{ type: 'VmPaused', data: { by: 'token:ops', reason: 'qmp STOP' } }]);
    expect(when(s2, (now) => ({ type: 'ActionRequested', now, action: 'pause', by: 'unix' })).decision).toEqual({ events: [], effects: [] });
  });

  it('a refused action is ERR_VM_ACTION_REFUSED naming the status and what it allows', () => {
    expect(() => decider.decide({ type: 'ActionRequested', now: T0, action: 'pause', by: 'unix' }, given([started]).state)).toThrowError(
      expect.objectContaining({ code: 'ERR_VM_ACTION_REFUSED', details: { action: 'pause', status: 'Pending', allowed: ['stop'] } }),
    );
  });
});
