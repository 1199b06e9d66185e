/**
 * `podvisor doctor` and the preflight of `podvisor run`, through the real
 * binary, with one prerequisite really removed each time: NET_ADMIN dropped
 * from the bounding set (setpriv), the images volume bound read-only in a
 * private mount namespace, a file where the disk directory should be, a PATH
 * without qemu-img, and a fresh network namespace whose ip_forward is 0 with
 * /proc/sys read-only (as runc mounts it). Each time doctor names the missing
 * thing and its fix, and run exits 3 before any pull: the HTTP image server
 * sees no request, and the event log holds only `PreflightFailed`.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { resolveExecutable } from '@podvisor/core';
import { spawnableBinaries } from '../../apps/supervisord/src/preflight/preflight.js';
import type { PreflightFinding } from '../../apps/supervisord/src/preflight/preflight-model.js';
import { HttpImageServer } from '../support/http-image-server.js';
import { CLI, PodvisorProcess, keepArtifacts, makeVmDirs, readEvents, types, vmEnv, type VmDirs } from './support/podvisor-process.js';

let dirs: VmDirs;
let server: HttpImageServer;
let running: PodvisorProcess[] = [];

beforeAll(() => {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run make build`);
});

beforeEach(async (ctx) => {
  dirs = await makeVmDirs(`pv-e2e-doctor-${randomBytes(3).toString('hex')}`);
  server = await new HttpImageServer().start();
  // Any bytes: a run that got past the preflight would request them, which is what these tests rule out.
  await server.serve('/guest.qcow2', Buffer.from('not pulled'));
  running = [];
  ctx.onTestFailed(async () => {
    const dest = await keepArtifacts(`doctor-${ctx.task.name}`, running.at(-1) ?? null, dirs);
    process.stderr.write(`artifacts kept in ${dest}\n`);
  });
});

afterEach(async () => {
  for (const p of running) await p.killed();
  await server.close();
  await dirs.cleanup();
});

/** The test VM's environment with the image served over HTTP, so that a pull would show as a request. */
function env(extra: Record<string, string | undefined> = {}): Record<string, string> {
  return vmEnv(dirs, `pv-doctor-${randomBytes(2).toString('hex')}`, { IMG_SOURCE: server.url('/guest.qcow2'), PODVISOR_LOG_LEVEL: 'warn', ...extra });
}

function start(args: string[], environment: Record<string, string>, wrapper?: string[]): PodvisorProcess {
  const p = new PodvisorProcess(args, environment, wrapper === undefined ? {} : { wrapper });
  running.push(p);
  return p;
}

/** Runs `podvisor doctor --json`; returns its exit code and findings by id. */
async function doctor(environment: Record<string, string>, wrapper?: string[]): Promise<{ code: number | null; status: string; findings: Map<string, PreflightFinding> }> {
  const p = start(['doctor', '--json'], environment, wrapper);
  const { code } = await p.exited;
  const report = JSON.parse(p.stdout) as { status: string; findings: PreflightFinding[] };
  return { code, status: report.status, findings: new Map(report.findings.map((f) => [f.id, f])) };
}

/** Runs `podvisor run`, which must stop in its preflight: exit 3, nothing pulled. */
async function runStoppedByPreflight(environment: Record<string, string>, wrapper?: string[]): Promise<PodvisorProcess> {
  const p = start(['run'], environment, wrapper);
  expect((await p.exited).code).toBe(3);
  expect(server.requests).toEqual([]);
  expect(p.stderr).toContain('"code":"ERR_PREFLIGHT_FAILED"');
  return p;
}

/** A private mount namespace (private propagation: the host sees none of it) that runs `setup`, then the command. */
function inMountNs(setup: string): string[] {
  return ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', `${setup} && exec "$0" "$@"`];
}

