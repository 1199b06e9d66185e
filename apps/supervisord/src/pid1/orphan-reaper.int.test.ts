import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ExecaProcessRunner, SilentLogger } from '@podvisor/core';
import { loadNativeReaper } from './native-reaper.js';
import { OrphanReaper, type ReapedOrphan } from './orphan-reaper.js';
import { parseProcStat, type ProcStat } from './proc-stat.js';
import { readProcStats } from './read-proc-stats.js';

/**
 * `sh` arguments that leave an orphan: the shell backgrounds a subshell with no
 * stdio of its own, prints its pid and exits. The subshell runs `body` only once
 * the shell is gone (`$$` is the parent shell's pid), so the shell can never
 * reap it first: it always dies as the orphan of whoever adopted it.
 */
const ORPHAN = (body: string) => ORPHAN_NOW(`while kill -0 $$ 2>/dev/null; do sleep 0.01; done; ${body}`);

/** The same, with `body` started at once: for a body that cannot end before its shell does. */
const ORPHAN_NOW = (body: string) => ['-c', `(${body}) </dev/null >/dev/null 2>&1 & echo $!; exit 0`];

/**
 * A shell loop that returns once `file` exists: an orphan that must still be
 * there when the test looks at it waits on the test, not on a time.
 */
const UNTIL_EXISTS = (file: string) => `while [ ! -e '${file}' ]; do sleep 0.01; done`;

function zombieChildren(parent: number): ProcStat[] {
  return readProcStats().filter((p) => p.state === 'Z' && p.ppid === parent);
}

function ppidOf(pid: number): number | undefined {
  try {
    return parseProcStat(readFileSync(`/proc/${pid}/stat`, 'utf8'))?.ppid;
  } catch {
    return undefined;
  }
}

/** Rejects after `ms` so that a stolen child fails the test instead of hanging it. */
function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

