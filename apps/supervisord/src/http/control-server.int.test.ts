/**
 * The control endpoint on real sockets (a unix socket in a temp dir and TCP on
 * loopback), in front of a stand-in supervisor that uses the real decider and
 * projection over an in-memory log, and a stand-in qemu that records every
 * QMP command it receives. Every answer is checked against api/openapi.yaml.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Subject } from 'rxjs';
import { Agent, WebSocket } from 'undici';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  ConfigError,
  JsonLogger,
  MemoryEventStore,
  SilentLogger,
  decideVmAction,
  projectVm,
  type Logger,
  type QmpEventMessage,
  type Requester,
  type VmAction,
  type VmHandle,
  type VmState,
} from '@podvisor/core';
import { QmpCommandError } from '@podvisor/qemu';
import { ControlClient, type ControlAnswer } from './control-client.js';
import type { ConsoleHub, ControlTarget } from './control-handler.js';
import { startControlServer, type ControlServer } from './control-server.js';
import { OpenApiContract } from './openapi-contract.js';
import { SseParser } from './sse-parser.js';
import { WebConsole } from './web-console.js';

const contract = OpenApiContract.load();
/** qemu's command line as the container's CMD might make it: a secret flag, and a presigned URL. */
const ARGV = ['qemu-system-x86_64', '-drive', 'file=https://b.example/x.qcow2?X-Amz-Signature=SIGSECRET,format=raw', '--api-key=hunter2-secret'];
const ADMIN = 'adminadminadminadmin-0123';
const READER = 'readerreaderreader-4567';

/** A supervisor stand-in: the real decider and projection; qemu is a recorder. */
class FakeSupervisor implements ControlTarget {
  readonly qmpSeen: string[] = [];
  running = true;
  /** Where `query-vnc` says VNC listens; `null`: VNC off. */
  vncSocket: string | null = null;

  constructor(readonly store: MemoryEventStore) {}

  current(): VmState {
    return projectVm(this.store.readAfter(0));
  }

  async act(action: VmAction, by: Requester): Promise<void> {
    const events = decideVmAction({ type: 'RequestVmAction', action, by }, this.current());
    this.store.append('vm1', events);
    if (events.length === 0) return;
    if (action === 'pause') this.store.append('vm1', [{ type: 'VmPaused', data: { by, reason: 'qmp STOP' } }]);
    if (action === 'resume') this.store.append('vm1', [{ type: 'VmResumed', data: { by } }]);
  }

  private stable: VmHandle | null = null;

  handle(): VmHandle | null {
    if (!this.running) return null;
    return (this.stable ??= {
      pid: 42,
      argv: [],
      qmpVersion: '7.2.0',
      serial: null,
      serialInput: null,
      events: new Subject<QmpEventMessage>(),
      execute: async <T,>(command: string): Promise<T> => {
        this.qmpSeen.push(command);
        if (command === 'query-status') return { status: 'running', running: true } as T;
        if (command === 'query-blockstats') return [{ device: '', qdev: 'pet-disk', stats: { rd_bytes: 5, wr_bytes: 6, rd_operations: 1, wr_operations: 1, flush_operations: 0 } }] as T;
        if (command === 'query-vnc') return (this.vncSocket === null ? { enabled: false } : { enabled: true, family: 'unix', host: this.vncSocket, service: '', auth: 'none' }) as T;
        if (command === 'query-nope') throw new QmpCommandError(command, 'CommandNotFound', 'The command query-nope has not been found');
        return {} as T;
      },
      exited: new Promise(() => undefined),
      kill: () => undefined,
    });
  }
}

class FakeConsole implements ConsoleHub {
  readonly input: Buffer[] = [];
  private readonly listeners = new Set<(chunk: Buffer) => void>();
  subscribe(l: (chunk: Buffer) => void): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }
  write(data: Buffer): boolean {
    this.input.push(data);
    for (const l of this.listeners) l(Buffer.from(`echo:${data.toString()}`));
    return true;
  }
  recent(): Buffer {
    return Buffer.from('login: ');
  }
  inputDrained(): null {
    return null;
  }
}

let dir: string;
let store: MemoryEventStore;
let vm: FakeSupervisor;
let server: ControlServer;
let unix: ControlClient;
let tcp: ControlClient;
let clients: ControlClient[];

async function start(
  extra: {
    tokens?: string;
    qmpAllow?: string[];
    webConsole?: WebConsole | null;
    vncPassword?: string;
    limits?: Parameters<typeof startControlServer>[0]['limits'];
    timeouts?: Parameters<typeof startControlServer>[0]['timeouts'];
    log?: Logger;
  } = {},
): Promise<void> {
  let tokenFile: string | undefined;
  if (extra.tokens !== undefined) {
    tokenFile = path.join(dir, 'tokens');
    await writeFile(tokenFile, extra.tokens);
  }
  server = await startControlServer({
    supervisor: vm,
    store,
    config: { stateDir: dir, listen: '127.0.0.1:0', tokenFile, qmpAllow: extra.qmpAllow },
    log: extra.log ?? new SilentLogger(),
    version: '0.0.0-test',
    console: new FakeConsole(),
    webConsole: extra.webConsole ?? null,
    vncPassword: () => extra.vncPassword,
    ...(extra.limits === undefined ? {} : { limits: extra.limits }),
    // The server's own timeouts (seconds) unless a test is about them: a request's headers
    // timer starts when the connection is accepted, so short ones cut off the tests' own
    // requests (408) whenever this process is held up (a loaded machine, 512 connections at once).
    ...(extra.timeouts === undefined ? {} : { timeouts: extra.timeouts }),
  });
  unix = client({ socketPath: server.unixSocket });
  tcp = client({});
}

