import { describe, expect, it } from 'vitest';
import type { Clock } from './clock.js';
import { describeEventStoreContract } from './event-store-contract.js';
import { event } from './events.js';
import { MemoryEventStore } from './memory-event-store.js';
import { UpcasterRegistry } from './upcasters.js';

describeEventStoreContract('MemoryEventStore', async () => ({ store: new MemoryEventStore(), cleanup: async () => {} }), { durable: false });

describe('MemoryEventStore', () => {
  it('stamps at from the injected clock', () => {
    const clock: Clock = { now: () => new Date('2030-05-06T07:08:09.000Z'), sleep: async () => {} };
    const store = new MemoryEventStore({ clock });
    const [stored] = store.append('vm-a', [event('VmResumed', { by: 'test' })]);
    expect(stored?.at).toBe('2030-05-06T07:08:09.000Z');
  });

  it('writes new events at the registry current version', () => {
    const upcasters = new UpcasterRegistry({ upcasters: [], currentVersions: { VmResumed: 3 } });
    const store = new MemoryEventStore({ upcasters });
    expect(store.append('vm-a', [event('VmResumed', { by: 'test' })])[0]?.schemaVersion).toBe(3);
    expect(store.readAfter(0)[0]?.schemaVersion).toBe(3);
  });

  it('refuses an empty vm and an invalid time', () => {
    const store = new MemoryEventStore();
    expect(() => store.append('', [event('VmResumed', { by: 'test' })])).toThrow(expect.objectContaining({ code: 'ERR_EVENTSTORE_INVALID_ARGUMENT' }));
    expect(() => store.append('vm-a', [event('VmResumed', { by: 'test' })], { at: new Date(Number.NaN) })).toThrow(
      expect.objectContaining({ code: 'ERR_EVENTSTORE_INVALID_ARGUMENT' }),
    );
    expect(store.lastPosition()).toBe(0);
  });

  it('replays a backlog longer than one page in order', () => {
    const store = new MemoryEventStore();
    const batch = Array.from({ length: 1234 }, (_, i) => event('VmPaused', { by: 'test', reason: String(i) }));
    store.append('vm-a', batch);
    const seen: number[] = [];
    const sub = store.follow(10).subscribe((e) => seen.push(e.position));
    store.append('vm-a', [event('VmResumed', { by: 'test' })]);
    sub.unsubscribe();
    expect(seen).toEqual(Array.from({ length: 1225 }, (_, i) => i + 11));
  });
});
