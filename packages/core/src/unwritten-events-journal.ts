/**
 * Events the log still refused when podvisor exited (a write lock held past
 * the exit, a volume that took no writes) are not lost: the daemon keeps them
 * in a journal file beside the log, `events.unwritten.json`, and the next start
 * writes them into the log before anything else, in one transaction with a
 * `WarningRaised(WARN_EVENT_LOG_REPLAYED)` whose correlation id names the
 * journal. Replay is idempotent: a journal whose marker is already in the log
 * (a crash between the commit and the unlink) is only removed. When even the
 * journal cannot be written (a full volume has no room for it either), the
 * events go to stderr, as before (docs/reliability.md).
 */
import { randomUUID } from 'node:crypto';
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import path from 'node:path';
import { PodvisorError, errorMessage } from './errors.js';
import type { EncodedEvent, EventStoreBase } from './event-store-base.js';

export const UNWRITTEN_EVENTS_FILE = 'events.unwritten.json';

interface Journal {
  journal: string;
  events: EncodedEvent[];
}

/** The correlation id of the marker that says journal `id` was written into the log. */
function markerId(id: string): string {
  return `unwritten-events:${id}`;
}

/** Writes `rows` into the state dir's journal (atomically: a temp file, fsync, rename); returns its path. Throws on any failure. */
export function keepUnwrittenEvents(stateDir: string, rows: readonly EncodedEvent[]): string {
  const file = path.join(stateDir, UNWRITTEN_EVENTS_FILE);
  // A journal left by an earlier exit that the next start could not replay yet goes first.
  const earlier = readJournal(file);
  const body: Journal = { journal: randomUUID(), events: [...(earlier?.events ?? []), ...rows] };
  const tmp = `${file}.${process.pid}.tmp`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeSync(fd, JSON.stringify(body));
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    renameSync(tmp, file);
  } catch (err) {
    unlinkIfThere(tmp);
    throw err;
  }
  return file;
}

/**
 * Writes a kept journal into the log (see the file comment). Returns null when
 * there is none, else how many events it held and whether an earlier start had
 * already written them. Throws `ERR_EVENTSTORE_JOURNAL` for a journal that is
 * not one (left in place), and the store's errors when the log refuses the write.
 */
export function replayUnwrittenEvents(store: EventStoreBase, stateDir: string, vm: string): { events: number; alreadyWritten: boolean; file: string } | null {
  const file = path.join(stateDir, UNWRITTEN_EVENTS_FILE);
  const journal = readJournal(file);
  if (journal === null) return null;
  const marker = markerId(journal.journal);
  let alreadyWritten = false;
  for (let after = 0; ; ) {
    const page = store.readAfter(after, 1000);
    if (page.some((e) => e.correlationId === marker)) {
      alreadyWritten = true;
      break;
    }
    if (page.length < 1000) break;
    after = page[page.length - 1]?.position ?? after;
  }
  if (!alreadyWritten) {
    store.appendEncoded(vm, journal.events, [
      {
        type: 'WarningRaised',
        data: {
          code: 'WARN_EVENT_LOG_REPLAYED',
          message: `the ${journal.events.length} events the event log refused when podvisor last exited were kept in ${UNWRITTEN_EVENTS_FILE} and are written now, in order, with the times they happened`,
          hint: 'an earlier run ended while the volume was full, read-only or locked by another process',
        },
      },
    ], { correlationId: marker });
  }
  unlinkIfThere(file);
  return { events: journal.events.length, alreadyWritten, file };
}

function readJournal(file: string): Journal | null {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new PodvisorError('ERR_EVENTSTORE_JOURNAL', `cannot read the unwritten-events journal ${file}: ${errorMessage(err)}`, { cause: err });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new PodvisorError('ERR_EVENTSTORE_JOURNAL', `the unwritten-events journal ${file} is not JSON: ${errorMessage(err)}`, { cause: err, hint: 'it is left in place; move it away to start without it' });
  }
  const j = parsed as Partial<Journal>;
  if (typeof j?.journal !== 'string' || !Array.isArray(j.events)) {
    throw new PodvisorError('ERR_EVENTSTORE_JOURNAL', `the unwritten-events journal ${file}: expected {journal: string, events: [...]}, got ${text.slice(0, 120)}`, { hint: 'it is left in place; move it away to start without it' });
  }
  return j as Journal;
}

function unlinkIfThere(file: string): void {
  try {
    unlinkSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}
