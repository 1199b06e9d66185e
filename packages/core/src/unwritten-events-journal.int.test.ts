import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { EncodedEvent } from './event-store-base.js';
import { SqliteEventStore } from './sqlite-event-store.js';
import { UNWRITTEN_EVENTS_FILE, keepUnwrittenEvents, replayUnwrittenEvents } from './unwritten-events-journal.js';

let dir: string;
let store: SqliteEventStore;

/** What a store that could not write them keeps: stored text, with the times they happened. */
const KEPT: EncodedEvent[] = [
  { at: '2026-12-02T07:00:01.000Z', type: 'VmExited', schemaVersion: 1, vm: 'vm1', data: JSON.stringify({ attempt: 1, exit: { code: 0, signal: null, reason: 'host-shutdown', at: '2026-12-02T07:00:01.000Z' }, uptimeMs: 5 }), correlationId: null },
  { at: '2026-12-02T07:00:01.100Z', type: 'VmStopped', schemaVersion: 1, vm: 'vm1', data: JSON.stringify({ reason: 'SIGTERM' }), correlationId: null },
  { at: '2026-12-02T07:00:01.200Z', type: 'SupervisorExited', schemaVersion: 1, vm: 'vm1', data: JSON.stringify({ exitCode: 0, reason: 'stopped' }), correlationId: null },
];

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'pv-journal-'));
  store = SqliteEventStore.open({ path: path.join(dir, 'events.db') });
  store.append('vm1', [{ type: 'VmStopped', data: { reason: 'earlier' } }]);
});

afterEach(async () => {
  store.close();
  await rm(dir, { recursive: true, force: true });
});

describe('the unwritten-events journal', () => {
  it('keeps events at exit; the next start writes them once, in order, with their times, then a warning that says so', () => {
    const file = keepUnwrittenEvents(dir, KEPT);
    expect(file).toBe(path.join(dir, UNWRITTEN_EVENTS_FILE));
    const kept = readFileSync(file, 'utf8');
    expect(replayUnwrittenEvents(store, dir, 'vm1')).toEqual({ events: 3, alreadyWritten: false, file });
    expect(existsSync(file)).toBe(false);
    const log = store.readAfter(0);
    expect(log.map((e) => [e.position, e.type, e.at])).toEqual([
      [1, 'VmStopped', expect.any(String)],
      [2, 'VmExited', '2026-12-02T07:00:01.000Z'],
      [3, 'VmStopped', '2026-12-02T07:00:01.100Z'],
      [4, 'SupervisorExited', '2026-12-02T07:00:01.200Z'],
      [5, 'WarningRaised', expect.any(String)],
    ]);
    expect(log[4]?.data).toMatchObject({ code: 'WARN_EVENT_LOG_REPLAYED' });

    // A start that died between the commit and the unlink: the same journal again is only removed.
    writeFileSync(file, kept);
    expect(replayUnwrittenEvents(store, dir, 'vm1')).toEqual({ events: 3, alreadyWritten: true, file });
    expect(existsSync(file)).toBe(false);
    expect(store.lastPosition()).toBe(5);
    expect(replayUnwrittenEvents(store, dir, 'vm1')).toBeNull();
  });

  it('a second exit that cannot write adds its events behind those of the first', () => {
    keepUnwrittenEvents(dir, KEPT.slice(0, 1));
    keepUnwrittenEvents(dir, KEPT.slice(1));
    expect(replayUnwrittenEvents(store, dir, 'vm1')?.events).toBe(3);
    expect(store.readAfter(1).map((e) => e.type)).toEqual(['VmExited', 'VmStopped', 'SupervisorExited', 'WarningRaised']);
  });

  it('a journal that is not one is a coded error naming the file, and stays for the operator', () => {
    const file = path.join(dir, UNWRITTEN_EVENTS_FILE);
    writeFileSync(file, '{"events": 3}');
    expect(() => replayUnwrittenEvents(store, dir, 'vm1')).toThrow(expect.objectContaining({ code: 'ERR_EVENTSTORE_JOURNAL', message: expect.stringContaining(file) }));
    expect(existsSync(file)).toBe(true);
    writeFileSync(file, JSON.stringify({ journal: 'j1', events: [{ ...KEPT[0], type: 'NoSuchEvent' }] }));
    expect(() => replayUnwrittenEvents(store, dir, 'vm1')).toThrow(expect.objectContaining({ code: 'ERR_EVENTSTORE_INVALID_EVENT' }));
    expect(store.lastPosition()).toBe(1);
  });
});
