/**
 * What every `EventStore` shares, whatever holds the rows: checking and
 * encoding appends, decoding and upcasting reads, the closed state, and the
 * live feed behind `follow`. A subclass supplies four storage primitives (write
 * a batch atomically, read after a position, the highest position, close). The
 * feed publishes only committed events, in position order, with no gap: a
 * publish that starts while another is being delivered (a subscriber appending
 * from its callback) is queued behind it, and when the rows just committed do
 * not follow the last published one (another process wrote in between), the
 * missing rows are read back first.
 */
import { Observable, Subject } from 'rxjs';
import { SystemClock, type Clock } from './clock.js';
import { PodvisorError, errorMessage, isPodvisorError } from './errors.js';
import type { AppendOptions, EventLogBacklog, EventLogRecovery, EventStore } from './event-store.js';
import type { DomainEvent, StoredEvent } from './events.js';
import { UpcasterRegistry } from './upcasters.js';

/** One event as stored: its data is JSON text, its version the one it was written at. */
export interface EncodedEvent {
  at: string;
  type: string;
  schemaVersion: number;
  vm: string;
  data: string;
  correlationId: string | null;
}

export interface StoredRow extends EncodedEvent {
  position: number;
}

export interface EventStoreBaseOptions {
  /** Stamps `at` when `AppendOptions.at` is absent. Defaults to the system clock. */
  clock?: Clock;
  /** Read-time upcasting and the versions new events are written at. Defaults to the shipped registry. */
  upcasters?: UpcasterRegistry;
  /** Events `appendOrQueue` keeps in memory while the storage refuses writes. Default 10,000. */
  maxPendingEvents?: number;
  /** Delay between retries of pending appends. Default 500 ms. */
  retryIntervalMs?: number;
}

/** Rows read per query while replaying a backlog or catching up. */
const PAGE = 500;

export abstract class EventStoreBase implements EventStore {
  private readonly clock: Clock;
  private readonly upcasters: UpcasterRegistry;
  private readonly live = new Subject<StoredEvent>();
  /** The highest position handed to `live`; meaningful only while someone follows. */
  private published = 0;
  private readonly queue: StoredEvent[] = [];
  private delivering = false;
  private followers = 0;
  private closed = false;
  // The backlog of `appendOrQueue`: rows the storage refused, oldest first, written in this order.
  private pending: EncodedEvent[] = [];
  private pendingSince: number | null = null;
  private lastError: string | null = null;
  private dropped = 0;
  private retry: AbortController | null = null;
  private readonly maxPending: number;
  private readonly retryIntervalMs: number;
  private readonly recoveries = new Subject<EventLogRecovery>();
  private drainWaiters: Array<() => void> = [];
  /** Told (in a microtask) each time a backlog has been written. */
  readonly recovered: Observable<EventLogRecovery> = this.recoveries.asObservable();

  /** `name` names the store in error messages, e.g. `event store /state/events.db`. */
  protected constructor(
    protected readonly name: string,
    options: EventStoreBaseOptions,
  ) {
    this.clock = options.clock ?? new SystemClock();
    this.upcasters = options.upcasters ?? new UpcasterRegistry();
    this.maxPending = options.maxPendingEvents ?? 10_000;
    this.retryIntervalMs = options.retryIntervalMs ?? 500;
  }

  /**
   * Stores every row, or none if the write throws; returns their positions in
   * order. `wait` false: give up quickly when another process holds the write
   * lock (the daemon's event loop must not block); true: wait for it a while.
   * A storage failure throws `ERR_EVENTSTORE_WRITE`.
   */
  protected abstract writeRows(rows: readonly EncodedEvent[], wait: boolean): number[];
  /** Rows with `position > after`, oldest first, at most `limit` (all when undefined). */
  protected abstract readRows(after: number, limit: number | undefined): StoredRow[];
  protected abstract maxPosition(): number;
  /** Releases the storage; called once, after followers completed. */
  protected abstract closeStorage(): void;
  /** Told when the first follower arrives (true) and the last one leaves (false). */
  protected onFollowing(_active: boolean): void {}

