/**
 * `podvisor ctl` and `podvisor console` at their edges: usage errors, an
 * endpoint that is not there (a socket path with nothing behind it), and the
 * token file forms, each with its documented exit code.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { consoleCommand } from './console-command.js';
import { CtlExit, controlClientFromFlags, ctlCommand, exitCodeOf } from './ctl-command.js';

let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'pv-ctl-cli-'));
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function run(fn: typeof ctlCommand, argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const sink = (append: (s: string) => void): Writable => new Writable({ write: (c: Buffer, _e, done) => (append(c.toString()), done()) });
  const code = await fn(argv, { stdout: sink((s) => (stdout += s)), stderr: sink((s) => (stderr += s)), env: {} });
  return { code, stdout, stderr };
}

describe('podvisor ctl', () => {
  it('prints help with exit 0, and usage errors with exit 2', async () => {
    expect((await run(ctlCommand, ['--help'])).stdout).toMatch(/Exit codes: 0 ok, 1 internal error, 2 usage/);
    for (const argv of [[], ['explode'], ['status', 'extra'], ['qmp'], ['qmp', '{not json'], ['--bogus'], ['status', '--url', 'ftp://x'], ['status', '--url', 'http://x:1', '--socket', '/s']]) {
      const r = await run(ctlCommand, ['--state-dir', dir, ...argv]);
      expect([argv, r.code]).toEqual([argv, CtlExit.Usage]);
      expect(r.stderr).toMatch(/^podvisor ctl: /);
    }
  });

  it('says where it looked and exits 3 when nothing answers', async () => {
    const r = await run(ctlCommand, ['status', '--state-dir', dir]);
    expect(r.code).toBe(CtlExit.Unreachable);
    expect(r.stderr).toContain(path.join(dir, 'control.sock'));
    expect(r.stderr).toMatch(/hint: is podvisor running/);
    expect((await run(consoleCommand, ['--state-dir', dir])).code).toBe(CtlExit.Unreachable);
  });

  it('reads a token file holding the bare token or a token-file line', async () => {
    await writeFile(path.join(dir, 'bare'), '# mine\nabcdefghijklmnopqrstuvwxyz\n');
    await writeFile(path.join(dir, 'line'), 'ops:admin:abcdefghijklmnopqrstuvwxyz\n');
    const seen: Array<string | undefined> = [];
    const server = createServer((req, res) => {
      seen.push(req.headers.authorization);
      res.end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      for (const f of ['bare', 'line']) {
        const c = controlClientFromFlags({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, 'token-file': path.join(dir, f) }, {});
        await c.request('GET', '/v1/vm');
        await c.close();
      }
    } finally {
      server.close();
    }
    expect(seen).toEqual(['Bearer abcdefghijklmnopqrstuvwxyz', 'Bearer abcdefghijklmnopqrstuvwxyz']);
    expect(() => controlClientFromFlags({ 'token-file': path.join(dir, 'missing') }, {})).toThrow(/cannot read/);
  });

  it('maps HTTP statuses to the documented exit codes', () => {
    expect([200, 202, 400, 401, 403, 404, 409, 422, 500, 503].map(exitCodeOf)).toEqual([0, 0, 6, 5, 5, 6, 4, 6, 6, 6]);
  });
});
