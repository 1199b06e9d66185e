/**
 * Issue 11, items 6 and 8: the shared cache checks what it uses (a swapped
 * base, a forged record, a pet disk backed outside the cache), refuses bodies
 * that are no disk (HTML) or an unnamed raw, bounds a body by the free space,
 * judges a lock by its owner's node, sweeps `.tmp`, resumes a partial
 * download left by another process, and gc fails closed.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, unlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ExecaProcessRunner, PodvisorError, SilentLogger } from '@podvisor/core';
import { HttpImageServer } from '../../../test/support/http-image-server.js';
import { ContentImageStore, type ImageStoreSettings } from './content-image-store.js';
import { HttpImageSource } from './http-image-source.js';
import { collectImageGarbage } from './image-cache-gc.js';
import { LocalFileImageSource } from './local-file-image-source.js';

const log = new SilentLogger();
const runner = new ExecaProcessRunner(log);
let dir: string;
let images: string;
let server: HttpImageServer;

// A lease far past the refresh: stores in this process wait on each other's live locks, and a loaded
// machine that holds up a refresh must not make a live lock look stale (a second download).
function newStore(extra: Partial<ImageStoreSettings> = {}): ContentImageStore {
  return new ContentImageStore(
    { imagesDir: images, maxVirtualSizeBytes: 1024 ** 3, lock: { pollMs: 20, staleMs: 30_000, refreshMs: 200 }, ...extra },
    [new LocalFileImageSource(), new HttpImageSource({ backoffInitialMs: 10, backoffMaxMs: 50, maxAttempts: 2 })],
    runner,
    log,
  );
}

function qemuImg(...args: string[]): void {
  execFileSync('qemu-img', args, { stdio: 'pipe' });
}

async function failure(p: Promise<unknown>, code: string): Promise<PodvisorError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(PodvisorError);
  expect((err as PodvisorError).code, (err as Error).message).toBe(code);
  return err as PodvisorError;
}

/** Replaces a cached content file in place, as another pod on the volume could. */
async function swap(contentPath: string, withFile: string): Promise<void> {
  await chmod(contentPath, 0o644);
  await writeFile(contentPath, await readFile(withFile));
}

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'pv-shared-cache-'));
  images = path.join(dir, 'images');
  server = await new HttpImageServer().start();
});
afterEach(async () => {
  await server.close();
  await rm(dir, { recursive: true, force: true });
});