function client(o: { socketPath?: string; token?: string }): ControlClient {
  const c = new ControlClient({ ...o, ...(o.socketPath === undefined ? { url: `http://127.0.0.1:${server.tcpAddress?.port}` } : {}) });
  clients.push(c);
  return c;
}

/** Writes `text` on a raw TCP connection and resolves with everything read until the server closes it. */
async function raw(text: string): Promise<string> {
  const s: Socket = connect(server.tcpAddress?.port ?? 0, '127.0.0.1');
  let got = '';
  s.setEncoding('utf8').on('data', (d: string) => (got += d));
  s.on('error', () => undefined);
  s.write(text);
  await new Promise((resolve) => s.once('close', resolve));
  return got;
}

/** A request whose answer must match the contract. */
async function call(c: ControlClient, method: string, p: string, body?: unknown, headers?: Record<string, string>): Promise<ControlAnswer> {
  const a = await c.request(method, p, { ...(body === undefined ? {} : { body }), ...(headers === undefined ? {} : { headers }) });
  const route = p.split('?')[0] ?? p;
  if (contract.operation(method, route) !== undefined) {
    expect(contract.responseProblems(method, route, a.status, a.headers['content-type'], a.json ?? a.text), `${method} ${p} -> ${a.status} ${a.text}`).toEqual([]);
  } else {
    expect(contract.check('Error', a.json), `${method} ${p} -> ${a.status} ${a.text}`).toEqual([]);
  }
  return a;
}

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), `pv-ctl-${randomBytes(3).toString('hex')}-`));
  store = new MemoryEventStore();
  store.append('vm1', [
    { type: 'SupervisorStarted', data: { version: '0', pid: 1, hostname: 'vm1', accel: 'tcg', restartPolicy: 'on-failure', network: 'none' } },
    { type: 'AcceleratorProbed', data: { requested: 'tcg', selected: 'tcg', kvmWorks: false, probeMs: 1, detail: '' } },
    { type: 'VmStarting', data: { attempt: 1, accel: 'tcg' } },
    { type: 'VmStarted', data: { attempt: 1, pid: 42, qmpVersion: '7.2.0', startMs: 5, argv: ARGV } },
  ]);
  vm = new FakeSupervisor(store);
  clients = [];
});

afterEach(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await server?.close();
  store.close();
  await rm(dir, { recursive: true, force: true });
});

describe('control endpoint: reads', () => {
  it('serves the probes, the state, the log and the metrics, all as the contract says', async () => {
    await start();
    expect((await call(tcp, 'GET', '/healthz')).json).toMatchObject({ status: 'ok', version: '0.0.0-test' });
    expect((await call(tcp, 'GET', '/readyz')).json).toMatchObject({ ready: true, status: 'Running' });
    const state = await call(tcp, 'GET', '/v1/vm');
    expect(state.json).toMatchObject({ status: 'Running', vm: 'vm1', pid: 42, accelerator: 'tcg', allowedActions: ['powerdown', 'reset', 'pause', 'restart', 'stop'], degraded: false, degradedBy: [] });
    const page = await call(tcp, 'GET', '/v1/events?after=1&limit=2');
    expect(page.json).toMatchObject({ next: 3, lastPosition: 4 });
    expect((page.json as { events: Array<{ type: string }> }).events.map((e) => e.type)).toEqual(['AcceleratorProbed', 'VmStarting']);
    const metrics = await call(tcp, 'GET', '/metrics');
    expect(metrics.text).toContain('podvisor_vm_status{vm="vm1",status="Running"} 1');
    expect(metrics.text).toMatch(/podvisor_qmp_round_trip_seconds\{vm="vm1"\} [0-9.e-]+/);
    expect(metrics.text).toContain('podvisor_block_written_bytes_total{vm="vm1",device="pet-disk"} 6');
    // dnsmasq gave up: the VM runs on, degraded, until the network is attached again.
    store.append('vm1', [{ type: 'WarningRaised', data: { code: 'WARN_DNSMASQ_GAVE_UP', message: 'dnsmasq exited (exit 2) after 5 restarts in a row' } }]);
    expect((await call(tcp, 'GET', '/v1/vm')).json).toMatchObject({ status: 'Running', degraded: true, degradedBy: [{ code: 'DNSMASQ_DOWN' }] });
    vm.running = false;
    expect((await call(tcp, 'GET', '/readyz')).status).toBe(503);
  });

  it('streams the log as SSE; a client that reconnects with Last-Event-ID gets every event exactly once', async () => {
    await start();
    const seen: number[] = [];
    const readUntil = async (body: AsyncIterable<Buffer>, until: number): Promise<void> => {
      const parser = new SseParser();
      for await (const chunk of body) {
        for (const m of parser.push(chunk)) {
          const e = JSON.parse(m.data) as unknown;
          expect(contract.check('StoredEvent', e)).toEqual([]);
          expect(m.id).toBe(String((e as { position: number }).position));
          seen.push(Number(m.id));
          if (Number(m.id) >= until) return;
        }
      }
    };
    const ac = new AbortController();
    const first = await unix.stream('/v1/events', { signal: ac.signal });
    expect(first.status).toBe(200);
    expect(first.headers['content-type']).toBe('text/event-stream');
    store.append('vm1', [{ type: 'VmPaused', data: { by: 'x', reason: 'r' } }]);
    await readUntil(first.body, 5);
    ac.abort();
    // Events committed while nobody listens.
    store.append('vm1', [
      { type: 'VmResumed', data: { by: 'x' } },
      { type: 'VmPaused', data: { by: 'x', reason: 'r' } },
    ]);
    const second = await unix.stream('/v1/events?after=0', { headers: { 'last-event-id': String(seen.at(-1)) } });
    const reading = readUntil(second.body, 8);
    store.append('vm1', [{ type: 'VmResumed', data: { by: 'x' } }]);
    await reading;
    second.body.destroy();
    expect(seen).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  });
});

