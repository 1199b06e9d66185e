/**
 * podvisor as a container image and a Kubernetes workload, for real: the image
 * that `make image` built (make test builds it before this tier), the
 * manifests rendered by `kubectl kustomize`, and the StatefulSet's pod
 * template run by `podman kube play` on a podman CNI network of its own. The
 * test guest is served over HTTP from the host, on that network's gateway, as
 * IMG_SOURCE. Checked: every binary the code can start is in the image; the
 * guest's page (with the ConfigMap's instance-id) on the pod IP; qemu's RFB on
 * 5900 and /readyz on 5800; serial console and JSON logs in `podman logs`;
 * `podvisor ctl status` through `podman exec`; exactly the overlay's
 * capabilities, not privileged, /proc/sys read-only; `podman pod stop` ->
 * ACPI power-off and exit 0 before the grace period ends (teardown bounded
 * without CAP_KILL, CAP_SETUID, CAP_SETGID: dnsmasq keeps podvisor's user);
 * a second kube play on the same volumes boots the same pet disk. With a
 * documented capability and device taken out of the manifest, doctor names
 * both in the logs and the container exits 3 before any pull. The macvtap
 * overlay runs in a container joined to a Calico-style pod namespace made by
 * test/support/pod.sh (`podman run --network ns:...`: podman 4.3's kube play
 * cannot join a namespace path) with exactly the overlay's capabilities plus
 * the one device-cgroup rule its `privileged: true` stands in for.
 * Everything is named with a unique prefix and removed, even on failure.
 */
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments, stringify } from 'yaml';
import { capabilityBit, hasCapabilities, parseEffectiveCapabilities } from '@podvisor/core';
import { HttpImageServer } from '../support/http-image-server.js';
import { PODVISOR_IMAGE, PodmanLogs, REPO_ROOT, declaredCapabilities, podFromStatefulSet, podman, type KubeObject } from '../support/podman.js';
import { scanSpawnedBinaries } from '../support/spawned-binaries.js';
import { createPod as createPodNs, destroyPod, guestPageFromNode, macOf, macvtapMajor, podView } from './support/pod-namespace.js';
import { ARTIFACTS, GUEST, readEvents, requireBuilt, types } from './support/podvisor-process.js';

const ID = `pvct${randomBytes(3).toString('hex')}`;
const NETWORK = `${ID}-net`;
const HOSTNAME = 'vm-0';
const CONFIG_MAP = `${ID}-cloud-init`;
// kube play keeps a ConfigMap volume as a podman volume named after the ConfigMap.
const VOLUMES = { disk: `${ID}-disk`, images: `${ID}-images`, configMap: CONFIG_MAP };
const INSTANCE_ID = `${ID}-instance`;

let work = '';
let server: HttpImageServer | undefined;
let bridge: string | undefined;
const pods = new Set<string>();
const followers: PodmanLogs[] = [];
let failed = false;

function render(overlay: string): KubeObject[] {
  const text = execFileSync('kubectl', ['kustomize', path.join(REPO_ROOT, 'deploy/kubernetes/overlays', overlay)], { encoding: 'utf8' });
  return parseAllDocuments(text).map((d) => d.toJS() as KubeObject);
}

function one(objects: KubeObject[], kind: string): KubeObject {
  const found = objects.filter((o) => o.kind === kind);
  expect(found, `one ${kind} in the rendered manifests`).toHaveLength(1);
  return found[0] as KubeObject;
}