describe('a base is checked at every use', () => {
  it('a base replaced by a qcow2 backed by /etc/hostname is refused at start, and a pinned pull fetches it again', async () => {
    const src = path.join(dir, 'base.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', src, '16M');
    await server.serve('/base.qcow2', src);
    const store = newStore();
    const base = await store.ensureBase({ source: server.url('/base.qcow2') });
    const pet = await store.ensureOverlay({ base, diskDir: path.join(dir, 'disk'), name: 'vm1' });
    const evil = path.join(dir, 'evil.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', '-b', '/etc/hostname', '-F', 'raw', evil, '16M');
    await swap(base.path, evil);

    // The next start of the pod: the pet disk's base is checked.
    const err = await failure(newStore().ensureOverlay({ base: null, diskDir: path.join(dir, 'disk'), name: 'vm1' }), 'ERR_IMAGE_BASE_MISMATCH');
    expect(err.message).toContain(base.path);
    await failure(newStore().resolveBase('base.qcow2'), 'ERR_IMAGE_BASE_MISMATCH');
    // A pinned pull does not reuse it: it downloads the content again, and it verifies.
    const again = await newStore().ensureBase({ source: server.url('/base.qcow2'), sha256: base.sha256 });
    expect(again).toMatchObject({ sha256: base.sha256, reused: false, format: 'qcow2' });
    expect(server.fullDownloads('/base.qcow2')).toHaveLength(2);
    expect(execFileSync('sha256sum', [base.path]).toString()).toContain(base.sha256);
    expect((await newStore().ensureOverlay({ base: again, diskDir: path.join(dir, 'disk'), name: 'vm1' })).path).toBe(pet.path);
  });

  it('a forged identity record does not help: the header is read at every use', async () => {
    const src = path.join(dir, 'base.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', src, '16M');
    const store = newStore();
    const base = await store.ensureBase({ source: src, target: 'base.qcow2' });
    await store.ensureOverlay({ base, diskDir: path.join(dir, 'disk'), name: 'vm1' });
    const evil = path.join(dir, 'evil.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', '-b', '/etc/hostname', '-F', 'raw', evil, '16M');
    await swap(base.path, evil);
    // The swapper also rewrites the record with the new file's identity.
    const st = await stat(base.path);
    const record = path.join(images, '.meta', 'verified', `${base.sha256}.json`);
    const forged = { ...JSON.parse(await readFile(record, 'utf8')), size: st.size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs, ino: st.ino, dev: st.dev };
    await writeFile(record, JSON.stringify(forged));
    const err = await failure(newStore().ensureOverlay({ base: null, diskDir: path.join(dir, 'disk'), name: 'vm1' }), 'ERR_IMAGE_BACKING_REFUSED');
    expect(err.message).toContain('/etc/hostname');
    // And a record that names another hash than its file is ignored: the file is hashed.
    await writeFile(record, JSON.stringify({ ...forged, sha256: 'f'.repeat(64) }));
    await failure(newStore().resolveBase(base.sha256), 'ERR_IMAGE_BASE_MISMATCH');
  });

  it('the format is what the header says, not what .meta says', async () => {
    const src = path.join(dir, 'base.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', src, '16M');
    const store = newStore();
    const base = await store.ensureBase({ source: src, target: 'base.qcow2' });
    const metaFile = path.join(images, '.meta', 'base.qcow2.json');
    await writeFile(metaFile, JSON.stringify({ ...JSON.parse(await readFile(metaFile, 'utf8')), format: 'raw' }));
    const again = await newStore().ensureBase({ source: src, target: 'base.qcow2', sha256: base.sha256 });
    expect(again.format).toBe('qcow2');
  });

  it('a pet disk backed by a file outside the cache, or naming no backing format, is refused', async () => {
    const disks = path.join(dir, 'disk');
    await mkdir(disks);
    const outside = path.join(dir, 'outside.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', outside, '16M');
    qemuImg('create', '-q', '-f', 'qcow2', '-b', outside, '-F', 'qcow2', path.join(disks, 'vm1.qcow2'));
    const err = await failure(newStore().ensureOverlay({ base: null, diskDir: disks, name: 'vm1' }), 'ERR_IMAGE_BACKING_OUTSIDE_CACHE');
    expect(err.message).toContain(outside);
    qemuImg('create', '-q', '-f', 'qcow2', '-b', '/etc/hostname', '-F', 'raw', path.join(disks, 'vm2.qcow2'), '1M');
    await failure(newStore().ensureOverlay({ base: null, diskDir: disks, name: 'vm2' }), 'ERR_IMAGE_BACKING_OUTSIDE_CACHE');
    // A link into the cache does not help either: the real path counts.
    const store = newStore();
    const base = await store.ensureBase({ source: outside, target: 'base.qcow2' });
    qemuImg('create', '-q', '-f', 'qcow2', '-b', base.path, '-F', 'raw', path.join(disks, 'vm3.qcow2'));
    const wrongFormat = await failure(newStore().ensureOverlay({ base: null, diskDir: disks, name: 'vm3' }), 'ERR_IMAGE_BACKING_FORMAT');
    expect(wrongFormat.message).toContain('qcow2');
  });

  it('a qcow2 with an external data file is refused', async () => {
    const src = path.join(dir, 'data.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', '-o', `data_file=${path.join(dir, 'data.raw')}`, src, '1M');
    const err = await failure(newStore().ensureBase({ source: src }), 'ERR_IMAGE_BACKING_REFUSED');
    expect(err.message).toContain('data file');
    expect(err.message).toContain('data.raw');
  });
});