  /**
   * Throws `ERR_EVENTSTORE_CLOSED` after `close()`, `ERR_EVENTSTORE_INVALID_ARGUMENT`
   * for an empty `vm` or an invalid `at`, and `ERR_EVENTSTORE_INVALID_EVENT` for a
   * type this podvisor does not know or data that is not JSON; nothing is stored then.
   */
  append(vm: string, events: readonly DomainEvent[], options: AppendOptions = {}): StoredEvent[] {
    const rows = this.prepareRows(vm, events, options);
    if (rows.length === 0) return [];
    // Order is the log's promise: a backlog goes first, or nothing does.
    if (this.pending.length > 0 && !this.flush(true)) {
      throw new PodvisorError('ERR_EVENTSTORE_WRITE', `cannot append to ${this.name}: ${this.pending.length} earlier events are still waiting to be written (${this.lastError ?? 'unknown error'})`);
    }
    return this.commit(rows, true);
  }

  /**
   * Appends like `append`, but a storage failure (a full or read-only volume,
   * a write lock held by another process) does not throw: the events are kept
   * in memory, behind any earlier ones, and written in order by a retry every
   * `retryIntervalMs` (positions are assigned when they are written). Returns
   * the stored events, or null when they are queued (or dropped beyond
   * `maxPendingEvents`, counted in `backlog().dropped`). Invalid events still
   * throw, as for `append`. Never waits for another process's lock.
   */
  appendOrQueue(vm: string, events: readonly DomainEvent[], options: AppendOptions = {}): StoredEvent[] | null {
    const rows = this.prepareRows(vm, events, options);
    if (rows.length === 0) return [];
    if (this.pending.length === 0) {
      try {
        return this.commit(rows, false);
      } catch (err) {
        if (!isPodvisorError(err) || err.code !== 'ERR_EVENTSTORE_WRITE') throw err;
        this.lastError = errorMessage(err);
        this.pendingSince = this.clock.now().getTime();
      }
    } else if (this.pending.length + rows.length <= this.maxPending) {
      // Try the backlog with these behind it: when it goes through, they are written too.
      const before = this.pending.length;
      this.pending.push(...rows);
      return this.flush(false) ? this.lastFlushed.slice(before) : null;
    }
    if (this.pending.length + rows.length > this.maxPending) {
      this.dropped += rows.length;
    } else {
      this.pending.push(...rows);
    }
    this.scheduleRetry();
    return null;
  }

  /**
   * Writes events kept as stored text by an earlier process (the unwritten-events
   * journal: their `at` and correlation ids as they were), followed by `then`
   * (new events, stamped now), in one transaction; like `append`, after any
   * backlog, waiting for a lock, throwing `ERR_EVENTSTORE_WRITE` on failure.
   */
  appendEncoded(vm: string, rows: readonly EncodedEvent[], then: readonly DomainEvent[], options: AppendOptions = {}): StoredEvent[] {
    const tail = this.prepareRows(vm, then, options);
    for (const row of rows) {
      if (this.upcasters.currentVersion(row.type) === undefined || typeof row.data !== 'string' || typeof row.at !== 'string' || !Number.isInteger(row.schemaVersion)) {
        throw new PodvisorError('ERR_EVENTSTORE_INVALID_EVENT', `append to ${this.name}: a kept event is not a stored event: ${JSON.stringify(row).slice(0, 200)}`);
      }
    }
    if (this.pending.length > 0 && !this.flush(true)) {
      throw new PodvisorError('ERR_EVENTSTORE_WRITE', `cannot append to ${this.name}: ${this.pending.length} earlier events are still waiting to be written (${this.lastError ?? 'unknown error'})`);
    }
    return this.commit([...rows, ...tail], true);
  }

  /** What `appendOrQueue` holds in memory because the storage refused it. */
  backlog(): EventLogBacklog {
    return {
      pending: this.pending.length,
      dropped: this.dropped,
      since: this.pendingSince === null ? null : new Date(this.pendingSince).toISOString(),
      lastError: this.pendingSince === null ? null : this.lastError,
    };
  }

