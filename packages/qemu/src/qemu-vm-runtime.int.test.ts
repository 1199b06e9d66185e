import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Observable } from 'rxjs';
import { afterEach, beforeEach, describe, expect, it, onTestFailed } from 'vitest';
import { ExecaProcessRunner, SilentLogger, type QmpEventMessage, type VmLaunchPlan } from '@podvisor/core';
import { QmpInterruptedError } from './qmp-error.js';
import { QemuVmRuntime, type QemuVmHandle } from './qemu-vm-runtime.js';

/** Where a failing test leaves the QMP transcript and the serial log. */
const ARTIFACTS = join(tmpdir(), 'podvisor-test-artifacts');

let dir: string;
let runner: ExecaProcessRunner;
let runtime: QemuVmRuntime;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'podvisor-qemu-int-'));
  runner = new ExecaProcessRunner(new SilentLogger());
  runtime = new QemuVmRuntime(runner, new SilentLogger(), { qmpTranscript: true });
  await runner.run('qemu-img', ['create', '-q', '-f', 'qcow2', join(dir, 'pet.qcow2'), '16M']);
});

afterEach(async () => {
  // Every qemu this test started dies here, whatever happened in the test.
  const children = runner.children();
  for (const child of children) child.kill('SIGKILL');
  await Promise.all(children.map((c) => c.exited));
  await rm(dir, { recursive: true, force: true });
});

function plan(overrides: Partial<VmLaunchPlan> = {}): VmLaunchPlan {
  return {
    name: 'int-vm',
    uuid: '5a1e3c1d-8a52-4c4e-9f0e-3d3f3b7d2c11',
    accel: 'tcg',
    vcpus: 1,
    memoryMb: 64,
    disk: { path: join(dir, 'pet.qcow2'), format: 'qcow2' },
    cdrom: null,
    nics: [],
    vnc: null,
    qmpSocket: join(dir, 'qmp.sock'),
    extraArgs: [],
    pidFile: join(dir, 'qemu.pid'),
    ...overrides,
  };
}

/** Launches, drains the serial console, and keeps transcript and serial log if the test fails. */
async function launch(p: VmLaunchPlan = plan()): Promise<QemuVmHandle> {
  const handle = await runtime.launch(p);
  let serial = '';
  handle.serial?.setEncoding('utf8');
  handle.serial?.on('data', (chunk: string) => {
    serial += chunk;
  });
  onTestFailed(async ({ task }) => {
    await mkdir(ARTIFACTS, { recursive: true });
    const base = join(ARTIFACTS, task.name.replace(/[^a-z0-9]+/gi, '-'));
    await handle.qmp.transcript?.writeTo(`${base}.qmp.log`);
    await writeFile(`${base}.serial.log`, serial);
  });
  return handle;
}

/** Records every event of a handle; `waitFor` resolves on the next event of a name (call it before the action). */
function record(events: Observable<QmpEventMessage>): { seen: QmpEventMessage[]; waitFor(name: string): Promise<QmpEventMessage>; completed: Promise<void> } {
  const seen: QmpEventMessage[] = [];
  const waiters = new Map<string, (e: QmpEventMessage) => void>();
  let complete!: () => void;
  const completed = new Promise<void>((resolve) => {
    complete = resolve;
  });
  events.subscribe({
    next: (e) => {
      seen.push(e);
      waiters.get(e.event)?.(e);
      waiters.delete(e.event);
    },
    complete: () => complete(),
  });
  return { seen, completed, waitFor: (name) => new Promise((resolve) => waiters.set(name, resolve)) };
}

