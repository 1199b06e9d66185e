import { Subject, filter, firstValueFrom } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { type Clock, SystemClock } from './clock.js';
import { PodvisorError } from './errors.js';
import type { EncodedEvent } from './event-store-base.js';
import type { DomainEvent } from './events.js';
import { SilentLogger } from './logger.js';
import { ManualClock } from './manual-clock.js';
import { MemoryEventStore } from './memory-event-store.js';
import type { ConfigDriveBuilder, ImageStore, NetworkBackend, Overlay, QmpEventMessage, VmHandle, VmLaunchPlan, VmRuntime } from './ports.js';
import { DEFAULT_RESTART_SETTINGS } from './restart-policy.js';
import { Supervisor, type SupervisorDeps, type SupervisorOutcome, type SupervisorSettings } from './supervisor.js';

/** Fakes for failures that cannot be caused for real in a unit test (the int and e2e tests fill a real volume). */

/** A store with a bug: appendOrQueue throws (not a storage refusal, which it would queue). */
class BrokenEventStore extends MemoryEventStore {
  override appendOrQueue(): never {
    throw new Error('a bug in the store');
  }
}

/** A store on a volume that is full until told otherwise. */
class FullDiskEventStore extends MemoryEventStore {
  full = true;
  protected override writeRows(rows: readonly EncodedEvent[]): number[] {
    if (this.full) throw new PodvisorError('ERR_EVENTSTORE_WRITE', 'cannot append to the test store: SQLITE_FULL: database or disk is full');
    return super.writeRows(rows);
  }
}

const settings: SupervisorSettings = {
  version: 'test',
  vmName: 'vm',
  accel: 'kvm',
  accelProbeTimeoutMs: 100,
  vcpus: 1,
  memoryMb: 64,
  image: { source: null },
  diskDir: '/nonexistent',
  stateDir: '/nonexistent/.podvisor',
  configDrive: { format: 'config-2', userDataPath: '/nonexistent/u', metaDataPath: '/nonexistent/m' },
  networkName: 'none',
  networkSpec: { vmName: 'vm', stateDir: '/nonexistent', diskDir: '/nonexistent', settings: {}, vnc: { enabled: false, port: 5900 }, controlPort: 5800 },
  restart: DEFAULT_RESTART_SETTINGS,
  stopGraceSeconds: 30,
  powerdownIntervalMs: 1000,
  vnc: { enabled: false, port: 5900 },
  extraArgs: [],
};

/** A run that fails at once (KVM is unavailable): three events, SupervisorStarted, VmFailed, SupervisorExited. */
function kvmlessSupervisor(store: MemoryEventStore, onRecordFailed?: SupervisorDeps['onRecordFailed']): Supervisor {
  const runtime = {
    probeAccelerator: () => Promise.reject(new PodvisorError('ERR_ACCEL_KVM_UNAVAILABLE', 'KVM does not run guest code here')),
  } as unknown as VmRuntime;
  return new Supervisor(settings, {
    store,
    runtime,
    images: {} as ImageStore,
    configDrive: {} as ConfigDriveBuilder,
    network: null,
    clock: new SystemClock(),
    log: new SilentLogger(),
    exitCodeOf: (o) => (o.kind === 'failed' && o.code === 'ERR_ACCEL_KVM_UNAVAILABLE' ? 4 : 1),
    ...(onRecordFailed === undefined ? {} : { onRecordFailed }),
  });
}

describe('Supervisor: the one record path', () => {
  it('an append the log refuses (full disk) is kept and written in order later; the run goes on meanwhile, then says so', async () => {
    const store = new FullDiskEventStore({ retryIntervalMs: 5 });
    const supervisor = kvmlessSupervisor(store);
    const outcome = await supervisor.run();
    expect(outcome).toMatchObject({ kind: 'failed', code: 'ERR_ACCEL_KVM_UNAVAILABLE', exitCode: 4 });
    expect(supervisor.failedAppendCount()).toBe(3);
    expect(supervisor.current().status).toBe('Failed');
    expect(store.readAfter(0)).toEqual([]);
    expect(store.backlog()).toMatchObject({ pending: 3, dropped: 0 });
    // Space returns: the backlog is written in order, then the recovery is recorded.
    const warning = firstValueFrom(store.follow(0).pipe(filter((e) => e.type === 'WarningRaised')));
    store.full = false;
    await expect(warning).resolves.toMatchObject({ position: 4, data: { code: 'WARN_EVENT_LOG_RECOVERED' } });
    expect(store.readAfter(0).map((e) => [e.position, e.type])).toEqual([
      [1, 'SupervisorStarted'],
      [2, 'VmFailed'],
      [3, 'SupervisorExited'],
      [4, 'WarningRaised'],
    ]);
  });

  it('an append that throws (a bug) is caught, reported and counted; the run still ends with its outcome and nothing is thrown', async () => {
    const failed: string[][] = [];
    const supervisor = kvmlessSupervisor(new BrokenEventStore(), (_err, events: readonly DomainEvent[]) => failed.push(events.map((e) => e.type)));
    const outcome = await supervisor.run();
    expect(outcome).toMatchObject({ kind: 'failed', code: 'ERR_ACCEL_KVM_UNAVAILABLE', exitCode: 4 });
    expect(failed).toEqual([['SupervisorStarted'], ['VmFailed'], ['SupervisorExited']]);
    expect(supervisor.failedAppendCount()).toBe(3);
    // The projections moved on all the same.
    expect(supervisor.current().status).toBe('Failed');
    expect(supervisor.lifecycle().status).toBe('Failed');
  });
});

