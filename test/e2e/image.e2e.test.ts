/**
 * Issue 5's acceptance, end to end: the real `podvisor` binary pulls base
 * images from a real HTTP server on 127.0.0.1 that the tests control and
 * whose request log is the proof (what was transferred, with which Range).
 * Only the criteria that need a guest boot it (1 and 6); the others use
 * `podvisor image pull`, the same store and sources as `podvisor run`.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, statSync, watch } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { chmod, copyFile, mkdir, readdir, readFile, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { HttpImageServer } from '../support/http-image-server.js';
import { GUEST, PodvisorProcess, keepArtifacts, makeVmDirs, readEvents, requireBuilt, types, type VmDirs, vmEnv } from './support/podvisor-process.js';

let dirs: VmDirs;
let server: HttpImageServer;
let running: PodvisorProcess[] = [];
let mounts: string[] = [];
let guestSha: string;
let guest: string;

function sha256(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex');
}

function imageVmEnv(name: string, extra: Record<string, string> = {}): Record<string, string> {
  return vmEnv(dirs, name, { IMG_SOURCE: server.url('/guest.qcow2'), ...extra });
}

function start(args: string[], env: Record<string, string>): PodvisorProcess {
  const p = new PodvisorProcess(args, env);
  running.push(p);
  return p;
}

/** Runs `podvisor image pull` to its end. */
async function pull(url: string, flags: string[] = [], imagesDir = dirs.imagesDir): Promise<{ code: number | null; out: string; err: string; json: Record<string, unknown> | null }> {
  const p = start(['image', 'pull', url, '--json', '--images-dir', imagesDir, ...flags], {});
  const { code } = await p.exited;
  let json: Record<string, unknown> | null = null;
  try {
    json = JSON.parse(p.stdout) as Record<string, unknown>;
  } catch {
    json = null;
  }
  return { code, out: p.stdout, err: p.stderr, json };
}

/** Resolves once `check` holds, looked at whenever something in `dir` changes. */
function whenDirSatisfies(dir: string, check: () => boolean): Promise<void> {
  return new Promise((resolve) => {
    const w = watch(dir, () => {
      if (!check()) return;
      w.close();
      resolve();
    });
    if (check()) {
      w.close();
      resolve();
    }
  });
}

/** Nothing half-done in the cache: no content, no partial download, no name. */
async function expectCacheEmpty(imagesDir = dirs.imagesDir): Promise<void> {
  expect(await readdir(path.join(imagesDir, 'sha256'))).toEqual([]);
  expect(await readdir(path.join(imagesDir, '.tmp'))).toEqual([]);
  expect((await readdir(imagesDir)).filter((f) => !f.startsWith('.') && f !== 'sha256')).toEqual([]);
}

beforeAll(() => requireBuilt());

beforeEach(async (ctx) => {
  dirs = await makeVmDirs(`pv-e2e-img-${randomBytes(3).toString('hex')}`);
  server = await new HttpImageServer().start();
  // A private copy: another build may replace test/guest/.cache/guest.qcow2 while this file runs.
  guest = path.join(dirs.root, 'guest.qcow2');
  await copyFile(GUEST, guest);
  guestSha = sha256(await readFile(guest));
  await server.serve('/guest.qcow2', guest);
  running = [];
  mounts = [];
  ctx.onTestFailed(async () => {
    const dest = await keepArtifacts(`image-${ctx.task.name}`, running.at(-1) ?? null, dirs);
    await import('node:fs/promises').then((fs) => fs.writeFile(path.join(dest, 'http-requests.json'), JSON.stringify(server.requests, null, 2)));
    process.stderr.write(`artifacts kept in ${dest}\n`);
  });
});

afterEach(async () => {
  for (const p of running) await p.killed();
  await server.close();
  for (const m of mounts) execFileSync('umount', ['-l', m]);
  await dirs.cleanup();
});

