import { mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SilentLogger, type ConfigProblem } from '@podvisor/core';
import { VNC_PASSWORD_FILE_NAME, configuredVncPassword, ensureVncPassword } from './vnc-password.js';

let dir: string;
const log = new SilentLogger();
const settings = (o: { noVnc?: boolean; vncPassword?: string; vncPasswordFile?: string }) => ({ noVnc: false, ...o, origins: { vncPasswordFile: 'env PODVISOR_VNC_PASSWORD_FILE' } });

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'pv-vncpw-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('the VNC password', () => {
  it('is generated once when none is configured: 8 characters, kept 0600, the same at the next start', async () => {
    const problems: ConfigProblem[] = [];
    expect(configuredVncPassword(settings({}), problems)).toBe('generate');
    const first = ensureVncPassword('generate', dir, log);
    expect(first).toMatch(/^[A-Za-z0-9]{8}$/);
    const file = path.join(dir, VNC_PASSWORD_FILE_NAME);
    expect([(await stat(file)).mode & 0o777, (await readFile(file, 'utf8')).trim()]).toEqual([0o600, first]);
    expect(ensureVncPassword('generate', dir, log)).toBe(first);
    expect(problems).toEqual([]);
  });

  it('the operator\'s password or file wins; NO_VNC means none; a bad file is a problem naming it', async () => {
    const problems: ConfigProblem[] = [];
    expect(configuredVncPassword(settings({ vncPassword: 'op-secret' }), problems)).toBe('op-secret');
    await writeFile(path.join(dir, 'pw'), 'from-file\n');
    expect(configuredVncPassword(settings({ vncPasswordFile: path.join(dir, 'pw') }), problems)).toBe('from-file');
    expect(configuredVncPassword(settings({ noVnc: true }), problems)).toBeUndefined();
    expect(ensureVncPassword('op-secret', dir, log)).toBe('op-secret');
    await writeFile(path.join(dir, 'empty'), '\n');
    configuredVncPassword(settings({ vncPasswordFile: path.join(dir, 'empty') }), problems);
    configuredVncPassword(settings({ vncPasswordFile: path.join(dir, 'missing') }), problems);
    expect(problems.map((p) => [p.path, p.value, p.expected])).toEqual([
      ['env PODVISOR_VNC_PASSWORD_FILE', path.join(dir, 'empty'), 'a file holding a non-empty VNC password'],
      ['env PODVISOR_VNC_PASSWORD_FILE', path.join(dir, 'missing'), 'a readable file holding the VNC password (ENOENT)'],
    ]);
  });

  it('never trusts a file others can read, and never writes through a symlink planted in its place', async () => {
    const file = path.join(dir, VNC_PASSWORD_FILE_NAME);
    await writeFile(file, 'Readable1\n', { mode: 0o644 });
    const replaced = ensureVncPassword('generate', dir, log);
    expect(replaced).not.toBe('Readable1');
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const target = path.join(dir, 'victim');
    await writeFile(target, 'untouched\n');
    await rm(file);
    await symlink(target, file);
    const fresh = ensureVncPassword('generate', dir, log);
    expect(await readFile(target, 'utf8')).toBe('untouched\n');
    expect((await readFile(file, 'utf8')).trim()).toBe(fresh);
    expect((await stat(file)).isFile()).toBe(true);
  });
});
