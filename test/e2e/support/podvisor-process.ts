/**
 * Runs the real `podvisor` binary for end-to-end tests, and waits on what it
 * says (its stdout is the guest's serial console, its stderr JSON logs) and on
 * its event log, never on fixed sleeps. On failure, `keepArtifacts` copies the
 * serial log, the logs and the events where a person can read them.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { filter, firstValueFrom, take, timeout, toArray } from 'rxjs';
import { type EventType, type StoredEvent } from '@podvisor/core';
import { SqliteEventStore } from '@podvisor/core/sqlite';
import { ChildOutput } from '../../support/child-output.js';

export const REPO = fileURLToPath(new URL('../../../', import.meta.url));
/** The binary that ships: the bundled CLI (make build). */
export const CLI = path.join(REPO, 'apps/supervisord/dist/bundle/podvisor.cjs');
export const GUEST = path.join(REPO, 'test/guest/.cache/guest.qcow2');
export const ARTIFACTS = path.join(REPO, 'test/.artifacts');

export function requireBuilt(): void {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run make build (make test does it)`);
  if (!existsSync(GUEST)) throw new Error(`${GUEST} is missing: run make guest (make test does it)`);
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** The real binary, as a child of the test; its stdout and stderr through `ChildOutput`. */
export class PodvisorProcess extends ChildOutput {
  readonly exited: Promise<Exit>;

  constructor(args: readonly string[], env: Record<string, string>, options: { wrapper?: readonly string[] } = {}) {
    const argv = [...(options.wrapper ?? []), process.execPath, CLI, ...args];
    const child = spawn(argv[0] as string, argv.slice(1), { env: { PATH: process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    // A wait that names no bound: one guest boot under TCG takes ~50 s on a loaded machine.
    super(child, 'podvisor', 180_000);
    this.exited = new Promise((resolve) => child.once('close', (code, signal) => resolve({ code, signal })));
  }

  signal(sig: NodeJS.Signals): void {
    this.child.kill(sig);
  }

  /** For teardown: SIGKILL if it still runs (its children die with it), then its exit. */
  async killed(): Promise<Exit> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    return this.exited;
  }
}

/** A temp tree for one VM: disk dir, images dir, sources. Removed by `cleanup`. */
export interface VmDirs {
  root: string;
  diskDir: string;
  imagesDir: string;
  stateDir: string;
  cleanup: () => Promise<void>;
}

export async function makeVmDirs(prefix: string): Promise<VmDirs> {
  const root = await mkdtemp(path.join(tmpdir(), `${prefix}-`));
  const diskDir = path.join(root, 'disk');
  return {
    root,
    diskDir,
    imagesDir: path.join(root, 'images'),
    stateDir: path.join(diskDir, '.podvisor'),
    cleanup: () => rm(root, { recursive: true, force: true }),
  };
}

/**
 * The environment of one test VM: the test guest, the VM's own dirs, TCG, no
 * network, no VNC, a 60 s stop budget, and the control endpoint on an ephemeral loopback port (so
 * that runs never collide). A key set to `undefined` in `extra` is left out,
 * which gives podvisor's own default (e.g. `PODVISOR_LISTEN` in a pod).
 */
export function vmEnv(dirs: VmDirs, name: string, extra: Record<string, string | undefined> = {}): Record<string, string> {
  const all: Record<string, string | undefined> = {
    HOSTNAME: name,
    IMG_SOURCE: GUEST,
    IMG_TARGET: 'guest.qcow2',
    IMG_RAM_MB: '256',
    PODVISOR_IMAGES_DIR: dirs.imagesDir,
    PODVISOR_DISK_DIR: dirs.diskDir,
    PODVISOR_USERDATA: path.join(dirs.root, 'userdata'),
    PODVISOR_METADATA: path.join(dirs.root, 'metadata'),
    PODVISOR_NETWORK: 'none',
    PODVISOR_ACCEL: 'tcg',
    PODVISOR_LISTEN: '127.0.0.1:0',
    NO_VNC: '1',
    // Tests stop guests that are still booting, under TCG on a shared machine: the default
    // budget's 20 s ACPI slice can run out before the guest's acpid runs. Tests of the budget set their own.
    PODVISOR_STOP_GRACE: '60',
    ...extra,
  };
  return Object.fromEntries(Object.entries(all).filter((e): e is [string, string] => e[1] !== undefined));
}

/** Opens the VM's event log (read side, like the CLI). */
export function openEvents(stateDir: string): SqliteEventStore {
  return SqliteEventStore.open({ path: path.join(stateDir, 'events.db'), pollIntervalMs: 50 });
}

/** Waits for the first event of `type` after `after` (by following the log). */
export async function waitForEvent(stateDir: string, type: EventType, options: { after?: number; timeoutMs?: number } = {}): Promise<StoredEvent> {
  const dbFile = path.join(stateDir, 'events.db');
  await waitForFile(dbFile, options.timeoutMs ?? 60_000);
  const store = openEvents(stateDir);
  try {
    return await firstValueFrom(
      store.follow(options.after ?? 0).pipe(
        filter((e) => e.type === type),
        take(1),
        timeout({ first: options.timeoutMs ?? 90_000, with: () => { throw new Error(`timed out waiting for event ${type}`); } }),
      ),
    );
  } finally {
    store.close();
  }
}

/** Waits for `n` events matching `pred`. */
export async function collectEvents(stateDir: string, pred: (e: StoredEvent) => boolean, n: number, timeoutMs = 120_000): Promise<StoredEvent[]> {
  await waitForFile(path.join(stateDir, 'events.db'), timeoutMs);
  const store = openEvents(stateDir);
  try {
    return await firstValueFrom(store.follow(0).pipe(filter(pred), take(n), toArray(), timeout({ first: timeoutMs, with: () => { throw new Error(`timed out waiting for ${n} events`); } })));
  } finally {
    store.close();
  }
}

export function readEvents(stateDir: string): StoredEvent[] {
  const store = openEvents(stateDir);
  try {
    return store.readAfter(0);
  } finally {
    store.close();
  }
}

/** Waits until a file exists, watching its directory (bounded); the directory is made if missing. */
export async function waitForFile(file: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const { watch } = await import('node:fs');
  while (!existsSync(file)) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${file}`);
    const dir = path.dirname(file);
    await mkdir(dir, { recursive: true }).catch(() => undefined);
    await new Promise<void>((resolve) => {
      const w = watch(dir, () => {
        w.close();
        resolve();
      });
      // Re-check periodically in case the event was missed between existsSync and watch.
      setTimeout(() => {
        w.close();
        resolve();
      }, 250).unref();
    });
  }
}

/** Copies what a person needs to debug a failed e2e test. */
export async function keepArtifacts(name: string, p: PodvisorProcess | null, dirs: VmDirs | null): Promise<string> {
  const dest = path.join(ARTIFACTS, name.replace(/[^A-Za-z0-9._-]+/g, '_'));
  await mkdir(dest, { recursive: true });
  if (p !== null) {
    await writeFile(path.join(dest, 'serial.log'), p.stdout);
    await writeFile(path.join(dest, 'podvisor.stderr.jsonl'), p.stderr);
  }
  if (dirs !== null && existsSync(path.join(dirs.stateDir, 'events.db'))) {
    await writeFile(path.join(dest, 'events.jsonl'), readEvents(dirs.stateDir).map((e) => JSON.stringify(e)).join('\n'));
    await cp(dirs.stateDir, path.join(dest, 'state'), { recursive: true }).catch(() => undefined);
  }
  return dest;
}

/** The event types of a log, in order. */
export function types(events: readonly StoredEvent[]): string[] {
  return events.map((e) => e.type);
}
