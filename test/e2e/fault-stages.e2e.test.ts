/**
 * The systematic fault suite (issue 11): kill -9 of qemu, of dnsmasq and of
 * podvisor at each stage of a start (the pull, the overlay creation, the
 * network attach, the launch) and on the running VM, with the real binary, the
 * NAT bridge in a Calico-style pod, an HTTP image server and the test guest.
 *
 * One VM volume goes through every fault in order, so that a booted VM is
 * reused where the stage allows (three TCG boots in all). Each stage is reached
 * and held open by real means, never by a sleep: the image server sends the
 * body slowly and the test waits for bytes on the wire; qemu-img, dnsmasq and
 * qemu are reached through wrappers on PATH that, when armed, write their pid
 * and SIGSTOP themselves before they exec the real program.
 *
 * After every fault: the pet disk keeps its data (the guest's boot counter goes
 * up by one per boot, never back), no event is lost or duplicated (the log's
 * positions are gapless, and every event podvisor logged on stderr is in the
 * log at its position), nothing is left behind (no process of this VM, and
 * once converged the same links and nftables ruleset as the first converged
 * run; at the end, the pod as it was, no tmp file, no mount), and the next
 * start converges. The faults injected are the rows of the table in
 * docs/reliability.md, which the last test checks.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { EVENT_SCHEMA_VERSIONS } from '@podvisor/core';
import { HttpImageServer } from '../support/http-image-server.js';
import { POD_SH, podPids, podState } from './support/pod-namespace.js';
import { GUEST, PodvisorProcess, REPO, keepArtifacts, makeVmDirs, collectEvents, readEvents, requireBuilt, types, vmEnv, waitForFile, type VmDirs } from './support/podvisor-process.js';

/** The faults this suite injects, as docs/reliability.md names them (checked by the last test). */
const FAULTS = [
  'kill -9 podvisor during the pull',
  'kill -9 podvisor during the overlay creation',
  'kill -9 dnsmasq during the network attach',
  'kill -9 podvisor during the network attach',
  'kill -9 dnsmasq during the launch',
  'kill -9 qemu during the launch',
  'kill -9 podvisor during the launch',
  'kill -9 dnsmasq while the VM runs',
  'kill -9 qemu while the VM runs',
  'kill -9 podvisor while the VM runs',
] as const;
type Fault = (typeof FAULTS)[number];

const IMAGE = '/guest.qcow2';
/** A stage can hold a TCG boot or two on a loaded 2-core machine (a boot took 75 s there). */
const STAGE_MS = 420_000;
let pod: string;
let name: string;
let dirs: VmDirs;
let holdDir: string;
let server: HttpImageServer;
let baseline: ReturnType<typeof podState>;
/** Links and ruleset of the first run that converged (a running VM); every later converged run must match. */
let converged: { links: string[]; rules: string } | null = null;
const runs: PodvisorProcess[] = [];
const injected = new Set<Fault>();
let bootCount = 0;
let failed = false;
/** The dnsmasq a SIGKILLed podvisor left running (see killPodvisor), which the next start must stop. */
let stray: number | undefined;

function start(): PodvisorProcess {
  const p = new PodvisorProcess(
    ['run'],
    vmEnv(dirs, name, {
      PODVISOR_NETWORK: 'nat-bridge',
      IMG_SOURCE: server.url(IMAGE),
      // The wrappers come first on PATH (see hold()).
      PATH: `${holdDir}:${process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin'}`,
      PODVISOR_RESTART: 'on-failure',
    }),
    { wrapper: ['ip', 'netns', 'exec', pod] },
  );
  runs.push(p);
  return p;
}

/**
 * A wrapper for `program` on PATH: when armed (`arm`), the first call whose
 * arguments match `when` writes its pid and stops itself (SIGSTOP) before it
 * execs the real program, holding the stage open until the test acts.
 */
