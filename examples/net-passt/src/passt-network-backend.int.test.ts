/**
 * The passt backend against a real passt in a network namespace made here,
 * wired the way Calico wires a pod (a /32 on eth0, the default route via
 * 169.254.1.1): podvisor's NetworkBackend contract suite, then what passt
 * itself must do. Needs root (network namespaces) and the passt package.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, readlinkSync } from 'node:fs';
import { chmod, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ExecaProcessRunner, SilentLogger, resolvePluginSettings, type NetworkAttachSpec, type NetworkHooks, type PluginSettings, type PluginWarning } from '@podvisor/core';
import { describeNetworkBackendContract } from '@podvisor/core/testing';
import { NetnsProcessRunner } from '@podvisor/net-support';
import { PASST_SETTINGS } from './passt-config.js';
import { PasstNetworkBackend } from './passt-network-backend.js';

/** The backend's settings as podvisor resolves them from these variables. */
function settingsFrom(env: Record<string, string>): PluginSettings {
  const { settings, problems } = resolvePluginSettings(PASST_SETTINGS, { env, yaml: {} });
  if (problems.length > 0) throw new Error(JSON.stringify(problems));
  return settings;
}

interface Sandbox {
  ns: string;
  dir: string;
  ip: string;
  runner: ExecaProcessRunner;
  spec: NetworkAttachSpec;
  /** passt processes in the namespace, and podvisor's files in the state dir. */
  leftovers: () => Promise<string[]>;
  cleanup: () => Promise<void>;
}

async function sandbox(env: Record<string, string> = { PASST_TCP_PORTS: '8080', PASST_UDP_PORTS: 'none' }): Promise<Sandbox> {
  const tag = randomBytes(3).toString('hex');
  const ns = `pvpasst-${tag}`;
  const ip = `10.250.${randomBytes(1)[0]! % 250}.${(randomBytes(1)[0]! % 250) + 2}`;
  const dir = await mkdtemp(join(tmpdir(), `pvpasst-${tag}-`));
  // passt, dropped to nobody, must reach its socket's directory under the state dir.
  await chmod(dir, 0o755);
  const sh = (...args: string[]) => execFileSync('ip', args, { stdio: 'pipe' });
  sh('netns', 'add', ns);
  try {
    sh('-n', ns, 'link', 'set', 'lo', 'up');
    // A veth whose peer stays in the namespace: eth0 needs only to be up, with the pod's address and routes.
    sh('-n', ns, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'peer0');
    sh('-n', ns, 'link', 'set', 'peer0', 'up');
  sh('-n', ns, 'addr', 'add', `${ip}/32`, 'dev', 'eth0');
  sh('-n', ns, 'link', 'set', 'eth0', 'up');
  sh('-n', ns, 'route', 'add', '169.254.1.1', 'dev', 'eth0', 'scope', 'link');
  sh('-n', ns, 'route', 'add', 'default', 'via', '169.254.1.1', 'dev', 'eth0');
  } catch (err) {
    execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  const runner = new ExecaProcessRunner(new SilentLogger());
  const stateDir = join(dir, 'state');
  const spec: NetworkAttachSpec = { vmName: `vm-${tag}`, stateDir, diskDir: join(dir, 'disk'), settings: settingsFrom(env), vnc: { enabled: true, port: 5900 }, controlPort: 5800 };
  const leftovers = async (): Promise<string[]> => {
    const pids = execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).split('\n').filter((l) => l !== '');
    const procs = pids.flatMap((p) => {
      try {
        // passt re-executes itself as passt.avx2 where the CPU has AVX2.
        return [`process ${readFileSync(`/proc/${p}/comm`, 'utf8').trim().replace(/\.avx2$/, '')}`];
      } catch {
        return [];
      }
    });
    const files = existsSync(stateDir) ? (await readdir(stateDir)).map((f) => `file ${f}`) : [];
    return [...procs, ...files].sort();
  };
  const cleanup = async (): Promise<void> => {
    await runner.stopAll(2000);
    for (const p of execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).split('\n').filter((l) => l !== '')) {
      try {
        process.kill(Number(p), 'SIGKILL');
      } catch {
        // gone
      }
    }
    execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    await rm(dir, { recursive: true, force: true });
  };
  return { ns, dir, ip, runner, spec, leftovers, cleanup };
}

function hooks(): NetworkHooks & { warnings: PluginWarning[] } {
  const warnings: PluginWarning[] = [];
  return { log: new SilentLogger(), warnings, warn: (w) => warnings.push(w), notice: () => undefined };
}