describe('raw must be named; an HTML page is no image', () => {
  it("a captive portal's HTML answered with 200 is refused, naming the URL, the content type and what the bytes are", async () => {
    await server.serve('/guest.qcow2', Buffer.from('<!DOCTYPE html>\n<html><head><title>Sign in to the Wi-Fi</title></head><body>…</body></html>\n'), {
      contentType: 'text/html; charset=utf-8',
    });
    const url = server.url('/guest.qcow2', { user: 'pod', password: 'hunter2' });
    const err = await failure(newStore({ allowRaw: true }).ensureBase({ source: url }), 'ERR_IMAGE_INVALID');
    expect(err.message).toContain(server.url('/guest.qcow2').replace('http://', 'http://***:***@'));
    expect(err.message).not.toContain('hunter2');
    expect(err.message).toContain('text/html');
    expect(err.message).toContain('HTML');
    expect(await readdir(path.join(images, 'sha256'))).toEqual([]);
    expect(await readdir(path.join(images, '.tmp'))).toEqual([]);
  });

  it('a body that is no qcow2 is a raw base only when the operator names raw', async () => {
    const disk = Buffer.concat([Buffer.alloc(446), randomBytes(64), Buffer.from([0x55, 0xaa]), randomBytes(1024 * 1024)]);
    await server.serve('/disk.img', disk);
    const err = await failure(newStore().ensureBase({ source: server.url('/disk.img') }), 'ERR_IMAGE_RAW_NOT_NAMED');
    expect(err.message).toContain('IMG_FORMAT');
    expect(await readdir(path.join(images, 'sha256'))).toEqual([]);
    const raw = await newStore({ allowRaw: true }).ensureBase({ source: server.url('/disk.img') });
    expect(raw).toMatchObject({ format: 'raw', bytes: disk.length, reused: false });
    // And a pod that did not name raw does not use it either.
    await failure(newStore().resolveBase('disk.img'), 'ERR_IMAGE_RAW_NOT_NAMED');
  });
});

describe('a body is bounded by the free space', () => {
  let mnt: string;
  beforeEach(async () => {
    mnt = path.join(dir, 'small');
    await mkdir(mnt);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', `pv-int-nospace-${randomBytes(3).toString('hex')}`, mnt]);
  });
  afterEach(() => {
    execFileSync('umount', [mnt]);
  });

  it.each([
    ['with a Content-Length', false, /needs \d+ more bytes/],
    ['without a Content-Length', true, /cut off after \d+ bytes/],
  ])('%s, a body larger than the free space is refused and its partial removed', async (_name, chunked, message) => {
    // 64 MiB: more than the 8 MiB volume plus what loopback's socket buffers can hold
    // (tcp_wmem 4 MiB + tcp_rmem 32 MiB here), so a sender that was not cut off shows.
    const size = 64 * 1024 * 1024;
    await server.serve('/big.img', randomBytes(size), { chunked });
    const store = newStore({ imagesDir: mnt, allowRaw: true });
    const err = await failure(store.ensureBase({ source: server.url('/big.img') }), 'ERR_IMAGE_NO_SPACE');
    expect(err.message).toMatch(message);
    expect(err.message).toContain(server.url('/big.img'));
    expect(await readdir(path.join(mnt, '.tmp'))).toEqual([]);
    expect(await readdir(path.join(mnt, 'sha256'))).toEqual([]);
    // The volume kept its margin: it never filled up.
    expect(server.requests.at(-1)?.bytesSent).toBeLessThan(size);
  });

  it('a local file larger than the free space is refused before it is copied', async () => {
    const big = path.join(dir, 'big.img');
    await writeFile(big, randomBytes(12 * 1024 * 1024));
    const err = await failure(newStore({ imagesDir: mnt, allowRaw: true }).ensureBase({ source: big }), 'ERR_IMAGE_NO_SPACE');
    expect(err.message).toContain(big);
    expect(err.message).toMatch(/of which \d+ are kept free/);
    expect(await readdir(path.join(mnt, '.tmp'))).toEqual([]);
  });
});

