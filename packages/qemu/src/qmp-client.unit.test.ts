import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { toArray, firstValueFrom } from 'rxjs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { JsonLineDecoder } from './json-line-decoder.js';
import { QmpClient } from './qmp-client.js';
import { QmpCommandError, QmpConnectError, QmpError, QmpInterruptedError, QmpProtocolError } from './qmp-error.js';

/** One accepted connection of the scripted server: what the client sent, and a way to answer. */
class Peer {
  private readonly decoder = new JsonLineDecoder();
  private readonly inbox: Array<Record<string, unknown>> = [];
  private waiters: Array<(m: Record<string, unknown>) => void> = [];

  constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      for (const { message } of this.decoder.push(chunk)) {
        const waiter = this.waiters.shift();
        if (waiter) waiter(message);
        else this.inbox.push(message);
      }
    });
  }

  /** The next command the client sent. */
  next(): Promise<Record<string, unknown>> {
    const m = this.inbox.shift();
    return m ? Promise.resolve(m) : new Promise((resolve) => this.waiters.push(resolve));
  }

  send(message: object | string): void {
    this.socket.write(typeof message === 'string' ? message : `${JSON.stringify(message)}\r\n`);
  }

  /** Greets like qemu 7.2 and answers qmp_capabilities; returns that command. */
  async handshake(): Promise<Record<string, unknown>> {
    this.send(GREETING);
    const caps = await this.next();
    this.send({ return: {}, id: caps.id });
    return caps;
  }
}

const GREETING = { QMP: { version: { qemu: { micro: 22, minor: 2, major: 7 }, package: 'Debian 1:7.2+dfsg-7+deb12u18+b3' }, capabilities: ['oob'] } };

let dir: string;
let path: string;
let server: Server | undefined;
let clients: QmpClient[];

/** Listens on `path`; resolves the first connection as a Peer. */
function serve(): Promise<Peer> {
  return new Promise((resolve, reject) => {
    server = createServer((socket) => resolve(new Peer(socket)));
    server.once('error', reject);
    server.listen(path);
  });
}

function client(): QmpClient {
  const c = new QmpClient({ transcript: true });
  clients.push(c);
  return c;
}

async function connected(): Promise<{ qmp: QmpClient; peer: Peer }> {
  const peerP = serve();
  const qmp = client();
  const connecting = qmp.connect(path, { timeoutMs: 5000 });
  const peer = await peerP;
  await peer.handshake();
  await connecting;
  return { qmp, peer };
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'podvisor-qmp-unit-'));
  path = join(dir, 'qmp.sock');
  clients = [];
});

afterEach(async () => {
  await Promise.all(clients.map((c) => c.disconnect()));
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  server = undefined;
  await rm(dir, { recursive: true, force: true });
});

