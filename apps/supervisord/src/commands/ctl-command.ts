/**
 * `podvisor ctl`: the control endpoint from a shell. It talks to the daemon
 * over the unix socket in the state dir by default, or over TCP with `--url`
 * and a token, prints what it got for a person (or the JSON for a script with
 * `--json`), and turns each kind of refusal into a documented exit code.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { isPodvisorError, type StoredEvent, type VmAction, type VmState } from '@podvisor/core';
import { ControlClient, type ControlAnswer } from '../http/control-client.js';
import { CONTROL_SOCKET_NAME } from '../http/control-server.js';
import { SseParser } from '../http/sse-parser.js';
import { writeAll } from '../process-output.js';
import { formatEvent } from './events-command.js';
import { CtlExitCode } from '../exit-codes.js';
import type { CommandIo } from './run-command.js';

/** Exit codes of `podvisor ctl` and `podvisor console`: the app's one table. */
export const CtlExit = CtlExitCode;

export const CONNECTION_HELP = `Connection (the unix socket by default):
  --state-dir DIR     the state dir holding control.sock (default $PODVISOR_STATE_DIR,
                      else $PODVISOR_DISK_DIR/.podvisor, else /var/lib/podvisor/disk/.podvisor)
  --socket PATH       the unix socket itself
  --url URL           TCP instead, e.g. http://10.1.2.3:5800
  --token TOKEN       bearer token for --url (also $PODVISOR_TOKEN)
  --token-file FILE   a file holding the token, or a token file line name:role:token`;

export const CTL_HELP = `Usage: podvisor ctl <command> [options]

Commands:
  status                          the VM's state and the actions it allows now
  events [-f] [--after N] [--limit N]
                                  the event log, paged through to its end (or --limit N events;
                                  stderr then says what was left out); -f follows it live (SSE)
  powerdown | reset | pause | resume | restart | stop
                                  request an action (refused with exit 4 when the state does not allow it)
  qmp JSON|COMMAND                raw QMP from the allow-list, e.g. qmp query-status
                                  or qmp '{"execute":"query-blockstats"}'
  vnc-password                    the VNC password qemu asks for (admin only; the web
                                  console needs none)

Options:
  --json              print the endpoint's JSON answer (events: one event per line)
${CONNECTION_HELP}
  -h, --help          this help

Exit codes: 0 ok, 1 internal error, 2 usage, 3 endpoint unreachable, 4 refused by the
VM's state (409), 5 not authorized (401/403), 6 any other error answer, 141 the reader
of stdout went away.
`;

/** The `parseArgs` options shared with `podvisor console`. */
export const CONNECTION_OPTIONS = {
  'state-dir': { type: 'string' },
  socket: { type: 'string' },
  url: { type: 'string' },
  token: { type: 'string' },
  'token-file': { type: 'string' },
} as const;

const ACTIONS: ReadonlySet<string> = new Set<VmAction>(['powerdown', 'reset', 'pause', 'resume', 'restart', 'stop']);

