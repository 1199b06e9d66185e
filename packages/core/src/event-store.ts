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

/** Appends `appendOrQueue` holds in memory because the storage refused them. */
export interface EventLogBacklog {
  /** Events waiting to be written, in order. */
  pending: number;
  /** Events given up since the backlog began, beyond the in-memory bound. */
  dropped: number;
  /** When the storage first refused (ISO 8601), null when nothing is pending. */
  since: string | null;
  lastError: string | null;
}

/** A backlog that has been written. */
export interface EventLogRecovery {
  events: number;
  dropped: number;
  pendingMs: number;
  lastError: string;
}

export interface EventStore {
  /** Appends atomically (all or none) and returns the stored envelopes. Then publishes them live. */
  append(vm: string, events: readonly DomainEvent[], options?: AppendOptions): StoredEvent[];
  /**
   * Appends, or, when the storage refuses (full, read-only, locked), keeps the
   * events in memory and retries in order; null then. Never blocks on a lock.
   */
  appendOrQueue(vm: string, events: readonly DomainEvent[], options?: AppendOptions): StoredEvent[] | null;
  /** What `appendOrQueue` holds in memory. */
  backlog(): EventLogBacklog;
  /** Resolves once nothing is pending (or the store closed). */
  drained(): Promise<void>;
  /** Each backlog written, told after the append that wrote it. */
  readonly recovered: Observable<EventLogRecovery>;
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