describe('the cache lock and .tmp', () => {
  const bootId = execFileSync('cat', ['/proc/sys/kernel/random/boot_id']).toString().trim();
  const pidNs = execFileSync('readlink', ['/proc/self/ns/pid']).toString().trim();
  const deadPid = (): number => Number(execFileSync('sh', ['-c', 'echo $$']).toString().trim());

  async function lockFile(owner: Record<string, unknown>): Promise<string> {
    const file = path.join(images, '.locks', 'base.qcow2.lock');
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, JSON.stringify({ pid: deadPid(), pidNamespace: pidNs, startTime: 1, at: new Date().toISOString(), ...owner }));
    return file;
  }

  it('a lock held on another node is not taken over because its pid is not running here: the wait is bounded and names the owner', async () => {
    const src = path.join(dir, 'base.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', src, '16M');
    await server.serve('/base.qcow2', src);
    const file = await lockFile({ host: 'node-b-pod-7', bootId: 'another-node-boot-id' });
    const store = newStore({ lock: { pollMs: 20, staleMs: 60_000, refreshMs: 200, maxWaitMs: 600 } });
    const err = await failure(store.ensureBase({ source: server.url('/base.qcow2') }), 'ERR_IMAGE_LOCK_TIMEOUT');
    expect(err.message).toContain('node-b-pod-7');
    expect(err.message).toContain(file);
    expect(JSON.parse(await readFile(file, 'utf8'))).toMatchObject({ host: 'node-b-pod-7' });
    expect(server.requests).toEqual([]);
  });

  it('a lock of a dead pid on this node is taken over at once; a foreign lock once its lease ran out', async () => {
    const src = path.join(dir, 'base.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', src, '16M');
    await server.serve('/base.qcow2', src);
    await lockFile({ host: 'here', bootId });
    const quick = newStore({ lock: { pollMs: 20, staleMs: 60_000, refreshMs: 200, maxWaitMs: 10_000 } });
    expect((await quick.ensureBase({ source: server.url('/base.qcow2') })).reused).toBe(false);
    expect(await readdir(path.join(images, '.locks'))).toEqual([]);
    await lockFile({ host: 'node-b', bootId: 'another-node-boot-id' });
    const leased = newStore({ lock: { pollMs: 20, staleMs: 300, refreshMs: 100, maxWaitMs: 10_000 } });
    expect((await leased.ensureBase({ source: server.url('/base.qcow2') })).sha256).toBeTruthy();
    expect(await readdir(path.join(images, '.locks'))).toEqual([]);
  });

  it('.tmp leftovers older than the bound and owned by no live pull are swept, at pull time and by gc', async () => {
    const store = newStore({ tmpMaxAgeMs: 3600_000 });
    await store.layout.prepare();
    const tmp = path.join(images, '.tmp');
    const old = new Date(Date.now() - 2 * 3600_000);
    const leftovers = ['gone.qcow2.4242.0badf00d', 'gone.qcow2.link.0badf00d', 'other.qcow2.partial', 'other.qcow2.partial.json'];
    for (const f of [...leftovers, 'young.qcow2.4242.0badf00d', 'live.qcow2.partial']) await writeFile(path.join(tmp, f), 'x');
    for (const f of [...leftovers, 'live.qcow2.partial']) await utimes(path.join(tmp, f), old, old);
    // A live pull of live.qcow2 (this process) owns its partial.
    await writeFile(path.join(images, '.locks', 'live.qcow2.lock'), JSON.stringify({ pid: process.pid, pidNamespace: pidNs, startTime: null, host: 'here', bootId, at: new Date().toISOString() }));
    const src = path.join(dir, 'base.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', src, '16M');
    await store.ensureBase({ source: src });
    expect((await readdir(tmp)).sort()).toEqual(['live.qcow2.partial', 'young.qcow2.4242.0badf00d']);
    const dry = await collectImageGarbage(store.layout, runner, { diskDirs: [], dryRun: true, minAgeMs: 0 });
    expect(dry.swept.map((s) => path.basename(s.path))).toEqual(['young.qcow2.4242.0badf00d']);
    await unlink(path.join(images, '.locks', 'live.qcow2.lock'));
    const real = await collectImageGarbage(store.layout, runner, { diskDirs: [], dryRun: false, minAgeMs: 0 });
    expect(real.swept.map((s) => path.basename(s.path)).sort()).toEqual(['live.qcow2.partial', 'young.qcow2.4242.0badf00d']);
    expect(await readdir(tmp)).toEqual([]);
  });

  it('a pull interrupted in one process is resumed by the next with Range and If-Range, and the prefix is hashed again', async () => {
    const guest = new URL('../../../test/guest/.cache/guest.qcow2', import.meta.url).pathname;
    await server.serve('/guest.qcow2', guest, { rate: 4 * 1024 * 1024 });
    const size = (await stat(guest)).size;
    const controller = new AbortController();
    const first = newStore();
    const interrupted = first.ensureBase({
      source: server.url('/guest.qcow2'),
      signal: controller.signal,
      onProgress: (p) => {
        if (p.bytes > size / 3) controller.abort(new Error('pod stopped'));
      },
    });
    await expect(interrupted).rejects.toThrow('pod stopped');
    const partial = path.join(images, '.tmp', 'guest.qcow2.partial');
    const kept = (await stat(partial)).size;
    expect(kept).toBeGreaterThan(0);
    expect(JSON.parse(await readFile(`${partial}.json`, 'utf8'))).toMatchObject({ source: server.url('/guest.qcow2'), total: size });
    const second = await newStore().ensureBase({ source: server.url('/guest.qcow2') });
    expect(second.reused).toBe(false);
    expect(server.requests.map((r) => r.status)).toEqual([200, 206]);
    expect(server.requests[1]).toMatchObject({ range: `bytes=${kept}-`, bytesSent: size - kept });
    expect(server.requests[1]?.ifRange).toMatch(/^"/);
    expect(execFileSync('sha256sum', [second.path]).toString()).toContain(second.sha256);
    expect(execFileSync('sha256sum', [guest]).toString()).toContain(second.sha256);
    expect(await readdir(path.join(images, '.tmp'))).toEqual([]);
  });
});

