import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ExecaProcessRunner, SilentLogger } from '@podvisor/core';
import { qemuImgInfo } from './qemu-img.js';
import { readQcow2Header } from './qcow2-header.js';

const runner = new ExecaProcessRunner(new SilentLogger());
let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'pv-qcow2-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('readQcow2Header agrees with qemu-img info', () => {
  it.each([
    ['a qcow2 v3 overlay of a qcow2 base', ['-o', 'compat=1.1'], 'qcow2'],
    ['a qcow2 v2 (compat=0.10) overlay of a raw base', ['-o', 'compat=0.10'], 'raw'],
  ])('%s', async (_name, opts, baseFormat) => {
    const base = path.join(dir, `base.${baseFormat}`);
    execFileSync('qemu-img', ['create', '-q', '-f', baseFormat, base, '64M']);
    const overlay = path.join(dir, 'pet.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', ...opts, '-b', base, '-F', baseFormat, overlay, '96M']);
    const info = await qemuImgInfo(runner, overlay);
    expect(await readQcow2Header(overlay)).toMatchObject({
      virtualSize: info.virtualSize,
      backingFilename: info.backingFilename,
      backingFormat: info.backingFormat,
    });
  });

  it('a qcow2 without a backing file, after a resize', async () => {
    const file = path.join(dir, 'plain.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', file, '10M']);
    execFileSync('qemu-img', ['resize', '-q', file, '20M']);
    expect(await readQcow2Header(file)).toMatchObject({ virtualSize: 20 * 1024 * 1024, backingFilename: undefined, backingFormat: undefined });
  });

  it('is null for what it does not understand, so that qemu-img decides', async () => {
    const raw = path.join(dir, 'disk.raw');
    await writeFile(raw, Buffer.alloc(4096));
    expect(await readQcow2Header(raw)).toBeNull();
    const truncated = path.join(dir, 'cut.qcow2');
    const real = path.join(dir, 'real.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', real, '1M']);
    await writeFile(truncated, execFileSync('head', ['-c', '80', real]));
    expect(await readQcow2Header(truncated)).toBeNull();
  });
});
