/**
 * The control endpoint end to end: the real `podvisor` binary runs the real
 * test guest under TCG, and these tests steer it over HTTP (the unix socket in
 * the state dir, and TCP on loopback with tokens), read it back through QMP,
 * `/v1/vm` and the live event stream, and check every answer against
 * api/openapi.yaml. The CLI commands run in-process against the same daemon.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import path from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import { inflateSync } from 'node:zlib';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Agent, WebSocket } from 'undici';
import type { StoredEvent } from '@podvisor/core';
import { consoleCommand } from '../../apps/supervisord/src/commands/console-command.js';
import { ctlCommand } from '../../apps/supervisord/src/commands/ctl-command.js';
import { ControlClient, type ControlAnswer } from '../../apps/supervisord/src/http/control-client.js';
import { OpenApiContract } from '../../apps/supervisord/src/http/openapi-contract.js';
import { SseParser } from '../../apps/supervisord/src/http/sse-parser.js';
import { WebConsole } from '../../apps/supervisord/src/http/web-console.js';
import { HeadlessChromium } from './support/headless-chromium.js';
import { ARTIFACTS, GUEST, REPO, PodvisorProcess, keepArtifacts, makeVmDirs, readEvents, requireBuilt, types, waitForEvent, type VmDirs, vmEnv } from './support/podvisor-process.js';

const contract = OpenApiContract.load();
const ADMIN = `admin-${randomBytes(12).toString('hex')}`;
const READER = `reader-${randomBytes(12).toString('hex')}`;
/** A secret the container's CMD hands qemu (a harmless fw_cfg string): only an admin may read it back. */
const CMD_SECRET = `cmd-secret-${randomBytes(6).toString('hex')}`;

interface Daemon {
  p: PodvisorProcess;
  dirs: VmDirs;
  unix: ControlClient;
  anonymous: ControlClient;
  reader: ControlClient;
  admin: ControlClient;
  port: number;
}

async function startDaemon(prefix: string, extraEnv: Record<string, string> = {}, qemuArgs: string[] = []): Promise<Daemon> {
  const name = `${prefix}-${randomBytes(3).toString('hex')}`;
  const dirs = await makeVmDirs(name);
  await writeFile(path.join(dirs.root, 'tokens'), `# e2e tokens\nops:admin:${ADMIN}\ngrafana:read:${READER}\n`, { mode: 0o600 });
  const p = new PodvisorProcess(['run', ...(qemuArgs.length === 0 ? [] : ['--', ...qemuArgs])], vmEnv(dirs, name, { PODVISOR_TOKEN_FILE: path.join(dirs.root, 'tokens'), ...extraEnv }));
  const listening = await p.waitForStderr(/"msg":"control endpoint listening".*"tcp":"127\.0\.0\.1:(\d+)"/, 60_000);
  const port = Number(listening[1]);
  const url = `http://127.0.0.1:${port}`;
  return {
    p,
    dirs,
    port,
    unix: new ControlClient({ socketPath: path.join(dirs.stateDir, 'control.sock') }),
    anonymous: new ControlClient({ url }),
    reader: new ControlClient({ url, token: READER }),
    admin: new ControlClient({ url, token: ADMIN }),
  };
}

async function stopDaemon(d: Daemon | null): Promise<void> {
  if (d === null) return;
  await Promise.all([d.unix, d.anonymous, d.reader, d.admin].map((c) => c.close()));
  await d.p.killed();
  await d.dirs.cleanup();
}

/** A request whose answer must match the contract. */
async function call(c: ControlClient, method: string, p: string, body?: unknown): Promise<ControlAnswer> {
  const a = await c.request(method, p, body === undefined ? {} : { body });
  const route = p.split('?')[0] ?? p;
  expect(contract.responseProblems(method, route, a.status, a.headers['content-type'], a.json ?? a.text), `${method} ${p} -> ${a.status} ${a.text}`).toEqual([]);
  return a;
}