describe('control endpoint: actions and auth', () => {
  it('TCP without tokens is read-only (401); the unix socket may act, and the event names it', async () => {
    await start();
    const refused = await call(tcp, 'POST', '/v1/vm/actions', { action: 'pause' });
    expect(refused.status).toBe(401);
    expect(refused.headers['www-authenticate']).toMatch(/^Bearer/);
    expect((refused.json as { error: { hint: string } }).error.hint).toMatch(/no token is configured/);
    const ok = await call(unix, 'POST', '/v1/vm/actions', { action: 'pause' });
    expect(ok.status).toBe(202);
    expect(ok.json).toMatchObject({ action: 'pause', by: 'unix-socket', vm: { status: 'Paused' } });
    expect(store.readAfter(4).map((e) => [e.type, e.data])).toEqual([
      ['VmActionRequested', { action: 'pause', by: 'unix-socket' }],
      ['VmPaused', { by: 'unix-socket', reason: 'qmp STOP' }],
    ]);
  });

  it('a read-only token cannot act (403), an admin token can, a wrong token is 401 even for reads', async () => {
    await start({ tokens: `# tokens\nops:admin:${ADMIN}\ngrafana:read:${READER}\n` });
    const reader = client({ token: READER });
    const admin = client({ token: ADMIN });
    const wrong = client({ token: 'not-a-valid-token-at-all' });
    expect((await call(tcp, 'POST', '/v1/vm/actions', { action: 'pause' })).status).toBe(401);
    expect((await call(reader, 'POST', '/v1/vm/actions', { action: 'pause' })).status).toBe(403);
    expect((await call(wrong, 'GET', '/v1/vm')).status).toBe(401);
    expect((await call(reader, 'GET', '/v1/vm')).status).toBe(200);
    const ok = await call(admin, 'POST', '/v1/vm/actions', { action: 'pause' });
    expect(ok.status).toBe(202);
    expect(store.readAfter(4)[0]?.data).toEqual({ action: 'pause', by: 'token:ops' });
    // A read token may query, not steer, through raw QMP.
    expect((await call(reader, 'POST', '/v1/qmp', { execute: 'query-status' })).status).toBe(200);
    expect((await call(reader, 'POST', '/v1/qmp', { execute: 'cont' })).status).toBe(403);
    expect(vm.qmpSeen.filter((c) => c === 'cont')).toEqual([]);
  });

  it('a satisfied action is a no-op; one the state refuses is 409 with the status and the allowed actions', async () => {
    await start();
    // Running: resume is already satisfied, a no-op that records nothing.
    expect((await call(unix, 'POST', '/v1/vm/actions', { action: 'resume' })).status).toBe(202);
    expect(store.lastPosition()).toBe(4);
    await call(unix, 'POST', '/v1/vm/actions', { action: 'stop' });
    const refused = await call(unix, 'POST', '/v1/vm/actions', { action: 'pause' });
    expect(refused.status).toBe(409);
    expect(refused.json).toMatchObject({ error: { code: 'ERR_VM_ACTION_REFUSED', details: { action: 'pause', status: 'Stopping', allowed: ['stop'] } } });
  });
});

