import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import type { VmHandle } from '@podvisor/core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConsoleRelay } from './console-relay.js';

describe('ConsoleRelay: the file copy cannot take PID 1 down', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'podvisor-relay-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const vm = (serial: PassThrough): VmHandle => ({ serial, serialInput: null }) as unknown as VmHandle;

  it('a console.log that cannot be written (here a directory: EISDIR) pauses the copy; stdout and listeners keep every byte', async () => {
    // Before: the write stream's asynchronous error had no listener and killed the process.
    await mkdir(path.join(dir, 'console.log'));
    const out = new PassThrough();
    let stdout = '';
    out.on('data', (d: Buffer) => (stdout += d.toString()));
    const errors: Error[] = [];
    const failed = new Promise<void>((resolve) => {
      const relay = new ConsoleRelay(dir, out, 1024 * 1024, (err) => {
        errors.push(err);
        resolve();
      });
      const serial = new PassThrough();
      relay.attach(vm(serial));
      serial.write('first line\n');
    });
    await failed;
    expect(errors[0]).toMatchObject({ code: 'EISDIR' });
    expect(stdout).toBe('first line\n');
  });

  it('a rotation that fails (console.log.1 is a non-empty directory) is caught; the relay goes on', async () => {
    await mkdir(path.join(dir, 'console.log.1'));
    await writeFile(path.join(dir, 'console.log.1', 'keep'), 'x');
    const out = new PassThrough();
    let stdout = '';
    out.on('data', (d: Buffer) => (stdout += d.toString()));
    const errors: Error[] = [];
    const relay = new ConsoleRelay(dir, out, 16, (err) => errors.push(err));
    const serial = new PassThrough();
    relay.attach(vm(serial));
    const seen: string[] = [];
    relay.subscribe((c) => seen.push(c.toString()));
    serial.write('0123456789\n');
    await new Promise((r) => setImmediate(r));
    serial.write('abcdefghij\n');
    await new Promise((r) => setImmediate(r));
    expect(errors.length).toBe(1);
    expect(stdout).toBe('0123456789\nabcdefghij\n');
    expect(seen).toEqual(['0123456789\n', 'abcdefghij\n']);
    relay.close();
    expect(await readFile(path.join(dir, 'console.log'), 'utf8')).toBe('0123456789\n');
  });
});
