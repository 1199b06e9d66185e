/**
 * The VM volume's lock with the real addon and real flock(2): a second holder
 * is refused with the first one's pid, host and start time, the lock dies with
 * its process (kill -9 included), and util-linux's flock(1) sees the same lock.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, symlink } from 'node:fs/promises';
import os, { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PodvisorError } from '@podvisor/core';
import { VOLUME_LOCK_NAME, VolumeLock, loadTryLockExclusive } from './volume-lock.js';

const run = promisify(execFile);
let dir: string;
const locks: VolumeLock[] = [];

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'pv-volume-lock-'));
});

afterEach(async () => {
  for (const l of locks.splice(0)) l.release();
  await rm(dir, { recursive: true, force: true });
});

function acquire(): VolumeLock {
  const l = VolumeLock.acquire(dir, { version: '9.9.9' });
  locks.push(l);
  return l;
}

function refusal(): PodvisorError {
  try {
    acquire();
  } catch (err) {
    if (err instanceof PodvisorError) return err;
    throw err;
  }
  throw new Error('expected ERR_VOLUME_LOCKED');
}

/** flock(1) -n on the file: 0 when it got the lock (and let it go), 1 when held. */
async function flockCli(file: string): Promise<number> {
  return run('flock', ['-n', '-E', '1', file, 'true']).then(
    () => 0,
    (e: { code: number }) => e.code,
  );
}

describe('VolumeLock', () => {
  it('takes the lock, writes its holder, and refuses a second taker naming the holder, changing nothing', async () => {
    expect(loadTryLockExclusive()).not.toBeNull();
    const first = acquire();
    expect([first.held, first.warning]).toEqual([true, null]);
    const file = path.join(dir, VOLUME_LOCK_NAME);
    const written = await readFile(file, 'utf8');
    expect(JSON.parse(written)).toEqual({ pid: process.pid, host: os.hostname(), startedAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/), version: '9.9.9' });
    const err = refusal();
    expect(err.code).toBe('ERR_VOLUME_LOCKED');
    expect(err.message).toBe(`the VM volume ${dir} is in use by podvisor pid ${process.pid} on host ${os.hostname()}, started ${JSON.parse(written).startedAt} (version 9.9.9): ${file} is locked`);
    expect(err.hint).toMatch(/only one podvisor may run on a VM volume/);
    expect(await readFile(file, 'utf8')).toBe(written);
    expect(await flockCli(file)).toBe(1);
    first.release();
    first.release();
    expect(await flockCli(file)).toBe(0);
    expect(acquire().held).toBe(true);
  });

  it('dies with its process: a holder killed with SIGKILL leaves the lock free', async () => {
    const script = `
      const { VolumeLock } = await import(${JSON.stringify(new URL('../dist/volume-lock.js', import.meta.url).href)});
      VolumeLock.acquire(${JSON.stringify(dir)}, { version: 'child' });
      process.stdout.write('held\\n');
      setInterval(() => {}, 1000);`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise<void>((resolve, reject) => {
        child.stdout.on('data', (d: Buffer) => d.toString().includes('held') && resolve());
        child.once('exit', (code) => reject(new Error(`the holder exited (${code}) before taking the lock`)));
      });
      const err = refusal();
      expect(err.message).toContain(`podvisor pid ${child.pid} on host`);
      expect(err.details).toMatchObject({ holder: { pid: child.pid, version: 'child' } });
    } finally {
      child.kill('SIGKILL');
      await new Promise((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve(null) : child.once('exit', resolve)));
    }
    expect(acquire().held).toBe(true);
  });

  it('runs unlocked with a warning when the addon is missing or the lock file is a symlink', async () => {
    expect(loadTryLockExclusive(fileURLToPath(new URL('../package.json', import.meta.url)))).toBeNull();
    const noAddon = VolumeLock.acquire(dir, { version: 'x' }, null);
    expect([noAddon.held, noAddon.warning?.code]).toEqual([false, 'WARN_VOLUME_UNLOCKED']);
    await symlink('/etc/hostname', path.join(dir, VOLUME_LOCK_NAME));
    const linked = acquire();
    expect([linked.held, linked.warning?.code]).toEqual([false, 'WARN_VOLUME_UNLOCKED']);
    expect(linked.warning?.message).toContain('ELOOP');
  });
});