describe('control endpoint: raw QMP', () => {
  it('runs allowed commands and refuses the rest with 403 before qemu sees them', async () => {
    await start();
    const ok = await call(unix, 'POST', '/v1/qmp', { execute: 'query-status' });
    expect(ok.json).toMatchObject({ return: { status: 'running', running: true } });
    const hmp = await call(unix, 'POST', '/v1/qmp', { execute: 'human-monitor-command', arguments: { 'command-line': 'info status' } });
    expect(hmp.status).toBe(403);
    expect(hmp.json).toMatchObject({ error: { code: 'ERR_QMP_COMMAND_FORBIDDEN' } });
    for (const execute of ['migrate', 'blockdev-add', 'device_add', 'object-add', 'quit']) expect((await call(unix, 'POST', '/v1/qmp', { execute })).status).toBe(403);
    expect((await call(unix, 'POST', '/v1/qmp', { execute: 'query-nope' })).status).toBe(422);
    expect(vm.qmpSeen).toEqual(['query-status', 'query-nope']);
    vm.running = false;
    expect((await call(unix, 'POST', '/v1/qmp', { execute: 'query-status' })).status).toBe(409);
  });

  it('an operator can allow a dangerous command by its exact name', async () => {
    await start({ qmpAllow: ['human-monitor-command'] });
    expect((await call(unix, 'POST', '/v1/qmp', { execute: 'human-monitor-command', arguments: { 'command-line': 'info status' } })).status).toBe(200);
    expect(vm.qmpSeen).toEqual(['human-monitor-command']);
  });
});

describe('control endpoint: bad input', () => {
  it('answers malformed requests with one error shape naming the problem, and keeps serving', async () => {
    await start();
    const before = store.lastPosition();
    const cases: Array<[string, string, unknown, Record<string, string> | undefined, number, RegExp]> = [
      ['POST', '/v1/vm/actions', '{"action": ', undefined, 400, /not valid JSON/],
      ['POST', '/v1/vm/actions', { action: 'pause', force: true }, undefined, 400, /field force: is not a known field/],
      ['POST', '/v1/vm/actions', { action: 7 }, undefined, 400, /field action: expected string/],
      ['POST', '/v1/vm/actions', { action: 'explode' }, undefined, 400, /field action: expected one of/],
      ['POST', '/v1/vm/actions', [], undefined, 400, /the body: expected object/],
      ['POST', '/v1/vm/actions', 'action=pause', { 'content-type': 'application/x-www-form-urlencoded' }, 415, /expected a JSON body/],
      ['POST', '/v1/qmp', { execute: 'query-status', arguments: [] }, undefined, 400, /field arguments: expected object/],
      ['POST', '/v1/qmp', { execute: 'a b' }, undefined, 400, /field execute/],
      ['POST', '/v1/vm/actions', `{"action":"pause","pad":"${'x'.repeat(70_000)}"}`, undefined, 413, /larger than 65536/],
      ['DELETE', '/v1/vm', undefined, undefined, 405, /allowed: GET/],
      ['GET', '/v1/vm/actions', undefined, undefined, 405, /allowed: POST/],
      ['GET', '/v1/events?after=-1', undefined, undefined, 400, /after: got "-1"/],
      ['GET', '/v1/events?limit=100000', undefined, undefined, 400, /limit/],
      ['GET', '/v1/events?colour=blue', undefined, undefined, 400, /unknown query parameter "colour"/],
      ['GET', '/console', undefined, undefined, 503, /noVNC/],
    ];
    for (const [method, p, body, headers, status, message] of cases) {
      const a = await call(unix, method, p, body, headers);
      expect([`${method} ${p}`, a.status]).toEqual([`${method} ${p}`, status]);
      expect((a.json as { error: { message: string } }).error.message).toMatch(message);
    }
    expect(store.lastPosition()).toBe(before);
    expect(vm.qmpSeen).toEqual([]);
    expect((await call(unix, 'GET', '/v1/vm')).json).toMatchObject({ status: 'Running' });
  });

  it('serves nothing for traversal paths (the client is raw: URL libraries would normalize them)', async () => {
    await start();
    for (const target of ['/v1/../v1/vm', '/../../etc/passwd', '/v1/%2e%2e/vm', '//v1/vm', '/v1/vm/', '/metrics/../v1/vm', '/V1/VM']) {
      const answer = await raw(`GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
      expect([target, answer.split('\r\n')[0]]).toEqual([target, 'HTTP/1.1 404 Not Found']);
      expect(contract.check('Error', JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)))).toEqual([]);
    }
  });

  it('cuts off a slow client (headers never finished) and a client that never sends its body, and keeps serving', async () => {
    // Short timeouts, still far above what the complete requests here take.
    await start({ tokens: `ops:admin:${ADMIN}\n`, timeouts: { headersMs: 1000, requestMs: 2000, checkIntervalMs: 50 } });
    const [headers, body] = await Promise.all([
      raw('GET /v1/vm HTTP/1.1\r\nHost: x\r\nX-Slow: '),
      raw(`POST /v1/vm/actions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${ADMIN}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"act`),
      (async () => expect((await call(tcp, 'GET', '/healthz')).status).toBe(200))(),
    ]);
    expect(headers).toMatch(/^HTTP\/1.1 408/);
    expect(body).toMatch(/^HTTP\/1.1 408/);
    expect((await call(tcp, 'GET', '/v1/vm')).status).toBe(200);
  });

  it('answers garbage on the wire with 400 and stays up', async () => {
    await start();
    expect(await raw('\x00\x01\x02 NOT HTTP\r\n\r\n')).toMatch(/^HTTP\/1.1 400/);
    expect(await raw(`GET /v1/vm HTTP/1.1\r\nHost: x\r\nX-Big: ${'y'.repeat(20_000)}\r\n\r\n`)).toMatch(/^HTTP\/1.1 431/);
    expect((await call(tcp, 'GET', '/healthz')).status).toBe(200);
  });

  it('refuses a token file with bad lines, naming them', async () => {
    await expect(start({ tokens: 'ops:admin:short\n' })).rejects.toBeInstanceOf(ConfigError);
  });
});

