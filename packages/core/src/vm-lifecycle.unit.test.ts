import { describe, expect, it } from 'vitest';
import type { DomainEvent, StoredEvent, VmAction } from './events.js';
import { EVENT_SCHEMA_VERSIONS } from './events.js';
import { PodvisorError } from './errors.js';
import { allowedActions, decideVmAction, projectVm, type VmState } from './vm-lifecycle.js';

/** given(events).when(action).then(events | error) */
function given(...events: DomainEvent[]) {
  const stored: StoredEvent[] = events.map((e, i) => ({
    ...e,
    position: i + 1,
    at: new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString(),
    schemaVersion: EVENT_SCHEMA_VERSIONS[e.type],
    vm: 'vm1',
    correlationId: null,
  })) as StoredEvent[];
  const state = projectVm(stored);
  return {
    state,
    when: (action: VmAction, by = 'test') => ({
      then: (expected: DomainEvent[]) => expect(decideVmAction({ type: 'RequestVmAction', action, by }, state)).toEqual(expected),
      thenRefused: () => {
        let err: unknown;
        try {
          decideVmAction({ type: 'RequestVmAction', action, by }, state);
        } catch (e) {
          err = e;
        }
        expect(err).toBeInstanceOf(PodvisorError);
        expect((err as PodvisorError).code).toBe('ERR_VM_ACTION_REFUSED');
        expect((err as PodvisorError).details?.['status']).toBe(state.status);
        return err as PodvisorError;
      },
    }),
  };
}

const started: DomainEvent = {
  type: 'SupervisorStarted',
  data: { version: '0', pid: 1, hostname: 'vm1', accel: 'auto', restartPolicy: 'on-failure', network: 'none' },
};
const starting: DomainEvent = { type: 'VmStarting', data: { attempt: 1, accel: 'tcg' } };
const running: DomainEvent = { type: 'VmStarted', data: { attempt: 1, pid: 42, qmpVersion: '7.2.0', startMs: 10, argv: ['qemu-system-x86_64'] } };
const paused: DomainEvent = { type: 'VmPaused', data: { by: 'unix', reason: 'qmp STOP' } };

describe('VM lifecycle projection', () => {
  it('walks Pending → Preparing → Starting → Running ⇄ Paused', () => {
    expect(given(started).state.status).toBe('Pending');
    expect(given(started, { type: 'AcceleratorProbed', data: { requested: 'auto', selected: 'tcg', kvmWorks: false, probeMs: 3, detail: 'x' } }).state.status).toBe('Preparing');
    expect(given(started, starting).state.status).toBe('Starting');
    const r = given(started, starting, running).state as Extract<VmState, { status: 'Running' }>;
    expect(r.status).toBe('Running');
    expect(r.pid).toBe(42);
    expect(given(started, starting, running, paused).state.status).toBe('Paused');
    expect(given(started, starting, running, paused, { type: 'VmResumed', data: { by: 'unix' } }).state.status).toBe('Running');
  });

  it('a crash is Crashed, then BackingOff, then Starting again, counting restarts', () => {
    const crash: DomainEvent = { type: 'VmExited', data: { attempt: 1, exit: { code: null, signal: 'SIGKILL', reason: 'crashed' }, uptimeMs: 5 } };
    expect(given(started, starting, running, crash).state.status).toBe('Crashed');
    const backoff = given(started, starting, running, crash, { type: 'VmRestartScheduled', data: { attempt: 2, delayMs: 1000, reason: 'x' } }).state;
    expect(backoff.status).toBe('BackingOff');
    const again = given(started, starting, running, crash, { type: 'VmStarting', data: { attempt: 2, accel: 'tcg' } }).state;
    expect(again.status).toBe('Starting');
    expect(again.restarts).toBe(1);
    expect(again.lastExit?.signal).toBe('SIGKILL');
  });

  it('a guest power-off is Stopped, not Crashed', () => {
    const off: DomainEvent = { type: 'VmExited', data: { attempt: 1, exit: { code: 0, signal: null, reason: 'guest-shutdown' }, uptimeMs: 5 } };
    expect(given(started, starting, running, off).state.status).toBe('Stopped');
  });

  it('a new supervisor run starts from Pending and counts runs across pod restarts', () => {
    const s = given(started, starting, running, { type: 'VmStopped', data: { reason: 'x' } }, started).state;
    expect(s.status).toBe('Pending');
    expect(s.runs).toBe(2);
  });

  it('a failed preflight is Failed with ERR_PREFLIGHT_FAILED and the failing findings; its warnings are left out of the message', () => {
    const s = given({
      type: 'PreflightFailed',
      data: {
        findings: [
          { id: 'capability.NET_ADMIN', status: 'fail', finding: 'NET_ADMIN is missing', fix: 'add it' },
          { id: 'binary.setpriv', status: 'warn', finding: 'setpriv is not on PATH', fix: 'install it' },
        ],
      },
    }).state;
    expect(s).toMatchObject({ status: 'Failed', code: 'ERR_PREFLIGHT_FAILED', message: 'capability.NET_ADMIN: NET_ADMIN is missing', runs: 0 });
  });

  it('Failed stays Failed when VmStopped follows', () => {
    const s = given(started, { type: 'VmFailed', data: { code: 'ERR_X', message: 'm' } }, { type: 'VmStopped', data: { reason: 'r' } }).state;
    expect(s.status).toBe('Failed');
  });
});