describe('QemuVmRuntime with a real qemu under TCG', () => {
  it('starts paused, connects QMP, resumes, and turns stop/cont/system_reset/quit into events and an exit', async () => {
    const vm = await launch();
    const events = record(vm.events);

    expect(vm.argv[0]).toBe('qemu-system-x86_64');
    expect(vm.argv).toContain('-S');
    expect(vm.qmpVersion).toMatch(/^\d+\.\d+\.\d+$/);
    expect(Number((await readFile(plan().pidFile, 'utf8')).trim())).toBe(vm.pid);
    expect(await vm.execute('query-status')).toMatchObject({ status: 'running', running: true });
    expect(vm.qmp.lastRoundTripMs).toBeGreaterThan(0);

    const stopped = events.waitFor('STOP');
    await vm.execute('stop');
    await stopped;
    expect(await vm.execute('query-status')).toMatchObject({ status: 'paused', running: false });

    const resumed = events.waitFor('RESUME');
    await vm.execute('cont');
    await resumed;

    const reset = events.waitFor('RESET');
    await vm.execute('system_reset');
    expect((await reset).data).toMatchObject({ guest: false });

    await vm.execute('quit');
    const exit = await vm.exited;
    await events.completed;
    expect(exit).toMatchObject({ code: 0, signal: null });
    // The RESUME of launch's own `cont` came before anyone subscribed, and is still there.
    expect(events.seen.map((e) => e.event)).toEqual(['RESUME', 'STOP', 'RESUME', 'RESET', 'SHUTDOWN']);
    expect(events.seen.at(-1)?.data).toMatchObject({ guest: false, reason: 'host-qmp-quit' });
    expect(vm.qmp.state).toBe('disconnected');
    await expect(vm.execute('query-status')).rejects.toBeInstanceOf(QmpInterruptedError);
  });

  it('fails a pending call with QmpInterruptedError and reports SIGKILL when qemu is killed with -9', async () => {
    const vm = await launch();
    // A stopped process cannot answer: the call stays pending until qemu dies.
    vm.kill('SIGSTOP');
    const pending = vm.execute('query-status');
    vm.kill('SIGKILL');
    const err = await pending.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QmpInterruptedError);
    expect(err).toMatchObject({ code: 'ERR_QMP_INTERRUPTED', command: 'query-status' });
    expect(await vm.exited).toMatchObject({ code: null, signal: 'SIGKILL' });
  });

  it('throws ERR_QEMU_START with qemu\'s own message for a bad extra argument, and leaves no qemu behind', async () => {
    const err = await runtime.launch(plan({ extraArgs: ['-bogus'] })).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ERR_QEMU_START' });
    expect((err as Error).message).toContain('-bogus: invalid option');
    expect(runner.children()).toEqual([]);
  });

  it('launches again over the QMP socket and pid file a killed qemu left behind', async () => {
    const first = await launch();
    first.kill('SIGKILL');
    await first.exited;
    const second = await launch();
    expect(await second.execute('query-status')).toMatchObject({ status: 'running' });
  });

  it('sets the VNC password over QMP before the guest runs: VNC then offers only VNC authentication', async () => {
    const locked = new QemuVmRuntime(runner, new SilentLogger(), { qmpTranscript: true, vncPassword: 'pv-secret' });
    const vncSocket = join(dir, 'vnc.sock');
    const vm = await locked.launch(plan({ vnc: { kind: 'unix', path: vncSocket } }));
    expect(vm.argv).toContain(`unix:${vncSocket},password=on`);
    const sent = vm.qmp.transcript?.lines().filter((l) => l.direction === '->').map((l) => JSON.parse(l.line) as { execute: string }) ?? [];
    expect(sent.map((m) => m.execute)).toEqual(['qmp_capabilities', 'change-vnc-password', 'cont']);
    expect(await rfbSecurityTypes(vncSocket)).toEqual([2]);
    vm.kill('SIGKILL');
    await vm.exited;
    // The same plan without a password: no authentication at all.
    const open = await launch(plan({ vnc: { kind: 'unix', path: vncSocket } }));
    expect(open.argv).toContain(`unix:${vncSocket}`);
    expect(await rfbSecurityTypes(vncSocket)).toEqual([1]);
  });
});

/** The security types a VNC server offers after the RFB 3.8 version handshake (RFC 6143, 7.1.1 and 7.1.2): 1 none, 2 VNC authentication. */
function rfbSecurityTypes(socketPath: string): Promise<number[]> {
  return new Promise((resolve, reject) => {
    const s = connect(socketPath);
    let buf = Buffer.alloc(0);
    let greeted = false;
    s.on('error', reject);
    s.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (!greeted && buf.length >= 12) {
        greeted = true;
        buf = buf.subarray(12);
        s.write('RFB 003.008\n');
      }
      const n = buf[0];
      if (greeted && n !== undefined && buf.length >= 1 + n) {
        resolve([...buf.subarray(1, 1 + n)]);
        s.destroy();
      }
    });
  });
}
