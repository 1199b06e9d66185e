/**
 * The contract every `EventStore` must pass, as a reusable vitest suite. Each
 * implementation's test file calls `describeEventStoreContract` with a factory
 * for a fresh, empty store; plugin authors run it against theirs the same way.
 * It depends only on the port, so a store backed by anything can run it.
 */
import { firstValueFrom, toArray, type Observable } from 'rxjs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { EventStore } from './event-store.js';
import { EVENT_SCHEMA_VERSIONS, event, type DomainEvent, type StoredEvent } from './events.js';

export interface EventStoreContractSubject {
  /** A fresh, empty store. */
  store: EventStore;
  /** Closes nothing; opens the same log again (after the suite closed `store`). Omit for a store that does not persist. */
  reopen?: () => Promise<EventStore>;
  /** Removes what the factory created; runs after every test, even a failed one. */
  cleanup: () => Promise<void>;
}

const paused = (n: number): DomainEvent => event('VmPaused', { by: 'contract', reason: `pause ${n}` });
const resumed = (): DomainEvent => event('VmResumed', { by: 'contract' });
const positions = (events: readonly StoredEvent[]): number[] => events.map((e) => e.position);

/** Subscribes now and returns what arrives until the observable completes. */
function collect<T>(source: Observable<T>): { seen: T[]; done: Promise<T[]> } {
  const seen: T[] = [];
  const done = new Promise<T[]>((resolve, reject) => {
    source.subscribe({ next: (v) => seen.push(v), error: reject, complete: () => resolve(seen) });
  });
  return { seen, done };
}