/**
 * Reads one SSE stream for its whole life, checking each event against the
 * contract; `until` resolves once an event matches (events stay in `events`).
 */
class SseReader {
  readonly events: StoredEvent[] = [];
  private readonly parser = new SseParser();
  private readonly waiters = new Set<() => void>();
  private ended = false;

  constructor(body: NodeJS.ReadableStream) {
    body.on('data', (chunk: Buffer) => {
      for (const m of this.parser.push(chunk)) {
        const e = JSON.parse(m.data) as StoredEvent;
        expect(contract.check('StoredEvent', e)).toEqual([]);
        expect([m.id, m.event]).toEqual([String(e.position), e.type]);
        this.events.push(e);
      }
      this.wake();
    });
    body.on('error', () => undefined); // aborted by the test
    body.on('close', () => {
      this.ended = true;
      this.wake();
    });
  }

  until(pred: (e: StoredEvent) => boolean, timeoutMs = 60_000): Promise<StoredEvent> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const hit = this.events.find(pred);
        if (hit !== undefined) done(() => resolve(hit));
        else if (this.ended) done(() => reject(new Error('the event stream ended early')));
      };
      const timer = setTimeout(() => done(() => reject(new Error('timed out waiting on the event stream'))), timeoutMs);
      const done = (fn: () => void): void => {
        clearTimeout(timer);
        this.waiters.delete(check);
        fn();
      };
      this.waiters.add(check);
      check();
    });
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }
}

async function qmpStatus(c: ControlClient): Promise<string> {
  const a = await call(c, 'POST', '/v1/qmp', { execute: 'query-status' });
  expect(a.status).toBe(200);
  return (a.json as { return: { status: string } }).return.status;
}

/** Runs a CLI command in-process and captures its output; `onStdout` sees it as it comes. */
async function cli(fn: typeof ctlCommand, argv: string[], stdin?: PassThrough, onStdout?: (all: string) => void): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const sink = (append: (s: string) => void): Writable => new Writable({ write: (chunk: Buffer, _enc, done) => (append(chunk.toString()), done()) });
  const io = {
    stdout: sink((s) => {
      stdout += s;
      onStdout?.(stdout);
    }),
    stderr: sink((s) => (stderr += s)),
    env: {},
    ...(stdin === undefined ? {} : { stdin }),
  };
  const code = await fn(argv, io);
  return { code, stdout, stderr };
}

beforeAll(() => requireBuilt());

/** The daemon of a test that has a VM of its own; stopped after each test, whatever happened. */
let solo: Daemon | null = null;

afterEach(async () => {
  await stopDaemon(solo);
  solo = null;
});