/** Plays the overlay's StatefulSet as pod `podName`; returns the container's name and the pod IP. */
async function play(objects: KubeObject[], podName: string, extraEnv: Record<string, string> = {}): Promise<{ container: string; podIp: string; logs: PodmanLogs }> {
  const sts = one(objects, 'StatefulSet');
  const cm = one(objects, 'ConfigMap');
  const cmName = CONFIG_MAP;
  const configMap = { ...cm, metadata: { ...cm.metadata, name: cmName }, data: { ...cm.data, metadata: `instance-id: ${INSTANCE_ID}\n` } };
  const pod = podFromStatefulSet(sts, {
    podName,
    hostname: HOSTNAME,
    claims: { disk: VOLUMES.disk, 'podvisor-images': VOLUMES.images },
    configMaps: { [cm.metadata.name]: cmName },
    env: { IMG_SOURCE: server?.url('/guest.qcow2') ?? '', PODVISOR_ACCEL: 'tcg', ...extraEnv },
    image: PODVISOR_IMAGE,
  });
  await writeFile(path.join(work, `${podName}.yaml`), stringify(pod));
  await writeFile(path.join(work, `${podName}-cm.yaml`), stringify(configMap));
  pods.add(podName);
  await podman(['kube', 'play', '--network', NETWORK, '--configmap', path.join(work, `${podName}-cm.yaml`), path.join(work, `${podName}.yaml`)]);
  const container = `${podName}-${(pod.spec?.['containers'] as { name: string }[])[0]?.name ?? ''}`;
  const infra = (await podman(['pod', 'inspect', podName, '--format', '{{.InfraContainerID}}'])).stdout.trim();
  const podIp = (await podman(['inspect', infra, '--format', `{{(index .NetworkSettings.Networks "${NETWORK}").IPAddress}}`])).stdout.trim();
  expect(podIp).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
  const logs = new PodmanLogs(container);
  followers.push(logs);
  return { container, podIp, logs };
}

async function get(url: string): Promise<{ status: number; body: string }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  return { status: res.status, body: await res.text() };
}

/** The first bytes qemu's VNC server sends: the RFB protocol version. */
function rfbBanner(host: string, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port });
    s.setTimeout(10_000, () => s.destroy(new Error(`no RFB banner from ${host}:${port}`)));
    let data = '';
    s.on('data', (d) => {
      data += d.toString('latin1');
      if (data.length >= 12) {
        s.destroy();
        resolve(data.slice(0, 12));
      }
    });
    s.on('error', reject);
  });
}

async function stateDir(): Promise<string> {
  const mount = (await podman(['volume', 'inspect', VOLUMES.disk, '--format', '{{.Mountpoint}}'])).stdout.trim();
  return path.join(mount, '.podvisor');
}

beforeAll(async () => {
  requireBuilt();
  const image = await podman(['image', 'exists', PODVISOR_IMAGE], { check: false });
  if (image.exitCode !== 0) throw new Error(`${PODVISOR_IMAGE} is missing: run make image (make test does it)`);
  work = await mkdtemp(path.join(tmpdir(), `${ID}-`));
  await podman(['network', 'create', NETWORK]);
  const info = JSON.parse((await podman(['network', 'inspect', NETWORK])).stdout) as { network_interface: string; subnets: { gateway: string }[] }[];
  bridge = info[0]?.network_interface;
  const gateway = info[0]?.subnets[0]?.gateway ?? '';
  // CNI makes the bridge, with the gateway address, for the network's first container.
  await podman(['run', '--rm', '--network', NETWORK, '--entrypoint', 'true', PODVISOR_IMAGE]);
  server = await new HttpImageServer().start(gateway);
  await server.serve('/guest.qcow2', GUEST);
});

afterAll(async () => {
  for (const f of followers) f.stop();
  for (const p of pods) {
    if (failed) {
      await mkdir(ARTIFACTS, { recursive: true });
      const logs = await podman(['pod', 'logs', p], { check: false });
      await writeFile(path.join(ARTIFACTS, `${p}.log`), `${logs.stdout}\n--- stderr ---\n${logs.stderr}`).catch(() => undefined);
    }
    await podman(['pod', 'rm', '-f', '-t', '0', p], { check: false });
  }
  for (const v of Object.values(VOLUMES)) await podman(['volume', 'rm', '-f', v], { check: false });
  await podman(['network', 'rm', '-f', NETWORK], { check: false });
  if (bridge !== undefined && bridge !== '') execFileSync('sh', ['-c', `ip link show ${bridge} >/dev/null 2>&1 && ip link del ${bridge} || true`]);
  server?.close();
  if (work !== '') await rm(work, { recursive: true, force: true });
});

