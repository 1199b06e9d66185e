import type { EventLogBacklog, StoredEvent } from '@podvisor/core';
import { describe, expect, it } from 'vitest';
import { degradedConditions, foldHelperFacts, initialHelperFacts } from './degraded-conditions.js';

const CLEAN: EventLogBacklog = { pending: 0, dropped: 0, since: null, lastError: null };

function event(position: number, type: string, data: Record<string, unknown> = {}): StoredEvent {
  return { position, at: `2026-12-02T08:00:0${position}.000Z`, type, schemaVersion: 1, vm: 'vm1', data, correlationId: null } as StoredEvent;
}

describe('degradedConditions', () => {
  it('is empty when the log takes writes and no helper is down', () => {
    expect(degradedConditions(CLEAN, initialHelperFacts())).toEqual([]);
  });

  it('names an event log that queues or dropped events, with when it began and why', () => {
    const got = degradedConditions({ pending: 3, dropped: 2, since: '2026-12-02T08:00:00.000Z', lastError: 'SQLITE_FULL: database or disk is full' }, initialHelperFacts());
    expect(got.map((c) => c.code)).toEqual(['EVENT_LOG_PENDING', 'EVENT_LOG_DROPPED']);
    expect(got[0]).toMatchObject({ since: '2026-12-02T08:00:00.000Z', message: expect.stringContaining('SQLITE_FULL') });
  });

  it('says dnsmasq is down from its give-up warning until the network is attached again', () => {
    let f = initialHelperFacts();
    f = foldHelperFacts(f, event(1, 'NetworkAttached'));
    f = foldHelperFacts(f, event(2, 'WarningRaised', { code: 'WARN_DNSMASQ_GAVE_UP', message: 'dnsmasq exited (exit 2) after 5 restarts in a row' }));
    expect(degradedConditions(CLEAN, f)).toEqual([{ code: 'DNSMASQ_DOWN', message: 'dnsmasq exited (exit 2) after 5 restarts in a row', since: '2026-12-02T08:00:02.000Z' }]);
    f = foldHelperFacts(f, event(3, 'WarningRaised', { code: 'WARN_OTHER', message: 'x' }));
    expect(degradedConditions(CLEAN, f)).toHaveLength(1);
    f = foldHelperFacts(f, event(4, 'NetworkAttached'));
    expect(degradedConditions(CLEAN, f)).toEqual([]);
  });
});