describe('control endpoint on a running VM', () => {
  let d: Daemon | null = null;

  beforeAll(async () => {
    // `*` allows every QMP command that is not on a deny-list.
    d = await startDaemon('pv-ctl', { PODVISOR_QMP_ALLOW: '*' }, ['-fw_cfg', `name=opt/podvisor/e2e,string=${CMD_SECRET}`]);
    await d.p.waitForStdout(/PODVISOR-GUEST-READY/);
  });

  afterAll(async () => {
    if (d !== null && d.p.child.exitCode === null) {
      d.p.signal('SIGTERM');
      expect((await d.p.exited).code).toBe(0);
    }
    await stopDaemon(d);
  });

  beforeEach((ctx) => {
    ctx.onTestFailed(async () => {
      const dest = await keepArtifacts(`control-${ctx.task.name}`, d?.p ?? null, d?.dirs ?? null);
      process.stderr.write(`artifacts kept in ${dest}\n`);
    });
  });

  it('pause and resume over HTTP: QMP, /v1/vm and the SSE stream all agree, and each event names who asked', async () => {
    const { unix, admin, anonymous, reader, dirs } = d as Daemon;
    expect((await call(unix, 'GET', '/readyz')).json).toMatchObject({ ready: true, status: 'Running' });
    const from = readEvents(dirs.stateDir).at(-1)?.position ?? 0;
    const ac = new AbortController();
    const stream = await unix.stream(`/v1/events?after=${from}`, { signal: ac.signal });
    expect(stream.status).toBe(200);
    const live = new SseReader(stream.body);

    // TCP: no token 401, read-only token 403, admin token accepted.
    expect((await call(anonymous, 'POST', '/v1/vm/actions', { action: 'pause' })).status).toBe(401);
    expect((await call(reader, 'POST', '/v1/vm/actions', { action: 'pause' })).status).toBe(403);
    expect((await call(admin, 'POST', '/v1/vm/actions', { action: 'pause' })).status).toBe(202);
    await live.until((e) => e.type === 'VmPaused');
    expect(await qmpStatus(unix)).toBe('paused');
    expect((await call(unix, 'GET', '/v1/vm')).json).toMatchObject({ status: 'Paused', allowedActions: ['reset', 'resume', 'restart', 'stop'] });
    expect((await call(unix, 'GET', '/readyz')).status).toBe(503);
    // Paused refuses a power-down (ACPI needs running vCPUs): 409 with the state and what it allows.
    const refused = await call(unix, 'POST', '/v1/vm/actions', { action: 'powerdown' });
    expect(refused.status).toBe(409);
    expect(refused.json).toMatchObject({ error: { code: 'ERR_VM_ACTION_REFUSED', details: { status: 'Paused', allowed: ['reset', 'resume', 'restart', 'stop'] } } });

    // The unix socket may act too.
    expect((await call(unix, 'POST', '/v1/vm/actions', { action: 'resume' })).status).toBe(202);
    await live.until((e) => e.type === 'VmResumed');
    ac.abort();
    expect(await qmpStatus(unix)).toBe('running');
    expect((await call(unix, 'GET', '/v1/vm')).json).toMatchObject({ status: 'Running' });
    expect(live.events.map((e) => [e.type, e.data])).toEqual([
      ['VmActionRequested', { action: 'pause', by: 'token:ops' }],
      ['VmPaused', { by: 'token:ops', reason: 'qmp STOP' }],
      ['VmActionRequested', { action: 'resume', by: 'unix-socket' }],
      ['VmResumed', { by: 'unix-socket' }],
    ]);
    // Running: resume is already satisfied, a no-op that records nothing.
    expect((await call(unix, 'POST', '/v1/vm/actions', { action: 'resume' })).status).toBe(202);
    expect(readEvents(dirs.stateDir).at(-1)?.type).toBe('VmResumed');
  });

  it('raw QMP: query-status works, human-monitor-command is refused with 403 and never reaches qemu', async () => {
    const { unix, admin, dirs } = d as Daemon;
    const before = readEvents(dirs.stateDir).at(-1)?.position;
    // If `stop` reached qemu through HMP, the VM would pause: the proof is that it does not.
    const hmp = await call(admin, 'POST', '/v1/qmp', { execute: 'human-monitor-command', arguments: { 'command-line': 'stop' } });
    expect(hmp.status).toBe(403);
    expect(hmp.json).toMatchObject({ error: { code: 'ERR_QMP_COMMAND_FORBIDDEN', details: { command: 'human-monitor-command' } } });
    expect(await qmpStatus(unix)).toBe('running');
    expect(readEvents(dirs.stateDir).at(-1)?.position).toBe(before);
    const bad = await call(unix, 'POST', '/v1/qmp', { execute: 'query-no-such-thing' });
    expect(bad.status).toBe(422);
    expect(bad.json).toMatchObject({ error: { code: 'ERR_QMP_COMMAND', details: { class: 'CommandNotFound' } } });
    // The CLI: a person's view, JSON for scripts, documented exit codes.
    const status = await cli(ctlCommand, ['status', '--state-dir', dirs.stateDir]);
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(/Running\n {2}pid \d+ {2}since .* {2}accel tcg/);
    const q = await cli(ctlCommand, ['qmp', 'query-status', '--state-dir', dirs.stateDir, '--json']);
    expect([q.code, JSON.parse(q.stdout)]).toMatchObject([0, { return: { status: 'running' } }]);
    const denied = await cli(ctlCommand, ['qmp', '{"execute":"human-monitor-command","arguments":{"command-line":"stop"}}', '--state-dir', dirs.stateDir]);
    expect(denied.code).toBe(5);
    expect(denied.stderr).toMatch(/not on the allow-list \[ERR_QMP_COMMAND_FORBIDDEN\]/);
    const noToken = await cli(ctlCommand, ['pause', '--url', `http://127.0.0.1:${(d as Daemon).port}`]);
    expect(noToken.code).toBe(5);
  });

  it('/metrics shows the phase, uptime, QMP round trip, image import and the block counters read from qemu', async () => {
    const { anonymous } = d as Daemon;
    const m = await call(anonymous, 'GET', '/metrics');
    expect(m.status).toBe(200);
    expect(m.text).toMatch(/podvisor_vm_status\{vm="[^"]+",status="Running"\} 1/);
    expect(m.text).toMatch(/podvisor_vm_uptime_seconds\{vm="[^"]+",status="Running"\} \d/);
    expect(m.text).toMatch(/podvisor_qmp_round_trip_seconds\{vm="[^"]+"\} \d/);
    expect(m.text).toMatch(/podvisor_image_import_bytes\{vm="[^"]+",reused="false"\} [1-9]\d*/);
    const reads = /podvisor_block_read_bytes_total\{vm="[^"]+",device="[^"]*pet-disk[^"]*"\} (\d+)/.exec(m.text);
    expect(Number(reads?.[1])).toBeGreaterThan(0); // the guest booted from it
  });

  it('an SSE client that disconnects and reconnects with Last-Event-ID gets every event exactly once', async () => {
    const { unix, dirs } = d as Daemon;
    const first = new AbortController();
    const s1 = new SseReader((await unix.stream('/v1/events', { signal: first.signal })).body);
    const head = readEvents(dirs.stateDir).at(-1)?.position ?? 0;
    await s1.until((e) => e.position === head);
    first.abort();
    // Events committed while the client is away.
    await call(unix, 'POST', '/v1/vm/actions', { action: 'pause' });
    await waitForEvent(dirs.stateDir, 'VmPaused', { after: head });
    const second = new AbortController();
    const s2 = new SseReader((await unix.stream('/v1/events?after=0', { headers: { 'last-event-id': String(s1.events.at(-1)?.position) }, signal: second.signal })).body);
    await call(unix, 'POST', '/v1/vm/actions', { action: 'resume' });
    await s2.until((e) => e.type === 'VmResumed' && e.position > head);
    second.abort();
    const got = [...s1.events, ...s2.events];
    const all = readEvents(dirs.stateDir).filter((e) => e.position <= (got.at(-1)?.position ?? 0));
    expect(got.map((e) => e.position)).toEqual(all.map((e) => e.position));
    expect(got.map((e) => e.position)).toEqual(Array.from({ length: got.length }, (_, i) => i + 1));
  });

  it('a fuzz pass of malformed requests leaves the server answering and the VM untouched', async () => {
    const { unix, anonymous, admin, dirs, port } = d as Daemon;
    const vmBefore = (await call(unix, 'GET', '/v1/vm')).json as { pid: number; status: string };
    const positionBefore = readEvents(dirs.stateDir).at(-1)?.position;
    const raw = (text: string): Promise<string> =>
      new Promise((resolve) => {
        const s = connect(port, '127.0.0.1');
        let got = '';
        s.setEncoding('utf8').on('data', (x: string) => (got += x));
        s.on('error', () => undefined);
        s.once('close', () => resolve(got));
        s.write(text);
      });
    const rng = (n: number): number => Math.floor(Math.random() * n);
    const junk = (): string => Array.from({ length: rng(200) }, () => String.fromCharCode(rng(256))).join('');
    const attempts: Array<Promise<unknown>> = [];
    for (let i = 0; i < 40; i += 1) {
      attempts.push(admin.request('POST', '/v1/vm/actions', { body: junk() }));
      attempts.push(admin.request('POST', '/v1/qmp', { body: `{"execute":"query-status","arguments":${junk()}}` }));
      attempts.push(admin.request(['PUT', 'DELETE', 'PATCH', 'OPTIONS'][i % 4] ?? 'PUT', '/v1/vm'));
      attempts.push(raw(`GET /v1/${'../'.repeat(rng(8))}etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`));
      attempts.push(raw(`${junk()}\r\n\r\n`));
    }
    attempts.push(admin.request('POST', '/v1/vm/actions', { body: `{"action":"pause","x":"${'a'.repeat(70_000)}"}` }));
    attempts.push(raw(`POST /v1/qmp HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${ADMIN}\r\ncontent-type: application/json\r\ncontent-length: 1073741824\r\n\r\n{"execute":`));
    attempts.push(raw('GET /v1/vm HTTP/1.1\r\nHost: x\r\nX-Slow: ')); // never finishes its headers
    attempts.push(raw(`POST /v1/vm/actions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${ADMIN}\r\ncontent-type: application/json\r\ncontent-length: 50\r\n\r\n{"ac`));
    const answers = await Promise.all(attempts);
    const statuses = answers.map((a) => (typeof a === 'string' ? Number(a.slice(9, 12)) : (a as ControlAnswer).status));
    expect(statuses.every((s) => s >= 400 && s < 500), JSON.stringify(statuses)).toBe(true);
    expect(statuses).toContain(408);
    expect(statuses).toContain(413);
    expect((await call(anonymous, 'GET', '/healthz')).status).toBe(200);
    expect((await call(unix, 'GET', '/v1/vm')).json).toMatchObject({ status: 'Running', pid: vmBefore.pid });
    expect(readEvents(dirs.stateDir).at(-1)?.position).toBe(positionBefore);
    expect(await qmpStatus(unix)).toBe('running');
  });

  it('anonymous and read-token readers never see qemu\'s command line; an admin does', async () => {
    const { unix, anonymous, reader, admin } = d as Daemon;
    for (const c of [anonymous, reader]) {
      const page = await call(c, 'GET', '/v1/events?limit=1000');
      expect(page.text).not.toContain(CMD_SECRET);
      const started = (page.json as { events: StoredEvent[] }).events.find((e) => e.type === 'VmStarted');
      expect(started?.data).toMatchObject({ argv: ['(hidden: admin only)'] });
      const ac = new AbortController();
      const live = new SseReader((await c.stream('/v1/events', { signal: ac.signal })).body);
      await live.until((e) => e.type === 'VmStarted');
      ac.abort();
      expect(JSON.stringify(live.events)).not.toContain(CMD_SECRET);
    }
    for (const c of [unix, admin]) expect((await call(c, 'GET', '/v1/events?limit=1000')).text).toContain(CMD_SECRET);
  });

  it('512 idle event streams from one address: the probes still answer, the VM is untouched', async () => {
    const { unix, anonymous, port } = d as Daemon;
    const sockets: Array<ReturnType<typeof connect>> = [];
    const statuses = await Promise.all(
      Array.from(
        { length: 512 },
        () =>
          new Promise<string>((resolve) => {
            const s = connect(port, '127.0.0.1');
            sockets.push(s);
            let got = '';
            s.on('error', () => resolve('error'));
            s.on('data', (x: Buffer) => {
              got += x.toString('latin1');
              if (got.includes('\r\n')) {
                s.pause(); // never read the stream
                resolve(got.slice(0, got.indexOf('\r\n')));
              }
            });
            s.write('GET /v1/events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n');
          }),
      ),
    );
    try {
      expect(statuses.filter((x) => x === 'HTTP/1.1 200 OK').length).toBeLessThanOrEqual(4);
      expect(statuses.filter((x) => x === 'HTTP/1.1 429 Too Many Requests').length).toBeGreaterThanOrEqual(508);
      for (let i = 0; i < 10; i += 1) {
        expect((await call(anonymous, 'GET', '/healthz')).status).toBe(200);
        expect((await call(anonymous, 'GET', '/readyz')).json).toMatchObject({ ready: true, status: 'Running' });
      }
      expect(await qmpStatus(unix)).toBe('running');
    } finally {
      for (const s of sockets) s.destroy();
    }
  });

  it('QMP deny-list: under `*`, nbd-server-start and the other dangerous commands are refused and never reach qemu', async () => {
    const { admin, unix } = d as Daemon;
    for (const execute of ['nbd-server-start', 'block-export-add', 'change-backing-file', 'send-key', 'set-action', 'quit']) {
      const a = await call(admin, 'POST', '/v1/qmp', { execute, arguments: {} });
      expect([execute, a.status, (a.json as { error: { code: string } }).error.code]).toEqual([execute, 403, 'ERR_QMP_COMMAND_FORBIDDEN']);
    }
    // A harmless command the wildcard allows does reach qemu; no NBD export exists.
    expect((await call(admin, 'POST', '/v1/qmp', { execute: 'qom-list', arguments: { path: '/machine' } })).status).toBe(200);
    expect((await call(unix, 'POST', '/v1/qmp', { execute: 'query-block-exports' })).json).toMatchObject({ return: [] });
    expect(await qmpStatus(unix)).toBe('running');
  });

  it('podvisor console types into the guest shell, reads its answer, and detaches with Ctrl-]', async () => {
    const { dirs } = d as Daemon;
    const stdin = new PassThrough();
    const marker = randomBytes(4).toString('hex');
    let sawAnswer = (): void => undefined;
    const answered = new Promise<void>((resolve) => (sawAnswer = resolve));
    const running = cli(consoleCommand, ['--state-dir', dirs.stateDir], stdin, (all) => {
      if (all.includes(`${marker}-42`)) sawAnswer();
    });
    stdin.write('\n');
    // The shell prints the product, not the command line: 6*7 = 42.
    stdin.write(`echo ${marker}-$((6*7))\n`);
    await answered;
    stdin.write(Buffer.from([0x1d]));
    const out = await running;
    expect(out.code).toBe(0);
    expect(out.stdout).toContain(`${marker}-42`);
    expect(out.stderr).toMatch(/detach with Ctrl-\]/);
    expect(await qmpStatus((d as Daemon).unix)).toBe('running');
  });
});

describe('powerdown over HTTP', () => {
  it('the guest shuts down cleanly and the restart policy ("always") starts it again', async () => {
    const d = (solo = await startDaemon('pv-ctl-pd', { PODVISOR_RESTART: 'always' }));
    await d.p.waitForStdout(/PODVISOR-GUEST-READY/);
    const started = await waitForEvent(d.dirs.stateDir, 'VmStarted');
    const a = await call(d.admin, 'POST', '/v1/vm/actions', { action: 'powerdown' });
    expect(a.status).toBe(202);
    const again = await waitForEvent(d.dirs.stateDir, 'VmStarted', { after: started.position });
    expect(d.p.stdout).toContain('PODVISOR-GUEST-POWEROFF');
    const between = readEvents(d.dirs.stateDir).filter((e) => e.position > started.position && e.position <= again.position);
    expect(types(between)).toEqual(['VmActionRequested', 'VmPowerdownRequested', 'GuestShutdownObserved', 'VmExited', 'VmRestartScheduled', 'VmStarting', 'VmStarted']);
    expect(between[0]?.data).toEqual({ action: 'powerdown', by: 'token:ops' });
    expect(between[3]?.data).toMatchObject({ exit: { code: 0, reason: 'guest-shutdown' } });
    expect((await call(d.unix, 'GET', '/v1/vm')).json).toMatchObject({ status: 'Running', restarts: 1 });
    // A clean stop needs the restarted guest's ACPI daemon: before it runs, the power button is ignored (exit 7).
    await d.p.waitForStdout(/PODVISOR-GUEST-READY[^]*PODVISOR-GUEST-READY/);
    d.p.signal('SIGTERM');
    expect((await d.p.exited).code).toBe(0);
  });
});

/** The security types an RFB 3.8 server offers (RFC 6143, 7.1.1 and 7.1.2): 1 None, 2 VNC authentication. */
function rfbSecurityTypes(port: number): Promise<number[]> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    let got = Buffer.alloc(0);
    s.on('error', reject);
    s.on('data', (x: Buffer) => {
      got = Buffer.concat([got, x]);
      if (got.length === 12) s.write('RFB 003.008\n');
      const n = got[12];
      if (n !== undefined && got.length >= 13 + n) {
        s.destroy();
        resolve([...got.subarray(13, 13 + n)]);
      }
    });
  });
}

