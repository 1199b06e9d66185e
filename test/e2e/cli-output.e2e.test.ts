/**
 * The real `podvisor` binary's output through pipes, and hostile YAML at its
 * front door. A log of 10,000 events (written by the real SQLite store) must
 * reach `wc -l` whole in every run, both read from the file (`podvisor events`)
 * and paged through the control endpoint (`podvisor ctl events`, over the real
 * unix socket); a reader that goes away ends the command quietly with 141, a
 * full disk behind `> file` is an error (exit 1); `events --follow` keeps
 * printing what another writer commits until a signal; a
 * "billion laughs" config file is a configuration error (exit 2), not a crash.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { PodvisorError, SilentLogger, projectVm, type DomainEvent } from '@podvisor/core';
import { SqliteEventStore } from '@podvisor/core/sqlite';
import { billionLaughsYaml } from '@podvisor/core/testing';
import { startControlServer, type ControlServer } from '../../apps/supervisord/src/http/control-server.js';
import { CLI, PodvisorProcess, makeVmDirs, requireBuilt, vmEnv, type VmDirs } from './support/podvisor-process.js';

const run = promisify(execFile);
const EVENTS = 10_000;
const RUNS = 3;

let dirs: VmDirs;
let store: SqliteEventStore | null = null;
let server: ControlServer | null = null;

/** Runs a shell pipeline; `$PODVISOR` is the binary. */
async function sh(pipeline: string): Promise<{ stdout: string; stderr: string }> {
  return run('sh', ['-c', pipeline], { env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', PODVISOR: `${process.execPath} ${CLI}` }, maxBuffer: 64 * 1024 * 1024 });
}

/** The state dir with a log of `EVENTS` events, written by the real SQLite store in batches as a daemon would. */
async function logOfTenThousand(): Promise<SqliteEventStore> {
  await mkdir(dirs.stateDir, { recursive: true });
  const s = SqliteEventStore.open({ path: path.join(dirs.stateDir, 'events.db') });
  for (let i = 0; i < EVENTS; i += 500) {
    const batch: DomainEvent[] = [];
    for (let j = i; j < i + 500; j++) batch.push({ type: 'ImagePullProgressed', data: { source: 'https://images.example/base.qcow2', target: 'base.qcow2', bytes: j, total: EVENTS, percent: j / 100, bytesPerSecond: 1e6 } });
    s.append('pv-pipe', batch);
  }
  expect(s.lastPosition()).toBe(EVENTS);
  return s;
}

beforeAll(() => requireBuilt());

beforeEach(async () => {
  dirs = await makeVmDirs('pv-e2e-pipe');
});

afterEach(async () => {
  await server?.close();
  server = null;
  store?.close();
  store = null;
  await dirs.cleanup();
});

describe('podvisor output through a pipe', () => {
  it(`podvisor events --json | wc -l counts all ${EVENTS} events in each of ${RUNS} runs`, async () => {
    store = await logOfTenThousand();
    for (let i = 0; i < RUNS; i++) {
      const r = await sh(`$PODVISOR events --json --state-dir '${dirs.stateDir}' | wc -l`);
      expect([i, r.stdout.trim(), r.stderr]).toEqual([i, String(EVENTS), '']);
    }
    // The text form too, and the last line is the last event.
    const tail = await sh(`$PODVISOR events --state-dir '${dirs.stateDir}' | tail -n 1`);
    expect(tail.stdout).toMatch(new RegExp(`^ *${EVENTS}  `));
  });

  it(`podvisor ctl events --json | wc -l pages through the control socket to all ${EVENTS} events in each of ${RUNS} runs`, async () => {
    store = await logOfTenThousand();
    const s = store;
    server = await startControlServer({
      // The daemon's side of `ctl events` is the store; no VM runs here.
      supervisor: {
        current: () => projectVm(s.readAfter(0)),
        act: () => Promise.reject(new PodvisorError('ERR_VM_ACTION_REFUSED', 'no VM in this test')),
        handle: () => null,
      },
      store: s,
      config: { stateDir: dirs.stateDir, listen: null },
      log: new SilentLogger(),
      version: '0.0.0-test',
      webConsole: null,
    });
    for (let i = 0; i < RUNS; i++) {
      const r = await sh(`$PODVISOR ctl events --json --state-dir '${dirs.stateDir}' | wc -l`);
      expect([i, r.stdout.trim(), r.stderr]).toEqual([i, String(EVENTS), '']);
    }
    // --limit says what it left out, and where to go on.
    const limited = await sh(`$PODVISOR ctl events --limit 2500 --after 10 --state-dir '${dirs.stateDir}' | wc -l`);
    expect(limited.stdout.trim()).toBe('2500');
    expect(limited.stderr).toBe(`podvisor ctl: showed 2500 events (--limit 2500); the log goes on to position ${EVENTS}: continue with --after 2510\n`);
  });

  it('a reader that stops early (| head) ends the command quietly with 141', async () => {
    store = await logOfTenThousand();
    // bash, for PIPESTATUS: the status of podvisor, not of head.
    for (const form of ['--json', '', '--follow']) {
      const status = await run('bash', ['-c', `${process.execPath} ${CLI} events ${form} --state-dir '${dirs.stateDir}' | head -n 1 >/dev/null; echo "\${PIPESTATUS[0]}"`]);
      expect([form, status]).toEqual([form, { stdout: '141\n', stderr: '' }]);
    }
  });

  it('any other write error on stdout (a full disk) is reported and exits 1', async () => {
    store = await logOfTenThousand();
    const r = await run('bash', ['-c', `${process.execPath} ${CLI} events --json --state-dir '${dirs.stateDir}' > /dev/full; echo "exit $?"`]);
    expect(r).toEqual({ stdout: 'exit 1\n', stderr: 'podvisor: cannot write to stdout: ENOSPC: no space left on device, write\n' });
  });
});

describe('podvisor events --follow', () => {
  it('prints the backlog, then each event another process commits, until SIGINT or SIGTERM (exit 0)', async () => {
    await mkdir(dirs.stateDir, { recursive: true });
    store = SqliteEventStore.open({ path: path.join(dirs.stateDir, 'events.db') });
    const s = store;
    const pulled = (bytes: number): DomainEvent => ({ type: 'ImagePullProgressed', data: { source: 'https://images.example/base.qcow2', target: 'base.qcow2', bytes, total: 3, percent: 0, bytesPerSecond: 1 } });
    s.append('pv-follow', [pulled(1)]);
    for (const sig of ['SIGINT', 'SIGTERM'] as const) {
      const p = new PodvisorProcess(['events', '--follow', '--state-dir', dirs.stateDir], {});
      try {
        await p.waitForStdout(/ImagePullProgressed .*bytes=1 /);
        // Still following once the backlog is printed: the next event written by this process (another writer) appears.
        const next = s.lastPosition() + 1;
        s.append('pv-follow', [pulled(next)]);
        await p.waitForStdout(new RegExp(`ImagePullProgressed .*bytes=${next} `));
        expect(p.ended).toBe(false);
        p.signal(sig);
        expect([sig, await p.exited]).toEqual([sig, { code: 0, signal: null }]);
      } finally {
        await p.killed();
      }
    }
  });
});

describe('podvisor run --config with a YAML alias bomb', () => {
  it('exits 2 with a configuration error naming the file, the line and the bound, and creates nothing', async () => {
    const config = path.join(dirs.root, 'bomb.yaml');
    await writeFile(config, billionLaughsYaml('vm'));
    const p = new PodvisorProcess(['run', '--config', config], vmEnv(dirs, 'pv-e2e-bomb'));
    const exit = await p.exited;
    expect(exit).toEqual({ code: 2, signal: null });
    expect(p.stderr).toContain(`yaml ${config}:4:9: got "(ALIAS_BOMB)", expected at most 100 alias expansions in the document (aliases expand to more than 100 nodes at alias *c (a "billion laughs" alias bomb is refused))`);
    expect(p.stderr).not.toContain('ReferenceError');
    expect(existsSync(dirs.diskDir)).toBe(false);
  });
});