describe('podvisor doctor and the preflight of run', () => {
  it('--help documents the checks and the exit codes; the command list names doctor', async () => {
    const help = start(['doctor', '--help'], env());
    expect((await help.exited).code).toBe(0);
    expect(help.stdout).toContain('Exit codes: 0 nothing failed (warnings allowed), 2 invalid configuration or\nusage, 3 at least one check failed.');
    const list = start(['--help'], env());
    expect((await list.exited).code).toBe(0);
    expect(list.stdout).toMatch(/^ {2}doctor {4}check this container can run the VM/m);
  });

  it('the test configuration passes: every volume and binary checked, nothing created', async () => {
    const r = await doctor(env());
    expect(r.code).toBe(0);
    expect(r.status).not.toBe('fail');
    for (const id of ['volume.images', 'volume.disk', 'volume.state', 'binary.qemu-system-x86_64', 'binary.qemu-img', 'binary.genisoimage', 'accelerator']) {
      expect(r.findings.get(id)?.status, id).toBe('ok');
    }
    // doctor probes the volumes with a file it removes again: the dirs it would create do not exist.
    expect(existsSync(dirs.diskDir)).toBe(false);
    expect(existsSync(dirs.imagesDir)).toBe(false);
    expect(server.requests).toEqual([]);
  });

  it('NET_ADMIN dropped from the bounding set: doctor names it and the fix; run exits 3 before any pull and records PreflightFailed', async () => {
    const dropNetAdmin = ['setpriv', '--bounding-set', '-net_admin', '--inh-caps', '-all'];
    const environment = env({ PODVISOR_NETWORK: 'nat-bridge' });
    const r = await doctor(environment, dropNetAdmin);
    expect(r.code).toBe(3);
    expect(r.findings.get('capability.NET_ADMIN')).toMatchObject({
      status: 'fail',
      finding: expect.stringContaining('NET_ADMIN is not in the effective and bounding capability set'),
      fix: "add NET_ADMIN to the container's securityContext.capabilities.add (docker/podman: --cap-add NET_ADMIN)",
    });
    expect(r.findings.get('capability.NET_BIND_SERVICE')?.status).toBe('ok');

    const p = await runStoppedByPreflight(environment, dropNetAdmin);
    expect(p.stderr).toContain("fix: add NET_ADMIN to the container's securityContext.capabilities.add");
    const events = readEvents(dirs.stateDir);
    expect(types(events)).toEqual(['PreflightFailed']);
    expect(events[0]?.data).toMatchObject({ findings: [{ id: 'capability.NET_ADMIN', status: 'fail' }] });
  });

  it('the images volume is read-only: doctor says so (EROFS) and run exits 3 before any pull', async () => {
    await mkdir(dirs.imagesDir, { recursive: true });
    const readOnlyImages = inMountNs(`mount --bind -o ro '${dirs.imagesDir}' '${dirs.imagesDir}'`);
    const r = await doctor(env(), readOnlyImages);
    expect(r.code).toBe(3);
    expect(r.findings.get('volume.images')).toMatchObject({
      status: 'fail',
      finding: expect.stringMatching(new RegExp(`^the images volume ${dirs.imagesDir} is not writable: EROFS`)),
      fix: expect.stringContaining('or set PODVISOR_IMAGES_DIR to a writable directory'),
    });
    expect(r.findings.get('volume.disk')?.status).toBe('ok');

    await runStoppedByPreflight(env(), readOnlyImages);
    expect(types(readEvents(dirs.stateDir))).toEqual(['PreflightFailed']);
  });

  it('a file where the disk directory should be: run exits 3, names it, and records nothing (the state dir cannot exist)', async () => {
    await writeFile(dirs.diskDir, 'not a directory');
    const p = await runStoppedByPreflight(env());
    expect(p.stderr).toContain(`FAIL  volume.disk: the disk volume ${dirs.diskDir} cannot be a directory: ${dirs.diskDir} is not a directory`);
    expect(p.stderr).toContain(`FAIL  volume.state: the state volume ${dirs.stateDir} cannot be a directory: ${dirs.diskDir} is not a directory`);
    expect(p.stderr).toContain('preflight failed');
    expect(existsSync(dirs.stateDir)).toBe(false);
  });

  it('a PATH without qemu-img: doctor names the package; run exits 3 before any pull', async () => {
    // Every binary podvisor spawns except qemu-img, linked into one directory that is the whole PATH.
    const bin = path.join(dirs.root, 'bin');
    await mkdir(bin);
    for (const name of await spawnableBinaries()) {
      const real = resolveExecutable(name);
      if (name !== 'qemu-img' && real !== null) await symlink(real, path.join(bin, name));
    }
    const r = await doctor(env({ PATH: bin }));
    expect(r.code).toBe(3);
    expect(r.findings.get('binary.qemu-img')).toEqual({
      id: 'binary.qemu-img',
      check: 'qemu-img is on PATH (image store: checks bases, creates, grows and rebases the pet disk)',
      status: 'fail',
      finding: 'qemu-img is not on PATH, so image store cannot run it',
      fix: 'install qemu-img in the image (the Debian package qemu-utils) or put its directory on PATH',
    });
    expect(r.findings.get('binary.genisoimage')?.status).toBe('ok');

    const p = await runStoppedByPreflight(env({ PATH: bin }));
    expect(p.stderr).toContain('fix: install qemu-img in the image (the Debian package qemu-utils)');
  });

  it('ip_forward 0 with /proc/sys read-only, in a new network namespace: doctor names the pod sysctl; run exits 3 with PreflightFailed only', async () => {
    // A new netns copies the host's ip_forward (devconf_inherit_init_net=0), which may be 1: set it to 0 there,
    // then bind /proc/sys read-only as runc does. Both vanish with the process; the host's value is untouched.
    const podLike = ['unshare', '--net', '--mount', '--propagation', 'private', 'sh', '-c', 'echo 0 > /proc/sys/net/ipv4/ip_forward && mount -o bind,ro /proc/sys /proc/sys && exec "$0" "$@"'];
    const environment = env({ PODVISOR_NETWORK: 'nat-bridge' });
    const r = await doctor(environment, podLike);
    expect(r.code).toBe(3);
    expect(r.findings.get('sysctl.net.ipv4.ip_forward')).toMatchObject({
      status: 'fail',
      finding: 'net.ipv4.ip_forward is 0, not 1, and /proc/sys is not writable here (EROFS), so it cannot be set',
      fix: expect.stringMatching(/^set the pod sysctl net\.ipv4\.ip_forward=1 /),
    });
    expect([...r.findings.values()].filter((f) => f.status === 'fail').map((f) => f.id)).toEqual(['sysctl.net.ipv4.ip_forward']);

    const p = await runStoppedByPreflight(environment, podLike);
    expect(p.stderr).toContain('fix: set the pod sysctl net.ipv4.ip_forward=1');
    const events = readEvents(dirs.stateDir);
    expect(types(events)).toEqual(['PreflightFailed']);
    expect(events[0]?.data).toMatchObject({ findings: [{ id: 'sysctl.net.ipv4.ip_forward', status: 'fail' }] });
  });
});