describe('VNC through the control endpoint', () => {
  it('by default qemu\'s VNC asks for VNC authentication with a generated password only an admin can read; the web console\'s bridge answers it', async () => {
    const d = (solo = await startDaemon('pv-ctl-vnc', { NO_VNC: '' }));
    await waitForEvent(d.dirs.stateDir, 'VmStarted');
    // qemu's own VNC port offers only VNC authentication (2), never None (1).
    const vnc = (await call(d.unix, 'POST', '/v1/qmp', { execute: 'query-vnc' })).json as { return: { enabled: boolean; service: string; auth: string } };
    expect(vnc.return).toMatchObject({ enabled: true, auth: 'vnc' });
    expect(await rfbSecurityTypes(Number(vnc.return.service))).toEqual([2]);
    // The password: 8 random characters kept 0600 in the state dir, shown to an admin, never to others, never logged.
    const shown = await cli(ctlCommand, ['vnc-password', '--state-dir', d.dirs.stateDir]);
    expect(shown.code).toBe(0);
    const password = shown.stdout.trim();
    expect(password).toMatch(/^[A-Za-z0-9]{8}$/);
    const file = await stat(path.join(d.dirs.stateDir, 'vnc-password'));
    expect([file.mode & 0o777, (await readFile(path.join(d.dirs.stateDir, 'vnc-password'), 'utf8')).trim()]).toEqual([0o600, password]);
    expect((await call(d.admin, 'GET', '/v1/vnc/password')).json).toEqual({ password, bytesUsed: 8 });
    expect((await call(d.anonymous, 'GET', '/v1/vnc/password')).status).toBe(401);
    expect((await call(d.reader, 'GET', '/v1/vnc/password')).status).toBe(403);
    expect(d.p.stderr).not.toContain(password);
    expect(JSON.stringify(readEvents(d.dirs.stateDir))).not.toContain(password);
    // Through the bridge, the client meets security type None: the bridge answered qemu's challenge.
    const agent = new Agent({ connect: { socketPath: path.join(d.dirs.stateDir, 'control.sock') } });
    try {
      const got = await new Promise<Buffer[]>((resolve, reject) => {
        const ws = new WebSocket('ws://localhost/v1/vnc', { protocols: ['binary'], dispatcher: agent });
        ws.binaryType = 'arraybuffer';
        const messages: Buffer[] = [];
        ws.onmessage = (e) => {
          messages.push(Buffer.from(e.data as ArrayBuffer));
          // RFB 3.8 (RFC 6143, 7.1.1): answer the version, then the server lists its security types.
          if (messages.length === 1) ws.send(Buffer.from('RFB 003.008\n'));
          else {
            ws.close();
            resolve(messages);
          }
        };
        ws.onerror = () => reject(new Error('websocket failed'));
      });
      expect(got[0]?.toString()).toBe('RFB 003.008\n');
      expect([...(got[1] ?? [])]).toEqual([1, 1]); // one type: 1, None
    } finally {
      await agent.close();
    }
    // A clean stop needs the guest's ACPI daemon running.
    await d.p.waitForStdout(/PODVISOR-GUEST-READY/);
    d.p.signal('SIGTERM');
    expect((await d.p.exited).code).toBe(0);
  });
});

