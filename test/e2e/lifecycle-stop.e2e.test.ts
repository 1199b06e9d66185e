/**
 * The stop budget end to end, with the real binary and a real qemu: SIGTERM
 * arrives during a stalled pull, during the restart backoff, during an
 * operator restart, and with qemu SIGSTOPped (it answers no QMP). Each run
 * ends within PODVISOR_STOP_GRACE, with the documented exit code and the
 * events that tell what happened, and leaves no process behind.
 */
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { HttpImageServer } from '../support/http-image-server.js';
import { CLI, GUEST, PodvisorProcess, keepArtifacts, makeVmDirs, readEvents, requireBuilt, types, waitForEvent, type VmDirs, vmEnv } from './support/podvisor-process.js';

let dirs: VmDirs;
let name: string;
let running: PodvisorProcess[] = [];
let server: HttpImageServer | null = null;

const GRACE_SECONDS = 6;

function start(extra: Record<string, string> = {}, args: string[] = []): PodvisorProcess {
  const p = new PodvisorProcess(['run', ...args], vmEnv(dirs, name, { PODVISOR_STOP_GRACE: String(GRACE_SECONDS), ...extra }));
  running.push(p);
  return p;
}

/** Sends SIGTERM and measures the time to podvisor's exit (the process's `close`). */
async function terminate(p: PodvisorProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<{ code: number | null; ms: number }> {
  const t0 = performance.now();
  p.signal(signal);
  const exit = await p.exited;
  return { code: exit.code, ms: performance.now() - t0 };
}

/** Processes whose command line names this VM (qemu's `-name guest=NAME`, dnsmasq's files): none may outlive podvisor. */
function leftovers(): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
      if (cmd.includes(name) && !cmd.includes('vitest') && !cmd.includes(CLI)) found.push(`${pid}: ${cmd.slice(0, 200)}`);
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

beforeAll(() => requireBuilt());

beforeEach(async (ctx) => {
  name = `pv-stop-${randomBytes(3).toString('hex')}`;
  dirs = await makeVmDirs(name);
  running = [];
  ctx.onTestFailed(async () => {
    const dest = await keepArtifacts(`lifecycle-stop-${ctx.task.name}`, running.at(-1) ?? null, dirs);
    process.stderr.write(`artifacts kept in ${dest}\n`);
  });
});

afterEach(async () => {
  for (const p of running) await p.killed();
  await server?.close();
  server = null;
  await dirs.cleanup();
});

describe(`SIGTERM ends the run within PODVISOR_STOP_GRACE=${GRACE_SECONDS}, wherever it arrives`, () => {
  it('during a stalled image pull: the pull is aborted, exit 0, qemu never started', async () => {
    server = await new HttpImageServer().start();
    await server.serve('/guest.qcow2', GUEST);
    server.plan('/guest.qcow2', { kind: 'stall', ms: 600_000 });
    const p = start({ IMG_SOURCE: server.url('/guest.qcow2') });
    await server.nextRequest(true);
    const { code, ms } = await terminate(p);
    expect(code).toBe(0);
    expect(ms).toBeLessThan(GRACE_SECONDS * 1000);
    const log = readEvents(dirs.stateDir);
    expect(types(log)).not.toContain('VmStarting');
    expect(types(log).slice(-3)).toEqual(['VmActionRequested', 'VmStopped', 'SupervisorExited']);
    expect(log.at(-2)?.data).toEqual({ reason: 'stopped by signal:SIGTERM during preparation' });
    expect(log.at(-1)?.data).toMatchObject({ exitCode: 0 });
    expect(leftovers()).toEqual([]);
  });

  it('during the restart backoff: no new qemu, exit 0', async () => {
    const config = path.join(dirs.root, 'podvisor.yaml');
    await writeFile(config, 'restart:\n  policy: always\n  backoffInitialMs: 600000\n  backoffMaxMs: 600000\n');
    const p = start({}, ['--config', config]);
    const first = await waitForEvent(dirs.stateDir, 'VmStarted');
    process.kill((first.data as { pid: number }).pid, 'SIGKILL');
    const scheduled = await waitForEvent(dirs.stateDir, 'VmRestartScheduled', { after: first.position });
    expect(scheduled.data).toMatchObject({ delayMs: 600_000 });
    const { code, ms } = await terminate(p);
    expect(code).toBe(0);
    expect(ms).toBeLessThan(GRACE_SECONDS * 1000);
    const tail = readEvents(dirs.stateDir).filter((e) => e.position > first.position);
    expect(types(tail)).toEqual(['VmExited', 'VmRestartScheduled', 'VmActionRequested', 'VmStopped', 'SupervisorExited']);
    expect(tail[3]?.data).toEqual({ reason: 'stopped by signal:SIGTERM during backoff' });
    expect(leftovers()).toEqual([]);
  });

  it('during an operator restart: the restart becomes a stop, qemu is not relaunched, exit 0', async () => {
    // A budget whose ACPI slice (7.8 s) fits the guest's own power-off (about 2.3 s, more on a busy machine).
    const p = start({ PODVISOR_STOP_GRACE: '12' });
    await p.waitForStdout(/PODVISOR-GUEST-READY/);
    const ctl = new PodvisorProcess(['ctl', 'restart', '--state-dir', dirs.stateDir], vmEnv(dirs, name));
    // SIGTERM as soon as podvisor logs the accepted restart (the guest takes seconds to power off).
    await p.waitForStderr(/"msg":"VmActionRequested"/);
    const { code, ms } = await terminate(p);
    expect((await ctl.exited).code).toBe(0);
    const restart = readEvents(dirs.stateDir).find((e) => e.type === 'VmActionRequested');
    expect(restart?.data).toEqual({ action: 'restart', by: 'unix-socket' });
    expect(code).toBe(0);
    expect(ms).toBeLessThan(12_000);
    const tail = readEvents(dirs.stateDir).filter((e) => e.position >= (restart?.position ?? 0));
    expect(tail.filter((e) => e.type === 'VmActionRequested').map((e) => e.data)).toEqual([
      { action: 'restart', by: 'unix-socket' },
      { action: 'stop', by: 'signal:SIGTERM' },
    ]);
    expect(types(tail)).not.toContain('VmStarting');
    expect(types(tail).slice(-3)).toEqual(['VmExited', 'VmStopped', 'SupervisorExited']);
    expect(tail.at(-1)?.data).toMatchObject({ exitCode: 0 });
    expect(leftovers()).toEqual([]);
  });

  it('with qemu SIGSTOPped (no QMP answers): ACPI presses time out, quit, SIGKILL, exit 7 within the budget', async () => {
    const p = start();
    await p.waitForStdout(/PODVISOR-GUEST-READY/);
    const qemuPid = ((await waitForEvent(dirs.stateDir, 'VmStarted')).data as { pid: number }).pid;
    process.kill(qemuPid, 'SIGSTOP');
    const { code, ms } = await terminate(p);
    expect(code).toBe(7);
    expect(ms).toBeLessThan(GRACE_SECONDS * 1000);
    const log = readEvents(dirs.stateDir);
    const tail = log.slice(log.findIndex((e) => e.type === 'VmActionRequested'));
    // The presses repeat about once a second; one warning says qemu does not answer.
    const story = types(tail).filter((t) => t !== 'WarningRaised').filter((t, i, all) => t !== 'VmPowerdownRequested' || all[i - 1] !== 'VmPowerdownRequested');
    expect(tail.filter((e) => e.type === 'WarningRaised')).toHaveLength(1);
    expect(story).toEqual(['VmActionRequested', 'VmPowerdownRequested', 'VmQuitRequested', 'VmKillRequested', 'VmExited', 'VmStopped', 'SupervisorExited']);
    expect(tail.find((e) => e.type === 'WarningRaised')?.data).toMatchObject({ code: 'WARN_QMP_UNRESPONSIVE' });
    expect(tail.find((e) => e.type === 'VmExited')?.data).toMatchObject({ exit: { signal: 'SIGKILL', reason: 'killed' } });
    expect(tail.at(-1)?.data).toMatchObject({ exitCode: 7 });
    expect(leftovers()).toEqual([]);
  });

  it('SIGQUIT kills qemu at once and tears down: exit 7', async () => {
    const p = start();
    await waitForEvent(dirs.stateDir, 'VmStarted');
    const { code, ms } = await terminate(p, 'SIGQUIT');
    expect(code).toBe(7);
    expect(ms).toBeLessThan(GRACE_SECONDS * 1000);
    const log = readEvents(dirs.stateDir);
    expect(types(log).slice(-5)).toEqual(['VmActionRequested', 'VmKillRequested', 'VmExited', 'VmStopped', 'SupervisorExited']);
    expect(leftovers()).toEqual([]);
  });
});
