import Database from 'better-sqlite3';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { filter, firstValueFrom, ReplaySubject, take, toArray } from 'rxjs';
import { execa } from 'execa';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { describeEventStoreContract } from './event-store-contract.js';
import { event, type StoredEvent } from './events.js';
import { SilentLogger } from './logger.js';
import { ExecaProcessRunner } from './process-runner.js';
import { EVENT_STORE_SCHEMA_VERSION, SqliteEventStore } from './sqlite-event-store.js';
import { UpcasterRegistry } from './upcasters.js';

const tempDir = (): Promise<string> => mkdtemp(join(tmpdir(), 'podvisor-evstore-'));
const paused = (reason: string) => event('VmPaused', { by: 'test', reason });

describeEventStoreContract('SqliteEventStore', async () => {
  const dir = await tempDir();
  const path = join(dir, 'events.db');
  return {
    store: new SqliteEventStore({ path }),
    reopen: async () => new SqliteEventStore({ path }),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
});

describe('SqliteEventStore', () => {
  let dir: string;
  let path: string;
  const opened: Array<{ close(): void }> = [];
  const open = <T extends { close(): void }>(thing: T): T => {
    opened.push(thing);
    return thing;
  };
  /** A plain connection, as another tool (or a careless engineer) would open the file. */
  const raw = (): Database.Database => open(new Database(path));

  beforeEach(async () => {
    dir = await tempDir();
    path = join(dir, 'events.db');
  });
  afterEach(async () => {
    for (const thing of opened.splice(0).reverse()) thing.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('creates the schema in WAL mode and records its version', () => {
    open(new SqliteEventStore({ path })).append('vm-a', [paused('x')]);
    const db = raw();
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(db.pragma('user_version', { simple: true })).toBe(EVENT_STORE_SCHEMA_VERSION);
    const columns = db.prepare<[], { name: string; type: string; notnull: number; pk: number }>('PRAGMA table_info(events)').all();
    expect(columns.map((c) => [c.name, c.type, c.notnull, c.pk])).toEqual([
      ['position', 'INTEGER', 0, 1],
      ['at', 'TEXT', 1, 0],
      ['type', 'TEXT', 1, 0],
      ['schema_version', 'INTEGER', 1, 0],
      ['vm', 'TEXT', 1, 0],
      ['data', 'TEXT', 1, 0],
      ['correlation_id', 'TEXT', 0, 0],
    ]);
  });

  it('refuses UPDATE and DELETE of events, even from another connection', () => {
    open(new SqliteEventStore({ path })).append('vm-a', [paused('one'), paused('two')]);
    const db = raw();
    expect(() => db.prepare("UPDATE events SET data = '{}' WHERE position = 1").run()).toThrow(/append-only: UPDATE/);
    expect(() => db.prepare('DELETE FROM events WHERE position = 2').run()).toThrow(/append-only: DELETE/);
    // An unqualified DELETE would take SQLite's truncate shortcut, which triggers disable.
    expect(() => db.prepare('DELETE FROM events').run()).toThrow(/append-only: DELETE/);
    expect(db.prepare('SELECT position, data FROM events ORDER BY position').all()).toEqual([
      { position: 1, data: JSON.stringify({ by: 'test', reason: 'one' }) },
      { position: 2, data: JSON.stringify({ by: 'test', reason: 'two' }) },
    ]);
  });

  it('streams to a follower in another connection what the first one appends', async () => {
    const daemon = open(new SqliteEventStore({ path }));
    daemon.append('vm-a', [paused('before')]);
    const cli = open(new SqliteEventStore({ path, pollIntervalMs: 20 }));
    const seen = firstValueFrom(cli.follow(0).pipe(take(4), toArray()));
    daemon.append('vm-a', [paused('live 1'), paused('live 2')]);
    daemon.append('vm-a', [paused('live 3')], { correlationId: 'req-9' });
    const events = await seen;
    expect(events).toEqual(daemon.readAfter(0));
    expect(events.map((e) => e.data)).toEqual(['before', 'live 1', 'live 2', 'live 3'].map((reason) => ({ by: 'test', reason })));
  });

  it('refuses a file migrated by a newer podvisor, naming it', () => {
    open(new SqliteEventStore({ path })).close();
    const db = new Database(path);
    db.pragma(`user_version = ${EVENT_STORE_SCHEMA_VERSION + 1}`);
    db.close();
    expect(() => new SqliteEventStore({ path })).toThrow(
      expect.objectContaining({ code: 'ERR_EVENTSTORE_TOO_NEW', message: expect.stringContaining(path) }),
    );
  });

  it('refuses a file that is not SQLite, naming it, and leaves it alone', async () => {
    const text = 'this is a podvisor.yaml, not a database\n'.repeat(64);
    await writeFile(path, text);
    expect(() => new SqliteEventStore({ path })).toThrow(
      expect.objectContaining({ code: 'ERR_EVENTSTORE_OPEN', message: expect.stringContaining(path) }),
    );
    const { readFile } = await import('node:fs/promises');
    expect(await readFile(path, 'utf8')).toBe(text);
  });

  it('says which path it cannot open when the directory is missing', () => {
    const missing = join(dir, 'no-such-dir', 'events.db');
    expect(() => new SqliteEventStore({ path: missing })).toThrow(
      expect.objectContaining({ code: 'ERR_EVENTSTORE_OPEN', message: expect.stringContaining(missing) }),
    );
  });

  it('upcasts old rows at read time and never rewrites them', () => {
    const v1 = open(new SqliteEventStore({ path }));
    v1.append('vm-a', [paused('old shape')]);
    v1.close();
    // A test-only v2 of VmPaused: `reason` became `why`, and `by` moved into `requester`.
    const upcasters = new UpcasterRegistry({
      currentVersions: { VmPaused: 2, VmResumed: 1 },
      upcasters: [{ type: 'VmPaused', fromVersion: 1, up: (d) => ({ requester: (d as { by: string }).by, why: (d as { reason: string }).reason }) }],
    });
    const v2 = open(new SqliteEventStore({ path, upcasters }));
    const expected = { type: 'VmPaused', schemaVersion: 2, data: { requester: 'test', why: 'old shape' } };
    expect(v2.readAfter(0)).toEqual([expect.objectContaining(expected)]);
    expect(v2.append('vm-a', [event('VmResumed', { by: 'test' })])[0]?.schemaVersion).toBe(1);
    expect(raw().prepare('SELECT schema_version, data FROM events WHERE position = 1').get()).toEqual({
      schema_version: 1,
      data: JSON.stringify({ by: 'test', reason: 'old shape' }),
    });
  });

  it('passes through, unchanged, events a newer podvisor wrote', async () => {
    const store = open(new SqliteEventStore({ path }));
    store.append('vm-a', [paused('known')]);
    const db = raw();
    const insert = db.prepare('INSERT INTO events (at, type, schema_version, vm, data, correlation_id) VALUES (?, ?, ?, ?, ?, NULL)');
    insert.run('2031-01-01T00:00:00.000Z', 'VmTeleported', 3, 'vm-a', '{"to":"mars"}');
    insert.run('2031-01-01T00:00:01.000Z', 'VmPaused', 7, 'vm-a', '{"future":true}');
    const future = [
      { position: 2, at: '2031-01-01T00:00:00.000Z', type: 'VmTeleported', schemaVersion: 3, vm: 'vm-a', data: { to: 'mars' }, correlationId: null },
      { position: 3, at: '2031-01-01T00:00:01.000Z', type: 'VmPaused', schemaVersion: 7, vm: 'vm-a', data: { future: true }, correlationId: null },
    ];
    expect(store.readAfter(1)).toEqual(future);
    await expect(firstValueFrom(store.follow(1).pipe(take(2), toArray()))).resolves.toEqual(future);
  });

  it('keeps positions unique and gapless when two processes append at once', async () => {
    const store = open(new SqliteEventStore({ path, pollIntervalMs: 10 }));
    const stopFile = join(dir, 'stop');
    const script = join(dir, 'writer.ts');
    const storeModule = fileURLToPath(new URL('./sqlite-event-store.ts', import.meta.url));
    const eventsModule = fileURLToPath(new URL('./events.ts', import.meta.url));
    // The other process appends one event at a time until told to stop, so both really write at once.
    await writeFile(
      script,
      `import { existsSync } from 'node:fs';
       import { SqliteEventStore } from ${JSON.stringify(storeModule)};
       import { event } from ${JSON.stringify(eventsModule)};
       const store = new SqliteEventStore({ path: ${JSON.stringify(path)} });
       for (let i = 0; !existsSync(${JSON.stringify(stopFile)}); i++) {
         // Locked by the other writer: queued, and written in order once the lock is free.
         if (store.appendOrQueue('other', [event('VmPaused', { by: 'other', reason: String(i) })]) === null) await store.drained();
       }
       store.close();`,
    );
    const runner = new ExecaProcessRunner(new SilentLogger());
    const viteNode = fileURLToPath(new URL('../../../node_modules/.bin/vite-node', import.meta.url));
    const child = runner.run(viteNode, [script], { cwd: dir, timeoutMs: 60_000 });
    try {
      const followed = new ReplaySubject<StoredEvent>();
      const sub = store.follow(0).subscribe(followed);
      await firstValueFrom(store.follow(0).pipe(filter((e) => e.vm === 'other')));
      const ours = 300;
      for (let i = 0; i < ours; i++) {
        // The same path as the daemon's: a write lock held by the other process queues, never throws or blocks.
        store.appendOrQueue('this', [event('VmPaused', { by: 'this', reason: String(i) })]);
        await new Promise(setImmediate);
        if (i === ours / 2) {
          // Half-way, until the other process has written after ours: on a loaded machine it may get
          // no CPU during a whole burst, and the overlap asserted below must not depend on that.
          await store.drained();
          await firstValueFrom(store.follow(store.lastPosition()).pipe(filter((e) => e.vm === 'other')));
        }
      }
      await store.drained();
      await writeFile(stopFile, '');
      expect((await child).exitCode).toBe(0);
      const log = store.readAfter(0);
      expect(log.map((e) => e.position)).toEqual(log.map((_, i) => i + 1));
      const reasons = (vm: string) => log.filter((e) => e.vm === vm).map((e) => (e.data as { reason: string }).reason);
      expect(reasons('this')).toEqual(Array.from({ length: ours }, (_, i) => String(i)));
      const theirs = reasons('other');
      expect(theirs).toEqual(theirs.map((_, i) => String(i)));
      // They did overlap: some of our events sit between two of theirs.
      const firstOther = log.findIndex((e) => e.vm === 'other');
      const lastOther = log.findLastIndex((e) => e.vm === 'other');
      expect(log.slice(firstOther, lastOther).some((e) => e.vm === 'this')).toBe(true);
      // And the follower in this process saw the whole log, in order, theirs included.
      await expect(firstValueFrom(followed.pipe(take(log.length), toArray()))).resolves.toEqual(log);
      sub.unsubscribe();
    } finally {
      await writeFile(stopFile, '');
      await child.catch(() => undefined);
    }
  });

  it('opens a file another connection holds a write lock on while it switches it to WAL, once the lock is let go', async () => {
    // A file in rollback-journal mode (as a brand-new log is for a moment), with a write lock held by this process.
    const holder = raw();
    holder.exec('CREATE TABLE placeholder (x)');
    holder.exec('BEGIN IMMEDIATE');
    // The switch to WAL upgrades a read lock to a write lock. SQLite refuses that at once, without the busy
    // handler, when another connection holds the write lock (waiting could deadlock). This is what happened when
    // podvisor created its log while a test (or podvisor events) opened it: "database is locked".
    const script = join(dir, 'opener.ts');
    const storeModule = fileURLToPath(new URL('./sqlite-event-store.ts', import.meta.url));
    const loggerModule = fileURLToPath(new URL('./logger.ts', import.meta.url));
    await writeFile(
      script,
      `import { SqliteEventStore } from ${JSON.stringify(storeModule)};
       import { JsonLogger } from ${JSON.stringify(loggerModule)};
       const store = new SqliteEventStore({ path: ${JSON.stringify(path)}, busyTimeoutMs: 120_000, log: new JsonLogger(process.stdout, 'opener') });
       process.stdout.write('opened\\n');
       store.close();`,
    );
    const viteNode = fileURLToPath(new URL('../../../node_modules/.bin/vite-node', import.meta.url));
    const child = execa(viteNode, [script], { cwd: dir, stdout: 'pipe', reject: false });
    let out = '';
    // Let go of the lock only once the child says it is waiting for it: it has met the refusal. (A child that
    // gives up at once ends instead, and the assertions below say how.)
    await new Promise<void>((resolve) => {
      child.stdout?.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('retrying')) resolve();
      });
      void child.finally(() => resolve());
    });
    holder.exec('COMMIT');
    const result = await child;
    expect(result.stderr).toBe('');
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toContain('opened');
    expect(raw().pragma('journal_mode', { simple: true })).toBe('wal');
  });

  it('queues appends while another process holds the write lock, and writes them in order once it lets go', async () => {
    const store = open(new SqliteEventStore({ path, retryIntervalMs: 20 }));
    store.append('vm-a', [paused('before')]);
    const followed = new ReplaySubject<StoredEvent>();
    const sub = store.follow(0).subscribe(followed);
    // Another process (a backup, a tool in a long write transaction) takes the write lock and keeps it until told.
    const script = join(dir, 'locker.mjs');
    await writeFile(
      script,
      `import { createRequire } from 'node:module';
       const Database = createRequire(${JSON.stringify(import.meta.url)})('better-sqlite3');
       const db = new Database(${JSON.stringify(path)});
       db.exec('BEGIN EXCLUSIVE');
       process.stdout.write('locked\\n');
       process.stdin.once('data', () => { db.exec('COMMIT'); db.close(); process.stdout.write('released\\n'); });`,
    );
    const child = execa(process.execPath, [script], { cwd: dir, stdin: 'pipe', stdout: 'pipe' });
    try {
      await new Promise<void>((resolve) => child.stdout?.on('data', (d: Buffer) => d.toString().includes('locked') && resolve()));
      // Before: each append waited busy_timeout (5 s) on the lock, then threw "database is locked".
      const results = Array.from({ length: 20 }, (_, i) => store.appendOrQueue('vm-a', [paused(String(i))]));
      expect(results.every((r) => r === null)).toBe(true);
      expect(store.backlog()).toMatchObject({ pending: 20, dropped: 0, lastError: expect.stringContaining('locked') });
      // A plain append keeps the order too: it refuses while the backlog cannot be written.
      expect(() => new SqliteEventStore({ path, busyTimeoutMs: 10 }).append('vm-a', [paused('x')])).toThrow(expect.objectContaining({ code: 'ERR_EVENTSTORE_WRITE' }));
      // Nothing reached the followers: the bus carries committed events only.
      expect(store.readAfter(0).map((e) => e.position)).toEqual([1]);
      const recovered = firstValueFrom(store.recovered);
      child.stdin?.write('go\n');
      await store.drained();
      await expect(recovered).resolves.toMatchObject({ events: 20, dropped: 0 });
      const log = store.readAfter(0);
      expect(log.map((e) => e.position)).toEqual(Array.from({ length: 21 }, (_, i) => i + 1));
      expect(log.map((e) => (e.data as { reason: string }).reason)).toEqual(['before', ...Array.from({ length: 20 }, (_, i) => String(i))]);
      await expect(firstValueFrom(followed.pipe(take(21), toArray()))).resolves.toEqual(log);
      expect(store.backlog()).toEqual({ pending: 0, dropped: 0, since: null, lastError: null });
      sub.unsubscribe();
    } finally {
      child.stdin?.end('go\n');
      await child.catch(() => undefined);
    }
  });

  it('queues appends on a full volume, and writes them in order, once each, when space returns', async () => {
    const mnt = await mkdtemp(join(tmpdir(), 'podvisor-evfull-'));
    await execa('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'podvisor-evfull', mnt]);
    try {
      const file = join(mnt, 'events.db');
      const store = new SqliteEventStore({ path: file, retryIntervalMs: 20 });
      try {
        store.append('vm-a', [paused('before')]);
        // Fill the volume to the last byte.
        await execa('dd', ['if=/dev/zero', `of=${join(mnt, 'filler')}`, 'bs=64k'], { reject: false });
        const big = 'x'.repeat(256 * 1024);
        const results = Array.from({ length: 5 }, (_, i) => store.appendOrQueue('vm-a', [paused(`${i}:${big}`)]));
        expect(results.every((r) => r === null)).toBe(true);
        expect(store.backlog()).toMatchObject({ pending: 5, lastError: expect.stringMatching(/full/) });
        await rm(join(mnt, 'filler'));
        await store.drained();
        const log = store.readAfter(0);
        expect(log.map((e) => e.position)).toEqual([1, 2, 3, 4, 5, 6]);
        expect(log.map((e) => (e.data as { reason: string }).reason.split(':')[0])).toEqual(['before', '0', '1', '2', '3', '4']);
      } finally {
        store.close();
      }
    } finally {
      await execa('umount', [mnt], { reject: false });
      await rm(mnt, { recursive: true, force: true });
    }
  });
});