  /** Resolves once nothing is pending (at once when nothing is); also when the store closes. */
  drained(): Promise<void> {
    if (this.pending.length === 0 || this.closed) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  readAfter(after: number, limit?: number): StoredEvent[] {
    this.assertOpen();
    if (!Number.isFinite(after)) {
      throw new PodvisorError('ERR_EVENTSTORE_INVALID_ARGUMENT', `readAfter on ${this.name}: after must be a finite number, got ${after}`);
    }
    if (limit !== undefined && !(Number.isInteger(limit) && limit >= 0)) {
      throw new PodvisorError('ERR_EVENTSTORE_INVALID_ARGUMENT', `readAfter on ${this.name}: limit must be an integer >= 0, got ${limit}`);
    }
    if (limit === 0) return [];
    return this.readRows(after, limit).map((row) => this.decode(row));
  }

  lastPosition(): number {
    this.assertOpen();
    return this.maxPosition();
  }

  follow(after: number): Observable<StoredEvent> {
    return new Observable<StoredEvent>((subscriber) => {
      if (this.closed) {
        subscriber.complete();
        return;
      }
      let last = after;
      let replaying = true;
      const early: StoredEvent[] = [];
      const deliver = (e: StoredEvent): void => {
        if (e.position <= last) return;
        last = e.position;
        subscriber.next(e);
      };
      if (this.followers++ === 0) {
        // Nobody needed `published` to be exact until now; live events start after what is stored.
        this.published = this.maxPosition();
        this.onFollowing(true);
      }
      subscriber.add(() => {
        if (--this.followers === 0 && !this.closed) this.onFollowing(false);
      });
      // Subscribe before reading the backlog: whatever commits meanwhile is in `early`.
      subscriber.add(
        this.live.subscribe({
          next: (e) => (replaying ? early.push(e) : deliver(e)),
          complete: () => subscriber.complete(),
        }),
      );
      try {
        for (;;) {
          if (subscriber.closed) return;
          const page = this.readAfter(last, PAGE);
          for (const e of page) deliver(e);
          if (page.length < PAGE) break;
        }
      } catch (err) {
        subscriber.error(err);
        return;
      }
      replaying = false;
      for (const e of early.splice(0)) deliver(e);
    });
  }

  /** Completes every follower, then releases the storage. Idempotent. */
  close(): void {
    if (this.closed) return;
    // A last chance for the backlog, waiting for a lock this time; what still fails is
    // left in `backlog()` for the caller to report (the daemon logs the rows to stderr).
    if (this.pending.length > 0) this.flush(true);
    this.retry?.abort();
    this.retry = null;
    this.closed = true;
    this.onFollowing(false);
    this.live.complete();
    this.recoveries.complete();
    for (const w of this.drainWaiters.splice(0)) w();
    this.closeStorage();
  }

  /** The rows still pending (after `close()`: those that could not be written), as stored text. */
  pendingRows(): readonly EncodedEvent[] {
    return this.pending;
  }

  protected get isClosed(): boolean {
    return this.closed;
  }

  /** Publishes whatever was committed after the last published position (by another writer). */
  protected catchUp(): void {
    for (;;) {
      if (this.closed) return;
      const page = this.readAfter(this.published, PAGE);
      this.publish(page);
      if (page.length < PAGE) return;
    }
  }

  private lastFlushed: StoredEvent[] = [];

  private prepareRows(vm: string, events: readonly DomainEvent[], options: AppendOptions): EncodedEvent[] {
    this.assertOpen();
    if (typeof vm !== 'string' || vm === '') {
      throw new PodvisorError('ERR_EVENTSTORE_INVALID_ARGUMENT', `append to ${this.name}: vm must be a non-empty string, got ${JSON.stringify(vm)}`);
    }
    if (events.length === 0) return [];
    return this.encode(vm, events, this.stamp(options.at), options.correlationId ?? null);
  }

  private commit(rows: readonly EncodedEvent[], wait: boolean): StoredEvent[] {
    const positions = this.writeRows(rows, wait);
    const stored = rows.map((row, i) => this.decode({ position: positions[i] ?? Number.NaN, ...row }));
    this.committed(stored);
    return stored;
  }

  /** Writes the whole backlog in one transaction; true when nothing is pending any more. */
  private flush(wait: boolean): boolean {
    if (this.pending.length === 0) return true;
    if (this.closed) return false;
    const rows = this.pending;
    try {
      this.lastFlushed = this.commit(rows, wait);
    } catch (err) {
      this.lastError = errorMessage(err);
      this.scheduleRetry();
      return false;
    }
    const recovery: EventLogRecovery = {
      events: rows.length,
      dropped: this.dropped,
      pendingMs: this.clock.now().getTime() - (this.pendingSince ?? this.clock.now().getTime()),
      lastError: this.lastError ?? 'unknown error',
    };
    this.pending = [];
    this.pendingSince = null;
    this.dropped = 0;
    this.retry?.abort();
    this.retry = null;
    for (const w of this.drainWaiters.splice(0)) w();
    // Later, so that a listener appending (a warning) does not run inside the append that flushed.
    queueMicrotask(() => {
      if (!this.closed) this.recoveries.next(recovery);
    });
    return true;
  }

  private scheduleRetry(): void {
    if (this.retry !== null || this.closed) return;
    const ac = new AbortController();
    this.retry = ac;
    this.clock.sleep(this.retryIntervalMs, ac.signal).then(
      () => {
        if (this.retry !== ac) return;
        this.retry = null;
        this.flush(false);
      },
      () => undefined,
    );
  }

  private committed(stored: readonly StoredEvent[]): void {
    const first = stored[0];
    const last = stored.at(-1);
    if (first === undefined || last === undefined) return;
    if (!this.live.observed) {
      this.published = Math.max(this.published, last.position);
    } else if (first.position === this.published + 1) {
      this.publish(stored);
    } else {
      this.catchUp();
    }
  }

  private publish(events: readonly StoredEvent[]): void {
    for (const e of events) {
      if (e.position <= this.published) continue;
      this.published = e.position;
      this.queue.push(e);
    }
    if (this.delivering) return;
    this.delivering = true;
    try {
      for (let e = this.queue.shift(); e !== undefined; e = this.queue.shift()) this.live.next(e);
    } finally {
      this.delivering = false;
    }
  }

  private stamp(at: Date | undefined): string {
    const when = at ?? this.clock.now();
    if (!(when instanceof Date) || Number.isNaN(when.getTime())) {
      throw new PodvisorError('ERR_EVENTSTORE_INVALID_ARGUMENT', `append to ${this.name}: at must be a valid Date, got ${String(when)}`);
    }
    return when.toISOString();
  }

  /** Encodes every event; throws on the first one that cannot be stored (nothing is written then). */
  private encode(vm: string, events: readonly DomainEvent[], at: string, correlationId: string | null): EncodedEvent[] {
    return events.map((e) => {
      const schemaVersion = this.upcasters.currentVersion(e.type);
      if (schemaVersion === undefined) {
        throw new PodvisorError('ERR_EVENTSTORE_INVALID_EVENT', `append to ${this.name}: unknown event type ${JSON.stringify(e.type)}`, {
          hint: 'event types are listed in EVENT_SCHEMA_VERSIONS',
        });
      }
      let data: string | undefined;
      try {
        data = JSON.stringify(e.data);
      } catch (cause) {
        throw new PodvisorError('ERR_EVENTSTORE_INVALID_EVENT', `append to ${this.name}: the data of ${e.type} is not serializable to JSON`, { cause });
      }
      if (typeof data !== 'string') {
        throw new PodvisorError('ERR_EVENTSTORE_INVALID_EVENT', `append to ${this.name}: the data of ${e.type} is not a JSON value`);
      }
      return { at, type: e.type, schemaVersion, vm, data, correlationId };
    });
  }

  private decode(row: StoredRow): StoredEvent {
    let data: unknown;
    try {
      data = JSON.parse(row.data);
    } catch (cause) {
      throw new PodvisorError('ERR_EVENTSTORE_CORRUPT', `${this.name}: event at position ${row.position} holds data that is not JSON`, { cause });
    }
    const envelope = {
      position: row.position,
      at: row.at,
      type: row.type,
      schemaVersion: row.schemaVersion,
      vm: row.vm,
      data,
      correlationId: row.correlationId,
    };
    // An unknown type passes through as stored (see upcasters.ts), so the cast is as honest as the log.
    return this.upcasters.upcast(envelope) as StoredEvent;
  }

  private assertOpen(): void {
    if (this.closed) throw new PodvisorError('ERR_EVENTSTORE_CLOSED', `${this.name} is closed`);
  }
}