describe('the container image', () => {
  it('holds every binary the code can start, gives podvisor on PATH, and a shell for `sh`', async () => {
    const { binaries, unresolved } = scanSpawnedBinaries(REPO_ROOT);
    expect(unresolved).toEqual([]);
    const names = [...binaries.keys()].sort();
    expect(names).toEqual(expect.arrayContaining(['dnsmasq', 'ip', 'nft', 'qemu-img', 'qemu-system-x86_64', 'setpriv']));
    const check = [...names, 'podvisor', 'node'].map((b) => `command -v ${b} >/dev/null || echo "missing: ${b}"`).join('; ');
    const out = await podman(['run', '--rm', '--network', 'none', '--entrypoint', 'sh', PODVISOR_IMAGE, '-c', check]);
    expect(out.stdout.trim()).toBe('');
    // BBVA docker-kvm's promise: `sh` as the container's first argument is a debug shell.
    expect((await podman(['run', '--rm', '--network', 'none', PODVISOR_IMAGE, 'sh', '-c', 'echo shell here'])).stdout.trim()).toBe('shell here');
    const inspect = JSON.parse((await podman(['image', 'inspect', PODVISOR_IMAGE])).stdout) as { Config: { Entrypoint: string[]; Labels: Record<string, string> } }[];
    expect(inspect[0]?.Config.Entrypoint).toEqual(['/usr/local/bin/podvisor-entrypoint']);
    expect(inspect[0]?.Config.Labels['org.opencontainers.image.title']).toBe('podvisor');
  });
});

describe('the nat-bridge StatefulSet under podman kube play', () => {
  it('serves the guest on the pod IP with only the declared capabilities, stops cleanly, and boots the same pet disk again', async () => {
    try {
      const objects = render('nat-bridge');
      const sts = one(objects, 'StatefulSet');
      const grace = (sts.spec?.['template'] as { spec: { terminationGracePeriodSeconds: number } }).spec.terminationGracePeriodSeconds;
      const declared = declaredCapabilities(sts);
      expect(declared.sort()).toEqual(['CAP_NET_ADMIN', 'CAP_NET_BIND_SERVICE']);

      const first = await play(objects, `${ID}-a`);
      await first.logs.waitForStdout(/PODVISOR-GUEST-READY boot-count=1 instance-id=(\S+)/);
      const page = await get(`http://${first.podIp}/`);
      expect(page.status).toBe(200);
      expect(page.body).toContain(`instance-id: ${INSTANCE_ID}`);
      expect(page.body).toContain('boot-count: 1');
      expect(await rfbBanner(first.podIp, 5900)).toMatch(/^RFB 003\.00\d\n$/);
      expect((await get(`http://${first.podIp}:5800/readyz`)).status).toBe(200);
      // podman logs: the serial console on stdout, podvisor's JSON lines on stderr.
      expect(first.logs.stdout).toContain('PODVISOR-GUEST-READY');
      const json = first.logs.stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { level?: string; msg?: string });
      expect(json.some((l) => l.msg === 'attached')).toBe(true);
      const status = await podman(['exec', first.container, 'podvisor', 'ctl', 'status']);
      expect(status.stdout).toContain('Running');

      // Exactly the overlay's capabilities, not privileged, /proc/sys read-only.
      const caps = parseEffectiveCapabilities((await podman(['exec', first.container, 'cat', '/proc/1/status'])).stdout);
      const expected = declared.reduce((m, c) => m | (1n << BigInt(capabilityBit(c))), 0n);
      expect(caps?.toString(16)).toBe(expected.toString(16));
      expect(hasCapabilities(caps ?? 0n, ['CAP_KILL'])).toBe(false);
      expect((await podman(['inspect', first.container, '--format', '{{.HostConfig.Privileged}}'])).stdout.trim()).toBe('false');
      const mounts = (await podman(['exec', first.container, 'cat', '/proc/self/mounts'])).stdout;
      expect(mounts.split('\n').find((l) => l.split(' ')[1] === '/proc/sys')?.split(' ')[3]?.split(',')).toContain('ro');

      // The kubelet's stop: SIGTERM, then SIGKILL after the grace period.
      await podman(['pod', 'stop', '-t', String(grace), `${ID}-a`], { timeoutMs: (grace + 30) * 1000 });
      expect((await podman(['inspect', first.container, '--format', '{{.State.ExitCode}}'])).stdout.trim()).toBe('0');
      expect(first.logs.stdout).toContain('PODVISOR-GUEST-POWEROFF');
      const events = readEvents(await stateDir());
      // ACPI power-down is repeated until qemu exits, so more requests may come after the guest said it shuts down.
      const stop = types(events).slice(types(events).indexOf('VmPowerdownRequested'));
      expect(stop.filter((t) => t !== 'VmPowerdownRequested')).toEqual(['GuestShutdownObserved', 'VmExited', 'VmStopped', 'NetworkDetached', 'SupervisorExited']);
      await podman(['pod', 'rm', '-f', `${ID}-a`]);
      pods.delete(`${ID}-a`);

      // A rescheduled pod: same hostname, same volumes, the same pet disk.
      const second = await play(objects, `${ID}-b`);
      await second.logs.waitForStdout(/PODVISOR-GUEST-READY boot-count=2 /);
      expect((await get(`http://${second.podIp}/`)).body).toContain('boot-count: 2');
      const again = readEvents(await stateDir());
      expect(types(again).filter((t) => t === 'DiskReused')).toHaveLength(1);
      await podman(['pod', 'stop', '-t', String(grace), `${ID}-b`], { timeoutMs: (grace + 30) * 1000 });
      expect((await podman(['inspect', second.container, '--format', '{{.State.ExitCode}}'])).stdout.trim()).toBe('0');
    } catch (err) {
      failed = true;
      throw err;
    }
  }, 420_000);
});