function wrap(program: string, when: string): void {
  const real = execFileSync('sh', ['-c', `command -v ${program}`], { encoding: 'utf8', env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' } }).trim();
  const file = path.join(holdDir, program);
  writeFileSync(
    file,
    `#!/bin/sh
case " $* " in
  *"${when}"*)
    if mv "${holdDir}/${program}.armed" "${holdDir}/${program}.taken" 2>/dev/null; then
      echo $$ > "${holdDir}/${program}.pid.tmp" && mv "${holdDir}/${program}.pid.tmp" "${holdDir}/${program}.pid"
      kill -STOP $$
    fi
    ;;
esac
exec ${real} "$@"
`,
  );
  chmodSync(file, 0o755);
}

function arm(program: string): void {
  writeFileSync(path.join(holdDir, `${program}.armed`), '');
}

/** Waits until the armed wrapper of `program` has stopped itself; returns its pid (the program's, once it runs). */
async function held(program: string): Promise<number> {
  const file = path.join(holdDir, `${program}.pid`);
  await waitForFile(file, 120_000);
  const pid = Number(readFileSync(file, 'utf8').trim());
  await until(() => procState(pid) === 'T', `${program} (pid ${pid}) to stop itself`);
  await rm(file, { force: true });
  return pid;
}

/** True once `pid` has exited (gone, or a zombie not yet reaped). */
function gone(pid: number): boolean {
  const state = procState(pid);
  return state === null || state === 'Z';
}

/** The state letter of `pid` in /proc (R, S, T, Z...), or null when it is gone. */
function procState(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0] ?? null;
  } catch {
    return null;
  }
}

/** Processes (not zombies) whose command line names this VM's dirs or the wrappers: what a run must not leave behind. */
function leftovers(): string[] {
  const out: string[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    let cmd: string;
    try {
      cmd = readFileSync(`/proc/${d}/cmdline`, 'utf8').replace(/\0/g, ' ');
    } catch {
      continue;
    }
    if ((cmd.includes(dirs.root) || cmd.includes(holdDir)) && procState(Number(d)) !== 'Z') out.push(`${d}: ${cmd.slice(0, 160)}`);
  }
  return out;
}

/** Re-checks `cond` on every turn of a short timer until it holds (bounded): for state that no event announces (a process reaped). */
async function until(cond: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Waits for a `WarningRaised` with `code` after position `after`. */
async function waitForWarning(code: string, after: number): Promise<void> {
  await collectEvents(dirs.stateDir, (e) => e.position > after && e.type === 'WarningRaised' && (e.data as { code?: string }).code === code, 1);
}

/** SIGKILLs `pid`, records the fault. */
function kill9(pid: number, fault: Fault): void {
  process.kill(pid, 'SIGKILL');
  injected.add(fault);
}

/**
 * kill -9 of podvisor itself. Its children die with it (setpriv --pdeathsig),
 * except a running dnsmasq: it drops to `nobody`, and a change of user clears
 * the parent-death signal, so outside a container (where PID 1's death ends
 * everything) it outlives podvisor until the next start stops it. Returns that
 * dnsmasq's pid, if any; nothing else of this VM is left running.
 */
async function killPodvisor(p: PodvisorProcess, fault: Fault): Promise<number | undefined> {
  kill9(p.child.pid as number, fault);
  expect(await p.exited).toEqual({ code: null, signal: 'SIGKILL' });
  return endOfRun();
}

/**
 * After a run ended: no process of this VM is left, but possibly its dnsmasq
 * (after a kill -9 of podvisor, or a teardown cut short by its time slice),
 * which the next start must stop. Returns that dnsmasq's pid, if any.
 */
async function endOfRun(): Promise<number | undefined> {
  const others = (): string[] => leftovers().filter((l) => !l.includes('/usr/sbin/dnsmasq '));
  await until(() => others().length === 0, `no process of this VM left but dnsmasq (${others().join(' | ')})`);
  const strays = podPids(pod, 'dnsmasq');
  expect(strays.length).toBeLessThanOrEqual(1);
  return strays[0];
}

/**
 * No event lost or duplicated: positions 1..n, once each, and every event a run
 * logged on stderr (after it was committed) is in the log at its position, once.
 */
function expectWholeLog(): void {
  const log = readEvents(dirs.stateDir);
  expect(log.map((e) => e.position)).toEqual(log.map((_, i) => i + 1));
  for (const p of runs) {
    const logged = p.stderr
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { msg?: string; position?: unknown })
      .filter((l): l is { msg: string; position: number } => typeof l.position === 'number' && typeof l.msg === 'string' && l.msg in EVENT_SCHEMA_VERSIONS);
    const positions = logged.map((l) => l.position);
    expect(new Set(positions).size, 'an event logged twice').toBe(positions.length);
    for (const l of logged) expect(log[l.position - 1]?.type, `event ${l.position} (${l.msg}) in the log`).toBe(l.msg);
  }
  // One SupervisorStarted per run that got as far as its event log.
  expect(types(log).filter((t) => t === 'SupervisorStarted')).toHaveLength(runs.length);
}

