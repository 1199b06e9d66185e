import { execFileSync } from 'node:child_process';
import { mkdtemp, readdir, rm, stat, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ExecaProcessRunner, PodvisorError, SilentLogger } from '@podvisor/core';
import { ContentImageStore } from './content-image-store.js';
import { LocalFileImageSource } from './local-file-image-source.js';
import { qemuImgInfo } from './qemu-img.js';

const log = new SilentLogger();
const runner = new ExecaProcessRunner(log);
let dir: string;
let store: ContentImageStore;

function qemuImg(...args: string[]): void {
  execFileSync('qemu-img', args, { stdio: 'pipe' });
}
function sha256(file: string): string {
  return execFileSync('sha256sum', [file]).toString().split(' ')[0] ?? '';
}
async function expectCode(p: Promise<unknown>, code: string): Promise<PodvisorError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(PodvisorError);
  expect((err as PodvisorError).code).toBe(code);
  return err as PodvisorError;
}

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'pv-imgstore-'));
  store = new ContentImageStore({ imagesDir: path.join(dir, 'images'), maxVirtualSizeBytes: 1024 ** 3 }, [new LocalFileImageSource()], runner, log);
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('ContentImageStore with a local source', () => {
  it('imports a base by content, names it, and reuses it when the source is unchanged', async () => {
    const src = path.join(dir, 'base.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', src, '64M');
    const first = await store.ensureBase({ source: src, target: 'debian.qcow2' });
    expect(first).toMatchObject({ target: 'debian.qcow2', sha256: sha256(src), format: 'qcow2', reused: false });
    expect(first.path).toBe(path.join(dir, 'images', 'sha256', sha256(src)));
    expect((await stat(path.join(dir, 'images', 'debian.qcow2'))).ino).toBe((await stat(first.path)).ino);
    const second = await store.ensureBase({ source: src, target: 'debian.qcow2' });
    expect(second.reused).toBe(true);
    expect(second.sha256).toBe(first.sha256);
  });

  it('imports again when the source changes, keeping the old content for disks that use it', async () => {
    const src = path.join(dir, 'base.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', src, '64M');
    const v1 = await store.ensureBase({ source: src });
    qemuImg('resize', '-q', src, '128M');
    await utimes(src, new Date(), new Date(Date.now() + 5000));
    const v2 = await store.ensureBase({ source: src });
    expect(v2.reused).toBe(false);
    expect(v2.sha256).not.toBe(v1.sha256);
    expect((await readdir(path.join(dir, 'images', 'sha256'))).sort()).toEqual([v1.sha256, v2.sha256].sort());
  });

  it('refuses a wrong pin and keeps nothing of it', async () => {
    const src = path.join(dir, 'base.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', src, '64M');
    const err = await expectCode(store.ensureBase({ source: src, sha256: 'a'.repeat(64) }), 'ERR_IMAGE_CHECKSUM_MISMATCH');
    expect(err.message).toContain(sha256(src));
    expect(err.message).toContain('a'.repeat(64));
    expect(await readdir(path.join(dir, 'images', 'sha256'))).toEqual([]);
    expect(await readdir(path.join(dir, 'images', '.tmp'))).toEqual([]);
  });

  it('refuses a base that names a backing file', async () => {
    const src = path.join(dir, 'evil.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', '-b', '/etc/passwd', '-F', 'raw', src, '1M');
    const err = await expectCode(store.ensureBase({ source: src }), 'ERR_IMAGE_BACKING_REFUSED');
    expect(err.message).toContain('/etc/passwd');
    expect(await readdir(path.join(dir, 'images', 'sha256'))).toEqual([]);
  });

  it('refuses what is not a disk image qemu can read as qcow2 or raw', async () => {
    const src = path.join(dir, 'vmdk.img');
    qemuImg('create', '-q', '-f', 'vmdk', src, '1M');
    await expectCode(store.ensureBase({ source: src }), 'ERR_IMAGE_INVALID');
  });

  it('names a missing source', async () => {
    const err = await expectCode(store.ensureBase({ source: path.join(dir, 'nope.qcow2') }), 'ERR_IMAGE_SOURCE_NOT_FOUND');
    expect(err.message).toContain('nope.qcow2');
  });
});

describe('ContentImageStore overlays (pet disks)', () => {
  it('creates the pet disk once, backed by the content path, and never recreates it', async () => {
    const src = path.join(dir, 'base.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', src, '64M');
    const base = await store.ensureBase({ source: src });
    const disks = path.join(dir, 'disk');
    const created = await store.ensureOverlay({ base, diskDir: disks, name: 'vm1' });
    expect(created).toMatchObject({ path: path.join(disks, 'vm1.qcow2'), created: true, backingFile: base.path, backingFormat: 'qcow2' });
    expect((await qemuImgInfo(runner, created.path)).backingFilename).toBe(base.path);
    const ino = (await stat(created.path)).ino;
    const mtime = (await stat(created.path)).mtimeMs;
    const other = path.join(dir, 'other.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', other, '32M');
    const otherBase = await store.ensureBase({ source: other });
    const again = await store.ensureOverlay({ base: otherBase, diskDir: disks, name: 'vm1' });
    expect(again).toMatchObject({ created: false, backingFile: base.path });
    expect((await stat(created.path)).ino).toBe(ino);
    expect((await stat(created.path)).mtimeMs).toBe(mtime);
    expect((await readdir(disks)).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('without a base and without a disk, asks for IMG_SOURCE', async () => {
    await expectCode(store.ensureOverlay({ base: null, diskDir: path.join(dir, 'disk'), name: 'vm1' }), 'ERR_IMAGE_SOURCE_REQUIRED');
  });

  it('refuses names that would escape the volume', async () => {
    await expectCode(store.ensureOverlay({ base: null, diskDir: dir, name: '../etc' }), 'ERR_IMAGE_NAME_INVALID');
  });
});