describe('a documented privilege removed from the nat-bridge StatefulSet', () => {
  it('without NET_BIND_SERVICE and /dev/net/tun: doctor names both in the logs, and the container exits 3 before any pull', async () => {
    try {
      const objects = render('nat-bridge');
      const sts = structuredClone(one(objects, 'StatefulSet'));
      const spec = (sts.spec?.['template'] as { spec: { containers: Record<string, unknown>[]; volumes: { name: string }[] } }).spec;
      const container = spec.containers[0] as { securityContext: { capabilities: { add: string[] } }; volumeMounts: { name: string }[] };
      container.securityContext.capabilities.add = container.securityContext.capabilities.add.filter((c) => c !== 'NET_BIND_SERVICE');
      container.volumeMounts = container.volumeMounts.filter((m) => m.name !== 'dev-net-tun');
      spec.volumes = spec.volumes.filter((v) => v.name !== 'dev-net-tun');
      const requestsBefore = server?.requests.length ?? 0;
      const { container: name, logs } = await play([sts, ...objects.filter((o) => o.kind !== 'StatefulSet')], `${ID}-c`);
      const exit = await podman(['wait', name], { timeoutMs: 60_000 });
      expect(exit.stdout.trim()).toBe('3');
      await logs.waitFor(() => (logs.ended ? true : null), 'the end of the logs', 30_000);
      expect(logs.stderr).toContain('ERR_PREFLIGHT_FAILED');
      expect(logs.stderr).toContain("add NET_BIND_SERVICE to the container's securityContext.capabilities.add");
      expect(logs.stderr).toContain('/dev/net/tun');
      // Before any pull: the image server saw no request from this pod.
      expect(server?.requests.length ?? 0).toBe(requestsBefore);
    } catch (err) {
      failed = true;
      throw err;
    }
  }, 180_000);
});

