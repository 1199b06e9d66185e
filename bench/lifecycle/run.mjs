#!/usr/bin/env node
// bench/lifecycle: three figures of the lifecycle, in one run.
//  1. SIGTERM → exit, and how much of it is podvisor beyond the guest's own
//     shutdown (SIGTERM → qemu exited, read from the VmExited event), against
//     the seeds' behaviour: qemu as the container's process under a shell
//     `exec qemu` (same qemu command line, from podvisor's own log), where
//     SIGTERM kills the guest at once (no ACPI, no clean shutdown).
//  2. qemu killed (SIGKILL from outside) → a new qemu running (its VmStarted),
//     with restart policy `always` and a zero backoff, so the backoff is excluded.
//  3. The decider's throughput: decisions per second on a mix of commands.
// Usage: node bench/lifecycle/run.mjs [iterations] [--decider-only]   (needs `make build guest`)
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = fileURLToPath(new URL('../../', import.meta.url));
const cli = path.join(repo, 'apps/supervisord/dist/bundle/podvisor.cjs');
const guest = path.join(repo, 'test/guest/.cache/guest.qcow2');
// `--decider-only`: only the third figure (no VM).
const deciderOnly = process.argv.includes('--decider-only');
const iterations = Number(process.argv.find((a) => /^\d+$/.test(a)) ?? 3);
const root = mkdtempSync(path.join(tmpdir(), 'pv-bench-lifecycle-'));
const children = new Set();
// Removed however the bench ends: done, failed or interrupted; nothing it started outlives it.
const cleanup = () => {
  for (const c of children) c.kill('SIGKILL');
  rmSync(root, { recursive: true, force: true });
};
process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));

const now = () => Number(process.hrtime.bigint()) / 1e6;

