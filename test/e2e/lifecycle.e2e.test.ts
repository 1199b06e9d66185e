/**
 * The walking skeleton, end to end: the real `podvisor` binary boots the real
 * test guest under TCG from a fresh qcow2 overlay, with no network, and the
 * event log records its whole life.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { GUEST, PodvisorProcess, keepArtifacts, makeVmDirs, readEvents, requireBuilt, types, waitForEvent, type VmDirs, vmEnv } from './support/podvisor-process.js';

let dirs: VmDirs;
let name: string;
let running: PodvisorProcess[] = [];

function env(extra: Record<string, string> = {}): Record<string, string> {
  return vmEnv(dirs, name, extra);
}

function start(extra: Record<string, string> = {}, args: string[] = []): PodvisorProcess {
  const p = new PodvisorProcess(['run', ...args], env(extra));
  running.push(p);
  return p;
}

beforeAll(() => requireBuilt());

beforeEach(async (ctx) => {
  name = `pv-e2e-${randomBytes(3).toString('hex')}`;
  dirs = await makeVmDirs(name);
  running = [];
  ctx.onTestFailed(async () => {
    const dest = await keepArtifacts(`lifecycle-${ctx.task.name}`, running.at(-1) ?? null, dirs);
    process.stderr.write(`artifacts kept in ${dest}\n`);
  });
});

afterEach(async () => {
  for (const p of running) await p.killed();
  await dirs.cleanup();
});

describe('podvisor run (no network, TCG)', () => {
  it('boots the guest from a fresh overlay, relays the serial console, and records the start sequence', async () => {
    const p = start();
    const ready = await p.waitForStdout(/PODVISOR-GUEST-READY boot-count=(\d+)/);
    expect(ready[1]).toBe('1');
    const started = await waitForEvent(dirs.stateDir, 'VmStarted');
    const log = readEvents(dirs.stateDir).filter((e) => e.position <= started.position);
    expect(types(log)).toEqual(['SupervisorStarted', 'AcceleratorProbed', 'ImagePullProgressed', 'ImageImported', 'DiskCreated', 'VmStarting', 'VmStarted']);
    expect(log[1]?.data).toMatchObject({ requested: 'tcg', selected: 'tcg' });
    expect(log[2]?.data).toMatchObject({ percent: 100 });
    expect(log[4]?.data).toMatchObject({ path: path.join(dirs.diskDir, `${name}.qcow2`) });
    expect((log[6]?.data as { argv: string[] }).argv).toContain('qemu-system-x86_64');
    // podvisor's own logs are JSON lines on stderr, never mixed into the console.
    const firstLogLine = p.stderr.split('\n')[0] ?? '';
    expect(() => JSON.parse(firstLogLine)).not.toThrow();
    expect(p.stdout).not.toContain('"logger"');
    p.signal('SIGTERM');
    expect((await p.exited).code).toBe(0);
  });

  it('SIGTERM powers the guest off through ACPI and exits 0 with the power-down steps logged', async () => {
    const p = start();
    await p.waitForStdout(/PODVISOR-GUEST-READY/);
    const qemuPid = (await waitForEvent(dirs.stateDir, 'VmStarted')).data as { pid: number };
    p.signal('SIGTERM');
    const exit = await p.exited;
    expect(exit.code).toBe(0);
    expect(p.stdout).toContain('PODVISOR-GUEST-POWEROFF');
    const log = readEvents(dirs.stateDir);
    const tail = types(log.slice(log.findIndex((e) => e.type === 'VmActionRequested')));
    // One or more ACPI presses (the guest may need a second one), then the guest's own shutdown.
    expect(tail[0]).toBe('VmActionRequested');
    expect(tail.slice(1, tail.indexOf('GuestShutdownObserved')).every((t) => t === 'VmPowerdownRequested')).toBe(true);
    expect(tail.slice(tail.indexOf('GuestShutdownObserved'))).toEqual(['GuestShutdownObserved', 'VmExited', 'VmStopped', 'SupervisorExited']);
    const requested = log.find((e) => e.type === 'VmActionRequested');
    expect(requested?.data).toEqual({ action: 'stop', by: 'signal:SIGTERM' });
    expect(log.find((e) => e.type === 'GuestShutdownObserved')?.data).toMatchObject({ guest: true, reason: 'guest-shutdown' });
    expect(log.find((e) => e.type === 'VmExited')?.data).toMatchObject({ exit: { code: 0, reason: 'host-shutdown' } });
    expect(log.at(-1)?.data).toMatchObject({ exitCode: 0 });
    // Nothing it started outlives it.
    expect(existsSync(`/proc/${qemuPid.pid}`)).toBe(false);
  });

  it('a second run reuses the pet disk: the guest boot counter reads 2', async () => {
    const first = start();
    await first.waitForStdout(/PODVISOR-GUEST-READY boot-count=1/);
    first.signal('SIGTERM');
    expect((await first.exited).code).toBe(0);
    const second = start();
    await second.waitForStdout(/PODVISOR-GUEST-READY boot-count=2/);
    const log = readEvents(dirs.stateDir);
    const secondRun = log.slice(log.map((e) => e.type).lastIndexOf('SupervisorStarted'));
    expect(types(secondRun).slice(0, 4)).toEqual(['SupervisorStarted', 'AcceleratorProbed', 'ImageImported', 'DiskReused']);
    expect(secondRun[2]?.data).toMatchObject({ reused: true });
    second.signal('SIGTERM');
    expect((await second.exited).code).toBe(0);
  });

  it('restarts qemu killed with -9 under "always", says why, and ends a crash loop in Failed with exit 5', async () => {
    const config = path.join(dirs.root, 'podvisor.yaml');
    await writeFile(config, 'restart:\n  policy: always\n  backoffInitialMs: 200\n  maxRestarts: 1\n  windowSeconds: 600\n');
    const p = start({}, ['--config', config]);
    const first = await waitForEvent(dirs.stateDir, 'VmStarted');
    process.kill((first.data as { pid: number }).pid, 'SIGKILL');
    const second = await waitForEvent(dirs.stateDir, 'VmStarted', { after: first.position });
    const between = readEvents(dirs.stateDir).filter((e) => e.position > first.position && e.position <= second.position);
    expect(types(between)).toEqual(['VmExited', 'VmRestartScheduled', 'VmStarting', 'VmStarted']);
    expect(between[0]?.data).toMatchObject({ exit: { signal: 'SIGKILL', reason: 'crashed' } });
    expect(between[1]?.data).toMatchObject({ attempt: 2, delayMs: 200, reason: 'qemu was killed by SIGKILL' });
    process.kill((second.data as { pid: number }).pid, 'SIGKILL');
    const exit = await p.exited;
    expect(exit.code).toBe(5);
    const tail = types(readEvents(dirs.stateDir).filter((e) => e.position > second.position));
    expect(tail).toEqual(['VmExited', 'VmCrashLoopDetected', 'VmFailed', 'SupervisorExited']);
  });

  it('a guest that powers itself off under "on-failure" ends the run with exit 0 and no restart', async () => {
    await writeFile(path.join(dirs.root, 'userdata'), '#!/bin/sh\necho user-data says goodbye\npoweroff\n');
    const p = start({ PODVISOR_RESTART: 'on-failure' });
    const exit = await p.exited;
    expect(exit.code).toBe(0);
    const log = readEvents(dirs.stateDir);
    expect(types(log).filter((t) => t === 'VmStarting')).toHaveLength(1);
    expect(types(log).slice(types(log).indexOf('GuestShutdownObserved'))).toEqual(['GuestShutdownObserved', 'VmExited', 'VmStopped', 'SupervisorExited']);
    expect(log.find((e) => e.type === 'VmExited')?.data).toMatchObject({ exit: { code: 0, reason: 'guest-shutdown' } });
    expect(log.find((e) => e.type === 'ConfigDriveBuilt')).toBeDefined();
  });

  it('auto falls back to TCG on this machine with a warning event (nested KVM hangs here)', async () => {
    const p = start({ PODVISOR_ACCEL: 'auto' });
    await waitForEvent(dirs.stateDir, 'VmStarted');
    const log = readEvents(dirs.stateDir);
    expect(log.find((e) => e.type === 'AcceleratorProbed')?.data).toMatchObject({ requested: 'auto', selected: 'tcg', kvmWorks: false });
    expect(log.find((e) => e.type === 'AcceleratorFellBack')?.data).toMatchObject({ from: 'kvm', to: 'tcg' });
    expect(p.stderr).toMatch(/"level":"warn".*"msg":"AcceleratorFellBack"/);
    // A guest still booting may not see ACPI within its slice of the stop budget on a busy machine: stop a booted one.
    await p.waitForStdout(/PODVISOR-GUEST-READY/);
    p.signal('SIGTERM');
    expect((await p.exited).code).toBe(0);
  });

  it('kvm fails fast with a clear error, a hint, and exit 4', async () => {
    const p = start({ PODVISOR_ACCEL: 'kvm' });
    const exit = await p.exited;
    expect(exit.code).toBe(4);
    const failed = readEvents(dirs.stateDir).find((e) => e.type === 'VmFailed');
    expect(failed?.data).toMatchObject({ code: 'ERR_ACCEL_KVM_UNAVAILABLE' });
    expect((failed?.data as { hint?: string }).hint).toMatch(/PODVISOR_ACCEL=tcg/);
    expect(types(readEvents(dirs.stateDir))).not.toContain('VmStarting');
  });

  it('a token file that does not parse is a configuration problem too: exit 2, the line named, no token echoed, nothing created', async () => {
    const tokens = path.join(dirs.root, 'tokens');
    await writeFile(tokens, '# operators\nops:admin:a-long-enough-token-1234\nops:root:secret-never-shown-5678\n');
    const p = start({ PODVISOR_TOKEN_FILE: tokens });
    expect((await p.exited).code).toBe(2);
    expect(p.stderr).toContain(`${tokens}:3: got "(redacted)"`);
    expect(p.stderr).not.toContain('secret-never-shown');
    expect(existsSync(dirs.diskDir)).toBe(false);
  });

  it('bad configuration is reported all at once, each error naming its field, and nothing is created', async () => {
    const config = path.join(dirs.root, 'podvisor.yaml');
    await writeFile(config, 'vm:\n  vcpus: 1\n  colour: blue\n');
    const p = start({ IMG_SOURCE: path.join(dirs.root, 'missing.qcow2'), IMG_RAM_MB: '-512', IMG_VCPU: 'two' }, ['--config', config]);
    const exit = await p.exited;
    expect(exit.code).toBe(2);
    expect(p.stderr).toContain('yaml vm.colour');
    expect(p.stderr).toContain(`env IMG_SOURCE: got "${path.join(dirs.root, 'missing.qcow2')}"`);
    expect(p.stderr).toContain('env IMG_RAM_MB: got "-512"');
    expect(p.stderr).toContain('env IMG_VCPU: got "two"');
    expect(p.stderr).toMatch(/4 problems/);
    expect(existsSync(dirs.diskDir)).toBe(false);
    expect(existsSync(dirs.imagesDir)).toBe(false);
  });
});

