/**
 * The event log as a SQLite file (better-sqlite3) in the state dir. The daemon
 * appends; other processes (the `podvisor events` CLI) open the same file and
 * read or follow it while it does. WAL mode lets readers run beside the writer
 * (a reader, even in a long transaction, takes no write lock). Another writer
 * (a backup, a second process) can hold the write lock: the daemon's appends
 * (`appendOrQueue`) wait only a few ms for it, then queue in memory and retry,
 * as they do on a full or read-only volume (see docs/reliability.md).
 * The schema is versioned by numbered migrations recorded in `user_version`; a
 * file written by a newer podvisor is refused rather than guessed at. Triggers
 * make the `events` table append-only, so no code path can rewrite history.
 * Followers in this process see other processes' appends by polling the cheap
 * `PRAGMA data_version`, which changes only when another connection commits.
 */
import Database from 'better-sqlite3';
import { PodvisorError } from './errors.js';
import { EventStoreBase, type EncodedEvent, type EventStoreBaseOptions, type StoredRow } from './event-store-base.js';
import { SilentLogger, type Logger } from './logger.js';

export interface SqliteEventStoreOptions extends EventStoreBaseOptions {
  /** The database file; its directory must exist. Created (and migrated) when missing. */
  path: string;
  log?: Logger;
  /** How often followers check for other processes' appends. Default 200 ms. */
  pollIntervalMs?: number;
  /**
   * How long opening (and a plain `append`, e.g. from a CLI) waits for another
   * process's write lock before failing. Default 5000 ms.
   */
  busyTimeoutMs?: number;
  /**
   * How long `appendOrQueue` (the daemon's appends) waits for another process's
   * write lock before queueing the events for a retry: better-sqlite3 is
   * synchronous, so this is how long the event loop stops. Default 5 ms.
   */
  queueingBusyTimeoutMs?: number;
}

/**
 * Schema migrations, in order; the file's `user_version` is how many have run.
 * Append only: never edit one that has shipped.
 */
const MIGRATIONS: readonly string[] = [
  `CREATE TABLE events (
     position INTEGER PRIMARY KEY AUTOINCREMENT,
     at TEXT NOT NULL,
     type TEXT NOT NULL,
     schema_version INTEGER NOT NULL,
     vm TEXT NOT NULL,
     data TEXT NOT NULL, -- JSON
     correlation_id TEXT
   );
   CREATE TRIGGER events_no_update BEFORE UPDATE ON events
     BEGIN SELECT RAISE(ABORT, 'the event log is append-only: UPDATE of events is refused'); END;
   CREATE TRIGGER events_no_delete BEFORE DELETE ON events
     BEGIN SELECT RAISE(ABORT, 'the event log is append-only: DELETE from events is refused'); END;`,
];

/** The schema version this podvisor writes and understands. */
export const EVENT_STORE_SCHEMA_VERSION = MIGRATIONS.length;

const COLUMNS = 'position, at, type, schema_version AS schemaVersion, vm, data, correlation_id AS correlationId';

export class SqliteEventStore extends EventStoreBase {
  readonly path: string;
  private readonly db: Database.Database;
  private readonly log: Logger;
  private readonly pollIntervalMs: number;
  private readonly insert: Database.Statement<[string, string, number, string, string, string | null]>;
  private readonly selectAfter: Database.Statement<[number, number], StoredRow>;
  private readonly selectMax: Database.Statement<[], { max: number | null }>;
  private poll: NodeJS.Timeout | undefined;
  private readonly busyTimeoutMs: number;
  private readonly queueingBusyTimeoutMs: number;
  private busyTimeoutSet: number;
  private dataVersion = 0;

  /**
   * Opens (creating and migrating when needed) the log at `options.path`.
   * Throws `ERR_EVENTSTORE_OPEN` when the file cannot be opened as SQLite (not a
   * database, missing directory, no permission) and `ERR_EVENTSTORE_TOO_NEW`
   * when a newer podvisor migrated it past `EVENT_STORE_SCHEMA_VERSION`.
   */
  constructor(options: SqliteEventStoreOptions) {
    super(`event store ${options.path}`, options);
    this.path = options.path;
    this.log = (options.log ?? new SilentLogger()).child({ name: 'SqliteEventStore', path: options.path });
    this.pollIntervalMs = options.pollIntervalMs ?? 200;
    this.busyTimeoutMs = options.busyTimeoutMs ?? 5000;
    this.queueingBusyTimeoutMs = options.queueingBusyTimeoutMs ?? 5;
    this.busyTimeoutSet = this.busyTimeoutMs;
    const started = performance.now();
    let db: Database.Database | undefined;
    try {
      db = new Database(options.path, { timeout: this.busyTimeoutMs });
      const from = migrate(db, options.path, this.busyTimeoutMs, this.log);
      this.db = db;
      this.insert = db.prepare('INSERT INTO events (at, type, schema_version, vm, data, correlation_id) VALUES (?, ?, ?, ?, ?, ?)');
      this.selectAfter = db.prepare<[number, number], StoredRow>(`SELECT ${COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?`);
      this.selectMax = db.prepare<[], { max: number | null }>('SELECT max(position) AS max FROM events');
      this.log.info('event store opened', {
        schemaVersion: EVENT_STORE_SCHEMA_VERSION,
        migratedFrom: from,
        lastPosition: this.maxPosition(),
        ms: Math.round(performance.now() - started),
      });
    } catch (err) {
      db?.close();
      if (err instanceof PodvisorError) throw err;
      throw new PodvisorError('ERR_EVENTSTORE_OPEN', `cannot open the event store ${options.path}: ${(err as Error).message}`, {
        cause: err,
        hint: 'the path must be a SQLite file written by podvisor (or not exist yet) in an existing, writable directory',
        details: { path: options.path },
      });
    }
  }