describe('the web console in headless Chromium', () => {
  it('the page connects through the bridge and a screenshot shows the guest\'s console', async () => {
    // make test installs chromium and builds the noVNC bundle: their absence is a failure, not a skip.
    expect(WebConsole.locate(path.join(REPO, 'apps/supervisord/dist/web')), 'dist/web/novnc-rfb.mjs is missing (make build builds it)').not.toBeNull();
    // VNC has its generated password; the browser is given only the token.
    const d = (solo = await startDaemon('pv-ctl-web', { NO_VNC: '' }));
    await d.p.waitForStdout(/PODVISOR-GUEST-READY/);
    const browser = await HeadlessChromium.launch();
    try {
      const tab = await browser.open(`http://127.0.0.1:${d.port}/console#token=${ADMIN}`);
      await browser.waitFor(tab, "document.getElementById('status')?.textContent === 'connected'", 30_000);
      // The guest's text console is drawn: light text on black in the noVNC canvas.
      const lit = await browser.waitFor(
        tab,
        `(() => { const c = document.querySelector('#screen canvas'); if (!c || c.width < 100) return 0;
           const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
           for (let i = 0; i < d.length; i += 4) if (d[i] + d[i + 1] + d[i + 2] > 384) n++; return n > 200 ? n : 0; })()`,
        30_000,
      );
      expect(lit).toBeGreaterThan(200);
      const png = await browser.screenshot(tab);
      // Kept for a person to look at.
      await mkdir(ARTIFACTS, { recursive: true });
      await writeFile(path.join(ARTIFACTS, 'web-console.png'), png);
      const { width, height, pixel } = decodePng(png);
      let bright = 0;
      for (let y = 40; y < height; y += 1) for (let x = 0; x < width; x += 1) if (pixel(x, y) > 128) bright += 1;
      expect(bright / (width * (height - 40))).toBeGreaterThan(0.0005);
    } finally {
      await browser.close();
    }
  });
});