describe('podvisor run with an HTTP image source', () => {
  it('1. a pull with the right IMG_SHA256 boots the guest; a second pod on the same cache sends no request', async () => {
    const first = start(['run'], imageVmEnv('pv-img-a', { IMG_SHA256: guestSha }));
    await first.waitForStdout(/PODVISOR-GUEST-READY boot-count=1/);
    const imported = readEvents(dirs.stateDir).find((e) => e.type === 'ImageImported');
    expect(imported?.data).toMatchObject({ source: server.url('/guest.qcow2'), sha256: guestSha, reused: false, path: path.join(dirs.imagesDir, 'sha256', guestSha) });
    expect(server.requests.map((r) => [r.status, r.bytesSent])).toEqual([[200, (await readFile(guest)).length]]);
    first.signal('SIGTERM');
    expect((await first.exited).code).toBe(0);

    const otherDisk = path.join(dirs.root, 'disk-b');
    const second = start(['run'], imageVmEnv('pv-img-b', { IMG_SHA256: guestSha, PODVISOR_DISK_DIR: otherDisk }));
    await second.waitForStdout(/PODVISOR-GUEST-READY boot-count=1/);
    const log = readEvents(path.join(otherDisk, '.podvisor'));
    expect(log.find((e) => e.type === 'ImageImported')?.data).toMatchObject({ sha256: guestSha, reused: true });
    expect(server.requests).toHaveLength(1);
    second.signal('SIGTERM');
    expect((await second.exited).code).toBe(0);
  });

  it('2. a wrong IMG_SHA256 fails with both hashes, caches nothing and starts no VM', async () => {
    const wrong = 'a'.repeat(64);
    const p = start(['run'], imageVmEnv('pv-img-c', { IMG_SHA256: wrong }));
    expect((await p.exited).code).toBe(3);
    const log = readEvents(dirs.stateDir);
    const failed = log.find((e) => e.type === 'VmFailed')?.data as { code: string; message: string };
    expect(failed.code).toBe('ERR_IMAGE_CHECKSUM_MISMATCH');
    expect(failed.message).toContain(wrong);
    expect(failed.message).toContain(guestSha);
    expect(failed.message).toContain(server.url('/guest.qcow2'));
    expect(types(log)).not.toContain('VmStarting');
    expect(types(log)).not.toContain('DiskCreated');
    await expectCacheEmpty();
  });

  it('6. a new base at the URL: the pet keeps its base and data, an event says so, and rebase moves it with its data', async () => {
    const env = imageVmEnv('pv-img-d');
    const run = async (bootCount: number): Promise<void> => {
      const p = start(['run'], env);
      await p.waitForStdout(new RegExp(`PODVISOR-GUEST-READY boot-count=${bootCount}`));
      p.signal('SIGTERM');
      expect((await p.exited).code).toBe(0);
    };
    await run(1);
    const v1 = path.join(dirs.imagesDir, 'sha256', guestSha);
    // v2: the same guest with other bytes in the free end of its boot partition.
    const v2File = path.join(dirs.root, 'guest-v2.qcow2');
    await copyFile(guest, v2File);
    execFileSync('qemu-io', ['-c', `write -P 0x42 ${64 * 1024 * 1024 - 65536} 64k`, v2File]);
    const v2Sha = sha256(await readFile(v2File));
    await server.serve('/guest.qcow2', v2File);

    const before = readEvents(dirs.stateDir).length;
    await run(2);
    const all = readEvents(dirs.stateDir).slice(before);
    const progress = all.filter((e) => e.type === 'ImagePullProgressed');
    expect(progress.at(-1)?.data).toMatchObject({ target: 'guest.qcow2', percent: 100, bytes: (await readFile(v2File)).length });
    const second = all.filter((e) => e.type !== 'ImagePullProgressed');
    expect(types(second).slice(0, 5)).toEqual(['SupervisorStarted', 'AcceleratorProbed', 'ImageImported', 'DiskReused', 'ImageNewerBaseAvailable']);
    expect(second[2]?.data).toMatchObject({ sha256: v2Sha, reused: false });
    expect(second[3]?.data).toMatchObject({ backingFile: v1 });
    expect(second[4]?.data).toMatchObject({ currentBacking: v1, currentSha256: guestSha, newerSha256: v2Sha, newerPath: path.join(dirs.imagesDir, 'sha256', v2Sha) });

    const rebase = start(['image', 'rebase'], env);
    expect((await rebase.exited).code, rebase.stderr).toBe(0);
    const pet = path.join(dirs.diskDir, 'pv-img-d.qcow2');
    expect(readEvents(dirs.stateDir).at(-1)).toMatchObject({ type: 'DiskRebased', data: { path: pet, fromBacking: v1, toBacking: path.join(dirs.imagesDir, 'sha256', v2Sha) } });
    // The safe rebase kept what the guest saw: v1's zeros where v2 differs.
    execFileSync('qemu-io', ['-r', '-c', `read -P 0 ${64 * 1024 * 1024 - 65536} 64k`, pet]);

    const third = readEvents(dirs.stateDir).length;
    await run(3);
    const log = readEvents(dirs.stateDir).slice(third);
    expect(log.find((e) => e.type === 'DiskReused')?.data).toMatchObject({ backingFile: path.join(dirs.imagesDir, 'sha256', v2Sha) });
    expect(types(log)).not.toContain('ImageNewerBaseAvailable');
  });
});

