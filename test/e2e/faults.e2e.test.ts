/**
 * Faults of the VM volume while the VM runs, with the real binary, a real qemu
 * and the test guest: the volume fills up, or another process holds the event
 * log's write lock. podvisor keeps supervising: SIGTERM still ends the run with
 * a clean ACPI shutdown and exit 0, and the events decided meanwhile reach the
 * log once it takes writes again: in order, once each, with gapless positions.
 * See docs/reliability.md.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { PodvisorProcess, REPO, keepArtifacts, makeVmDirs, readEvents, requireBuilt, types, waitForEvent, type VmDirs, vmEnv } from './support/podvisor-process.js';

let dirs: VmDirs;
let name: string;
let running: PodvisorProcess[] = [];
let mounted: string | null = null;
let locker: ChildProcess | null = null;

const STOP_TAIL = ['VmActionRequested', 'GuestShutdownObserved', 'VmExited', 'VmStopped'];

function start(): PodvisorProcess {
  const p = new PodvisorProcess(['run'], vmEnv(dirs, name));
  running.push(p);
  return p;
}

/** The whole log: positions 1..n, each event once, the stop told in order, and the late writes said. */
function expectWholeLog(): void {
  const log = readEvents(dirs.stateDir);
  expect(log.map((e) => e.position)).toEqual(log.map((_, i) => i + 1));
  const t = types(log);
  for (const type of ['SupervisorStarted', 'VmStarted', ...STOP_TAIL, 'SupervisorExited']) expect(t.filter((x) => x === type)).toHaveLength(1);
  expect(t.filter((x) => x === 'VmPowerdownRequested').length).toBeGreaterThanOrEqual(1);
  const tail = t.slice(t.indexOf('VmActionRequested')).filter((x) => x !== 'WarningRaised' && x !== 'VmPowerdownRequested');
  expect(tail).toEqual([...STOP_TAIL, 'SupervisorExited']);
  // A clean ACPI shutdown: the guest powered itself off.
  expect(log.find((e) => e.type === 'GuestShutdownObserved')?.data).toMatchObject({ guest: true, reason: 'guest-shutdown' });
  expect(log.find((e) => e.type === 'VmExited')?.data).toMatchObject({ exit: { code: 0, reason: 'host-shutdown' } });
  expect(log.find((e) => e.type === 'SupervisorExited')?.data).toMatchObject({ exitCode: 0 });
  expect(log.filter((e) => e.type === 'WarningRaised' && (e.data as { code: string }).code === 'WARN_EVENT_LOG_RECOVERED').length).toBeGreaterThanOrEqual(1);
}

/** Another process takes the event log's write lock (BEGIN EXCLUSIVE) and holds it until a line arrives on its stdin. */
async function lockLog(): Promise<ChildProcess> {
  const script = path.join(dirs.root, 'locker.cjs');
  await writeFile(
    script,
    `const Database = require(${JSON.stringify(path.join(REPO, 'node_modules/better-sqlite3'))});
     const db = new Database(${JSON.stringify(path.join(dirs.stateDir, 'events.db'))});
     db.exec('BEGIN EXCLUSIVE');
     process.stdout.write('locked\\n');
     process.stdin.once('data', () => { db.exec('COMMIT'); db.close(); process.exit(0); });`,
  );
  locker = spawn(process.execPath, [script], { stdio: ['pipe', 'pipe', 'inherit'] });
  const child = locker;
  await new Promise<void>((resolve) => child.stdout?.on('data', (d: Buffer) => d.toString().includes('locked') && resolve()));
  return child;
}

beforeAll(() => requireBuilt());

beforeEach(async (ctx) => {
  name = `pv-fault-${randomBytes(3).toString('hex')}`;
  dirs = await makeVmDirs(name);
  running = [];
  ctx.onTestFailed(async () => {
    const dest = await keepArtifacts(`faults-${ctx.task.name}`, running.at(-1) ?? null, mounted === null ? dirs : null);
    process.stderr.write(`artifacts kept in ${dest}\n`);
  });
});

afterEach(async () => {
  for (const p of running) await p.killed();
  if (locker !== null && locker.exitCode === null) locker.kill('SIGKILL');
  locker = null;
  if (mounted !== null) await execa('umount', [mounted], { reject: false });
  mounted = null;
  await dirs.cleanup();
});

