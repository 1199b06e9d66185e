import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ExecaProcessRunner, PodvisorError, SilentLogger } from '@podvisor/core';
import { writeFile } from 'node:fs/promises';
import { HttpImageServer } from '../../../test/support/http-image-server.js';
import { ContentImageStore } from './content-image-store.js';
import { HttpImageSource } from './http-image-source.js';
import { collectImageGarbage } from './image-cache-gc.js';
import { LocalFileImageSource } from './local-file-image-source.js';
import { qemuImgInfo } from './qemu-img.js';

const log = new SilentLogger();
const runner = new ExecaProcessRunner(log);
let dir: string;
let store: ContentImageStore;

// A lease far past the refresh: stores in this process wait on each other's live locks, and a loaded
// machine that holds up a refresh must not make a live lock look stale (a second download).
function newStore(): ContentImageStore {
  return new ContentImageStore(
    { imagesDir: path.join(dir, 'images'), maxVirtualSizeBytes: 1024 ** 3, lock: { pollMs: 20, staleMs: 30_000, refreshMs: 200 } },
    [new LocalFileImageSource(), new HttpImageSource({ backoffInitialMs: 10 })],
    runner,
    log,
  );
}

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
  store = newStore();
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

describe('ContentImageStore with an HTTP source', () => {
  let server: HttpImageServer;
  beforeEach(async () => {
    server = await new HttpImageServer().start();
  });
  afterEach(async () => {
    await server.close();
  });

  it('a second pull sends one conditional request and transfers nothing; a pinned pull sends none', async () => {
    const src = path.join(dir, 'base.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', src, '64M');
    await server.serve('/base.qcow2', src);
    const first = await store.ensureBase({ source: server.url('/base.qcow2') });
    expect(first).toMatchObject({ sha256: sha256(src), reused: false, target: 'base.qcow2' });
    const second = await newStore().ensureBase({ source: server.url('/base.qcow2') });
    expect(second).toMatchObject({ sha256: first.sha256, reused: true });
    expect(server.requests.map((r) => r.status)).toEqual([200, 304]);
    await newStore().ensureBase({ source: server.url('/base.qcow2'), sha256: first.sha256 });
    expect(server.requests).toHaveLength(2);
  });

  it('concurrent pulls of one image by several stores make one download', async () => {
    const src = path.join(dir, 'base.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', src, '64M');
    await server.serve('/base.qcow2', src, { rate: 2 * 1024 * 1024 });
    const results = await Promise.all([newStore(), newStore(), newStore()].map((s) => s.ensureBase({ source: server.url('/base.qcow2') })));
    expect(new Set(results.map((r) => r.sha256))).toEqual(new Set([sha256(src)]));
    expect(server.fullDownloads('/base.qcow2')).toHaveLength(1);
    expect(server.requests).toHaveLength(1);
  });

  it('takes over a lock whose holder is dead', async () => {
    const src = path.join(dir, 'base.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', src, '64M');
    await server.serve('/base.qcow2', src);
    const dead = execFileSync('sh', ['-c', 'echo $$']).toString().trim();
    const ns = execFileSync('readlink', ['/proc/self/ns/pid']).toString().trim();
    await mkdir(path.join(dir, 'images', '.locks'), { recursive: true });
    const bootId = execFileSync('cat', ['/proc/sys/kernel/random/boot_id']).toString().trim();
    await writeFile(path.join(dir, 'images', '.locks', 'base.qcow2.lock'), JSON.stringify({ pid: Number(dead), pidNamespace: ns, startTime: 1, host: 'x', bootId, at: new Date().toISOString() }));
    const base = await store.ensureBase({ source: server.url('/base.qcow2') });
    expect(base.sha256).toBe(sha256(src));
    expect(await readdir(path.join(dir, 'images', '.locks'))).toEqual([]);
  });

  it('refuses a truncated qcow2 served without Content-Length, and caches nothing', async () => {
    const src = path.join(dir, 'base.qcow2');
    execFileSync('cp', [new URL('../../../test/guest/.cache/guest.qcow2', import.meta.url).pathname, src]);
    await server.serve('/base.qcow2', src);
    server.plan('/base.qcow2', { kind: 'truncate', atBytes: 4 * 1024 * 1024 });
    const err = await expectCode(store.ensureBase({ source: server.url('/base.qcow2') }), 'ERR_IMAGE_CORRUPT');
    expect(err.message).toContain(server.url('/base.qcow2'));
    expect(await readdir(path.join(dir, 'images', 'sha256'))).toEqual([]);
    expect(await readdir(path.join(dir, 'images', '.tmp'))).toEqual([]);
  });
});

