#!/usr/bin/env node
// The container against the host, in the same run: the time from
// `podman kube play` (the nat-bridge overlay's pod template, as the e2e test
// adapts it) to GET :5800/readyz answering 200 and to the guest's page on the
// pod IP, against `podvisor run` on the host in a simulated pod
// (test/support/pod.sh, node namespace = the root namespace) with the same
// guest, the same local base file (imported into an empty cache by both) and
// TCG. Also: the image size, and the resident memory of podvisor (node) and of
// qemu inside the container with the guest running.
//   usage: node bench/container/startup.mjs [RUNS]     (as root; make build guest image first)
//   PODVISOR_TEST_IMAGE=TAG runs another tag than the manifest's localhost/podvisor:latest.
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments, stringify } from 'yaml';

const repo = fileURLToPath(new URL('../../', import.meta.url));
const runs = Number(process.argv[2] ?? 3);
const guest = path.join(repo, 'test/guest/.cache/guest.qcow2');
const cli = path.join(repo, 'apps/supervisord/dist/bundle/podvisor.cjs');
const env = { ...process.env, CONTAINERS_CONF: path.join(repo, 'deploy/podman/containers.conf') };
const id = `pvbc${randomBytes(3).toString('hex')}`;
const net = `${id}-net`;
const work = mkdtempSync(path.join(tmpdir(), `${id}-`));
const podmanJson = (args) => JSON.parse(execFileSync('podman', args, { env, encoding: 'utf8' }));
const image = process.env.PODVISOR_TEST_IMAGE ?? 'localhost/podvisor:latest';
const podman = (...args) => execFileSync('podman', args, { env, encoding: 'utf8' }).trim();

/** Polls `url` until it answers 200 (the way a readiness probe does); returns ms since `t0`. */
async function until200(url, t0, timeoutMs = 300_000) {
  for (;;) {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
      await res.text();
      if (res.status === 200) return performance.now() - t0;
    } catch {
      // not yet
    }
    if (performance.now() - t0 > timeoutMs) throw new Error(`${url} did not answer 200 within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function podTemplate(name, hostname) {
  const objects = parseAllDocuments(execFileSync('kubectl', ['kustomize', path.join(repo, 'deploy/kubernetes/overlays/nat-bridge')], { encoding: 'utf8' })).map((d) => d.toJS());
  const sts = objects.find((o) => o.kind === 'StatefulSet');
  const cm = objects.find((o) => o.kind === 'ConfigMap');
  const spec = structuredClone(sts.spec.template.spec);
  const c = spec.containers[0];
  c.image = image;
  delete c.startupProbe;
  delete c.livenessProbe;
  delete c.readinessProbe;
  delete c.ports; // podman 4.3 would publish them on the host's ports
  c.env = [...c.env.filter((e) => e.name !== 'IMG_SOURCE'), { name: 'IMG_SOURCE', value: '/guest.qcow2' }, { name: 'PODVISOR_ACCEL', value: 'tcg' }];
  c.volumeMounts.push({ name: 'guest', mountPath: '/guest.qcow2', readOnly: true });
  spec.volumes = spec.volumes.map((v) =>
    v.persistentVolumeClaim ? { ...v, persistentVolumeClaim: { claimName: `${name}-images` } } : v.configMap ? { ...v, configMap: { name: `${name}-cm` } } : v,
  );
  spec.volumes.push({ name: 'disk', persistentVolumeClaim: { claimName: `${name}-disk` } }, { name: 'guest', hostPath: { path: guest, type: 'File' } });
  writeFileSync(path.join(work, `${name}.yaml`), stringify({ apiVersion: 'v1', kind: 'Pod', metadata: { name }, spec: { ...spec, hostname, restartPolicy: 'Never' } }));
  writeFileSync(path.join(work, `${name}-cm.yaml`), stringify({ ...cm, metadata: { name: `${name}-cm` } }));
}

async function container(n) {
  const name = `${id}-c${n}`;
  podTemplate(name, 'vm-0');
  const t0 = performance.now();
  podman('kube', 'play', '--network', net, '--configmap', path.join(work, `${name}-cm.yaml`), path.join(work, `${name}.yaml`));
  const infra = podman('pod', 'inspect', name, '--format', '{{.InfraContainerID}}');
  const ip = podman('inspect', infra, '--format', `{{(index .NetworkSettings.Networks "${net}").IPAddress}}`);
  const ready = await until200(`http://${ip}:5800/readyz`, t0);
  const page = await until200(`http://${ip}/`, t0);
  // Resident memory inside the container with the guest running: PID 1 (podvisor) and qemu.
  const rss = podman('exec', `${name}-vm`, 'sh', '-c', 'for d in /proc/[0-9]*; do echo "$(cat $d/comm) $(grep VmRSS $d/status)"; done');
  const kib = (comm) => Number(/VmRSS:\s+(\d+)/.exec(rss.split('\n').find((l) => l.startsWith(`${comm} `)) ?? '')?.[1] ?? NaN);
  const mem = { podvisor: kib('node') / 1024, qemu: kib('qemu-system-x86') / 1024 };
  podman('pod', 'stop', '-t', '40', name);
  podman('pod', 'rm', '-f', name);
  execFileSync('podman', ['volume', 'rm', '-f', `${name}-disk`, `${name}-images`], { env });
  return { ready, page, mem };
}

async function host(n) {
  const pod = `${id}-h${n}`;
  const dir = path.join(work, pod);
  const facts = Object.fromEntries(
    execFileSync(path.join(repo, 'test/support/pod.sh'), ['create', pod, '--node', 'root'], { encoding: 'utf8' })
      .trim()
      .split('\n')
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
  const ip = facts.POD_IP;
  const t0 = performance.now();
  const child = spawn('ip', ['netns', 'exec', pod, process.execPath, cli, 'run'], {
    env: { PATH: process.env.PATH, HOSTNAME: 'vm-0', IMG_SOURCE: guest, PODVISOR_ACCEL: 'tcg', PODVISOR_DISK_DIR: `${dir}/disk`, PODVISOR_IMAGES_DIR: `${dir}/images` },
    stdio: 'ignore',
  });
  try {
    const ready = await until200(`http://${ip}:5800/readyz`, t0);
    const page = await until200(`http://${ip}/`, t0);
    return { ready, page };
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('close', r));
    execFileSync(path.join(repo, 'test/support/pod.sh'), ['destroy', pod]);
  }
}

try {
  podman('network', 'create', net);
  const size = podmanJson(['image', 'inspect', image])[0].Size;
  const rows = [];
  for (let i = 1; i <= runs; i++) {
    const h = await host(i);
    const c = await container(i);
    rows.push({ i, h, c });
    console.log(`| ${i} | ${Math.round(h.ready)} | ${Math.round(h.page)} | ${Math.round(c.ready)} | ${Math.round(c.page)} | ${c.mem.podvisor.toFixed(1)} | ${c.mem.qemu.toFixed(1)} |`);
  }
  console.log(`image ${image}: ${(size / 1024 / 1024).toFixed(0)} MiB (podman image inspect .Size)`);
} finally {
  execFileSync('sh', ['-c', `podman pod rm -f $(podman pod ls -q --filter name=^${id}-) >/dev/null 2>&1; podman volume rm -f $(podman volume ls -q --filter name=^${id}-) >/dev/null 2>&1; podman network rm -f ${net} >/dev/null 2>&1; true`], { env });
  rmSync(work, { recursive: true, force: true });
}
