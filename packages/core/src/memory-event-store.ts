/**
 * An `EventStore` held in memory, for unit tests of the supervisor and the
 * decider. It keeps the same contract as the SQLite store: data is stored as
 * JSON text (so callers never share objects with the log, and what cannot be
 * serialized is refused), appends are all or none, reads are upcast, and the
 * log is lost when the process ends.
 */
import { EventStoreBase, type EncodedEvent, type EventStoreBaseOptions, type StoredRow } from './event-store-base.js';

export type MemoryEventStoreOptions = EventStoreBaseOptions;

export class MemoryEventStore extends EventStoreBase {
  private readonly rows: StoredRow[] = [];

  constructor(options: MemoryEventStoreOptions = {}) {
    super('memory event store', options);
  }

  protected writeRows(rows: readonly EncodedEvent[]): number[] {
    return rows.map((row) => this.rows.push({ position: this.rows.length + 1, ...row }));
  }

  protected readRows(after: number, limit: number | undefined): StoredRow[] {
    // Position p sits at index p - 1, so `position > after` starts at index floor(after).
    const start = Math.max(0, Math.floor(after));
    return this.rows.slice(start, limit === undefined ? undefined : start + limit);
  }

  protected maxPosition(): number {
    return this.rows.length;
  }

  protected closeStorage(): void {}
}