/** The next boot of the guest: its boot counter is one more than the last (the pet disk kept every write). */
async function nextBoot(p: PodvisorProcess): Promise<void> {
  bootCount += 1;
  const seen = p.stdout.match(/PODVISOR-GUEST-READY boot-count=\d+/g)?.length ?? 0;
  await p.waitFor(() => ((p.stdout.match(/PODVISOR-GUEST-READY boot-count=\d+/g)?.length ?? 0) > seen ? true : null), 'the next boot', 180_000);
  expect(p.stdout.match(/PODVISOR-GUEST-READY boot-count=(\d+)/g)?.at(-1)).toBe(`PODVISOR-GUEST-READY boot-count=${bootCount}`);
}

/** A running VM with its network: one dnsmasq, and the same links and rules as every converged run. */
function expectConverged(): void {
  const now = podState(pod);
  expect(now.dnsmasq).toHaveLength(1);
  expect(podPids(pod, 'qemu-system-x86')).toHaveLength(1);
  const shape = { links: now.links.map((l) => l.replace(/^\d+:/, '')).sort(), rules: now.rules };
  if (converged === null) converged = shape;
  else expect(shape).toEqual(converged);
}

beforeAll(async () => {
  requireBuilt();
  const tag = randomBytes(3).toString('hex');
  name = `pv-fs-${tag}`;
  pod = `pvfs-${tag}`;
  dirs = await makeVmDirs(name);
  holdDir = await mkdtemp(path.join(tmpdir(), `pv-fs-hold-${tag}-`));
  const facts = Object.fromEntries(
    // Its node is the root namespace, so that the image server (in this process) is on the node.
    execFileSync(POD_SH, ['create', pod, '--node', 'root'], { encoding: 'utf8' })
      .split('\n')
      .filter((l) => l.includes('='))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  ) as Record<string, string>;
  baseline = podState(pod);
  // The image server listens on the node's address towards the pod, which the pod reaches by its default route.
  server = await new HttpImageServer().start(facts['NODE_IP'] ?? '127.0.0.1');
  await server.serve(IMAGE, GUEST);
  wrap('qemu-img', ' create ');
  wrap('dnsmasq', '--pid-file=');
  wrap('qemu-system-x86_64', ' -S ');
}, 60_000);

afterEach((ctx) => {
  if (ctx.task.result?.state === 'fail') failed = true;
});

