import { execFile } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { PodvisorError } from './errors.js';
import { SilentLogger } from './logger.js';
import { ExecaProcessRunner, terminateChild } from './process-runner.js';

const runner = new ExecaProcessRunner(new SilentLogger());
let dir = '';
afterEach(() => {
  if (dir !== '') rmSync(dir, { recursive: true, force: true });
  dir = '';
});

/** Resolves once /proc/<pid> is gone or a zombie, or rejects after `ms`. */
function gone(pid: number, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  return new Promise((resolve, reject) => {
    const check = (): void => {
      let state = 'X';
      try {
        const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
        state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
      } catch {
        state = 'X';
      }
      if (state === 'X' || state === 'Z') resolve();
      else if (Date.now() > deadline) reject(new Error(`pid ${pid} still alive after ${ms} ms`));
      else setImmediate(check);
    };
    check();
  });
}

describe('ExecaProcessRunner', () => {
  it('passes open file descriptors to the child as fd 3, 4, ...', async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'pv-runner-'));
    writeFileSync(path.join(dir, 'a'), 'first');
    writeFileSync(path.join(dir, 'b'), 'second');
    const fds = [openSync(path.join(dir, 'a'), 'r'), openSync(path.join(dir, 'b'), 'r')];
    const child = await runner.spawn('sh', ['-c', 'cat <&3; echo; cat <&4'], { name: 'cat', extraFds: fds });
    let out = '';
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    expect((await child.exited).code).toBe(0);
    expect(out).toBe('first\nsecond');
    for (const fd of fds) closeSync(fd);
  });

  it('names a missing binary with the Debian package to install', async () => {
    const err = await runner.spawn('qemu-img-that-is-not-there', [], { name: 'x' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PodvisorError);
    expect((err as PodvisorError).code).toBe('ERR_PROCESS_NOT_FOUND');
    const failed = await runner.run('sh', ['-c', 'echo boom >&2; exit 3']).catch((e: unknown) => e);
    expect((failed as PodvisorError).code).toBe('ERR_PROCESS_FAILED');
    expect((failed as PodvisorError).message).toContain('boom');
  });

  it('terminateChild escalates to SIGKILL for a child that ignores SIGTERM', async () => {
    const child = await runner.spawn('sh', ['-c', 'trap "" TERM; echo ready; while :; do sleep 1; done'], { name: 'stubborn' });
    await new Promise<void>((resolve) => child.stdout?.once('data', () => resolve()));
    expect(await terminateChild(child, 200)).toBe('killed');
    expect((await child.exited).signal).toBe('SIGKILL');
  });

  it('a child, long- or short-lived, dies with podvisor even when podvisor is SIGKILLed (PR_SET_PDEATHSIG)', async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'pv-runner-'));
    const script = path.join(dir, 'parent.mjs');
    const runnerModule = fileURLToPath(new URL('./process-runner.ts', import.meta.url));
    expect(existsSync(runnerModule)).toBe(true);
    // A parent process that starts a long-lived child through the runner, prints its pid, and waits.
    writeFileSync(
      script,
      `import { ExecaProcessRunner } from ${JSON.stringify(path.join(path.dirname(runnerModule), '../dist/process-runner.js'))};
       import { SilentLogger } from ${JSON.stringify(path.join(path.dirname(runnerModule), '../dist/logger.js'))};
       const runner = new ExecaProcessRunner(new SilentLogger());
       const c = await runner.spawn('sleep', ['300'], { name: 'sleep' });
       // A short-lived child (run) too: it says its pid in a file, then becomes sleep.
       void runner.run('sh', ['-c', 'echo $$ > ${path.join(dir, 'run.pid')}.tmp && mv ${path.join(dir, 'run.pid')}.tmp ${path.join(dir, 'run.pid')} && exec sleep 300']);
       process.stdout.write(String(c.pid) + '\\n');
       setInterval(() => {}, 1000);`,
    );
    const parent = execFile(process.execPath, [script]);
    const childPid = await new Promise<number>((resolve, reject) => {
      parent.stdout?.once('data', (d: Buffer) => resolve(Number(d.toString().trim())));
      parent.once('exit', (code) => reject(new Error(`parent exited ${code}: is packages/core built?`)));
    });
    expect(existsSync(`/proc/${childPid}`)).toBe(true);
    const pidFile = path.join(dir, 'run.pid');
    while (!existsSync(pidFile)) await new Promise((r) => setTimeout(r, 10));
    const runPid = Number(readFileSync(pidFile, 'utf8').trim());
    parent.kill('SIGKILL');
    await gone(childPid, 5000);
    await gone(runPid, 5000);
  });

  it('terminateChild gives up on a child it may not signal (another user, no CAP_KILL) instead of hanging', async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'pv-runner-'));
    const script = path.join(dir, 'no-kill.mjs');
    const dist = path.join(path.dirname(fileURLToPath(import.meta.url)), '../dist');
    // As in a container without CAP_KILL where dnsmasq dropped to nobody: the
    // runner's child changes its user, and its parent's kill() fails with EPERM.
    writeFileSync(
      script,
      `import { ExecaProcessRunner, terminateChild } from ${JSON.stringify(path.join(dist, 'process-runner.js'))};
       import { SilentLogger } from ${JSON.stringify(path.join(dist, 'logger.js'))};
       const c = await new ExecaProcessRunner(new SilentLogger()).spawn('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'sleep', '300'], { name: 'sleep' });
       process.stdout.write(c.pid + '\\n');
       // Wait on the state, not a time: setpriv has become nobody once /proc shows uid 65534.
       const { readFileSync } = await import('node:fs');
       const uid = () => readFileSync('/proc/' + c.pid + '/status', 'utf8').split('\\n').find((l) => l.startsWith('Uid:'))?.split(/[ \\t]+/)[1];
       while (uid() !== '65534') await new Promise((r) => setImmediate(r));
       const outcome = await terminateChild(c, 300, 300);
       process.stdout.write(JSON.stringify({ outcome, running: c.running }) + '\\n');
       process.exit(0);`,
    );
    let out = '';
    const parent = execFile('setpriv', ['--bounding-set', '-kill', process.execPath, script]);
    parent.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    const exit = new Promise<number | null>((resolve) => parent.once('close', resolve));
    try {
      expect(await exit).toBe(0);
      const [, result] = out.trim().split('\n');
      expect(JSON.parse(result ?? '')).toEqual({ outcome: 'survived', running: true });
    } finally {
      // The sleeper outlives its parent (a credential change clears PR_SET_PDEATHSIG); this test may kill it.
      const pid = Number(out.split('\n')[0]);
      if (pid > 1) {
        process.kill(pid, 'SIGKILL');
        await gone(pid, 5000);
      }
    }
  });
});