describe('QmpClient', () => {
  it('reads the greeting, negotiates without enabling oob, and moves idle -> connecting -> running', async () => {
    const peerP = serve();
    const qmp = client();
    expect(qmp.state).toBe('idle');
    const connecting = qmp.connect(path, { timeoutMs: 5000 });
    expect(qmp.state).toBe('connecting');
    const peer = await peerP;
    const caps = await peer.handshake();
    const greeting = await connecting;
    expect(caps).toEqual({ execute: 'qmp_capabilities', id: caps.id });
    expect(greeting.capabilities).toEqual(['oob']);
    expect(qmp.version).toBe('7.2.22');
    expect(qmp.state).toBe('running');
  });

  it('retries until the socket exists, then connects', async () => {
    const qmp = client();
    const connecting = qmp.connect(path, { timeoutMs: 5000 });
    // The socket does not exist yet; the client is retrying.
    await new Promise((resolve) => setImmediate(resolve));
    expect(qmp.state).toBe('connecting');
    const peer = await serve();
    await peer.handshake();
    await connecting;
    expect(qmp.state).toBe('running');
  });

  it('correlates replies by id even when they come out of order, and measures query-status', async () => {
    const { qmp, peer } = await connected();
    const status = qmp.execute<{ status: string }>('query-status');
    const name = qmp.execute<{ name: string }>('query-name');
    const [a, b] = [await peer.next(), await peer.next()];
    expect(a.execute).toBe('query-status');
    expect(b).toEqual({ execute: 'query-name', id: b.id });
    peer.send({ return: { name: 'web-0' }, id: b.id });
    peer.send({ return: { status: 'running', running: true }, id: a.id });
    expect(await name).toEqual({ name: 'web-0' });
    expect(await status).toEqual({ status: 'running', running: true });
    expect(qmp.lastRoundTripMs).toBeGreaterThanOrEqual(0);
  });

  it('sends arguments and fans events out in order until the connection ends', async () => {
    const { qmp, peer } = await connected();
    const events = firstValueFrom(qmp.events.pipe(toArray()));
    const done = qmp.execute('system_powerdown', { force: false });
    const cmd = await peer.next();
    expect(cmd.arguments).toEqual({ force: false });
    peer.send(`{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "POWERDOWN"}\r\n{"return": {}, "id": ${String(cmd.id)}}\r\n{"timestamp": {"seconds": 3, "microseconds": 4}, "event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-shutdown"}}\r\n`);
    await done;
    peer.socket.end();
    expect(await events).toEqual([
      { event: 'POWERDOWN', data: {}, timestamp: { seconds: 1, microseconds: 2 } },
      { event: 'SHUTDOWN', data: { guest: true, reason: 'guest-shutdown' }, timestamp: { seconds: 3, microseconds: 4 } },
    ]);
    expect(qmp.state).toBe('disconnected');
  });

  it('rejects a command answered with an error with QmpCommandError carrying class, desc and the command, and stays running', async () => {
    const { qmp, peer } = await connected();
    const failing = qmp.execute('bogus-command');
    const cmd = await peer.next();
    peer.send({ error: { class: 'CommandNotFound', desc: "The command bogus-command has not been found" }, id: cmd.id });
    const err = await failing.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QmpCommandError);
    expect(err).toMatchObject({ code: 'ERR_QMP_COMMAND', command: 'bogus-command', errorClass: 'CommandNotFound', desc: 'The command bogus-command has not been found' });
    expect((err as Error).message).toContain('bogus-command');
    expect(qmp.state).toBe('running');
  });

  it('rejects every pending call with QmpInterruptedError when the server closes mid-call', async () => {
    const { qmp, peer } = await connected();
    const calls = [qmp.execute('query-status'), qmp.execute('query-cpus-fast'), qmp.execute('query-block')];
    await peer.next();
    await peer.next();
    await peer.next();
    peer.socket.destroy();
    const errors = await Promise.all(calls.map((c) => c.catch((e: unknown) => e)));
    for (const [i, command] of ['query-status', 'query-cpus-fast', 'query-block'].entries()) {
      expect(errors[i]).toBeInstanceOf(QmpInterruptedError);
      expect(errors[i]).toMatchObject({ code: 'ERR_QMP_INTERRUPTED', command });
    }
    expect(qmp.state).toBe('disconnected');
    await expect(qmp.execute('query-status')).rejects.toBeInstanceOf(QmpInterruptedError);
  });

  it('closes the connection on garbage and interrupts pending calls with the protocol error as cause', async () => {
    const { qmp, peer } = await connected();
    const pending = qmp.execute('query-status');
    await peer.next();
    peer.send('this is not json\r\n');
    const err = (await pending.catch((e: unknown) => e)) as QmpInterruptedError;
    expect(err).toBeInstanceOf(QmpInterruptedError);
    expect(err.cause).toBeInstanceOf(QmpProtocolError);
    expect(err.message).toContain('not JSON: this is not json');
    expect(qmp.state).toBe('disconnected');
    expect(qmp.transcript?.lines().map((l) => l.direction)).toContain('--');
  });

  it('treats a reply with an unknown id as a protocol error', async () => {
    const { qmp, peer } = await connected();
    const pending = qmp.execute('query-status');
    await peer.next();
    peer.send({ return: {}, id: 999 });
    const err = (await pending.catch((e: unknown) => e)) as QmpInterruptedError;
    expect(err.cause).toBeInstanceOf(QmpProtocolError);
    expect(err.message).toContain('unknown id 999');
  });

  it('fails to connect with QmpConnectError when nothing listens within the timeout', async () => {
    const qmp = client();
    const err = await qmp.connect(path, { timeoutMs: 100 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QmpConnectError);
    expect((err as Error).message).toContain(path);
    expect(qmp.state).toBe('disconnected');
  });

  it('fails to connect when the first message is not a greeting, or negotiation fails, or the caller aborts', async () => {
    const peerP = serve();
    const bad = client();
    const connecting = bad.connect(path, { timeoutMs: 5000 });
    (await peerP).send({ hello: 'world' });
    const err = (await connecting.catch((e: unknown) => e)) as QmpConnectError;
    expect(err).toBeInstanceOf(QmpConnectError);
    expect(err.message).toContain('expected the QMP greeting');

    await new Promise<void>((resolve) => server?.close(() => resolve()));
    const peer2P = serve();
    const refused = client();
    const connecting2 = refused.connect(path, { timeoutMs: 5000 });
    const peer2 = await peer2P;
    peer2.send(GREETING);
    const caps = await peer2.next();
    peer2.send({ error: { class: 'GenericError', desc: 'no' }, id: caps.id });
    const err2 = (await connecting2.catch((e: unknown) => e)) as QmpConnectError;
    expect(err2).toBeInstanceOf(QmpConnectError);
    expect(err2.cause).toBeInstanceOf(QmpCommandError);

    const aborted = client();
    const ac = new AbortController();
    ac.abort(new Error('qemu exited'));
    const err3 = (await aborted.connect(join(dir, 'nowhere.sock'), { signal: ac.signal }).catch((e: unknown) => e)) as QmpConnectError;
    expect(err3).toBeInstanceOf(QmpConnectError);
    expect(err3.message).toContain('aborted: qemu exited');
  });

  it('guards calls by state: no execute before connect, no second connect', async () => {
    const qmp = client();
    await expect(qmp.execute('query-status')).rejects.toMatchObject({ code: 'ERR_QMP_STATE' });
    const { qmp: running } = await connected();
    const err = await running.connect(path).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QmpError);
    expect(err).toMatchObject({ code: 'ERR_QMP_STATE' });
  });

  it('keeps a transcript of every line with timestamps and writes it to a file', async () => {
    const { qmp, peer } = await connected();
    const done = qmp.execute('stop');
    const cmd = await peer.next();
    peer.send({ return: {}, id: cmd.id });
    await done;
    const lines = qmp.transcript?.lines() ?? [];
    expect(lines.map((l) => `${l.direction} ${l.line}`)).toEqual([
      `-- connected to ${path}`,
      `<- ${JSON.stringify(GREETING)}`,
      '-> {"execute":"qmp_capabilities","id":1}',
      '<- {"return":{},"id":1}',
      '-> {"execute":"stop","id":2}',
      '<- {"return":{},"id":2}',
    ]);
    expect(lines.every((l) => !Number.isNaN(Date.parse(l.at)))).toBe(true);
    const file = join(dir, 'transcript.txt');
    await qmp.transcript?.writeTo(file);
    expect(await readFile(file, 'utf8')).toContain('-> {"execute":"stop","id":2}');
  });
});
