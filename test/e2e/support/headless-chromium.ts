/**
 * Drives Debian's Chromium over the DevTools protocol (undici's WebSocket),
 * for e2e tests of pages a person would look at: open a URL, wait until an
 * expression in the page holds (state, not a sleep), take a screenshot.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { WebSocket } from 'undici';

export const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p));

export class HeadlessChromium {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: Record<string, unknown>) => void; reject: (e: Error) => void }>();

  private constructor(
    private readonly proc: ChildProcess,
    private readonly ws: WebSocket,
    private readonly profile: string,
  ) {
    ws.addEventListener('message', (m) => {
      const msg = JSON.parse(String(m.data)) as { id?: number; result?: Record<string, unknown>; error?: { message: string } };
      if (msg.id === undefined) return;
      const p = this.pending.get(msg.id);
      this.pending.delete(msg.id);
      if (msg.error !== undefined) p?.reject(new Error(msg.error.message));
      else p?.resolve(msg.result ?? {});
    });
  }

  /** Starts Chromium headless (flags that keep it off the closed network) and connects to it. */
  static async launch(): Promise<HeadlessChromium> {
    if (CHROMIUM === undefined) throw new Error('Debian chromium is not installed (make test installs it)');
    const profile = await mkdtemp(path.join(tmpdir(), 'pv-chromium-'));
    const proc = spawn(
      CHROMIUM,
      ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', `--user-data-dir=${profile}`, '--remote-debugging-port=0', '--window-size=1024,800', 'about:blank'],
      // Its own process group: close() kills the browser and every helper it forked (renderer, GPU, zygote) at once.
      { stdio: ['ignore', 'ignore', 'pipe'], detached: true },
    );
    const url = await new Promise<string>((resolve, reject) => {
      let err = '';
      proc.stderr?.setEncoding('utf8').on('data', (d: string) => {
        err += d;
        const m = /DevTools listening on (ws:\/\/\S+)/.exec(err);
        if (m?.[1] !== undefined) resolve(m[1]);
      });
      proc.once('exit', (code) => reject(new Error(`chromium exited ${code}: ${err.slice(-1000)}`)));
    });
    const ws = new WebSocket(url);
    await new Promise<void>((resolve, reject) => {
      ws.addEventListener('open', () => resolve());
      ws.addEventListener('error', () => reject(new Error(`cannot connect to ${url}`)));
    });
    return new HeadlessChromium(proc, ws, profile);
  }

  /** Opens `url` in a new tab; returns the session to use with the other calls. */
  async open(url: string): Promise<string> {
    const { targetId } = (await this.send('Target.createTarget', { url })) as { targetId: string };
    const { sessionId } = (await this.send('Target.attachToTarget', { targetId, flatten: true })) as { sessionId: string };
    return sessionId;
  }

  /** Evaluates `expression` in the page until it returns a truthy value (re-checked every 100 ms), or fails after `timeoutMs`. */
  async waitFor(session: string, expression: string, timeoutMs: number): Promise<unknown> {
    const deadline = Date.now() + timeoutMs;
    let last: unknown;
    for (;;) {
      const r = (await this.send('Runtime.evaluate', { expression, returnByValue: true }, session)) as { result?: { value?: unknown } };
      last = r.result?.value;
      if (last) return last;
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${expression} (last value ${JSON.stringify(last)})`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  async screenshot(session: string): Promise<Buffer> {
    const { data } = (await this.send('Page.captureScreenshot', { format: 'png' }, session)) as { data: string };
    return Buffer.from(data, 'base64');
  }

  /**
   * Kills Chromium's whole process group (the browser and its helpers, which would otherwise go on
   * writing into the profile: seen as ENOTEMPTY), waits until no process of the group is left, then
   * removes the profile.
   */
  async close(): Promise<void> {
    this.ws.close();
    const pgid = this.proc.pid;
    if (pgid === undefined) return rm(this.profile, { recursive: true, force: true });
    const browserExited = new Promise((resolve) => (this.proc.exitCode !== null || this.proc.signalCode !== null ? resolve(null) : this.proc.once('exit', resolve)));
    killGroup(pgid);
    await browserExited;
    // A helper may outlive the browser for a moment; a killed process leaves the group when it is reaped
    // (its parent, or init, reaps it), so wait on /proc until none is left.
    const deadline = Date.now() + 30_000;
    for (;;) {
      const left = groupMembers(pgid);
      if (left.length === 0) break;
      if (Date.now() > deadline) throw new Error(`chromium's process group ${pgid} still has ${left.join(', ')} 30 s after SIGKILL`);
      killGroup(pgid);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await rm(this.profile, { recursive: true, force: true });
  }

  private send(method: string, params: Record<string, unknown>, sessionId?: string): Promise<Record<string, unknown>> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.ws.send(JSON.stringify({ id, method, params, ...(sessionId === undefined ? {} : { sessionId }) }));
    });
  }
}

function killGroup(pgid: number): void {
  try {
    process.kill(-pgid, 'SIGKILL');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw e;
  }
}

/** The live (not yet reaped, not zombie) processes whose process group is `pgid`, read from /proc. */
function groupMembers(pgid: number): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${d}/stat`, 'utf8');
    } catch {
      continue;
    }
    // pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses, so split after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(fields[2]) === pgid && fields[0] !== 'Z') out.push(Number(d));
  }
  return out;
}
