/**
 * Two podvisors on one VM volume (issue 11, item 7), end to end: the real
 * binary runs the test guest with the NAT bridge inside a Calico-style pod; a
 * second `podvisor run` on the same dirs, in the same pod, must refuse on the
 * volume lock with the first one's pid and exit 2, touching nothing of the
 * first: its control socket still answers `ctl status`, its dnsmasq keeps its
 * pid, its nftables rules and links stay, and its event log gets nothing from
 * the second. Then SIGTERM stops the first, which removes its socket, and the
 * lock is free again.
 */
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, readlinkSync, statSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { POD_SH, podPids as pidsIn, podState as stateOf } from './support/pod-namespace.js';
import { CLI, PodvisorProcess, keepArtifacts, makeVmDirs, readEvents, requireBuilt, types, vmEnv, type VmDirs } from './support/podvisor-process.js';

const run = promisify(execFile);

let dirs: VmDirs;
let name: string;
let pod: string;
let running: PodvisorProcess[] = [];

const podPids = (comm: string): number[] => pidsIn(pod, comm);
const podState = (): ReturnType<typeof stateOf> => stateOf(pod);

function start(): PodvisorProcess {
  const p = new PodvisorProcess(['run'], vmEnv(dirs, name, { PODVISOR_NETWORK: 'nat-bridge' }), { wrapper: ['ip', 'netns', 'exec', pod] });
  running.push(p);
  return p;
}

/** The files `pid` has open. */
function openFiles(pid: number): string[] {
  return readdirSync(`/proc/${pid}/fd`).map((fd) => {
    try {
      return readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      return '';
    }
  });
}

/** util-linux flock(1) on the lock file: 0 when it could take it, 1 while someone holds it. */
async function lockIsFree(file: string): Promise<boolean> {
  return run('flock', ['-n', '-E', '1', file, 'true']).then(
    () => true,
    () => false,
  );
}

beforeAll(() => requireBuilt());

beforeEach(async (ctx) => {
  const tag = randomBytes(3).toString('hex');
  name = `pv-two-${tag}`;
  pod = `pvtwo-${tag}`;
  dirs = await makeVmDirs(name);
  running = [];
  ctx.onTestFailed(async () => {
    const dest = await keepArtifacts(`second-instance-${ctx.task.name}`, running[0] ?? null, dirs);
    process.stderr.write(`artifacts kept in ${dest}\n`);
  });
  execFileSync(POD_SH, ['create', pod], { stdio: 'ignore' });
});

afterEach(async () => {
  for (const p of running) await p.killed();
  execFileSync(POD_SH, ['destroy', pod], { stdio: 'ignore' });
  await dirs.cleanup();
});

describe('a second podvisor on the same VM volume', () => {
  it('is refused on the volume lock with the holder named, touches nothing of the first, and the lock goes with the first', async () => {
    const first = start();
    await first.waitForStdout(/PODVISOR-GUEST-READY boot-count=1/, 150_000);
    const socket = path.join(dirs.stateDir, 'control.sock');
    const lockFile = path.join(dirs.stateDir, 'podvisor.lock');
    const before = { state: podState(), socketInode: statSync(socket).ino, lastPosition: readEvents(dirs.stateDir).at(-1)?.position ?? 0 };
    expect(before.state.dnsmasq).toHaveLength(1);
    expect(await lockIsFree(lockFile)).toBe(false);
    // podvisor holds it; qemu and dnsmasq do not inherit it (so they cannot keep it after podvisor).
    expect(openFiles(first.child.pid as number)).toContain(lockFile);
    const children = [...podPids('qemu-system-x86'), ...before.state.dnsmasq];
    expect(children).toHaveLength(2);
    for (const pid of children) expect(openFiles(pid)).not.toContain(lockFile);

    const started = performance.now();
    const second = start();
    const exit = await second.exited;
    process.stderr.write(`second instance refused after ${Math.round(performance.now() - started)} ms\n`);
    expect(exit).toEqual({ code: 2, signal: null });
    expect(second.stderr).toMatch(new RegExp(`podvisor: the VM volume ${dirs.stateDir} is in use by podvisor pid ${first.child.pid} on host \\S+, started \\d{4}-\\d\\d-\\d\\dT\\S+ \\(version \\S+\\): ${lockFile} is locked\\nhint: only one podvisor may run on a VM volume`));
    expect(second.stdout).toBe('');

    // Nothing of the first was touched.
    expect(podState()).toEqual(before.state);
    expect(statSync(socket).ino).toBe(before.socketInode);
    const status = await run(process.execPath, [CLI, 'ctl', 'status', '--json', '--state-dir', dirs.stateDir]);
    expect(JSON.parse(status.stdout)).toMatchObject({ vm: name, status: 'Running' });
    const later = readEvents(dirs.stateDir).filter((e) => e.position > before.lastPosition);
    expect(types(later)).not.toContain('SupervisorStarted');

    // The first stops as usual: its socket goes, and so does the lock.
    first.signal('SIGTERM');
    expect((await first.exited).code).toBe(0);
    expect(existsSync(socket)).toBe(false);
    expect(podPids('dnsmasq')).toEqual([]);
    expect(await lockIsFree(lockFile)).toBe(true);
  });
});