describe('control endpoint: serial console', () => {
  it('upgrades to a two-way byte stream on the unix socket; TCP without a token gets 401', async () => {
    await start();
    const socket = await unix.upgrade('/v1/console', 'podvisor-console');
    let got = '';
    const echoed = new Promise<void>((resolve) =>
      socket.on('data', (d: Buffer) => {
        got += d.toString();
        if (got.includes('echo:root\n')) resolve();
      }),
    );
    socket.write('root\n');
    await echoed;
    expect(got).toBe('login: echo:root\n');
    socket.destroy();
    await expect(tcp.upgrade('/v1/console', 'podvisor-console')).rejects.toMatchObject({ code: 'ERR_CONTROL_UNREACHABLE' });
    const answer = await raw('GET /v1/console HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: podvisor-console\r\n\r\n');
    expect(answer).toMatch(/^HTTP\/1.1 401/);
    expect(contract.check('Error', JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)))).toEqual([]);
  });
});

describe('control endpoint: web console', () => {
  /**
   * qemu's own VNC server on a unix socket, with no machine behind it
   * (`-machine none`), asking for VNC authentication with `password`, set over
   * QMP as podvisor's runtime does.
   */
  async function realVnc(password: string): Promise<string> {
    const p = path.join(dir, 'vnc.sock');
    const qemu = spawn('qemu-system-x86_64', ['-machine', 'none', '-nodefaults', '-display', 'none', '-name', 'pv-int-vnc', '-vnc', `unix:${p},password=on`, '-qmp', 'stdio'], { stdio: ['pipe', 'pipe', 'inherit'] });
    cleanups.push(async () => {
      qemu.kill('SIGKILL');
      if (qemu.exitCode === null && qemu.signalCode === null) await once(qemu, 'close');
    });
    let out = '';
    await new Promise<void>((resolve, reject) => {
      qemu.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        // The greeting, then the answers to qmp_capabilities and the password.
        if ((out.match(/"return"/g) ?? []).length === 2) resolve();
      });
      qemu.once('close', (code) => reject(new Error(`qemu exited (${code}): ${out}`)));
      qemu.stdin.write(`{"execute":"qmp_capabilities"}\n{"execute":"change-vnc-password","arguments":{"password":${JSON.stringify(password)}}}\n`);
    });
    return p;
  }

  /**
   * The browser's side of RFB 3.8 through the bridge: version, security type
   * None (1), the security result, ClientInit; resolves with the desktop name
   * from qemu's ServerInit (RFC 6143, 7.3.2).
   */
  function rfbSession(url: string, dispatcher?: Agent): Promise<{ securityTypes: number[]; result: number; name: string }> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { protocols: ['binary'], ...(dispatcher === undefined ? {} : { dispatcher }) });
      ws.binaryType = 'arraybuffer';
      let buf = Buffer.alloc(0);
      let stage = 0;
      let securityTypes: number[] = [];
      let result = -1;
      ws.onmessage = (e) => {
        buf = Buffer.concat([buf, Buffer.from(e.data as ArrayBuffer)]);
        if (stage === 0 && buf.length >= 12) {
          expect(buf.subarray(0, 12).toString()).toBe('RFB 003.008\n');
          buf = buf.subarray(12);
          ws.send(Buffer.from('RFB 003.008\n'));
          stage = 1;
        }
        if (stage === 1 && buf.length >= 1 && buf.length >= 1 + (buf[0] ?? 0)) {
          securityTypes = [...buf.subarray(1, 1 + (buf[0] ?? 0))];
          buf = buf.subarray(1 + (buf[0] ?? 0));
          ws.send(Buffer.from([1]));
          stage = 2;
        }
        if (stage === 2 && buf.length >= 4) {
          result = buf.readUInt32BE(0);
          buf = buf.subarray(4);
          ws.send(Buffer.from([1])); // ClientInit: shared
          stage = 3;
        }
        if (stage === 3 && buf.length >= 24 && buf.length >= 24 + buf.readUInt32BE(20)) {
          const name = buf.subarray(24, 24 + buf.readUInt32BE(20)).toString();
          ws.close();
          resolve({ securityTypes, result, name });
        }
      };
      ws.onerror = () => reject(new Error('websocket failed'));
      ws.onclose = () => reject(new Error(`websocket closed at stage ${stage}`));
    });
  }

  /** Opens a WebSocket and resolves with the first `n` binary messages as text; rejects when the handshake fails. */
  function talk(url: string, options: { dispatcher?: Agent; send?: string } = {}, n = 2): Promise<string[]> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { protocols: ['binary'], ...(options.dispatcher === undefined ? {} : { dispatcher: options.dispatcher }) });
      ws.binaryType = 'arraybuffer';
      const got: string[] = [];
      ws.onmessage = (e) => {
        got.push(Buffer.from(e.data as ArrayBuffer).toString());
        if (got.length === 1 && options.send !== undefined) ws.send(Buffer.from(options.send));
        if (got.length === n) {
          ws.close();
          resolve(got);
        }
      };
      ws.onerror = () => reject(new Error('websocket failed'));
      ws.onclose = () => reject(new Error(`websocket closed after ${got.length} messages`));
    });
  }

  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0)) await c();
  });

  it('bridges a WebSocket to qemu\'s VNC server, answering its password challenge itself: the browser meets security type None', async () => {
    await start({ tokens: `ops:admin:${ADMIN}\ngrafana:read:${READER}\n`, vncPassword: 'Pw3xY7kq' });
    vm.vncSocket = await realVnc('Pw3xY7kq');
    const agent = new Agent({ connect: { socketPath: server.unixSocket } });
    cleanups.push(() => agent.close());
    expect(await rfbSession('ws://localhost/v1/vnc', agent)).toEqual({ securityTypes: [1], result: 0, name: 'QEMU (pv-int-vnc)' });
    const port = server.tcpAddress?.port;
    expect(await rfbSession(`ws://127.0.0.1:${port}/v1/vnc?token=${ADMIN}`)).toEqual({ securityTypes: [1], result: 0, name: 'QEMU (pv-int-vnc)' });
    await expect(talk(`ws://127.0.0.1:${port}/v1/vnc`)).rejects.toThrow();
    await expect(talk(`ws://127.0.0.1:${port}/v1/vnc?token=${READER}`)).rejects.toThrow();
    const noToken = await raw('GET /v1/vnc HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n');
    expect(noToken).toMatch(/^HTTP\/1.1 401/);
    const badKey = await raw(`GET /v1/vnc?token=${ADMIN} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: nope\r\n\r\n`);
    expect(badKey).toMatch(/^HTTP\/1.1 400/);
    expect(contract.check('Error', JSON.parse(badKey.slice(badKey.indexOf('\r\n\r\n') + 4)))).toEqual([]);
    vm.vncSocket = null;
    const off = await raw(`GET /v1/vnc?token=${ADMIN} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`);
    expect(off).toMatch(/^HTTP\/1.1 503[^]*ERR_CONSOLE_UNAVAILABLE/);
  });

  it('refuses the upgrade (503, nothing bridged) when qemu does not take the password podvisor holds', async () => {
    await start({ vncPassword: 'wrong-pw' });
    vm.vncSocket = await realVnc('Pw3xY7kq');
    const answer = await new Promise<string>((resolve) => {
      const s = connect(server.unixSocket);
      let got = '';
      s.setEncoding('utf8').on('data', (d: string) => (got += d));
      s.once('close', () => resolve(got));
      s.write('GET /v1/vnc HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n');
    });
    expect(answer).toMatch(/^HTTP\/1.1 503[^]*ERR_CONSOLE_UNAVAILABLE[^]*refused the VNC password/);
  });

  it('serves the console page and the noVNC files, and nothing outside the package', async () => {
    const root = path.join(dir, 'web');
    await mkdir(path.join(root, 'sub'), { recursive: true });
    await writeFile(path.join(root, 'novnc-rfb.mjs'), 'export default class RFB {}\n');
    await writeFile(path.join(dir, 'secret.js'), 'TOP-SECRET-CONTENT\n');
    await symlink(path.join(dir, 'secret.js'), path.join(root, 'sub', 'link.js'));
    await start({ webConsole: WebConsole.locate(root) });
    const page = await call(tcp, 'GET', '/console');
    expect(page.status).toBe(200);
    expect(page.text).toContain("import novnc from './console/novnc/novnc-rfb.mjs'");
    const rfb = await call(tcp, 'GET', '/console/novnc/novnc-rfb.mjs');
    expect([rfb.status, rfb.headers['content-type'], rfb.text]).toEqual([200, 'text/javascript; charset=utf-8', 'export default class RFB {}\n']);
    for (const target of ['/console/novnc/../secret.js', '/console/novnc/sub/../../secret.js', '/console/novnc/%2e%2e/secret.js', '/console/novnc/sub/link.js', '/console/novnc/novnc-rfb.mjs.map', '/console/novnc//novnc-rfb.mjs']) {
      const answer = await raw(`GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
      expect([target, answer.split('\r\n')[0]]).toEqual([target, 'HTTP/1.1 404 Not Found']);
      expect(answer).not.toContain('TOP-SECRET-CONTENT');
    }
  });
});


describe('control endpoint: no secrets in reads below admin', () => {
  it('anonymous and read-token readers never see qemu\'s argv; nobody sees a URL\'s query values', async () => {
    await start({ tokens: `ops:admin:${ADMIN}\ngrafana:read:${READER}\n` });
    const reader = client({ token: READER });
    const admin = client({ token: ADMIN });
    for (const c of [tcp, reader]) {
      const page = await call(c, 'GET', '/v1/events');
      const started = (page.json as { events: Array<{ type: string; data: { argv?: string[] } }> }).events.find((e) => e.type === 'VmStarted');
      expect(started?.data.argv).toEqual(['(hidden: admin only)']);
      expect(page.text).not.toMatch(/hunter2|SIGSECRET/);
      const ac = new AbortController();
      const stream = await c.stream('/v1/events', { signal: ac.signal });
      const parser = new SseParser();
      const data: string[] = [];
      for await (const chunk of stream.body as AsyncIterable<Buffer>) {
        data.push(...parser.push(chunk).map((m) => m.data));
        if (data.length >= 4) break;
      }
      ac.abort();
      expect(data.join('\n')).toContain('(hidden: admin only)');
      expect(data.join('\n')).not.toMatch(/hunter2|SIGSECRET/);
    }
    for (const c of [unix, admin]) {
      const page = await call(c, 'GET', '/v1/events');
      const started = (page.json as { events: Array<{ type: string; data: { argv?: string[] } }> }).events.find((e) => e.type === 'VmStarted');
      expect(started?.data.argv).toEqual(['qemu-system-x86_64', '-drive', 'file=https://b.example/x.qcow2?X-Amz-Signature=***', '--api-key=hunter2-secret']);
    }
    // The state shows the image source without its query values, to everyone.
    store.append('vm1', [{ type: 'ImageImported', data: { source: 'https://u:pw@b.example/x.qcow2?token=TOKSECRET', target: 'x', path: '/i/x', bytes: 1, sha256: 'a'.repeat(64), reused: false } }]);
    for (const c of [tcp, unix]) {
      const vmState = await call(c, 'GET', '/v1/vm');
      expect((vmState.json as { image: { source: string } }).image.source).toBe('https://***:***@b.example/x.qcow2?token=***');
    }
  });
});

describe('control endpoint: floods', () => {
  /** Opens an SSE request on a raw TCP socket that never reads; resolves with the status line. */
  function idleStream(port: number, headers = ''): Promise<{ socket: Socket; status: string }> {
    return new Promise((resolve, reject) => {
      const s = connect(port, '127.0.0.1');
      let got = '';
      s.on('error', reject);
      const onData = (d: Buffer): void => {
        got += d.toString('latin1');
        const eol = got.indexOf('\r\n');
        if (eol < 0) return;
        s.off('data', onData);
        s.pause(); // never read again
        resolve({ socket: s, status: got.slice(0, eol) });
      };
      s.on('data', onData);
      s.write(`GET /v1/events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n${headers}\r\n`);
    });
  }

  it('512 idle anonymous event streams and 512 silent connections from one address: streams past a few are refused with 429 and closed, and the probes still answer', async () => {
    await start();
    const port = server.tcpAddress?.port ?? 0;
    const opened = await Promise.all(Array.from({ length: 512 }, () => idleStream(port)));
    const silent = await Promise.all(
      Array.from({ length: 512 }, () => new Promise<Socket>((resolve, reject) => connect(port, '127.0.0.1').once('connect', function (this: Socket) { resolve(this); }).once('error', reject))),
    );
    for (const s of silent) s.on('error', () => undefined);
    opened.push(...silent.map((socket) => ({ socket, status: '' })));
    try {
      const statuses = opened.map((o) => o.status).filter((x) => x !== '');
      expect(statuses.filter((x) => x === 'HTTP/1.1 200 OK')).toHaveLength(4);
      expect(statuses.filter((x) => x === 'HTTP/1.1 429 Too Many Requests')).toHaveLength(508);
      for (let i = 0; i < 20; i += 1) {
        expect((await call(tcp, 'GET', '/healthz')).status).toBe(200);
        expect((await call(tcp, 'GET', '/readyz')).status).toBe(200);
      }
      // The unix socket is never limited.
      const ac = new AbortController();
      expect((await unix.stream('/v1/events', { signal: ac.signal })).status).toBe(200);
      ac.abort();
    } finally {
      for (const o of opened) o.socket.destroy();
    }
  });

  it('a refused stream is 429 with Retry-After and the error shape; authenticated clients may hold more than anonymous ones', async () => {
    await start({ tokens: `ops:admin:${ADMIN}\ngrafana:read:${READER}\n`, limits: { streams: { total: 6, anonymousTotal: 2, anonymousPerAddress: 1, perAddress: 3 } } });
    const port = server.tcpAddress?.port ?? 0;
    const held: Socket[] = [];
    try {
      const first = await idleStream(port);
      held.push(first.socket);
      expect(first.status).toBe('HTTP/1.1 200 OK');
      const refused = await raw('GET /v1/events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n');
      expect(refused).toMatch(/^HTTP\/1.1 429 Too Many Requests\r\n/);
      expect(refused).toMatch(/\r\nretry-after: 5\r\n/i);
      const body = JSON.parse(refused.slice(refused.indexOf('\r\n\r\n') + 4)) as unknown;
      expect(contract.check('Error', body)).toEqual([]);
      expect(body).toMatchObject({ error: { code: 'ERR_HTTP_TOO_MANY_STREAMS' } });
      const statuses: string[] = [];
      for (let i = 0; i < 4; i += 1) {
        const o = await idleStream(port, `Authorization: Bearer ${READER}\r\n`);
        held.push(o.socket);
        statuses.push(o.status);
      }
      // The address already holds the anonymous stream: 3 in all.
      expect(statuses).toEqual(['HTTP/1.1 200 OK', 'HTTP/1.1 200 OK', 'HTTP/1.1 429 Too Many Requests', 'HTTP/1.1 429 Too Many Requests']);
    } finally {
      for (const s of held) s.destroy();
    }
  });

  /** A logger whose `seen(text)` resolves when a line containing `text` is logged. */
  function watchedLog(): { log: Logger; seen: (text: string) => Promise<string> } {
    const lines: string[] = [];
    const waiters: Array<() => void> = [];
    const log = new JsonLogger({ write: (line: string) => (lines.push(line), waiters.splice(0).forEach((w) => w())) }, 'test', 'debug');
    const seen = async (text: string): Promise<string> => {
      for (;;) {
        const hit = lines.find((l) => l.includes(text));
        if (hit !== undefined) return hit;
        await new Promise<void>((resolve) => waiters.push(resolve));
      }
    };
    return { log, seen };
  }

  it('drops an event stream whose client does not read, once its buffer passes the bound', async () => {
    const { log, seen } = watchedLog();
    await start({ log, limits: { sseMaxBufferedBytes: 64 * 1024 } });
    const { socket, status } = await idleStream(server.tcpAddress?.port ?? 0);
    expect(status).toBe('HTTP/1.1 200 OK');
    // 40 MiB of events: far more than the kernel's socket buffers hold.
    const message = 'x'.repeat(64 * 1024);
    for (let i = 0; i < 640; i += 1) store.append('vm1', [{ type: 'WarningRaised', data: { code: 'WARN_TEST', message } }]);
    const line = JSON.parse(await seen('event stream cut off: the client does not read')) as { bufferedBytes: number };
    expect(line.bufferedBytes).toBeGreaterThan(16 * 1024);
    socket.destroy();
  });

  it('drops a stalled client during the replay of a long backlog, and replays in pages to a client that reads', async () => {
    const message = 'y'.repeat(8 * 1024);
    store.append('vm1', Array.from({ length: 2000 }, () => ({ type: 'WarningRaised' as const, data: { code: 'WARN_TEST', message } })));
    const { log, seen } = watchedLog();
    await start({ log, limits: { sseReplayPage: 20, sseStallMs: 1000 } });
    const { socket, status } = await idleStream(server.tcpAddress?.port ?? 0);
    expect(status).toBe('HTTP/1.1 200 OK');
    await seen('event stream cut off: the client stopped reading');
    socket.destroy();
    // A reader gets the whole backlog, in order, with no gap. It reads in this process, which a
    // loaded machine can hold up for longer than the short stall bound above: a server with the
    // default bound serves it.
    await server.close();
    await start({ limits: { sseReplayPage: 20 } });
    const ac = new AbortController();
    const stream = await unix.stream('/v1/events', { signal: ac.signal });
    const parser = new SseParser();
    const ids: number[] = [];
    for await (const chunk of stream.body as AsyncIterable<Buffer>) {
      ids.push(...parser.push(chunk).map((m) => Number(m.id)));
      if (ids.length >= 2004) break;
    }
    ac.abort();
    expect(ids).toEqual(Array.from({ length: 2004 }, (_, i) => i + 1));
  });

  it('probes and scrapes share one QMP read: 100 of them run query-status once', async () => {
    await start({ limits: { qmpCacheMs: 60_000 } });
    await Promise.all(Array.from({ length: 50 }, () => call(tcp, 'GET', '/readyz')));
    await Promise.all(Array.from({ length: 50 }, () => call(tcp, 'GET', '/metrics')));
    expect(vm.qmpSeen.filter((c) => c === 'query-status')).toEqual(['query-status']);
    expect(vm.qmpSeen.filter((c) => c === 'query-blockstats')).toEqual(['query-blockstats']);
  });
});

describe('control endpoint: the VNC password', () => {
  it('is shown to an admin only, and is 503 without VNC', async () => {
    await start({ tokens: `ops:admin:${ADMIN}\ngrafana:read:${READER}\n`, vncPassword: 'Pw3xY7kq' });
    expect((await call(unix, 'GET', '/v1/vnc/password')).json).toEqual({ password: 'Pw3xY7kq', bytesUsed: 8 });
    expect((await call(client({ token: ADMIN }), 'GET', '/v1/vnc/password')).json).toEqual({ password: 'Pw3xY7kq', bytesUsed: 8 });
    expect((await call(tcp, 'GET', '/v1/vnc/password')).status).toBe(401);
    expect((await call(client({ token: READER }), 'GET', '/v1/vnc/password')).status).toBe(403);
    await server.close();
    await start({});
    expect((await call(unix, 'GET', '/v1/vnc/password')).status).toBe(503);
  });
});