describe('the VM volume fails while the VM runs: podvisor keeps supervising and loses no event', () => {
  it('the volume fills up: SIGTERM still shuts the guest down (exit 0), and the stop is recorded once space returns', async () => {
    // The VM volume (pet disk, state dir, event log) is a small filesystem of its own.
    await mkdir(dirs.diskDir, { recursive: true });
    await execa('mount', ['-t', 'tmpfs', '-o', 'size=96m', `podvisor-e2e-${name}`, dirs.diskDir]);
    mounted = dirs.diskDir;
    const p = start();
    await waitForEvent(dirs.stateDir, 'VmStarted');
    await p.waitForStdout(/PODVISOR-GUEST-READY/);
    const filler = path.join(dirs.diskDir, 'filler');
    await execa('dd', ['if=/dev/zero', `of=${filler}`, 'bs=64k'], { reject: false });
    // Before: the failed appends were logged and the events were gone for good.
    p.signal('SIGTERM');
    await p.waitForStderr(/event append deferred/);
    await rm(filler);
    expect((await p.exited).code).toBe(0);
    expect(p.stderr).not.toMatch(/signal ignored/);
    expectWholeLog();
  });

  it('another process holds the event log write lock: the QMP events of the stop are recorded in order after it lets go', async () => {
    const p = start();
    await waitForEvent(dirs.stateDir, 'VmStarted');
    await p.waitForStdout(/PODVISOR-GUEST-READY/);
    const child = await lockLog();
    p.signal('SIGTERM');
    // The guest's shutdown (a QMP SHUTDOWN event) is decided while the log is locked.
    await p.waitForStderr(/"msg":"GuestShutdownObserved"/);
    expect(p.stderr).toMatch(/event append deferred/);
    child.stdin?.write('go\n');
    expect((await p.exited).code).toBe(0);
    expectWholeLog();
  });

  it('the lock is still held when podvisor exits: the unwritten events are kept in a journal, and the next start writes them once, in order', async () => {
    const first = start();
    await waitForEvent(dirs.stateDir, 'VmStarted');
    await first.waitForStdout(/PODVISOR-GUEST-READY boot-count=1/);
    const child = await lockLog();
    first.signal('SIGTERM');
    expect((await first.exited).code).toBe(0);
    // Before: the events went to stderr only, and the log never had them.
    expect(first.stderr).toMatch(/the unwritten events are kept in a journal/);
    const journal = path.join(dirs.stateDir, 'events.unwritten.json');
    expect(existsSync(journal)).toBe(true);
    expect(types(readEvents(dirs.stateDir))).not.toContain('VmStopped');
    child.stdin?.write('go\n');
    await new Promise((resolve) => child.once('exit', resolve));

    const second = start();
    await second.waitForStdout(/PODVISOR-GUEST-READY boot-count=2/);
    expect(existsSync(journal)).toBe(false);
    second.signal('SIGTERM');
    expect((await second.exited).code).toBe(0);
    const log = readEvents(dirs.stateDir);
    expect(log.map((e) => e.position)).toEqual(log.map((_, i) => i + 1));
    const t = types(log);
    for (const type of ['SupervisorStarted', 'VmStarted', ...STOP_TAIL, 'SupervisorExited']) expect(t.filter((x) => x === type), type).toHaveLength(2);
    const replayed = log.filter((e) => e.type === 'WarningRaised' && (e.data as { code: string }).code === 'WARN_EVENT_LOG_REPLAYED');
    expect(replayed).toHaveLength(1);
    // The first run's stop, then the warning, then the second run: in order.
    const firstRun = t.slice(0, t.indexOf('SupervisorStarted', 1));
    expect(firstRun.slice(firstRun.indexOf('VmActionRequested')).filter((x) => x !== 'VmPowerdownRequested' && x !== 'WarningRaised')).toEqual([...STOP_TAIL, 'SupervisorExited']);
    expect(t[t.indexOf('SupervisorStarted', 1) - 1]).toBe('WarningRaised');
    expect(log[t.indexOf('SupervisorStarted', 1) - 1]?.data).toMatchObject({ code: 'WARN_EVENT_LOG_REPLAYED' });
  });
});