type QemuExit = { code: number | null; signal: string | null; stderrTail: string };

/** A qemu handle whose QMP answers are `execute(command, exit)`; kill() ends it with the signal. */
function fakeQemu(execute: (command: string, exit: (e: QemuExit) => void) => Promise<unknown>): VmHandle {
  let exit: (e: QemuExit) => void = () => undefined;
  const exited = new Promise<QemuExit>((r) => (exit = r));
  return {
    pid: 4242,
    argv: ['qemu-system-x86_64'],
    qmpVersion: '7.2.0',
    serial: null,
    serialInput: null,
    events: new Subject<QmpEventMessage>(),
    execute: (command) => execute(command, exit),
    exited,
    kill: (signal) => exit({ code: null, signal, stderrTail: '' }),
  } as VmHandle;
}

/** A Supervisor around a fake qemu: a TCG probe, a launch that hands back `vm`, an existing overlay, no config drive. */
function supervisorAround(vm: VmHandle, o: { store: MemoryEventStore; clock: Clock; network: NetworkBackend | null; stopGraceSeconds: number; exitCodeOf: SupervisorDeps['exitCodeOf'] }): Supervisor {
  const overlay: Overlay = { path: '/d/vm.qcow2', created: false, backingFile: null, backingFormat: null, virtualSize: 1, backingSha256: null, behindBase: false };
  return new Supervisor(
    { ...settings, accel: 'tcg', stopGraceSeconds: o.stopGraceSeconds },
    {
      store: o.store,
      runtime: {
        probeAccelerator: () => Promise.resolve({ requested: 'tcg', selected: 'tcg', kvmWorks: false, probeMs: 0, detail: '' }),
        launch: () => Promise.resolve(vm),
      } as unknown as VmRuntime,
      images: { ensureOverlay: () => Promise.resolve(overlay) } as unknown as ImageStore,
      configDrive: { build: () => Promise.resolve(null) } as unknown as ConfigDriveBuilder,
      network: o.network,
      clock: o.clock,
      log: new SilentLogger(),
      exitCodeOf: o.exitCodeOf,
    },
  );
}

describe('Supervisor: a qemu that answers no QMP', () => {
  it('a stop asked through act() escalates to quit and SIGKILL on its timers, ends forced, and leaves no unhandled rejection', async () => {
    // Every QMP call fails at once (a refused or broken monitor).
    const vm = fakeQemu(() => Promise.reject(new PodvisorError('ERR_QMP_INTERRUPTED', 'QMP command interrupted: the QMP socket closed')));
    const clock = new ManualClock();
    const store = new MemoryEventStore({ clock });
    const supervisor = supervisorAround(vm, { store, clock, network: null, stopGraceSeconds: 3, exitCodeOf: (o) => (o.kind === 'forced' ? 7 : 0) });
    let outcome: SupervisorOutcome | undefined;
    const done = supervisor.run().then((o) => (outcome = o));
    await firstValueFrom(store.follow(0).pipe(filter((e) => e.type === 'VmStarted')));
    await supervisor.act('stop', 'unix-socket');
    // The escalation's timers move only with the clock: 100 ms at a time, for at most twice the 3 s budget.
    for (let elapsed = 0; outcome === undefined && elapsed < 6000; elapsed += 100) {
      clock.advance(100);
      // Every deadline those 100 ms ended has fired by now (a macrotask runs after all their microtasks).
      await new Promise((r) => setImmediate(r));
    }
    expect(outcome).toMatchObject({ kind: 'forced', exitCode: 7 });
    await done;
    const types = store.readAfter(0).map((e) => e.type);
    expect(types.slice(types.indexOf('VmActionRequested'))).toEqual(['VmActionRequested', 'VmPowerdownRequested', 'VmQuitRequested', 'VmKillRequested', 'VmExited', 'VmStopped', 'SupervisorExited']);
  });
});