describeNetworkBackendContract('passt', async () => {
  const box = await sandbox();
  return {
    create: () => new PasstNetworkBackend(new NetnsProcessRunner(box.runner, box.ns), new SilentLogger()),
    createWithRunner: (wrap) => new PasstNetworkBackend(wrap(new NetnsProcessRunner(box.runner, box.ns)), new SilentLogger()),
    spec: box.spec,
    leftovers: box.leftovers,
    invalid: { spec: { settings: { ...box.spec.settings, tcpPorts: { value: 'some', path: 'env PASST_TCP_PORTS', given: true } } }, path: 'env PASST_TCP_PORTS' },
    cleanup: box.cleanup,
  };
});

describe('PasstNetworkBackend in a Calico-style namespace (needs root and passt)', () => {
  let box: Sandbox;
  beforeEach(async () => {
    box = await sandbox();
  });
  afterEach(async () => {
    await box.cleanup();
  });

  it('starts passt on a unix socket, hands qemu a stream NIC with the pod IP, and forwards only the named ports', async () => {
    const backend = new PasstNetworkBackend(new NetnsProcessRunner(box.runner, box.ns), new SilentLogger());
    const attachment = await backend.attach(box.spec, hooks());
    const socket = join(box.spec.stateDir, 'passt', 'passt.sock');
    expect(attachment.nics).toEqual([{ id: 'net0', mac: expect.stringMatching(/^52:54:00(:[0-9a-f]{2}){3}$/), backend: { kind: 'stream', path: socket }, addresses: [`${box.ip}/32`] }]);
    expect(attachment.detail).toMatchObject({ podInterface: 'eth0', podIp: box.ip, keptByPod: ['tcp/5800', 'tcp/5900'] });
    // The MAC persists next to the disk, so a restart keeps it.
    expect(readFileSync(join(box.spec.diskDir, `${box.spec.vmName}.mac`), 'utf8').trim()).toBe(attachment.nics[0]?.mac);
    const listening = execFileSync('ip', ['netns', 'exec', box.ns, 'ss', '-Htln'], { encoding: 'utf8' });
    expect(listening).toMatch(/:8080\s/);
    expect(listening).not.toMatch(/:5900\s/);
    expect(await box.leftovers()).toEqual(['file passt', 'file passt.pid', 'process passt']);
    // passt runs as nobody, and holds no capability here: what it keeps while it starts lives in a user namespace of its own.
    const pid = box.runner.children().find((c) => c.name === 'passt')?.pid;
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    expect(/^Uid:\s+(\d+)/m.exec(status)?.[1]).toBe('65534');
    const ownNamespace = readlinkSync(`/proc/${pid}/ns/user`) !== readlinkSync('/proc/self/ns/user');
    expect(ownNamespace || /^CapEff:\s+(\S+)/m.exec(status)?.[1] === '0000000000000000').toBe(true);
    await backend.detach(box.spec);
    expect(await box.leftovers()).toEqual([]);
  });

  it('refuses to forward more ports than the open-files limit allows, before starting anything, with a hint', async () => {
    const backend = new PasstNetworkBackend(new NetnsProcessRunner(box.runner, box.ns), new SilentLogger());
    const limit = Number(/^Max open files\s+\S+\s+(\S+)/m.exec(readFileSync('/proc/self/limits', 'utf8'))?.[1]);
    const spec = { ...box.spec, settings: settingsFrom({ PASST_TCP_PORTS: 'all', PASST_UDP_PORTS: 'all' }) };
    if (!(limit < 2 * 65535)) {
      // A host with a huge limit: 'all' must then start.
      await backend.attach(spec, hooks());
      await backend.detach(spec);
      return;
    }
    await expect(backend.attach(spec, hooks())).rejects.toMatchObject({ code: 'ERR_PASST_FILE_DESCRIPTORS', hint: expect.stringContaining('PASST_TCP_PORTS=22,80') });
    expect(await box.leftovers()).toEqual([]);
  });

  it('keeps podvisor\'s user for passt when podvisor could not stop a process that changed its user', async () => {
    const backend = new PasstNetworkBackend(new NetnsProcessRunner(box.runner, box.ns), new SilentLogger());
    backend.capabilities = 1n << 10n; // NET_BIND_SERVICE only
    await backend.attach(box.spec, hooks());
    const passt = box.runner.children().find((c) => c.name === 'passt');
    expect(passt?.argv).toContain(`${process.getuid?.()}:${process.getgid?.()}`);
    const uid = /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${passt?.pid}/status`, 'utf8'))?.[1];
    expect(uid).toBe(String(process.getuid?.()));
    await backend.detach(box.spec);
    expect(await box.leftovers()).toEqual([]);
  });
});
