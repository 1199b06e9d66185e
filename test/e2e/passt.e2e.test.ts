/**
 * The third-party passt plugin (examples/net-passt, installed from podvisor's
 * packed packages by `make example-plugin`) through the shipped binary: loaded
 * by name with PODVISOR_PLUGINS=podvisor-net-passt and selected with
 * PODVISOR_NETWORK=passt, in a Calico-style pod made by test/support/pod.sh.
 * podvisor runs as a non-root user whose only capability is
 * NET_BIND_SERVICE (ambient, for the forwarded port 80): the guest answers on
 * the pod IP through passt, its traffic leaves as the pod IP, the pod keeps
 * no bridge and no nftables table, and SIGTERM leaves nothing behind.
 */
import { execFileSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, readlinkSync } from 'node:fs';
import { chmod, chown, mkdir, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startNodeHttpProbe } from './support/node-http-probe.js';
import { guestPageFromNode } from './support/pod-namespace.js';
import { PodvisorProcess, REPO, keepArtifacts, makeVmDirs, readEvents, requireBuilt, types, vmEnv, type VmDirs } from './support/podvisor-process.js';

const POD_SH = path.join(REPO, 'test/support/pod.sh');
const PLUGIN = path.join(REPO, 'node_modules/podvisor-net-passt/dist/index.js');
const RESOLV = 'nameserver 10.96.0.10\nsearch e2e-ns.svc.cluster.local svc.cluster.local cluster.local\n';
/** The user podvisor runs as: not root, and no capability but the one passt needs for port 80. */
const NOBODY = 65534;
const NET_BIND_SERVICE = 1n << 10n;

let dirs: VmDirs;
let name: string;
let pod: string;
let facts: Record<string, string>;
let running: PodvisorProcess[] = [];
let helpers: ChildProcess[] = [];

function inNs(ns: string, ...cmd: string[]): string {
  return execFileSync('ip', ['netns', 'exec', ns, ...cmd], { encoding: 'utf8' });
}

/** Links, nftables tables and processes (by name) of the pod namespace. */
function podView(): { links: string[]; tables: string[]; processes: string[] } {
  const links = (JSON.parse(execFileSync('ip', ['-n', pod, '-j', 'link', 'show'], { encoding: 'utf8' })) as { ifname: string }[]).map((l) => l.ifname);
  const tables = inNs(pod, 'nft', 'list', 'tables').split('\n').filter((l) => l !== '');
  const pids = execFileSync('ip', ['netns', 'pids', pod], { encoding: 'utf8' }).split('\n').filter((l) => l !== '');
  const processes = pids.flatMap((p) => {
    try {
      // passt re-executes itself as passt.avx2 where the CPU has AVX2.
      return [readFileSync(`/proc/${p}/comm`, 'utf8').trim().replace(/\.avx2$/, '')];
    } catch {
      return [];
    }
  });
  return { links, tables, processes: processes.sort() };
}

const PRISTINE = { links: ['lo', 'eth0'], tables: [], processes: [] };

function capabilities(pid: number): { uid: string; effective: bigint; permitted: bigint } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string): string => new RegExp(`^${name}:\\s+(\\S+)`, 'm').exec(status)?.[1] ?? '';
  return { uid: field('Uid'), effective: BigInt(`0x${field('CapEff')}`), permitted: BigInt(`0x${field('CapPrm')}`) };
}

function pidOf(comm: RegExp): number | undefined {
  const pids = execFileSync('ip', ['netns', 'pids', pod], { encoding: 'utf8' }).split('\n').filter((l) => l !== '');
  return pids.map(Number).find((p) => {
    try {
      return comm.test(readFileSync(`/proc/${p}/comm`, 'utf8').trim());
    } catch {
      return false;
    }
  });
}

function guestPage(expected: string): Promise<string> {
  return guestPageFromNode(pod, facts['POD_IP'] as string, { expected });
}

beforeAll(() => {
  requireBuilt();
  if (!existsSync(PLUGIN)) throw new Error(`${PLUGIN} is missing: run make example-plugin (make test does it)`);
});