/** Registers the `EventStore` contract tests under `describe(name)`. */
export function describeEventStoreContract(
  name: string,
  make: () => Promise<EventStoreContractSubject>,
  options: { durable: boolean } = { durable: true },
): void {
  describe(`EventStore contract: ${name}`, () => {
    let subject: EventStoreContractSubject;
    let store: EventStore;

    beforeEach(async () => {
      subject = await make();
      store = subject.store;
    });
    afterEach(async () => {
      store.close();
      await subject.cleanup();
    });

    it('starts empty: lastPosition 0 and nothing to read', () => {
      expect(store.lastPosition()).toBe(0);
      expect(store.readAfter(0)).toEqual([]);
    });

    it('numbers positions from 1, by one, across batches', () => {
      expect(positions(store.append('vm-a', [paused(1)]))).toEqual([1]);
      expect(positions(store.append('vm-a', [paused(2), resumed(), paused(3)]))).toEqual([2, 3, 4]);
      expect(positions(store.append('vm-b', [resumed()]))).toEqual([5]);
      expect(store.lastPosition()).toBe(5);
      expect(positions(store.readAfter(0))).toEqual([1, 2, 3, 4, 5]);
    });

    it('returns full envelopes, the same ones readAfter gives', () => {
      const at = new Date('2026-01-02T03:04:05.678Z');
      const appended = store.append('vm-a', [paused(1), resumed()], { at, correlationId: 'req-1' });
      expect(appended).toEqual([
        { position: 1, at: at.toISOString(), type: 'VmPaused', schemaVersion: EVENT_SCHEMA_VERSIONS.VmPaused, vm: 'vm-a', data: { by: 'contract', reason: 'pause 1' }, correlationId: 'req-1' },
        { position: 2, at: at.toISOString(), type: 'VmResumed', schemaVersion: EVENT_SCHEMA_VERSIONS.VmResumed, vm: 'vm-a', data: { by: 'contract' }, correlationId: 'req-1' },
      ]);
      expect(store.readAfter(0)).toEqual(appended);
    });

    it('stamps at from its clock and correlationId null when not given', () => {
      const [stored] = store.append('vm-a', [resumed()]);
      expect(stored?.correlationId).toBeNull();
      expect(typeof stored?.at).toBe('string');
      expect(new Date(stored?.at ?? '').toISOString()).toBe(stored?.at);
    });

    it('stores a copy of the data, as JSON', () => {
      const data = { by: 'contract', reason: 'original' };
      store.append('vm-a', [event('VmPaused', data)]);
      data.reason = 'mutated after append';
      const [stored] = store.readAfter(0);
      expect(stored?.data).toEqual({ by: 'contract', reason: 'original' });
    });

    it('appends all or none: a batch with an unserializable event stores nothing and publishes nothing', () => {
      store.append('vm-a', [paused(1)]);
      const live = collect(store.follow(1));
      const bad = event('WarningRaised', { code: 'X', message: 10n as unknown as string });
      expect(() => store.append('vm-a', [paused(2), bad])).toThrow(expect.objectContaining({ code: 'ERR_EVENTSTORE_INVALID_EVENT' }));
      expect(store.lastPosition()).toBe(1);
      expect(live.seen).toEqual([]);
      expect(positions(store.append('vm-a', [paused(3)]))).toEqual([2]);
      expect(positions(live.seen)).toEqual([2]);
    });

    it('refuses an event type it does not know, storing nothing', () => {
      const unknown = { type: 'VmTeleported', data: {} } as unknown as DomainEvent;
      expect(() => store.append('vm-a', [resumed(), unknown])).toThrow(expect.objectContaining({ code: 'ERR_EVENTSTORE_INVALID_EVENT' }));
      expect(store.lastPosition()).toBe(0);
    });

    it('treats an empty batch as a no-op', () => {
      expect(store.append('vm-a', [])).toEqual([]);
      expect(store.lastPosition()).toBe(0);
    });

    it('reads after a position, with and without a limit', () => {
      store.append('vm-a', [paused(1), paused(2), paused(3), paused(4), paused(5)]);
      expect(positions(store.readAfter(2))).toEqual([3, 4, 5]);
      expect(positions(store.readAfter(1, 2))).toEqual([2, 3]);
      expect(positions(store.readAfter(0, 10))).toEqual([1, 2, 3, 4, 5]);
      expect(store.readAfter(0, 0)).toEqual([]);
      expect(store.readAfter(5)).toEqual([]);
      expect(store.readAfter(99)).toEqual([]);
      expect(() => store.readAfter(0, -1)).toThrow(expect.objectContaining({ code: 'ERR_EVENTSTORE_INVALID_ARGUMENT' }));
    });

    it('follow replays what is stored after the position, then streams live appends', () => {
      store.append('vm-a', [paused(1), paused(2), paused(3)]);
      const followed = collect(store.follow(1));
      expect(positions(followed.seen)).toEqual([2, 3]);
      store.append('vm-a', [resumed()]);
      store.append('vm-a', [paused(4), paused(5)]);
      expect(positions(followed.seen)).toEqual([2, 3, 4, 5, 6]);
      expect(followed.seen.at(-1)).toEqual(store.readAfter(5)[0]);
    });

    it('follow from the last position streams only live events', () => {
      store.append('vm-a', [paused(1), paused(2)]);
      const followed = collect(store.follow(store.lastPosition()));
      expect(followed.seen).toEqual([]);
      store.append('vm-a', [paused(3)]);
      expect(positions(followed.seen)).toEqual([3]);
    });

    it('follow has no gap and no duplicate when an append races the replay', () => {
      store.append('vm-a', [paused(1), paused(2), paused(3)]);
      const seen: StoredEvent[] = [];
      // Appending from inside the replay: the new event is both in the table and on the live feed.
      const sub = store.follow(0).subscribe((e) => {
        seen.push(e);
        if (e.position === 1) store.append('vm-a', [resumed()]);
      });
      store.append('vm-a', [paused(5)]);
      sub.unsubscribe();
      expect(positions(seen)).toEqual([1, 2, 3, 4, 5]);
    });

    it('follow has no gap and no duplicate when the backlog spans many reads and grows meanwhile', () => {
      store.append('vm-a', Array.from({ length: 1200 }, (_, i) => paused(i)));
      const seen: number[] = [];
      const sub = store.follow(0).subscribe((e) => {
        seen.push(e.position);
        if (e.position === 1) store.append('vm-a', [resumed()]);
      });
      sub.unsubscribe();
      expect(seen).toEqual(Array.from({ length: 1201 }, (_, i) => i + 1));
    });

    it('every follower sees the same order when a follower appends from its callback', () => {
      const a: number[] = [];
      const b: number[] = [];
      const subA = store.follow(0).subscribe((e) => {
        a.push(e.position);
        if (e.position === 1) store.append('vm-a', [resumed()]);
      });
      const subB = store.follow(0).subscribe((e) => b.push(e.position));
      store.append('vm-a', [paused(1)]);
      store.append('vm-a', [paused(3)]);
      subA.unsubscribe();
      subB.unsubscribe();
      expect(a).toEqual([1, 2, 3]);
      expect(b).toEqual([1, 2, 3]);
    });

    it('stops delivering to a follower that unsubscribed', () => {
      const seen: StoredEvent[] = [];
      const sub = store.follow(0).subscribe((e) => seen.push(e));
      store.append('vm-a', [paused(1)]);
      sub.unsubscribe();
      store.append('vm-a', [paused(2)]);
      expect(positions(seen)).toEqual([1]);
    });

    it('completes followers on close; close is idempotent; a closed store refuses calls', async () => {
      store.append('vm-a', [paused(1)]);
      const followed = collect(store.follow(0));
      store.append('vm-a', [paused(2)]);
      store.close();
      store.close();
      expect(positions(await followed.done)).toEqual([1, 2]);
      await expect(firstValueFrom(store.follow(0).pipe(toArray()))).resolves.toEqual([]);
      expect(() => store.append('vm-a', [paused(3)])).toThrow(expect.objectContaining({ code: 'ERR_EVENTSTORE_CLOSED' }));
      expect(() => store.readAfter(0)).toThrow(expect.objectContaining({ code: 'ERR_EVENTSTORE_CLOSED' }));
      expect(() => store.lastPosition()).toThrow(expect.objectContaining({ code: 'ERR_EVENTSTORE_CLOSED' }));
    });

    // Registered only for durable stores, so that no test is ever skipped.
    if (options.durable) {
      it('keeps the log across reopen and continues its positions', async () => {
        if (subject.reopen === undefined) throw new Error('a durable store subject must provide reopen()');
        const before = store.append('vm-a', [paused(1), resumed()], { correlationId: 'c' });
        store.close();
        store = await subject.reopen();
        expect(store.readAfter(0)).toEqual(before);
        expect(store.lastPosition()).toBe(2);
        expect(positions(store.append('vm-a', [paused(2)]))).toEqual([3]);
      });
    }
  });
}