describe.skipIf(process.platform !== 'linux')('OrphanReaper as a child subreaper', () => {
  const log = new SilentLogger();
  let runner: ExecaProcessRunner;
  let reaper: OrphanReaper;
  let reaped: ReapedOrphan[];
  let orphans: number[];
  let ownedPids: () => ReadonlySet<number>;

  /** Resolves with the report of `pid`'s reaping, already seen or still to come. */
  function reapedOrphan(pid: number): Promise<ReapedOrphan> {
    return within(10_000, `reaping orphan ${pid}`, new Promise<ReapedOrphan>((resolve) => {
      const seen = reaped.find((o) => o.pid === pid);
      if (seen !== undefined) return resolve(seen);
      const off = reaper.onDidReap((o) => {
        if (o.pid !== pid) return;
        off();
        resolve(o);
      });
    }));
  }

  async function startOrphan(body: string, args = ORPHAN(body)): Promise<number> {
    const { stdout } = await runner.run('sh', args);
    const pid = Number(stdout.trim());
    orphans.push(pid);
    return pid;
  }

  function startReaper(): void {
    const loaded = OrphanReaper.load({ ownedPids: () => ownedPids(), log, intervalMs: 60_000 });
    if (loaded.reaper === null) throw loaded.reason;
    reaper = loaded.reaper;
    reaper.onDidReap((o) => reaped.push(o));
    reaper.start();
  }

  beforeEach(() => {
    runner = new ExecaProcessRunner(log);
    ownedPids = () => runner.ownedPids();
    reaped = [];
    orphans = [];
    startReaper();
  });

  afterEach(async () => {
    // Orphans still alive are killed and reaped before the reaper stops, so no zombie outlives the test.
    for (const pid of orphans) {
      if (reaped.some((o) => o.pid === pid)) continue;
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        continue;
      }
      await reapedOrphan(pid).catch(() => undefined);
    }
    reaper.stop();
    // A child stolen from libuv never reports its exit: bound the wait, the test has already failed.
    await within(5_000, 'runner.stopAll', runner.stopAll(1000)).catch(() => undefined);
  });

  it('reaps an orphan re-parented to this process, with its exit code, and leaves no zombie', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'podvisor-orphan-'));
    try {
      const go = join(dir, 'go');
      const pid = await startOrphan(`${UNTIL_EXISTS(go)}; exit 7`);
      // The shell has exited: the orphan now belongs to us, the subreaper, not to the host's init.
      expect(ppidOf(pid)).toBe(process.pid);
      writeFileSync(go, '');
      const orphan = await reapedOrphan(pid);
      expect(orphan).toEqual({ pid, comm: 'sh', code: 7, signal: null });
      expect(zombieChildren(process.pid)).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reports an orphan killed by a signal with the signal name', async () => {
    const pid = await startOrphan('exec sleep 30', ORPHAN_NOW('exec sleep 30'));
    expect(ppidOf(pid)).toBe(process.pid);
    process.kill(pid, 'SIGKILL');
    // comm is `sh` or `sleep`, depending on whether the subshell had reached its exec.
    expect(await reapedOrphan(pid)).toMatchObject({ pid, code: null, signal: 'SIGKILL' });
    expect(zombieChildren(process.pid)).toEqual([]);
  });

  it('leaves the runner its own children: long-lived children still report their exit through `exited`', async () => {
    const owned = await Promise.all(
      ['1', '0.1', '0.2', '0.3', '0.4', '0.5', '0.6', '0.7'].map((s, i) => runner.spawn('sleep', [s], { name: `owned-sleep-${i}` })),
    );
    expect(owned.every((c) => runner.ownedPids().has(c.pid))).toBe(true);
    // Orphans dying while the owned children run make the reaper sweep on every SIGCHLD.
    const pids = await Promise.all([startOrphan('exit 3'), startOrphan('sleep 0.2; exit 4'), startOrphan('sleep 0.5; exit 5')]);
    const exits = await within(10_000, 'the owned children to exit', Promise.all(owned.map((c) => c.exited)));
    expect(exits.map((e) => [e.code, e.signal])).toEqual(owned.map(() => [0, null]));
    const codes = await Promise.all(pids.map(async (pid) => (await reapedOrphan(pid)).code));
    expect(codes).toEqual([3, 4, 5]);
    expect(reaped.map((o) => o.pid).sort((a, b) => a - b)).toEqual([...pids].sort((a, b) => a - b));
    expect(zombieChildren(process.pid)).toEqual([]);
  });

  it('does not steal libuv children even when the runner does not report them as owned', async () => {
    // The worst case: children spawned behind the runner's back. Only the
    // second-sighting rule protects them; a stolen child's exit never arrives.
    reaper.stop();
    ownedPids = () => new Set();
    startReaper();
    const delays = Array.from({ length: 16 }, (_, i) => (i % 8) * 0.02);
    const results = await within(
      20_000,
      'the unowned children to exit',
      Promise.all(delays.map((d, i) => runner.run('sh', ['-c', `sleep ${d}; exit ${i + 1}`], { check: false }))),
    );
    expect(results.map((r) => r.exitCode)).toEqual(delays.map((_d, i) => i + 1));
    expect(reaped).toEqual([]);
  });

  it('stops: no more sweeps, so a new orphan stays a zombie until the next start', async () => {
    reaper.stop();
    const pid = await startOrphan('exit 9');
    await within(10_000, `orphan ${pid} to become a zombie`, waitForZombie(pid));
    expect(reaped).toEqual([]);
    startReaper();
    expect(await reapedOrphan(pid)).toMatchObject({ pid, code: 9 });
  });
});

describe.skipIf(process.platform !== 'linux')('the native reap() on a real zombie', () => {
  it('validates every pid before waiting for any, then waits for exactly the pids given', async () => {
    const loaded = loadNativeReaper();
    if (loaded.native === null) throw loaded.error;
    expect(loaded.native.setChildSubreaper()).toBe(true);
    const runner = new ExecaProcessRunner(new SilentLogger());
    const first = Number((await runner.run('sh', ORPHAN('exit 11'))).stdout.trim());
    const second = Number((await runner.run('sh', ORPHAN('exit 12'))).stdout.trim());
    try {
      await within(10_000, 'the orphans to become zombies', Promise.all([waitForZombie(first), waitForZombie(second)]));
      expect(() => loaded.native?.reap([first, second, 0])).toThrow(RangeError);
      expect(zombieChildren(process.pid).map((z) => z.pid).sort((a, b) => a - b)).toEqual([first, second].sort((a, b) => a - b));
      expect(loaded.native.reap([first])).toEqual([{ pid: first, status: 11 << 8, code: 11, signal: null }]);
      expect(zombieChildren(process.pid).map((z) => z.pid)).toEqual([second]);
      expect(loaded.native.reap([first, second])).toEqual([{ pid: second, status: 12 << 8, code: 12, signal: null }]);
      expect(zombieChildren(process.pid)).toEqual([]);
    } finally {
      loaded.native.reap([first, second]);
    }
  });
});

/** Waits, bounded by the caller, until `pid` is a zombie child of this process; polls /proc on the loop. */
async function waitForZombie(pid: number): Promise<void> {
  while (!zombieChildren(process.pid).some((z) => z.pid === pid)) {
    await new Promise((resolve) => setImmediate(resolve));
  }
}