afterAll(async () => {
  if (failed) {
    for (const [i, p] of runs.entries()) await keepArtifacts(`fault-stages/run-${i + 1}`, p, i === runs.length - 1 ? dirs : null);
    process.stderr.write(`artifacts kept in ${path.join(REPO, 'test/.artifacts/fault-stages')}\n`);
  }
  for (const p of runs) await p.killed();
  // Whatever a failed stage left (a stray dnsmasq, a held wrapper) goes too.
  if (dirs !== undefined) {
    for (const l of leftovers()) {
      try {
        process.kill(Number(l.split(':')[0]), 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  await server?.close();
  if (pod !== undefined) execFileSync(POD_SH, ['destroy', pod], { stdio: 'ignore' });
  await dirs?.cleanup();
  if (holdDir !== undefined) await rm(holdDir, { recursive: true, force: true });
});

describe('kill -9 at each stage of a start: nothing lost, nothing left, the next start converges', () => {
  it('the pull: podvisor killed while the body arrives; the next start resumes it with Range', async () => {
    // Slow enough that the transfer is still under way when the test acts on the bytes it sees sent.
    server.plan(IMAGE, { kind: 'slow', bytesPerSecond: 512 * 1024 });
    const p = start();
    await server.waitForBytesSent(IMAGE, 1024 * 1024);
    // Neither qemu nor dnsmasq runs yet at this stage.
    expect([...podPids(pod, 'qemu-system-x86'), ...podPids(pod, 'dnsmasq')]).toEqual([]);
    await killPodvisor(p, 'kill -9 podvisor during the pull');
    expect(types(readEvents(dirs.stateDir))).not.toContain('ImageImported');
    expectWholeLog();
  }, STAGE_MS);

  it('the overlay creation: podvisor killed while qemu-img create is held; the held qemu-img dies with it', async () => {
    arm('qemu-img');
    const p = start();
    const qemuImg = await held('qemu-img');
    // The pull went on from where it was cut: a Range request, then the base imported once.
    expect(server.requests.filter((r) => r.path === IMAGE && r.status === 206).length).toBeGreaterThanOrEqual(1);
    expect(types(readEvents(dirs.stateDir)).filter((t) => t === 'ImageImported')).toHaveLength(1);
    await killPodvisor(p, 'kill -9 podvisor during the overlay creation');
    expect(gone(qemuImg)).toBe(true);
    expect(types(readEvents(dirs.stateDir))).not.toContain('DiskCreated');
    expectWholeLog();
  }, STAGE_MS);

  it('the network attach: dnsmasq killed as it starts fails the attach cleanly; then podvisor killed there', async () => {
    arm('dnsmasq');
    const first = start();
    const dnsmasq = await held('dnsmasq');
    expect(types(readEvents(dirs.stateDir))).toContain('DiskCreated');
    kill9(dnsmasq, 'kill -9 dnsmasq during the network attach');
    const exit = await first.exited;
    expect(exit).toEqual({ code: 3, signal: null });
    expect(await endOfRun()).toBeUndefined();
    expect(podState(pod).links).toEqual(baseline.links);
    expectWholeLog();

    arm('dnsmasq');
    const second = start();
    await held('dnsmasq');
    await killPodvisor(second, 'kill -9 podvisor during the network attach');
    expectWholeLog();
  }, STAGE_MS);

  it('the launch: dnsmasq killed while qemu is held is restarted; qemu killed there fails the run (exit 3); the next start boots the guest', async () => {
    arm('qemu-system-x86_64');
    const p = start();
    const qemu = await held('qemu-system-x86_64');
    const [dnsmasq] = podPids(pod, 'dnsmasq');
    expect(dnsmasq).toBeDefined();
    const after = readEvents(dirs.stateDir).at(-1)?.position ?? 0;
    // While qemu is held (QMP waits 10 s for it): the dnsmasq supervision restarts dnsmasq.
    kill9(dnsmasq as number, 'kill -9 dnsmasq during the launch');
    await waitForWarning('NOTICE_DNSMASQ_RESTARTED', after);
    // A qemu that dies before QMP answers is a failed start (ERR_QEMU_START), not a crash to restart.
    kill9(qemu, 'kill -9 qemu during the launch');
    expect(await p.exited).toEqual({ code: 3, signal: null });
    const log = readEvents(dirs.stateDir).filter((e) => e.position > after);
    expect(log.find((e) => e.type === 'VmFailed')?.data).toMatchObject({ code: 'ERR_QEMU_START' });
    // The teardown ran: it finished (NetworkDetached) or ran out of its slice and said so (seen under load).
    expect(log.some((e) => e.type === 'NetworkDetached' || (e.type === 'WarningRaised' && (e.data as { code: string }).code === 'WARN_NETWORK_DETACH'))).toBe(true);
    stray = await endOfRun();
    expectWholeLog();

    const next = start();
    await nextBoot(next);
    if (stray !== undefined) expect(gone(stray)).toBe(true);
    expectConverged();
    expectWholeLog();
  }, STAGE_MS);

  it('the running VM: dnsmasq is restarted, qemu is restarted with the disk intact, podvisor killed leaves nothing', async () => {
    const p = runs.at(-1) as PodvisorProcess;
    let after = readEvents(dirs.stateDir).at(-1)?.position ?? 0;
    const [dnsmasq] = podPids(pod, 'dnsmasq');
    kill9(dnsmasq as number, 'kill -9 dnsmasq while the VM runs');
    await waitForWarning('NOTICE_DNSMASQ_RESTARTED', after);
    await until(() => podPids(pod, 'dnsmasq').length === 1 && podPids(pod, 'dnsmasq')[0] !== dnsmasq, 'the new dnsmasq');
    expectConverged();

    after = readEvents(dirs.stateDir).at(-1)?.position ?? 0;
    const [qemu] = podPids(pod, 'qemu-system-x86');
    kill9(qemu as number, 'kill -9 qemu while the VM runs');
    await nextBoot(p);
    expect(types(readEvents(dirs.stateDir).filter((e) => e.position > after))).toEqual(expect.arrayContaining(['VmExited', 'VmRestartScheduled', 'VmStarting', 'VmStarted']));
    expectConverged();
    expectWholeLog();

    stray = await killPodvisor(p, 'kill -9 podvisor while the VM runs');
    expect(stray).toBeDefined();
    expectWholeLog();
  }, STAGE_MS);

  it('the launch again: podvisor killed while qemu is held; the next start stops the stray dnsmasq and converges, and SIGTERM leaves the pod as it was', async () => {
    arm('qemu-system-x86_64');
    const killed = start();
    const qemu = await held('qemu-system-x86_64');
    // The start stopped the dnsmasq the killed run left (its pid file names it) before it started its own.
    expect(gone(stray as number)).toBe(true);
    stray = await killPodvisor(killed, 'kill -9 podvisor during the launch');
    expect(gone(qemu)).toBe(true);
    expectWholeLog();

    const last = start();
    await nextBoot(last);
    expect(gone(stray as number)).toBe(true);
    expectConverged();
    last.signal('SIGTERM');
    expect((await last.exited).code).toBe(0);
    expectWholeLog();
    // Nothing left behind: processes, links, nftables, tmp files, mounts.
    expect(leftovers()).toEqual([]);
    const end = podState(pod);
    expect(end.links).toEqual(baseline.links);
    expect(end.rules).toEqual(baseline.rules);
    expect(readFileSync('/proc/mounts', 'utf8')).not.toContain(dirs.root);
    const tmp = path.join(dirs.imagesDir, '.tmp');
    expect(existsSync(tmp) ? readdirSync(tmp) : []).toEqual([]);
    expect(readdirSync(dirs.stateDir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  }, STAGE_MS);

  it('docs/reliability.md lists every fault this suite injects, and its figures are these', () => {
    expect([...injected].sort()).toEqual([...FAULTS].sort());
    const doc = readFileSync(path.join(REPO, 'docs/reliability.md'), 'utf8');
    for (const fault of FAULTS) expect(doc, fault).toContain(`| ${fault} |`);
    expect(doc).toContain(`The fault suite (\`test/e2e/fault-stages.e2e.test.ts\`) injects ${FAULTS.length} faults in one run, and survives ${FAULTS.length}`);
  });
});
