/**
 * `podvisor events`: prints the event log of a VM's state dir, as text or JSON
 * lines, and with `--follow` keeps printing new events as the daemon commits
 * them (the SQLite file is shared; the daemon need not be reachable).
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { WARNING_EVENTS, type StoredEvent } from '@podvisor/core';
import { SqliteEventStore } from '@podvisor/core/sqlite';
import { writeAll } from '../process-output.js';
import type { CommandIo } from './run-command.js';
import { reportStartupError } from './run-command.js';
import { ExitCode } from '../exit-codes.js';

/** Events read and written per step: a long log is printed a page at a time, waiting for a slow reader. */
const EVENTS_PAGE = 1000;

export const EVENTS_HELP = `Usage: podvisor events [--json] [--follow] [--after N] [--state-dir DIR]

Prints the VM's event log (oldest first).
  --json            one JSON envelope per line: {position, at, type, schemaVersion, vm, data, correlationId}
  -f, --follow      keep printing new events until SIGINT or SIGTERM
  --after N         only events after position N (default 0)
  --state-dir DIR   the state dir (default $PODVISOR_STATE_DIR, else $PODVISOR_DISK_DIR/.podvisor,
                    else /var/lib/podvisor/disk/.podvisor)
Exit codes: 0 ok (--follow: ended by SIGINT or SIGTERM), 1 the log could not be read, 2 usage error
or no event log there, 141 the reader of stdout went away.
`;

export async function eventsCommand(argv: readonly string[], io: CommandIo): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        json: { type: 'boolean' },
        follow: { type: 'boolean', short: 'f' },
        after: { type: 'string' },
        'state-dir': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }));
  } catch (err) {
    io.stderr.write(`podvisor events: ${(err as Error).message}\n\n${EVENTS_HELP}`);
    return ExitCode.Config;
  }
  if (values.help === true) {
    io.stdout.write(EVENTS_HELP);
    return ExitCode.Ok;
  }
  const after = values.after === undefined ? 0 : Number(values.after);
  if (!Number.isInteger(after) || after < 0) {
    io.stderr.write(`podvisor events: --after: got ${JSON.stringify(values.after)}, expected a position (integer ≥ 0)\n`);
    return ExitCode.Config;
  }
  const stateDir = values['state-dir'] ?? io.env['PODVISOR_STATE_DIR'] ?? path.join(io.env['PODVISOR_DISK_DIR'] ?? '/var/lib/podvisor/disk', '.podvisor');
  const file = path.join(stateDir, 'events.db');
  if (!existsSync(file)) {
    io.stderr.write(`podvisor events: no event log at ${file}\nhint: pass --state-dir, or set PODVISOR_STATE_DIR / PODVISOR_DISK_DIR as for podvisor run\n`);
    return ExitCode.Config;
  }
  let store: SqliteEventStore;
  try {
    store = SqliteEventStore.open({ path: file });
  } catch (err) {
    return reportStartupError(err, io);
  }
  const line = (e: StoredEvent): string => (values.json === true ? `${JSON.stringify(e)}\n` : `${formatEvent(e)}\n`);
  const print = (e: StoredEvent): void => {
    io.stdout.write(line(e));
  };
  try {
    if (values.follow !== true) {
      // To the end of the log as it is now; events appended meanwhile are left for the next call (or --follow).
      const end = store.lastPosition();
      for (let from = after; from < end; ) {
        const page = store.readAfter(from, EVENTS_PAGE).filter((e) => e.position <= end);
        if (page.length === 0) break;
        await writeAll(io.stdout, page.map(line).join(''));
        from = page.at(-1)?.position ?? end;
      }
      return ExitCode.Ok;
    }
    let failed: unknown = null;
    await new Promise<void>((resolve) => {
      // The store polls for other writers on an unref'd timer (it must not keep a daemon alive):
      // this timer keeps the command alive until a signal or the end of the log.
      const alive = setInterval(() => undefined, 1 << 30);
      const done = (): void => {
        clearInterval(alive);
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
        resolve();
      };
      const sub = store.follow(after).subscribe({
        next: print,
        complete: done,
        error: (err: unknown) => {
          failed = err;
          done();
        },
      });
      const stop = (): void => {
        sub.unsubscribe();
        done();
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
    return failed === null ? ExitCode.Ok : reportStartupError(failed, io);
  } finally {
    store.close();
  }
}

/** `POSITION  TIME  TYPE  key=value ...`, warnings marked. */
export function formatEvent(e: StoredEvent): string {
  const fields = Object.entries(e.data as Record<string, unknown>)
    .filter(([k]) => k !== 'argv')
    .map(([k, v]) => `${k}=${typeof v === 'string' ? (/\s/.test(v) ? JSON.stringify(v) : v) : JSON.stringify(v)}`)
    .join(' ');
  const mark = WARNING_EVENTS.has(e.type) ? ' WARNING' : '';
  return `${String(e.position).padStart(6)}  ${e.at}  ${e.type}${mark}  ${fields}`;
}