/** A child whose stdout/stderr are kept and can be waited on. */
function run(argv, env) {
  // stdin stays an open pipe: qemu's `-chardev stdio` closes the serial console when its stdin ends.
  const child = spawn(argv[0], argv.slice(1), { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
  children.add(child);
  const p = { child, stdout: '', stderr: '', waiters: new Set(), exitedAt: null };
  const wake = () => p.waiters.forEach((w) => w());
  child.stdout.setEncoding('utf8').on('data', (d) => ((p.stdout += d), wake()));
  child.stderr.setEncoding('utf8').on('data', (d) => ((p.stderr += d), wake()));
  p.exited = new Promise((resolve) =>
    child.on('close', (code, signal) => {
      p.exitedAt = now();
      children.delete(child);
      resolve({ code, signal });
      wake();
    }),
  );
  p.until = (check, what, timeoutMs = 300_000) =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}\n${p.stderr.slice(-2000)}`)), timeoutMs);
      const poll = () => {
        const m = check();
        if (m) {
          clearTimeout(timer);
          p.waiters.delete(poll);
          resolve(m);
        } else if (p.exitedAt !== null) {
          clearTimeout(timer);
          p.waiters.delete(poll);
          reject(new Error(`exited before ${what}\n${p.stderr.slice(-2000)}`));
        }
      };
      p.waiters.add(poll);
      poll();
    });
  return p;
}

/** podvisor's JSON log lines with `msg` equal to `type` (each event is logged under its type). */
function logged(p, type) {
  return p.stderr.split('\n').flatMap((l) => {
    try {
      const j = JSON.parse(l);
      return j.msg === type ? [j] : [];
    } catch {
      return [];
    }
  });
}

let n = 0;
function env(extra = {}) {
  n += 1;
  const dir = path.join(root, `vm${n}`);
  return {
    HOSTNAME: `pvbench${n}`,
    IMG_SOURCE: guest,
    IMG_TARGET: 'guest.qcow2',
    IMG_RAM_MB: '256',
    PODVISOR_IMAGES_DIR: path.join(root, 'images'),
    PODVISOR_DISK_DIR: path.join(dir, 'disk'),
    PODVISOR_USERDATA: path.join(root, 'none'),
    PODVISOR_METADATA: path.join(root, 'none'),
    PODVISOR_NETWORK: 'none',
    PODVISOR_ACCEL: 'tcg',
    PODVISOR_LISTEN: '127.0.0.1:0',
    NO_VNC: '1',
    ...extra,
  };
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
};
const fmt = (x) => x.toFixed(0);

// ---------------------------------------------------------------- 1. SIGTERM → exit
const pvTotal = [];
const pvGuest = [];
const pvBeyond = [];
const seedTotal = [];
let qemuArgv = null;
for (let i = 0; i < (deciderOnly ? 0 : iterations); i++) {
  const p = run([process.execPath, cli, 'run'], env());
  await p.until(() => /PODVISOR-GUEST-READY/.test(p.stdout), 'the guest READY marker');
  qemuArgv ??= logged(p, 'spawned').find((l) => l.name === 'qemu')?.argv;
  const t0 = now();
  const wall0 = Date.now();
  p.child.kill('SIGTERM');
  const exit = await p.exited;
  if (exit.code !== 0) throw new Error(`podvisor exited ${exit.code} after SIGTERM`);
  const total = p.exitedAt - t0;
  const vmExited = logged(p, 'VmExited')[0];
  const guestMs = Date.parse(vmExited.time) - wall0;
  pvTotal.push(total);
  pvGuest.push(guestMs);
  pvBeyond.push(total - guestMs);

  // The seeds: `exec qemu` under a shell, SIGTERM straight to qemu (same command line, not paused, its own disk copy).
  const disk = path.join(root, `seed${i}.qcow2`);
  const argv = qemuArgv
    .filter((a, j, all) => a !== '-S' && !(all[j - 1] === '-pidfile') && a !== '-pidfile')
    .map((a) => a.replace(/filename=[^,]*\.qcow2/, `filename=${disk}`))
    .map((a) => a.replace(/path=[^,]*qmp\.sock/, `path=${path.join(root, `seed${i}.qmp`)}`));
  await new Promise((resolve, reject) => {
    const c = spawn('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', guest, disk], { stdio: 'inherit' });
    c.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`qemu-img create: ${code}`))));
  });
  const quoted = argv.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  const s = run(['sh', '-c', `exec ${quoted}`], {});
  await s.until(() => /PODVISOR-GUEST-READY/.test(s.stdout), 'the seed guest READY marker');
  const s0 = now();
  s.child.kill('SIGTERM');
  await s.exited;
  seedTotal.push(s.exitedAt - s0);
}

// ---------------------------------------------------------------- 2. qemu killed → new qemu running
const config = path.join(root, 'restart.yaml');
writeFileSync(config, 'restart:\n  policy: always\n  backoffInitialMs: 0\n  backoffMaxMs: 0\n  maxRestarts: 1000\n');
const relaunch = [];
if (!deciderOnly) {
  const p = run([process.execPath, cli, 'run', '--config', config], env());
  await p.until(() => logged(p, 'VmStarted').length >= 1, 'the first VmStarted');
  for (let i = 0; i < iterations; i++) {
    const started = logged(p, 'VmStarted');
    const pid = started.at(-1).data.pid;
    const t0 = now();
    process.kill(pid, 'SIGKILL');
    await p.until(() => logged(p, 'VmStarted').length > started.length, 'the next VmStarted');
    relaunch.push(now() - t0);
  }
  p.child.kill('SIGQUIT');
  await p.exited;
}

// ---------------------------------------------------------------- 3. the decider's throughput
const { lifecycleDecider, splitStopBudget, DEFAULT_RESTART_SETTINGS } = await import(path.join(repo, 'packages/core/dist/index.js'));
const decider = lifecycleDecider({ restart: { ...DEFAULT_RESTART_SETTINGS, policy: 'always', maxRestarts: 1e9 }, stop: splitStopBudget(30), powerdownIntervalMs: 1000, qmpTimeoutMs: 2000 });
let state = decider.initialState();
let t = Date.parse('2026-01-01T00:00:00Z');
let decisions = 0;
const step = (c) => {
  const d = decider.decide(c, state);
  for (const e of d.events) state = decider.evolve(state, { ...e, at: new Date(c.now).toISOString() });
  decisions += 1;
  return d;
};
step({ type: 'StartRun', now: t, started: { version: 'bench', pid: 1, hostname: 'b', accel: 'tcg', restartPolicy: 'always', network: 'none' } });
step({ type: 'PrepareSucceeded', now: (t += 1) });
const cpu0 = process.cpuUsage();
const t1 = now();
while (now() - t1 < 2000) {
  for (let k = 0; k < 100; k++) {
    step({ type: 'LaunchSucceeded', now: (t += 1), pid: 7, qmpVersion: '7.2', argv: [], startMs: 1 });
    step({ type: 'QmpEventObserved', now: (t += 1), event: 'RESUME', data: {} });
    step({ type: 'ActionRequested', now: (t += 1), action: 'restart', by: 'bench' });
    step({ type: 'DeadlineReached', now: (t += 1000), timer: 'stop' });
    step({ type: 'QmpCallFailed', now: (t += 1), command: 'system_powerdown', timedOut: true, message: 'timeout' });
    step({ type: 'SignalReceived', now: (t += 1), signal: 'SIGHUP' });
    step({ type: 'QemuExited', now: (t += 1), code: 0, signal: null, stderrTail: '' });
  }
}
const perSecond = decisions / ((now() - t1) / 1000);
const cpu = process.cpuUsage(cpu0);
const perCpuSecond = decisions / ((cpu.user + cpu.system) / 1e6);

console.log(`machine: ${cpus().length} × ${cpus()[0]?.model}, node ${process.version}, ${new Date().toISOString().slice(0, 10)}, ${iterations} runs each`);
console.log('| | median ms | min ms | max ms |');
console.log('|---|---|---|---|');
const row = (label, xs) => xs.length > 0 && console.log(`| ${label} | ${fmt(median(xs))} | ${fmt(Math.min(...xs))} | ${fmt(Math.max(...xs))} |`);
row('podvisor: SIGTERM → exit', pvTotal);
row('… of which the guest’s own shutdown (SIGTERM → qemu exited)', pvGuest);
row('… podvisor beyond the guest’s shutdown', pvBeyond);
row('seeds (`exec qemu`): SIGTERM → exit (guest killed, no shutdown)', seedTotal);
row('qemu SIGKILLed → new qemu running (backoff 0)', relaunch);
if (!deciderOnly) console.log(`| ratio: podvisor beyond the guest / seeds' whole stop | ${(median(pvBeyond) / median(seedTotal)).toFixed(2)} | | |`);
console.log(`| decider: decisions per wall-clock second | ${fmt(perSecond)} | | |`);
console.log(`| decider: decisions per CPU second | ${fmt(perCpuSecond)} | | |`);