describe('Supervisor: stacked network backends (PODVISOR_NETWORK_EXTRA)', () => {
  it('attaches the primary then each stacked backend, hands qemu their NICs in that order, and detaches in reverse', async () => {
    const calls: string[] = [];
    const backend = (name: string, nicId: string): NetworkBackend => ({
      name,
      validate: () => [],
      attach: (spec) => {
        calls.push(`attach ${name} ${JSON.stringify(spec.settings)}`);
        return Promise.resolve({ nics: [{ id: nicId, mac: '52:54:00:00:00:01', backend: { kind: 'tap', ifname: `${nicId}tap` }, addresses: [] }], detail: {} });
      },
      detach: () => {
        calls.push(`detach ${name}`);
        return Promise.resolve();
      },
    });
    let nics: string[] = [];
    const overlay: Overlay = { path: '/d/vm.qcow2', created: false, backingFile: null, backingFormat: null, virtualSize: 1, backingSha256: null, behindBase: false };
    const store = new MemoryEventStore();
    const supervisor = new Supervisor(
      { ...settings, accel: 'tcg', restart: { ...DEFAULT_RESTART_SETTINGS, policy: 'never' } },
      {
        store,
        runtime: {
          probeAccelerator: () => Promise.resolve({ requested: 'tcg', selected: 'tcg', kvmWorks: false, probeMs: 0, detail: '' }),
          launch: (plan: VmLaunchPlan) => {
            nics = plan.nics.map((n) => n.id);
            return Promise.reject(new PodvisorError('ERR_QEMU_START', 'qemu did not start'));
          },
        } as unknown as VmRuntime,
        images: { ensureOverlay: () => Promise.resolve(overlay) } as unknown as ImageStore,
        configDrive: { build: () => Promise.resolve(null) } as unknown as ConfigDriveBuilder,
        network: backend('nat-bridge', 'net0'),
        extraNetworks: [{ backend: backend('l2-segment', 'l2seg0'), spec: { ...settings.networkSpec, settings: { reloadMs: 500 } } }],
        clock: new SystemClock(),
        log: new SilentLogger(),
        exitCodeOf: () => 3,
      },
    );
    await supervisor.run();
    expect(nics).toEqual(['net0', 'l2seg0']);
    expect(calls).toEqual(['attach nat-bridge {}', 'attach l2-segment {"reloadMs":500}', 'detach l2-segment', 'detach nat-bridge']);
    const network = store.readAfter(0).filter((e) => e.type === 'NetworkAttached' || e.type === 'NetworkDetached').map((e) => `${e.type} ${(e.data as { backend: string }).backend}`);
    expect(network).toEqual(['NetworkAttached nat-bridge', 'NetworkAttached l2-segment', 'NetworkDetached l2-segment', 'NetworkDetached nat-bridge']);
  });
});

describe('Supervisor: the teardown gets what is left of the stop budget', () => {
  /** A guest that powers off at the first ACPI press, and a network whose detach ends when the test says so. */
  function quickGuestSlowNetwork(stopGraceSeconds: number) {
    const clock = new ManualClock();
    const vm = fakeQemu((command, exit) => {
      if (command === 'system_powerdown') queueMicrotask(() => exit({ code: 0, signal: null, stderrTail: '' }));
      return Promise.resolve({});
    });
    let finishDetach: () => void = () => undefined;
    let detachStarted: () => void = () => undefined;
    const detaching = new Promise<void>((r) => (detachStarted = r));
    const network: NetworkBackend = {
      name: 'slow-net',
      validate: () => [],
      attach: () => Promise.resolve({ nics: [], detail: {} }),
      detach: () => {
        detachStarted();
        return new Promise<void>((r) => (finishDetach = r));
      },
    };
    const store = new MemoryEventStore({ clock });
    const supervisor = supervisorAround(vm, { store, clock, network, stopGraceSeconds, exitCodeOf: () => 0 });
    return { clock, store, supervisor, detaching, finishDetach: () => finishDetach() };
  }

  it('a guest that stopped at once leaves the teardown more than its own slice: a detach slower than the slice still completes', async () => {
    const t = quickGuestSlowNetwork(30);
    expect(t.supervisor.stopBudget().teardownMs).toBe(3000);
    const done = t.supervisor.run();
    await firstValueFrom(t.store.follow(0).pipe(filter((e) => e.type === 'VmStarted')));
    t.supervisor.signal('SIGTERM');
    await t.detaching;
    // 20 s later: far past the 3 s slice, inside the 30 s budget.
    t.clock.advance(20_000);
    // Every deadline that 20 s ended has fired by now (a macrotask runs after all their microtasks).
    await new Promise((r) => setImmediate(r));
    t.finishDetach();
    await expect(done).resolves.toMatchObject({ exitCode: 0 });
    const types = t.store.readAfter(0).map((e) => e.type);
    expect(types).toContain('NetworkDetached');
    expect(types).not.toContain('WarningRaised');
  });

  it('a detach that outlives the whole budget is given up with a warning, and podvisor still exits', async () => {
    const t = quickGuestSlowNetwork(30);
    const done = t.supervisor.run();
    await firstValueFrom(t.store.follow(0).pipe(filter((e) => e.type === 'VmStarted')));
    t.supervisor.signal('SIGTERM');
    await t.detaching;
    t.clock.advance(30_000);
    await expect(done).resolves.toMatchObject({ exitCode: 0 });
    const events = t.store.readAfter(0);
    expect(events.map((e) => e.type)).not.toContain('NetworkDetached');
    expect(events.find((e) => e.type === 'WarningRaised')?.data).toMatchObject({ code: 'WARN_NETWORK_DETACH', message: expect.stringContaining('slow-net') });
  });
});
