import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { SilentLogger, type Logger } from '@podvisor/core';
import { DEFAULT_REAPER_ADDON, loadNativeReaper, signalName } from './native-reaper.js';
import { OrphanReaper } from './orphan-reaper.js';

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  return undefined;
}

describe('native reaper addon', () => {
  const loaded = loadNativeReaper();

  it('is built and loads from native/build/Release', () => {
    // The build is `npm run build:native -w @podvisor/supervisord`; the message says what failed.
    expect(loaded.error?.cause ?? null, loaded.error?.message).toBeNull();
  });

  it.each([
    ['minus one (any child)', [-1]],
    ['zero (own process group)', [0]],
    ['a negative group', [-4242]],
    ['a fraction', [1.5]],
    ['NaN', [Number.NaN]],
    ['past INT_MAX', [2 ** 31]],
    ['a string', ['1']],
    ['a bad pid after a good one', [process.pid, -1]],
    ['more than 65536 pids', Array.from({ length: 65537 }, () => 1)],
  ])('refuses %s with a RangeError before waiting for anything', (_name, pids) => {
    expect(thrown(() => loaded.native?.reap(pids as number[]))).toMatchObject({ name: 'RangeError', code: 'ERR_PID1_REAPER_INVALID_ARG' });
  });

  it('refuses anything but an array with a TypeError', () => {
    expect(thrown(() => loaded.native?.reap(null as never))).toMatchObject({ name: 'TypeError', code: 'ERR_PID1_REAPER_INVALID_ARG' });
    expect(thrown(() => (loaded.native?.reap as unknown as () => unknown)())).toMatchObject({ name: 'TypeError' });
  });

  it('reads each pid once, so a getter cannot pass validation and then change the pid', () => {
    let reads = 0;
    const pids: number[] = [];
    Object.defineProperty(pids, 0, { enumerable: true, get: () => (++reads === 1 ? 1 : -1) });
    expect(loaded.native?.reap(pids)).toEqual([]);
    expect(reads).toBe(1);
  });

  it('returns nothing for pids that are not its children', () => {
    expect(loaded.native?.reap([1, process.pid])).toEqual([]);
  });

  it('names signals as Node does', () => {
    expect(signalName(9)).toBe('SIGKILL');
    expect(signalName(15)).toBe('SIGTERM');
    expect(signalName(99)).toBe('SIG99');
  });
});

describe('OrphanReaper.load without the addon', () => {
  it('returns no reaper, with ERR_PID1_REAPER_UNAVAILABLE and a hint, and warns', () => {
    const warnings: string[] = [];
    const silent = new SilentLogger();
    const log: Logger = Object.assign(Object.create(silent) as Logger, { warn: (msg: string) => void warnings.push(msg), child: () => log });
    const missing = `${DEFAULT_REAPER_ADDON}.missing`;
    const result = OrphanReaper.load({ ownedPids: () => new Set(), log }, missing);
    expect(result.reaper).toBeNull();
    expect(result.reason?.code).toBe('ERR_PID1_REAPER_UNAVAILABLE');
    expect(result.reason?.message).toContain(missing);
    expect(result.reason?.hint).toContain('build:native');
    expect(warnings).toEqual(['orphan reaper unavailable: orphaned processes will stay zombies']);
  });

  it('refuses a module that loads but does not export reap() and setChildSubreaper()', () => {
    const result = loadNativeReaper(fileURLToPath(new URL('../../package.json', import.meta.url)));
    expect(result.error?.code).toBe('ERR_PID1_REAPER_UNAVAILABLE');
    expect(String(result.error?.cause)).toContain('does not export reap() and setChildSubreaper()');
  });
});