describe('the macvtap StatefulSet in a container joined to a Calico-style pod namespace', () => {
  it('runs with exactly the overlay\'s capabilities plus the macvtap device-cgroup rule: the VM answers on the pod IP with the pod MAC, and a stop gives the pod back', async () => {
    const pod = `${ID}-mvt`;
    const name = `${ID}-mvt-vm`;
    const volumes = [`${ID}-mvt-disk`, `${ID}-mvt-images`];
    try {
      const objects = render('macvtap');
      const sts = one(objects, 'StatefulSet');
      const template = (sts.spec?.['template'] as { spec: { terminationGracePeriodSeconds: number; containers: ContainerSpec[] } }).spec;
      const vm = template.containers[0] as ContainerSpec;
      const declared = declaredCapabilities(sts);
      expect(declared.sort()).toEqual(['CAP_MKNOD', 'CAP_NET_ADMIN', 'CAP_NET_BIND_SERVICE']);
      // privileged stands in for the one thing a pod spec cannot name: the device-cgroup rule below.
      expect(vm.securityContext?.privileged).toBe(true);
      const major = macvtapMajor(pod);

      await writeFile(path.join(work, 'mvt-resolv.conf'), 'nameserver 10.96.0.10\nsearch default.svc.cluster.local\n');
      createPodNs(pod, ['eth0=10.91.3.7/32'], path.join(work, 'mvt-resolv.conf'));
      const before = podView(pod);
      const mac = macOf(pod, 'eth0');
      const env = Object.fromEntries(vm.env.map((e) => [e.name, e.value]));
      Object.assign(env, { IMG_SOURCE: '/srv/guest.qcow2', PODVISOR_ACCEL: 'tcg' });
      delete env['PODVISOR_USERDATA'];
      delete env['PODVISOR_METADATA'];
      await podman([
        'run', '-d', '--name', name, '--hostname', HOSTNAME,
        '--network', `ns:/run/netns/${pod}`,
        '--cap-drop', 'ALL', '--cap-add', declared.map((c) => c.replace(/^CAP_/, '')).join(','),
        '--device-cgroup-rule', `c ${major}:* rwm`,
        '--security-opt', 'no-new-privileges',
        '--memory', vm.resources?.limits?.memory?.replace(/Mi$/, 'm') ?? '',
        '-v', `${volumes[0]}:/var/lib/podvisor/disk`, '-v', `${volumes[1]}:/var/lib/podvisor/images`,
        '-v', `${GUEST}:/srv/guest.qcow2:ro`,
        ...Object.entries(env).flatMap(([k, v]) => ['-e', `${k}=${v}`]),
        PODVISOR_IMAGE,
      ]);
      const logs = new PodmanLogs(name);
      followers.push(logs);
      await logs.waitForStdout(/PODVISOR-GUEST-READY boot-count=1 /);
      expect(logs.stdout).toContain(`PODVISOR-GUEST-NIC eth0 ${mac} 10.91.3.7/32`);
      const page = await guestPageFromNode(pod, '10.91.3.7');
      expect(page).toContain(`nic: eth0 ${mac} 10.91.3.7/32`);
      expect((await podman(['exec', name, 'podvisor', 'ctl', 'status'])).stdout).toContain('Running');

      // Exactly the overlay's capabilities, not privileged; no tap node is left in /dev.
      const caps = parseEffectiveCapabilities((await podman(['exec', name, 'cat', '/proc/1/status'])).stdout);
      expect(caps?.toString(16)).toBe(declared.reduce((m, c) => m | (1n << BigInt(capabilityBit(c))), 0n).toString(16));
      expect((await podman(['inspect', name, '--format', '{{.HostConfig.Privileged}}'])).stdout.trim()).toBe('false');
      expect((await podman(['exec', name, 'ls', '/dev'])).stdout).not.toContain('podvisor-tap-');

      await podman(['stop', '-t', String(template.terminationGracePeriodSeconds), name], { timeoutMs: (template.terminationGracePeriodSeconds + 30) * 1000 });
      expect((await podman(['inspect', name, '--format', '{{.State.ExitCode}}'])).stdout.trim()).toBe('0');
      expect(podView(pod)).toEqual(before);
    } catch (err) {
      failed = true;
      const logs = await podman(['logs', name], { check: false });
      await mkdir(ARTIFACTS, { recursive: true });
      await writeFile(path.join(ARTIFACTS, `${name}.log`), `${logs.stdout}\n--- stderr ---\n${logs.stderr}`).catch(() => undefined);
      throw err;
    } finally {
      await podman(['rm', '-f', '-t', '0', name], { check: false });
      for (const v of volumes) await podman(['volume', 'rm', '-f', v], { check: false });
      destroyPod(pod);
    }
  }, 300_000);
});

interface ContainerSpec {
  env: { name: string; value: string }[];
  resources?: { limits?: { memory?: string } };
  securityContext?: { privileged?: boolean };
}