describe('VM actions', () => {
  it('Running accepts pause, and a pause while Paused is a no-op', () => {
    given(started, starting, running).when('pause', 'unix').then([{ type: 'VmActionRequested', data: { action: 'pause', by: 'unix' } }]);
    given(started, starting, running, paused).when('pause').then([]);
  });

  it('resume while Running is a no-op; while Paused it is requested', () => {
    given(started, starting, running).when('resume').then([]);
    given(started, starting, running, paused).when('resume', 'token:ops').then([{ type: 'VmActionRequested', data: { action: 'resume', by: 'token:ops' } }]);
  });

  it('Paused refuses powerdown and names what it allows', () => {
    const err = given(started, starting, running, paused).when('powerdown').thenRefused();
    expect(err.details?.['allowed']).toEqual(['reset', 'resume', 'restart', 'stop']);
  });

  it('stop moves to Stopping; a second stop is a no-op', () => {
    const g = given(started, starting, running, { type: 'VmActionRequested', data: { action: 'stop', by: 'signal:SIGTERM' } });
    expect(g.state.status).toBe('Stopping');
    g.when('stop').then([]);
    g.when('pause').thenRefused();
  });

  it('Stopped and Failed allow nothing', () => {
    const s = given(started, { type: 'VmFailed', data: { code: 'E', message: 'm' } }).state;
    expect(allowedActions(s)).toEqual([]);
    given(started, { type: 'VmFailed', data: { code: 'E', message: 'm' } }).when('reset').thenRefused();
  });

  it('while Starting only stop is allowed', () => {
    given(started, starting).when('reset').thenRefused();
    given(started, starting).when('stop', 'signal:SIGINT').then([{ type: 'VmActionRequested', data: { action: 'stop', by: 'signal:SIGINT' } }]);
  });
});

describe('projectVm: addresses of stacked network backends', () => {
  it('adds up the addresses of every NetworkAttached of a run, and starts over with the next run', () => {
    const attached = (backend: string, address: string): DomainEvent => ({ type: 'NetworkAttached', data: { backend, nics: [{ id: backend, mac: '52:54:00:00:00:01', addresses: [address] }], detail: {} } });
    expect(given(started, attached('nat-bridge', '192.168.254.2/30'), attached('l2-segment', '10.77.0.11/24')).state.addresses).toEqual(['192.168.254.2/30', '10.77.0.11/24']);
    expect(given(started, attached('nat-bridge', '192.168.254.2/30'), started, attached('nat-bridge', '192.168.254.2/30')).state.addresses).toEqual(['192.168.254.2/30']);
  });
});