describe('podvisor image pull against a misbehaving server', () => {
  it('3. a connection dropped at 50% resumes with Range and the result verifies', async () => {
    const size = (await readFile(guest)).length;
    server.plan('/guest.qcow2', { kind: 'drop', atBytes: Math.floor(size / 2) });
    const r = await pull(server.url('/guest.qcow2'), ['--sha256', guestSha]);
    expect(r.code, r.err).toBe(0);
    expect(r.json).toMatchObject({ sha256: guestSha, reused: false });
    expect(server.requests.map((q) => q.status)).toEqual([200, 206]);
    const from = Number(/^bytes=(\d+)-$/.exec(server.requests[1]?.range ?? '')?.[1]);
    expect(from).toBeGreaterThan(0);
    expect(from).toBeLessThanOrEqual(Math.floor(size / 2));
    expect(server.requests[1]?.ifRange).toBeTruthy();
    expect(server.requests[1]?.bytesSent).toBe(size - from);
    expect(sha256(await readFile(path.join(dirs.imagesDir, 'sha256', guestSha)))).toBe(guestSha);
    expect(r.err).toMatch(/retrying in \d+ ms from byte \d+/);
  });

  it('4. three pulls started together make one full download, and all three succeed', async () => {
    await server.serve('/guest.qcow2', guest, { rate: 4 * 1024 * 1024 });
    const results = await Promise.all([0, 1, 2].map(() => pull(server.url('/guest.qcow2'))));
    expect(results.map((r) => r.code)).toEqual([0, 0, 0]);
    expect(results.map((r) => r.json?.['sha256'])).toEqual([guestSha, guestSha, guestSha]);
    expect(server.fullDownloads('/guest.qcow2')).toHaveLength(1);
    expect(server.requests.filter((q) => q.bytesSent > 0)).toHaveLength(1);
    expect(await readdir(path.join(dirs.imagesDir, '.locks'))).toEqual([]);
  });

  it('5. a qcow2 whose header names /etc/passwd as its backing file is refused', async () => {
    const evil = path.join(dirs.root, 'evil.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', '/etc/passwd', '-F', 'raw', evil, '1M']);
    await server.serve('/evil.qcow2', evil);
    const r = await pull(server.url('/evil.qcow2'));
    expect(r.code).toBe(3);
    expect(r.err).toContain('ERR_IMAGE_BACKING_REFUSED');
    expect(r.err).toContain('/etc/passwd');
    expect(r.err).toContain(server.url('/evil.qcow2'));
    await expectCacheEmpty();
  });

  it('7a. 404 is not retried and is a clear error', async () => {
    const r = await pull(server.url('/missing.qcow2'));
    expect(r.code).toBe(3);
    expect(r.err).toContain('ERR_IMAGE_SOURCE_NOT_FOUND');
    expect(r.err).toContain(server.url('/missing.qcow2'));
    expect(server.requests).toHaveLength(1);
    await expectCacheEmpty();
  });

  it('7b. 500 then 200 is retried and succeeds', async () => {
    server.plan('/guest.qcow2', { kind: 'status', status: 500 });
    const r = await pull(server.url('/guest.qcow2'));
    expect(r.code, r.err).toBe(0);
    expect(server.requests.map((q) => q.status)).toEqual([500, 200]);
    expect(r.err).toMatch(/attempt 1 failed \(.*HTTP 500\); retrying/);
  });

  it('7c. a server slower than the timeout fails after the bounded retries, with no partial file', async () => {
    server.plan('/guest.qcow2', { kind: 'stall', ms: 10_000 }, { kind: 'stall', ms: 10_000 });
    const r = await pull(server.url('/guest.qcow2'), ['--timeout', '1', '--retries', '2']);
    expect(r.code).toBe(3);
    expect(r.err).toContain('ERR_IMAGE_HTTP_TIMEOUT');
    expect(r.err).toContain('gave up after 2 attempts');
    expect(server.requests).toHaveLength(2);
    await expectCacheEmpty();
  });

  it('7d. a body cut short without Content-Length is caught by the pin, or else by qemu-img check', async () => {
    server.plan('/guest.qcow2', { kind: 'truncate', atBytes: 4 * 1024 * 1024 }, { kind: 'truncate', atBytes: 4 * 1024 * 1024 });
    const pinned = await pull(server.url('/guest.qcow2'), ['--sha256', guestSha]);
    expect(pinned.code).toBe(3);
    expect(pinned.err).toContain('ERR_IMAGE_CHECKSUM_MISMATCH');
    expect(pinned.err).toContain(guestSha);
    await expectCacheEmpty();
    const unpinned = await pull(server.url('/guest.qcow2'));
    expect(unpinned.code).toBe(3);
    expect(unpinned.err).toContain('ERR_IMAGE_CORRUPT');
    expect(unpinned.err).toMatch(/qemu-img|end of the file/);
    await expectCacheEmpty();
  });

  it('7e. a full images volume is a clear error, known before the transfer when the size is', async () => {
    const small = path.join(dirs.root, 'small-images');
    await mkdir(small);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'pv-e2e-img-tmpfs', small]);
    mounts.push(small);
    const big = randomBytes(8 * 1024 * 1024);
    await server.serve('/big.raw', big);
    const known = await pull(server.url('/big.raw'), [], small);
    expect(known.code).toBe(3);
    expect(known.err).toContain('ERR_IMAGE_NO_SPACE');
    expect(known.err).toMatch(/needs \d+ more bytes .* of which \d+ are kept free/);
    expect(server.requests.at(-1)?.bytesSent).toBeLessThan(big.length);
    await expectCacheEmpty(small);
    await server.serve('/chunked.raw', big, { chunked: true });
    const unknown = await pull(server.url('/chunked.raw'), [], small);
    expect(unknown.code).toBe(3);
    expect(unknown.err).toContain('ERR_IMAGE_NO_SPACE');
    expect(unknown.err).toMatch(/cut off after \d+ bytes: the rest would fill the images volume/);
    expect(server.requests.at(-1)?.bytesSent).toBeLessThan(big.length);
    await expectCacheEmpty(small);
  });

  it('credentials in the URL reach the server but never the output', async () => {
    const url = server.url('/guest.qcow2', { user: 'pod', password: 'hunter2-secret' });
    const r = await pull(url);
    expect(r.code, r.err).toBe(0);
    expect(server.requests[0]?.authorization).toBe(`Basic ${Buffer.from('pod:hunter2-secret').toString('base64')}`);
    expect(r.out + r.err).not.toContain('hunter2');
    const meta = await readFile(path.join(dirs.imagesDir, '.meta', 'guest.qcow2.json'), 'utf8');
    expect(meta).not.toContain('hunter2');
  });
});