describe('ContentImageStore growth, rebase and gc', () => {
  it('grows a pet disk to the requested size and never shrinks it', async () => {
    const src = path.join(dir, 'base.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', src, '64M');
    const base = await store.ensureBase({ source: src });
    const disks = path.join(dir, 'disk');
    await store.ensureOverlay({ base, diskDir: disks, name: 'vm1' });
    const grown = await store.ensureOverlay({ base, diskDir: disks, name: 'vm1', sizeBytes: 128 * 1024 ** 2 });
    expect(grown).toMatchObject({ virtualSize: 128 * 1024 ** 2, resizedFrom: 64 * 1024 ** 2 });
    const kept = await store.ensureOverlay({ base, diskDir: disks, name: 'vm1', sizeBytes: 32 * 1024 ** 2 });
    expect(kept.virtualSize).toBe(128 * 1024 ** 2);
    expect(kept.resizedFrom).toBeUndefined();
  });

  it('keeps the old base for an existing disk, then rebases it safely with its data intact', async () => {
    const src = path.join(dir, 'base.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', src, '64M');
    execFileSync('qemu-io', ['-c', 'write -P 0x11 0 1M', '-c', 'write -P 0x22 8M 1M', src]);
    const v1 = await store.ensureBase({ source: src });
    const disks = path.join(dir, 'disk');
    const pet = await store.ensureOverlay({ base: v1, diskDir: disks, name: 'vm1' });
    execFileSync('qemu-io', ['-c', 'write -P 0x33 0 64k', pet.path]);
    execFileSync('qemu-io', ['-c', 'write -P 0x44 8M 1M', '-c', 'write -P 0x55 16M 1M', src]);
    await utimes(src, new Date(), new Date(Date.now() + 5000));
    const v2 = await store.ensureBase({ source: src });
    expect(v2.sha256).not.toBe(v1.sha256);
    const again = await store.ensureOverlay({ base: v2, diskDir: disks, name: 'vm1' });
    expect(again).toMatchObject({ created: false, backingFile: v1.path, backingSha256: v1.sha256, behindBase: true });
    const r = await store.rebaseOverlay({ path: pet.path, base: v2 });
    expect(r).toMatchObject({ changed: true, fromBacking: v1.path, toBacking: v2.path });
    expect((await qemuImgInfo(runner, pet.path)).backingFilename).toBe(v2.path);
    // The guest sees what it saw before: its own write, then the old base's data where the bases differ.
    for (const [pattern, offset] of [['0x33', '0'], ['0x11', '64k'], ['0x22', '8M'], ['0x00', '16M']] as const) {
      execFileSync('qemu-io', ['-r', '-c', `read -P ${pattern} ${offset} 64k`, pet.path]);
    }
    expect((await readdir(disks)).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    expect((await store.ensureOverlay({ base: v2, diskDir: disks, name: 'vm1' })).behindBase).toBe(false);
  });

  it('a failed rebase leaves the disk as it was', async () => {
    const src = path.join(dir, 'base.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', src, '64M');
    const v1 = await store.ensureBase({ source: src });
    const pet = await store.ensureOverlay({ base: v1, diskDir: path.join(dir, 'disk'), name: 'vm1' });
    const before = await readFile(pet.path);
    const bogus = { ...v1, path: path.join(dir, 'nope.qcow2'), sha256: 'f'.repeat(64) };
    await expectCode(store.rebaseOverlay({ path: pet.path, base: bogus }), 'ERR_IMAGE_REBASE_FAILED');
    expect((await readFile(pet.path)).equals(before)).toBe(true);
    expect((await readdir(path.join(dir, 'disk'))).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('gc removes only bases that no overlay references and no name points at, and only with dryRun false', async () => {
    const a = path.join(dir, 'a.qcow2');
    const b = path.join(dir, 'b.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', a, '64M');
    qemuImg('create', '-q', '-f', 'qcow2', b, '32M');
    const va = await store.ensureBase({ source: a, target: 'x.qcow2' });
    await store.ensureOverlay({ base: va, diskDir: path.join(dir, 'disk'), name: 'vm1' });
    const vb = await store.ensureBase({ source: b, target: 'y.qcow2' });
    const vc = await store.ensureBase({ source: b, target: 'x.qcow2' });
    expect(vc.sha256).toBe(vb.sha256);
    await rm(path.join(dir, 'images', 'y.qcow2'));
    const layout = store.layout;
    await expect(collectImageGarbage(layout, runner, { diskDirs: [path.join(dir, 'typo')], dryRun: false, minAgeMs: 0 })).rejects.toMatchObject({ code: 'ERR_IMAGE_GC_DISK_DIR' });
    qemuImg('create', '-q', '-f', 'qcow2', path.join(dir, 'c.qcow2'), '16M');
    const vOld = await store.ensureBase({ source: path.join(dir, 'c.qcow2'), target: 'z.qcow2' });
    await rm(path.join(dir, 'images', 'z.qcow2'));
    const dry = await collectImageGarbage(layout, runner, { diskDirs: [path.join(dir, 'disk')], dryRun: true, minAgeMs: 0 });
    expect(dry.removed.map((r) => r.sha256)).toEqual([vOld.sha256]);
    expect(await readdir(path.join(dir, 'images', 'sha256'))).toHaveLength(3);
    const real = await collectImageGarbage(layout, runner, { diskDirs: [path.join(dir, 'disk')], dryRun: false, minAgeMs: 0 });
    expect(real.removed.map((r) => r.sha256)).toEqual([vOld.sha256]);
    expect((await readdir(path.join(dir, 'images', 'sha256'))).sort()).toEqual([va.sha256, vb.sha256].sort());
    expect(real.kept.find((k) => k.sha256 === va.sha256)?.reasons[0]).toMatch(/^backs /);
  });
});