describe('gc fails closed', () => {
  it('refuses to remove anything when a pet disk cannot be read, naming it; follows a symlinked pet disk', async () => {
    const a = path.join(dir, 'a.qcow2');
    const b = path.join(dir, 'b.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', a, '16M');
    qemuImg('create', '-q', '-f', 'qcow2', b, '8M');
    const store = newStore();
    const va = await store.ensureBase({ source: a, target: 'a.qcow2' });
    const vb = await store.ensureBase({ source: b, target: 'b.qcow2' });
    await rm(path.join(images, 'a.qcow2'));
    await rm(path.join(images, 'b.qcow2'));
    const elsewhere = path.join(dir, 'elsewhere');
    await store.ensureOverlay({ base: vb, diskDir: elsewhere, name: 'vm2' });
    const disks = path.join(dir, 'disk');
    await store.ensureOverlay({ base: va, diskDir: disks, name: 'vm1' });
    await symlink(path.join(elsewhere, 'vm2.qcow2'), path.join(disks, 'vm2.qcow2'));
    // A pet disk qemu-img cannot read: a qcow2 whose header is cut short.
    const broken = path.join(disks, 'vm3.qcow2');
    await writeFile(broken, (await readFile(path.join(disks, 'vm1.qcow2'))).subarray(0, 80));
    const err = await failure(collectImageGarbage(store.layout, runner, { diskDirs: [disks], dryRun: false, minAgeMs: 0 }), 'ERR_IMAGE_GC_DISK_UNREADABLE');
    expect(err.message).toContain(broken);
    expect((await readdir(path.join(images, 'sha256'))).sort()).toEqual([va.sha256, vb.sha256].sort());
    // A symlink that leads nowhere is unreadable too.
    await rm(broken);
    await symlink(path.join(dir, 'nowhere.qcow2'), broken);
    await failure(collectImageGarbage(store.layout, runner, { diskDirs: [disks], dryRun: false, minAgeMs: 0 }), 'ERR_IMAGE_GC_DISK_UNREADABLE');
    await rm(broken);
    const report = await collectImageGarbage(store.layout, runner, { diskDirs: [disks], dryRun: false, minAgeMs: 0 });
    expect(report.removed).toEqual([]);
    expect(report.kept.find((k) => k.sha256 === vb.sha256)?.reasons[0]).toContain(path.join(elsewhere, 'vm2.qcow2'));
  });
});