describe('issue 11: a shared cache that checks what it uses, and a gc that fails closed', () => {
  const bootId = (): string => execFileSync('cat', ['/proc/sys/kernel/random/boot_id']).toString().trim();

  it('a base replaced in the cache by a qcow2 backed by /etc/hostname is refused at start, and no VM starts', async () => {
    const r = await pull(server.url('/guest.qcow2'), ['--sha256', guestSha]);
    expect(r.code, r.err).toBe(0);
    const content = path.join(dirs.imagesDir, 'sha256', guestSha);
    await mkdir(dirs.diskDir, { recursive: true });
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', content, '-F', 'qcow2', path.join(dirs.diskDir, 'pv-img-swap.qcow2')]);
    // Another pod on the volume swaps the base for one that reads a host file.
    const evil = path.join(dirs.root, 'evil.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', '/etc/hostname', '-F', 'raw', evil, '64M']);
    await chmod(content, 0o644);
    await writeFile(content, await readFile(evil));
    const p = start(['run'], vmEnv(dirs, 'pv-img-swap', { IMG_SOURCE: undefined }));
    expect((await p.exited).code).toBe(3);
    const failed = readEvents(dirs.stateDir).find((e) => e.type === 'VmFailed')?.data as { code: string; message: string };
    expect(failed.code).toBe('ERR_IMAGE_BASE_MISMATCH');
    expect(failed.message).toContain(content);
    expect(types(readEvents(dirs.stateDir))).not.toContain('VmStarting');
    // A pinned pull fetches it again, and the pet's base verifies.
    const again = await pull(server.url('/guest.qcow2'), ['--sha256', guestSha]);
    expect(again.code, again.err).toBe(0);
    expect(again.json).toMatchObject({ sha256: guestSha, reused: false });
    expect(sha256(await readFile(content))).toBe(guestSha);
  });

  it("a captive portal's HTML page answered with 200 is refused, naming the URL, its content type and what its bytes are", async () => {
    await server.serve('/portal.qcow2', Buffer.from('<!doctype html><html><head><title>Hotel Wi-Fi login</title></head><body>Accept the terms</body></html>'), { contentType: 'text/html' });
    for (const flags of [[], ['--format', 'raw']]) {
      const r = await pull(server.url('/portal.qcow2'), flags);
      expect(r.code).toBe(3);
      expect(r.err).toContain('ERR_IMAGE_INVALID');
      expect(r.err).toContain(server.url('/portal.qcow2'));
      expect(r.err).toContain('Content-Type text/html');
      expect(r.err).toContain('answered with HTML');
    }
    await expectCacheEmpty();
  });

  it('a body that is no qcow2 is taken as raw only when raw is named (--format raw, IMG_FORMAT=raw)', async () => {
    const disk = Buffer.concat([Buffer.alloc(510), Buffer.from([0x55, 0xaa]), randomBytes(2 * 1024 * 1024)]);
    await server.serve('/disk.img', disk);
    const refused = await pull(server.url('/disk.img'));
    expect(refused.code).toBe(3);
    expect(refused.err).toContain('ERR_IMAGE_RAW_NOT_NAMED');
    await expectCacheEmpty();
    const named = await pull(server.url('/disk.img'), ['--format', 'raw']);
    expect(named.code, named.err).toBe(0);
    expect(named.json).toMatchObject({ format: 'raw', sha256: sha256(disk) });
    const byEnv = start(['image', 'pull', server.url('/disk.img'), '--json', '--images-dir', dirs.imagesDir], { IMG_FORMAT: 'raw' });
    expect((await byEnv.exited).code, byEnv.stderr).toBe(0);
    expect(JSON.parse(byEnv.stdout)).toMatchObject({ format: 'raw', reused: true });
  });

  it('a lock held by a live pull on another node is not taken over: the wait is bounded and the error names that host', async () => {
    const dead = Number(execFileSync('sh', ['-c', 'echo $$']).toString().trim());
    await mkdir(path.join(dirs.imagesDir, '.locks'), { recursive: true });
    const lock = path.join(dirs.imagesDir, '.locks', 'guest.qcow2.lock');
    const owner = { pid: dead, pidNamespace: execFileSync('readlink', ['/proc/self/ns/pid']).toString().trim(), startTime: 1, host: 'pod-on-node-b', bootId: 'f0e1d2c3-other-node', at: new Date().toISOString() };
    await writeFile(lock, JSON.stringify(owner));
    const r = await pull(server.url('/guest.qcow2'), ['--lock-wait', '1']);
    expect(r.code).toBe(3);
    expect(r.err).toContain('ERR_IMAGE_LOCK_TIMEOUT');
    expect(r.err).toContain('pod-on-node-b');
    expect(JSON.parse(await readFile(lock, 'utf8'))).toEqual(owner);
    expect(server.requests).toEqual([]);
    // The same dead pid on this node is provably stale: taken over at once.
    await writeFile(lock, JSON.stringify({ ...owner, host: 'here', bootId: bootId() }));
    const taken = await pull(server.url('/guest.qcow2'), ['--lock-wait', '1']);
    expect(taken.code, taken.err).toBe(0);
  });

  it('a pull killed mid-transfer is resumed by the next process with Range, and the result verifies', async () => {
    const size = (await stat(guest)).size;
    await server.serve('/guest.qcow2', guest, { rate: 2 * 1024 * 1024 });
    const first = start(['image', 'pull', server.url('/guest.qcow2'), '--sha256', guestSha, '--json', '--images-dir', dirs.imagesDir], {});
    await server.waitForBytesSent('/guest.qcow2', Math.floor(size / 3));
    const partial = path.join(dirs.imagesDir, '.tmp', 'guest.qcow2.partial');
    // Killed once the resume record and some of the body are on the volume.
    await whenDirSatisfies(path.dirname(partial), () => existsSync(`${partial}.json`) && existsSync(partial) && statSync(partial).size > 0);
    first.signal('SIGKILL');
    expect((await first.exited).signal).toBe('SIGKILL');
    expect(JSON.parse(await readFile(`${partial}.json`, 'utf8'))).toMatchObject({ source: server.url('/guest.qcow2'), sha256: guestSha, total: size });
    const kept = (await stat(partial)).size;
    expect(kept).toBeGreaterThan(0);
    const second = await pull(server.url('/guest.qcow2'), ['--sha256', guestSha]);
    expect(second.code, second.err).toBe(0);
    expect(second.json).toMatchObject({ sha256: guestSha, reused: false });
    expect(server.requests.map((q) => q.status)).toEqual([200, 206]);
    expect(server.requests[1]).toMatchObject({ range: `bytes=${kept}-`, bytesSent: size - kept });
    expect(server.requests[1]?.ifRange).toBeTruthy();
    expect(sha256(await readFile(path.join(dirs.imagesDir, 'sha256', guestSha)))).toBe(guestSha);
    expect(await readdir(path.join(dirs.imagesDir, '.tmp'))).toEqual([]);
  });

  it('gc --yes sweeps old .tmp leftovers, refuses to remove anything while a pet disk is unreadable, and follows a symlinked pet disk', async () => {
    const r = await pull(server.url('/guest.qcow2'));
    expect(r.code, r.err).toBe(0);
    const content = path.join(dirs.imagesDir, 'sha256', guestSha);
    await mkdir(dirs.diskDir, { recursive: true });
    const elsewhere = path.join(dirs.root, 'elsewhere');
    await mkdir(elsewhere);
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', content, '-F', 'qcow2', path.join(elsewhere, 'vm1.qcow2')]);
    await symlink(path.join(elsewhere, 'vm1.qcow2'), path.join(dirs.diskDir, 'vm1.qcow2'));
    execFileSync('rm', [path.join(dirs.imagesDir, 'guest.qcow2')]); // no name keeps it: only the symlinked pet does
    const unreadable = path.join(dirs.diskDir, 'vm2.qcow2');
    await writeFile(unreadable, (await readFile(path.join(elsewhere, 'vm1.qcow2'))).subarray(0, 100));
    const old = new Date(Date.now() - 2 * 3600_000);
    const leftover = path.join(dirs.imagesDir, '.tmp', 'gone.qcow2.4242.0badf00d');
    await writeFile(leftover, randomBytes(1024));
    await utimes(leftover, old, old);
    const gc = (): PodvisorProcess => start(['image', 'gc', '--yes', '--min-age', '0', '--disk-dir', dirs.diskDir, '--images-dir', dirs.imagesDir], {});
    const refused = gc();
    expect((await refused.exited).code).toBe(3);
    expect(refused.stderr).toContain('ERR_IMAGE_GC_DISK_UNREADABLE');
    expect(refused.stderr).toContain(unreadable);
    expect(await readdir(path.join(dirs.imagesDir, 'sha256'))).toEqual([guestSha]);
    execFileSync('rm', [unreadable]);
    const ok = gc();
    expect((await ok.exited).code, ok.stderr).toBe(0);
    expect(ok.stdout).toContain(`kept sha256:${guestSha}: backs ${path.join(dirs.diskDir, 'vm1.qcow2')}`);
    expect(ok.stdout).toContain(`removed leftover ${leftover}`);
    expect(await readdir(path.join(dirs.imagesDir, 'sha256'))).toEqual([guestSha]);
    expect(await readdir(path.join(dirs.imagesDir, '.tmp'))).toEqual([]);
  });
});
