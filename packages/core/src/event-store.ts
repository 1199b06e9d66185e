/**
 * The event store port. The log is append-only: positions grow by one, events
 * are never updated or deleted, and live subscribers see an event only after it
 * is committed.
 */
import type { Observable } from 'rxjs';
import type { DomainEvent, StoredEvent } from './events.js';

export interface AppendOptions {
  correlationId?: string | null;
  /** The time to stamp; the store's clock when absent. */
  at?: Date;
}

export interface EventStore {
  /** Appends atomically (all or none) and returns the stored envelopes. Then publishes them live. */
  append(vm: string, events: readonly DomainEvent[], options?: AppendOptions): StoredEvent[];
  /** Events with `position > after`, oldest first, upcast to current schema versions. */
  readAfter(after: number, limit?: number): StoredEvent[];
  /** The highest position, 0 when empty. */
  lastPosition(): number;
  /**
   * Every event after `after`: first those stored, then live ones as they are
   * committed, with no gap and no duplicate. Completes when the store closes.
   */
  follow(after: number): Observable<StoredEvent>;
  close(): void;
}

export const EventStore = Symbol.for('podvisor.EventStore');
