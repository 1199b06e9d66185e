import { describe, expect, it } from 'vitest';
import { SystemClock } from './clock.js';
import { PodvisorError } from './errors.js';
import type { DomainEvent } from './events.js';
import { SilentLogger } from './logger.js';
import { MemoryEventStore } from './memory-event-store.js';
import type { ConfigDriveBuilder, ImageStore, VmRuntime } from './ports.js';
import { DEFAULT_RESTART_SETTINGS } from './restart-policy.js';
import { Supervisor, type SupervisorSettings } from './supervisor.js';

/** A store whose disk is full: every append throws (a failure that cannot be caused for real in a unit test). */
class FullDiskEventStore extends MemoryEventStore {
  override append(): never {
    throw new Error('SQLITE_FULL: database or disk is full');
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
  networkSpec: { vmName: 'vm', stateDir: '/nonexistent', diskDir: '/nonexistent', env: {}, settings: {}, vnc: { enabled: false, port: 5900 }, controlPort: 5800 },
  restart: DEFAULT_RESTART_SETTINGS,
  stopGraceSeconds: 30,
  powerdownIntervalMs: 1000,
  vnc: { enabled: false, port: 5900 },
  extraArgs: [],
};

describe('Supervisor: the one record path', () => {
  it('a failed append is caught, reported and counted; the run still ends with its outcome and nothing is thrown', async () => {
    const failed: string[][] = [];
    const runtime = {
      probeAccelerator: () => Promise.reject(new PodvisorError('ERR_ACCEL_KVM_UNAVAILABLE', 'KVM does not run guest code here')),
    } as unknown as VmRuntime;
    const supervisor = new Supervisor(settings, {
      store: new FullDiskEventStore(),
      runtime,
      images: {} as ImageStore,
      configDrive: {} as ConfigDriveBuilder,
      network: null,
      clock: new SystemClock(),
      log: new SilentLogger(),
      exitCodeOf: (o) => (o.kind === 'failed' && o.code === 'ERR_ACCEL_KVM_UNAVAILABLE' ? 4 : 1),
      onRecordFailed: (_err, events: readonly DomainEvent[]) => failed.push(events.map((e) => e.type)),
    });
    const outcome = await supervisor.run();
    expect(outcome).toMatchObject({ kind: 'failed', code: 'ERR_ACCEL_KVM_UNAVAILABLE', exitCode: 4 });
    expect(failed).toEqual([['SupervisorStarted'], ['VmFailed'], ['SupervisorExited']]);
    expect(supervisor.failedAppendCount()).toBe(3);
    // The projections moved on all the same.
    expect(supervisor.current().status).toBe('Failed');
    expect(supervisor.lifecycle().status).toBe('Failed');
  });
});