beforeEach(async (ctx) => {
  const tag = randomBytes(3).toString('hex');
  name = `pv-passt-${tag}`;
  pod = `pvpste-${tag}`;
  dirs = await makeVmDirs(name);
  running = [];
  helpers = [];
  await writeFile(path.join(dirs.root, 'resolv.conf'), RESOLV);
  ctx.onTestFailed(async () => {
    const dest = await keepArtifacts(`passt-${ctx.task.name}`, running.at(-1) ?? null, dirs);
    process.stderr.write(`artifacts kept in ${dest}\n`);
  });
  const out = execFileSync(POD_SH, ['create', pod, '--resolv', path.join(dirs.root, 'resolv.conf')], { encoding: 'utf8' });
  facts = Object.fromEntries(out.trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
});

afterEach(async () => {
  for (const p of running) await p.killed();
  for (const h of helpers) if (h.exitCode === null && h.signalCode === null) h.kill('SIGKILL');
  execFileSync(POD_SH, ['destroy', pod], { stdio: 'ignore' });
  await dirs.cleanup();
});

describe('passt network plugin (third party, real binary, TCG guest, Calico-style pod, no root)', () => {
  it('the VM takes the pod IP through passt: it answers on it, its traffic leaves as it, podvisor holds only NET_BIND_SERVICE, SIGTERM leaves nothing', async () => {
    const podIp = facts['POD_IP'] as string;
    const nodeIp = facts['NODE_IP'] as string;

    // A server in the node namespace that prints the source address of each request.
    const probe = await startNodeHttpProbe(`${pod}-node`, nodeIp);
    helpers.push(probe.process);
    const sawRequest = probe.sourceOf('/from-vm');

    await writeFile(path.join(dirs.root, 'metadata'), `instance-id: iid-${name}\nlocal-hostname: host-${name}\n`);
    await writeFile(
      path.join(dirs.root, 'userdata'),
      `#!/bin/sh\nfor i in 1 2 3 4 5 6 7 8 9 10; do timeout 5 wget -q -O - http://${nodeIp}:8080/from-vm && break; sleep 1; done\n`,
    );
    // podvisor's user owns the VM's dirs, and passt (the same user) reaches its socket under them.
    await mkdir(dirs.diskDir, { recursive: true });
    await mkdir(dirs.imagesDir, { recursive: true });
    for (const d of [dirs.root, dirs.diskDir, dirs.imagesDir]) {
      await chown(d, NOBODY, NOBODY);
      await chmod(d, 0o755);
    }

    const env = vmEnv(dirs, name, {
      PODVISOR_PLUGINS: 'podvisor-net-passt',
      PODVISOR_NETWORK: 'passt',
      PASST_TCP_PORTS: '80',
      PASST_UDP_PORTS: 'none',
      PODVISOR_LISTEN: undefined,
      HOME: dirs.root,
    });
    const wrapper = [
      'ip', 'netns', 'exec', pod,
      'setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups',
      '--inh-caps=-all,+net_bind_service', '--ambient-caps=+net_bind_service', '--bounding-set=-all,+net_bind_service',
    ];
    const p = new PodvisorProcess(['run'], env, { wrapper });
    running.push(p);
    const ready = await p.waitForStdout(/PODVISOR-GUEST-READY boot-count=1 instance-id=(\S+) hostname=(\S+)\r?\n/, 150_000);
    expect(ready.slice(1, 3)).toEqual([`iid-${name}`, `host-${name}`]);
    // passt leased the guest the pod's own address.
    const mac = readFileSync(path.join(dirs.diskDir, `${name}.mac`), 'utf8').trim();
    expect(p.stdout).toMatch(new RegExp(`^PODVISOR-GUEST-NIC eth0 ${mac} ${podIp.replaceAll('.', '\\.')}/32\\r?$`, 'm'));

    // The pod IP serves the guest's page (passt forwards port 80 to it).
    const page = await guestPage(`instance-id: iid-${name}`);
    expect(page).toContain('podvisor-test-guest');
    expect(page).toContain(`instance-id: iid-${name}`);
    // The VM's request reaches the node with the pod IP as its source.
    expect(await sawRequest).toBe(podIp);
    await p.waitForStdout(/user-data: pong from the node/, 60_000);

    // No bridge, no tap, no nftables: the pod has its own eth0 and nothing else.
    const during = podView();
    expect(during.links).toEqual(['lo', 'eth0']);
    expect(during.tables).toEqual([]);
    expect(during.processes).toEqual(['node', 'passt', 'qemu-system-x86']);

    // Measured privileges: podvisor (not root) holds NET_BIND_SERVICE and nothing else; passt, after binding port 80, holds none.
    const daemon = capabilities(p.child.pid as number);
    expect(daemon).toEqual({ uid: String(NOBODY), effective: NET_BIND_SERVICE, permitted: NET_BIND_SERVICE });
    // passt runs as podvisor's user and holds no capability here (whatever it keeps while it starts lives in a user namespace of its own).
    const passtPid = pidOf(/^passt/) as number;
    const passt = capabilities(passtPid);
    expect(passt.uid).toBe(String(NOBODY));
    expect(readlinkSync(`/proc/${passtPid}/ns/user`) !== readlinkSync('/proc/self/ns/user') || passt.effective === 0n).toBe(true);

    const attached = readEvents(dirs.stateDir).find((e) => e.type === 'NetworkAttached');
    expect(attached?.data).toMatchObject({
      backend: 'passt',
      nics: [{ id: 'net0', mac, addresses: [`${podIp}/32`] }],
      detail: { podInterface: 'eth0', podIp, keptByPod: ['tcp/5800'] },
    });

    // SIGTERM: the guest powers off, passt stops, the pod is as pod.sh made it, and the state dir holds nothing of passt.
    p.signal('SIGTERM');
    expect((await p.exited).code).toBe(0);
    expect(p.stdout).toContain('PODVISOR-GUEST-POWEROFF');
    expect(podView()).toEqual(PRISTINE);
    expect((await readdir(dirs.stateDir)).filter((f) => f.startsWith('passt'))).toEqual([]);
    const log = types(readEvents(dirs.stateDir));
    expect(log.slice(log.indexOf('VmExited'))).toEqual(['VmExited', 'VmStopped', 'NetworkDetached', 'SupervisorExited']);
  });
});