  /** The same as the constructor, for composition roots that prefer a factory. */
  static open(options: SqliteEventStoreOptions): SqliteEventStore {
    return new SqliteEventStore(options);
  }

  protected writeRows(rows: readonly EncodedEvent[], wait: boolean): number[] {
    const write = this.db.transaction((batch: readonly EncodedEvent[]) => {
      const positions: number[] = [];
      for (const r of batch) {
        positions.push(Number(this.insert.run(r.at, r.type, r.schemaVersion, r.vm, r.data, r.correlationId).lastInsertRowid));
      }
      return positions;
    });
    try {
      const timeout = wait ? this.busyTimeoutMs : this.queueingBusyTimeoutMs;
      if (timeout !== this.busyTimeoutSet) {
        this.db.pragma(`busy_timeout = ${timeout}`);
        this.busyTimeoutSet = timeout;
      }
      // IMMEDIATE takes the write lock up front, so waiting for another writer honours busy_timeout.
      return write.immediate(rows);
    } catch (err) {
      if (err instanceof PodvisorError) throw err;
      throw new PodvisorError('ERR_EVENTSTORE_WRITE', `cannot append to the event store ${this.path}: ${(err as Error).message}`, {
        cause: err,
        details: { path: this.path },
      });
    }
  }

  protected readRows(after: number, limit: number | undefined): StoredRow[] {
    return this.selectAfter.all(after, limit ?? -1);
  }

  protected maxPosition(): number {
    return this.selectMax.get()?.max ?? 0;
  }

  protected closeStorage(): void {
    this.db.close();
    this.log.info('event store closed');
  }

  protected override onFollowing(active: boolean): void {
    if (!active || this.isClosed) {
      clearInterval(this.poll);
      this.poll = undefined;
      return;
    }
    this.dataVersion = this.readDataVersion();
    this.poll = setInterval(() => this.pollOtherWriters(), this.pollIntervalMs);
    this.poll.unref();
  }

  private pollOtherWriters(): void {
    try {
      const version = this.readDataVersion();
      if (version === this.dataVersion) return;
      this.dataVersion = version;
      this.catchUp();
    } catch (err) {
      this.log.warn('reading other processes appends failed; will retry', { err });
    }
  }

  private readDataVersion(): number {
    return this.db.pragma('data_version', { simple: true }) as number;
  }
}

/**
 * Puts the file in WAL mode and runs the missing migrations in one IMMEDIATE
 * transaction (two processes opening a fresh file migrate it once). Returns the
 * version it found. Throws `ERR_EVENTSTORE_TOO_NEW`.
 */
function migrate(db: Database.Database, path: string, busyTimeoutMs: number, log: Logger): number {
  useWal(db, busyTimeoutMs, log);
  // FULL syncs the WAL on every commit. Appends are rare (a handful per VM state change),
  // and with NORMAL a power loss or node crash may drop the last commits: the very events
  // that explain what happened. https://sqlite.org/pragma.html#pragma_synchronous
  db.pragma('synchronous = FULL');
  const found = userVersion(db);
  assertNotTooNew(found, path);
  if (found < MIGRATIONS.length) {
    db.transaction(() => {
      const current = userVersion(db);
      assertNotTooNew(current, path);
      for (let v = current; v < MIGRATIONS.length; v++) db.exec(MIGRATIONS[v] ?? '');
      db.pragma(`user_version = ${MIGRATIONS.length}`);
    }).immediate();
  }
  return found;
}

/**
 * Puts the file in WAL mode (it persists in the file), unless it is already.
 * The switch needs an exclusive lock. When two processes open a new file at
 * once (podvisor creating its log while `podvisor events` or a test opens it),
 * SQLite may refuse one of them with SQLITE_BUSY at once, without calling the
 * busy handler, because waiting could deadlock
 * (https://sqlite.org/c3ref/busy_handler.html): so that case is retried here,
 * for up to the busy timeout. Reading the mode is also the first read of the
 * file: a non-SQLite file fails here.
 */
function useWal(db: Database.Database, busyTimeoutMs: number, log: Logger): void {
  const deadline = performance.now() + busyTimeoutMs;
  for (let attempt = 1; ; attempt++) {
    try {
      if (db.pragma('journal_mode', { simple: true }) !== 'wal') db.pragma('journal_mode = WAL');
      return;
    } catch (err) {
      if ((err as { code?: unknown }).code !== 'SQLITE_BUSY' || performance.now() >= deadline) throw err;
      if (attempt === 1) log.warn('the event store is locked by another connection while it is put in WAL mode: retrying', { busyTimeoutMs });
      // A synchronous pause of 10 ms: the constructor is synchronous, and this only runs while another process holds the file's lock.
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
    }
  }
}

function userVersion(db: Database.Database): number {
  return db.pragma('user_version', { simple: true }) as number;
}

function assertNotTooNew(version: number, path: string): void {
  if (version <= MIGRATIONS.length) return;
  throw new PodvisorError(
    'ERR_EVENTSTORE_TOO_NEW',
    `the event store ${path} has schema version ${version}, newer than the ${MIGRATIONS.length} this podvisor knows`,
    { hint: 'a newer podvisor wrote this log: run that version (or newer), or move the file aside', details: { path, version, known: MIGRATIONS.length } },
  );
}