export async function ctlCommand(argv: readonly string[], io: CommandIo): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      options: {
        ...CONNECTION_OPTIONS,
        json: { type: 'boolean' },
        follow: { type: 'boolean', short: 'f' },
        after: { type: 'string' },
        limit: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    return usage(io, (err as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help === true) {
    io.stdout.write(CTL_HELP);
    return CtlExit.Ok;
  }
  const [command, ...rest] = positionals;
  if (command === undefined) return usage(io, 'missing command');
  let client: ControlClient;
  try {
    client = controlClientFromFlags(values, io.env);
  } catch (err) {
    return usage(io, (err as Error).message);
  }
  const json = values.json === true;
  try {
    if (command === 'status') {
      if (rest.length > 0) return usage(io, `status takes no arguments, got ${rest.join(' ')}`);
      const a = await client.request('GET', '/v1/vm');
      return answer(io, a, json, () => formatVm(a.json as VmView));
    }
    if (ACTIONS.has(command)) {
      if (rest.length > 0) return usage(io, `${command} takes no arguments, got ${rest.join(' ')}`);
      const a = await client.request('POST', '/v1/vm/actions', { body: { action: command } });
      return answer(io, a, json, () => {
        const body = a.json as { action: string; by: string; vm: VmView };
        return `${body.action}: accepted (asked by ${body.by}); the VM is ${body.vm.status}\n`;
      });
    }
    if (command === 'qmp') {
      const request = qmpRequest(rest);
      if (typeof request === 'string') return usage(io, request);
      const a = await client.request('POST', '/v1/qmp', { body: request });
      return answer(io, a, json, () => `${JSON.stringify((a.json as { return: unknown }).return, null, 2)}\n`);
    }
    if (command === 'vnc-password') {
      if (rest.length > 0) return usage(io, `vnc-password takes no arguments, got ${rest.join(' ')}`);
      const a = await client.request('GET', '/v1/vnc/password');
      return answer(io, a, json, () => `${(a.json as { password: string }).password}\n`);
    }
    if (command === 'events') {
      if (rest.length > 0) return usage(io, `events takes no arguments, got ${rest.join(' ')}`);
      const after = Number(values.after ?? '0');
      if (!Number.isInteger(after) || after < 0) return usage(io, `--after: got ${JSON.stringify(values.after)}, expected a position (integer >= 0)`);
      if (values.follow === true) return await followEvents(client, after, io, json);
      const limit = values.limit === undefined ? Infinity : Number(values.limit);
      if (values.limit !== undefined && (!Number.isInteger(limit) || limit < 1)) return usage(io, `--limit: got ${JSON.stringify(values.limit)}, expected a number of events (integer >= 1)`);
      return await listEvents(client, { after, limit }, io, json);
    }
    return usage(io, `unknown command ${JSON.stringify(command)}`);
  } catch (err) {
    return reportClientError(io, 'ctl', err);
  } finally {
    await client.close();
  }
}

/** The client for `--socket`/`--state-dir` or `--url` with a token. Throws `Error` for conflicting or unreadable options. */
export function controlClientFromFlags(values: { 'state-dir'?: string; socket?: string; url?: string; token?: string; 'token-file'?: string }, env: Readonly<Record<string, string | undefined>>): ControlClient {
  if (values.url !== undefined && (values.socket !== undefined || values['state-dir'] !== undefined)) throw new Error('--url cannot be combined with --socket or --state-dir');
  if (values.token !== undefined && values['token-file'] !== undefined) throw new Error('give --token or --token-file, not both');
  const token = values['token-file'] !== undefined ? readToken(values['token-file']) : (values.token ?? env['PODVISOR_TOKEN']);
  if (values.url !== undefined) {
    if (!/^https?:\/\/[^/]+\/?$/.test(values.url)) throw new Error(`--url: got ${JSON.stringify(values.url)}, expected http://HOST:PORT`);
    return new ControlClient({ url: values.url, ...(token === undefined ? {} : { token }) });
  }
  const stateDir = values['state-dir'] ?? env['PODVISOR_STATE_DIR'] ?? path.join(env['PODVISOR_DISK_DIR'] ?? '/var/lib/podvisor/disk', '.podvisor');
  return new ControlClient({ socketPath: values.socket ?? path.join(stateDir, CONTROL_SOCKET_NAME) });
}

/** Prints a client-side failure and returns its exit code. */
export function reportClientError(io: CommandIo, command: string, err: unknown): number {
  if (isPodvisorError(err)) {
    io.stderr.write(`podvisor ${command}: ${err.message}${err.hint === undefined ? '' : `\nhint: ${err.hint}`}\n`);
    return err.code === 'ERR_CONTROL_UNREACHABLE' ? CtlExit.Unreachable : CtlExit.Failed;
  }
  io.stderr.write(`podvisor ${command}: internal error: ${(err as Error)?.stack ?? String(err)}\n`);
  return CtlExit.Internal;
}

/** The exit code of an HTTP status. */
export function exitCodeOf(status: number): number {
  if (status < 400) return CtlExit.Ok;
  if (status === 409) return CtlExit.Refused;
  if (status === 401 || status === 403) return CtlExit.NotAuthorized;
  return CtlExit.Failed;
}

/** Prints an error answer's message and hint. */
export function reportErrorAnswer(io: CommandIo, command: string, a: ControlAnswer): number {
  const e = (a.json as { error?: { code?: string; message?: string; hint?: string; details?: { allowed?: string[] } } } | undefined)?.error;
  io.stderr.write(`podvisor ${command}: ${e?.message ?? `HTTP ${a.status}: ${a.text.slice(0, 200)}`} [${e?.code ?? a.status}]${e?.hint === undefined ? '' : `\nhint: ${e.hint}`}\n`);
  return exitCodeOf(a.status);
}

type VmView = VmState & { allowedActions: string[]; degradedBy?: Array<{ code: string; message: string }> };

function answer(io: CommandIo, a: ControlAnswer, json: boolean, human: () => string, jsonText: () => string = () => `${a.text}\n`): number {
  if (a.status >= 400) {
    if (json) io.stdout.write(`${a.text}\n`);
    return reportErrorAnswer(io, 'ctl', a);
  }
  io.stdout.write(json ? jsonText() : human());
  return CtlExit.Ok;
}

function formatVm(vm: VmView): string {
  const lines = [`${vm.vm || '(unnamed)'}  ${vm.status}`];
  const facts: string[] = [];
  if ('pid' in vm && vm.pid !== null) facts.push(`pid ${vm.pid}`);
  if ('since' in vm) facts.push(`since ${vm.since}`);
  if (vm.accelerator !== null) facts.push(`accel ${vm.accelerator}`);
  facts.push(`restarts ${vm.restarts}`, `runs ${vm.runs}`);
  lines.push(`  ${facts.join('  ')}`);
  if (vm.status === 'Failed') lines.push(`  failed: ${vm.code}: ${vm.message}`);
  if (vm.status === 'Stopped') lines.push(`  stopped: ${vm.reason}`);
  if (vm.status === 'BackingOff') lines.push(`  restart at ${vm.restartAt}`);
  if (vm.addresses.length > 0) lines.push(`  addresses ${vm.addresses.join(', ')}`);
  if (vm.image !== null) lines.push(`  image ${vm.image.target} (sha256 ${vm.image.sha256.slice(0, 12)})`);
  if (vm.lastExit !== null) lines.push(`  last exit ${vm.lastExit.reason} (${vm.lastExit.signal ?? `status ${vm.lastExit.code}`}) at ${vm.lastExit.at}`);
  for (const c of vm.degradedBy ?? []) lines.push(`  degraded: ${c.code}: ${c.message}`);
  lines.push(`  allowed actions: ${vm.allowedActions.length === 0 ? '(none)' : vm.allowedActions.join(', ')}`);
  return `${lines.join('\n')}\n`;
}

function qmpRequest(args: string[]): { execute: string; arguments?: Record<string, unknown> } | string {
  const text = args.join(' ').trim();
  if (text === '') return 'qmp needs a command: qmp query-status, or qmp \'{"execute": "...", "arguments": {...}}\'';
  if (!text.startsWith('{')) return args.length === 1 ? { execute: text } : `qmp: give one command name or one JSON object, got ${JSON.stringify(text)}`;
  try {
    return JSON.parse(text) as { execute: string };
  } catch (err) {
    return `qmp: the argument is not valid JSON: ${(err as Error).message}`;
  }
}

/** The most events the endpoint returns per request (api/openapi.yaml, GET /v1/events `limit`). */
const EVENTS_PAGE_MAX = 1000;

/**
 * Prints the log after `after` to its end as the first page saw it, a page
 * (`after=`) at a time, waiting for a slow reader between pages. When `limit`
 * stops it first, says on stderr how many events were left out and how to get them.
 */
async function listEvents(client: ControlClient, { after, limit }: { after: number; limit: number }, io: CommandIo, json: boolean): Promise<number> {
  let from = after;
  let shown = 0;
  let end: number | null = null;
  while (end === null || from < end) {
    const size = Math.min(EVENTS_PAGE_MAX, limit - shown);
    if (size <= 0) {
      io.stderr.write(`podvisor ctl: showed ${shown} event${shown === 1 ? '' : 's'} (--limit ${limit}); the log goes on to position ${end}: continue with --after ${from}\n`);
      return CtlExit.Ok;
    }
    const a = await client.request('GET', `/v1/events?after=${from}&limit=${size}`);
    if (a.status >= 400) return answer(io, a, json, () => '');
    const page = a.json as { events: StoredEvent[]; next: number; lastPosition: number };
    end ??= page.lastPosition;
    const events = page.events.filter((e) => e.position <= (end as number));
    if (events.length === 0) break;
    await writeAll(io.stdout, events.map((e) => (json ? `${JSON.stringify(e)}\n` : `${formatEvent(e)}\n`)).join(''));
    shown += events.length;
    from = events.at(-1)?.position ?? from;
  }
  return CtlExit.Ok;
}

/** Follows the log over SSE until interrupted, reconnecting with Last-Event-ID when a stream ends. */
async function followEvents(client: ControlClient, after: number, io: CommandIo, json: boolean): Promise<number> {
  if (!Number.isInteger(after) || after < 0) return usage(io, `--after: expected a position (integer >= 0), got ${after}`);
  const stop = new AbortController();
  const onSignal = (): void => stop.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  let last = after;
  let connected = false;
  try {
    while (!stop.signal.aborted) {
      let res;
      try {
        res = await client.stream(`/v1/events?after=${last}`, { headers: { 'last-event-id': String(last) }, signal: stop.signal });
      } catch (err) {
        if (stop.signal.aborted) break;
        // The daemon went away after we had followed it: that is the end of the log for now.
        if (connected && isPodvisorError(err) && err.code === 'ERR_CONTROL_UNREACHABLE') return CtlExit.Ok;
        throw err;
      }
      if (res.status !== 200) {
        const text = await res.body.setEncoding('utf8').toArray().then((parts) => parts.join(''));
        let parsed: unknown;
        try {
          parsed = JSON.parse(text);
        } catch {
          parsed = undefined;
        }
        return reportErrorAnswer(io, 'ctl', { status: res.status, headers: res.headers, text, json: parsed });
      }
      connected = true;
      const parser = new SseParser();
      try {
        for await (const chunk of res.body as AsyncIterable<Buffer>) {
          for (const m of parser.push(chunk)) {
            const e = JSON.parse(m.data) as StoredEvent;
            last = e.position;
            io.stdout.write(json ? `${m.data}\n` : `${formatEvent(e)}\n`);
          }
        }
      } catch (err) {
        if (!stop.signal.aborted) io.stderr.write(`podvisor ctl: the event stream broke (${(err as Error).message}); reconnecting after position ${last}\n`);
      }
    }
    return CtlExit.Ok;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

function readToken(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`--token-file: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'unreadable'})`);
  }
  const line = text.split('\n').map((l) => l.trim()).find((l) => l !== '' && !l.startsWith('#'));
  if (line === undefined) throw new Error(`--token-file: ${file} holds no token`);
  const m = /^[A-Za-z0-9._-]+:(read|admin):(.+)$/.exec(line);
  return m === null ? line : (m[2] ?? line);
}

function usage(io: CommandIo, message: string): number {
  io.stderr.write(`podvisor ctl: ${message}\n\n${CTL_HELP}`);
  return CtlExit.Usage;
}