/** Enough of PNG (8-bit RGB or RGBA, no interlace) to read a screenshot's luminance per pixel. */
function decodePng(png: Buffer): { width: number; height: number; pixel: (x: number, y: number) => number } {
  const width = png.readUInt32BE(16);
  const height = png.readUInt32BE(20);
  const colorType = png[25];
  const channels = colorType === 6 ? 4 : 3;
  const idat: Buffer[] = [];
  for (let off = 8; off < png.length; ) {
    const len = png.readUInt32BE(off);
    if (png.toString('latin1', off + 4, off + 8) === 'IDAT') idat.push(png.subarray(off + 8, off + 8 + len));
    off += 12 + len;
  }
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  const out = Buffer.alloc(height * stride);
  for (let y = 0; y < height; y += 1) {
    const filter = raw[y * (stride + 1)] ?? 0;
    for (let i = 0; i < stride; i += 1) {
      const v = raw[y * (stride + 1) + 1 + i] ?? 0;
      const a = i >= channels ? (out[y * stride + i - channels] ?? 0) : 0;
      const b = y > 0 ? (out[(y - 1) * stride + i] ?? 0) : 0;
      const c = i >= channels && y > 0 ? (out[(y - 1) * stride + i - channels] ?? 0) : 0;
      const p = a + b - c;
      const paeth = Math.abs(p - a) <= Math.abs(p - b) && Math.abs(p - a) <= Math.abs(p - c) ? a : Math.abs(p - b) <= Math.abs(p - c) ? b : c;
      const pred = [0, a, b, (a + b) >> 1, paeth][filter] ?? 0;
      out[y * stride + i] = (v + pred) & 0xff;
    }
  }
  return { width, height, pixel: (x, y) => ((out[y * stride + x * channels] ?? 0) + (out[y * stride + x * channels + 1] ?? 0) + (out[y * stride + x * channels + 2] ?? 0)) / 3 };
}