describe.skipIf(process.getuid?.() !== 0)('OrphanReaper as the real PID 1 of a new pid namespace', () => {
  const repo = fileURLToPath(new URL('../../../../', import.meta.url));
  const viteNode = join(createRequire(import.meta.url).resolve('vite-node/package.json'), '..', 'vite-node.mjs');
  let dir: string;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'podvisor-pid1-'));
    writeFileSync(join(dir, 'pid1-fixture.ts'), PID1_FIXTURE(fileURLToPath(new URL('.', import.meta.url)), join(dir, 'go')));
  });

  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('reaps an orphan re-parented to PID 1, and the runner still sees its own child exit', async () => {
    const runner = new ExecaProcessRunner(new SilentLogger());
    // Everything in the namespace dies with its PID 1, and --kill-child kills PID 1 if unshare is killed
    // (past timeoutMs), so nothing outlives the test.
    const result = await runner.run(
      'unshare',
      ['--pid', '--fork', '--kill-child', '--mount-proc', process.execPath, viteNode, '--config', join(repo, 'vitest.config.ts'), join(dir, 'pid1-fixture.ts')],
      // vite-node transforms the fixture's sources first: seconds, many more on a loaded machine.
      { cwd: repo, timeoutMs: 120_000, check: false },
    );
    const report = result.stdout.split('\n').find((l) => l.startsWith('{"pid1":'));
    expect(report, `no report; exit ${result.exitCode}, stderr:\n${result.stderr}`).toBeDefined();
    const r = JSON.parse(report ?? '{}') as Record<string, unknown>;
    expect(r).toMatchObject({
      pid1: 1,
      orphanPpidBeforeExit: 1,
      orphan: { comm: 'sh', code: 7, signal: null },
      ownedExit: { code: 0, signal: null },
      zombiesLeft: [],
    });
    expect((r.orphan as ReapedOrphan).pid).toBe(r.orphanPid);
    expect(result.exitCode).toBe(0);
    // Past the run's own bound, so that a slow fixture fails with its output, not the test runner's timeout.
  }, 150_000);
});

/** A script for vite-node, run as PID 1: it exits 0 only if the orphan was reaped. */
const PID1_FIXTURE = (pid1Dir: string, go: string) => `
import { writeFileSync } from 'node:fs';
import { ExecaProcessRunner, SilentLogger } from '@podvisor/core';
import { OrphanReaper } from ${JSON.stringify(join(pid1Dir, 'orphan-reaper.ts'))};
import { readProcStats } from ${JSON.stringify(join(pid1Dir, 'read-proc-stats.ts'))};

// The bound's timer keeps the loop alive: the reaper's timers are unref'd, and with nothing else pending
// while the orphan sleeps, Node would end the fixture (exit 0, no report) in the middle of its await.
const within = (ms, p) => Promise.race([p, new Promise((_r, reject) => setTimeout(() => reject(new Error('timed out')), ms))]);

const runner = new ExecaProcessRunner(new SilentLogger());
const loaded = OrphanReaper.load({ ownedPids: () => runner.ownedPids(), log: new SilentLogger() });
if (loaded.reaper === null) throw loaded.reason;
const reaped = [];
const orphanReaped = new Promise((resolve) => loaded.reaper.onDidReap((o) => { reaped.push(o); resolve(); }));
loaded.reaper.start();

const owned = await runner.spawn('sleep', ['0.5'], { name: 'owned-sleep' });
// The orphan waits for the go file, so that it is still there to be looked at.
const { stdout } = await runner.run('sh', ${JSON.stringify(ORPHAN(`${UNTIL_EXISTS(go)}; exit 7`))});
const orphanPid = Number(stdout.trim());
const orphanPpidBeforeExit = readProcStats().find((p) => p.pid === orphanPid)?.ppid;
writeFileSync(${JSON.stringify(go)}, '');
await within(10_000, orphanReaped).catch(() => undefined);
const ownedExit = await within(10_000, owned.exited).catch(() => undefined);
loaded.reaper.stop();
const report = {
  pid1: process.pid,
  orphanPid,
  orphanPpidBeforeExit,
  orphan: reaped.find((o) => o.pid === orphanPid),
  ownedExit: ownedExit && { code: ownedExit.code, signal: ownedExit.signal },
  zombiesLeft: readProcStats().filter((p) => p.state === 'Z' && p.ppid === 1),
};
const ok = report.pid1 === 1 && report.orphan?.code === 7 && report.ownedExit?.code === 0 && report.zombiesLeft.length === 0;
// Exit only once the report is written: stdout is a pipe, and exit() drops what is still queued on it.
process.stdout.write(JSON.stringify(report) + '\\n', () => process.exit(ok ? 0 : 1));
`;
