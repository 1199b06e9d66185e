/**
 * podman for the container tests: every call with the repo's containers.conf
 * (runc, and rlimits podman accepts on these machines), a follower of
 * `podman logs -f` that waits on what the container says, and the adaptation
 * of a rendered StatefulSet into the Pod that `podman kube play` runs: the
 * pod template as written, with its claims bound to podman volumes, its
 * ConfigMaps renamed, and the probes and ports left out: podman would turn
 * an httpGet probe into a `curl` healthcheck run by systemd timers (the tests
 * wait on /readyz themselves, as a kubelet would), and podman 4.3 publishes a
 * containerPort on the host's own port (the pod IP is what is tested).
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { ChildOutput } from './child-output.js';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const CONTAINERS_CONF = path.join(REPO_ROOT, 'deploy/podman/containers.conf');
/** What `make image` builds; PODVISOR_TEST_IMAGE names another tag (`make image IMAGE=...`), e.g. for a second checkout on the same machine. */
export const PODVISOR_IMAGE = process.env['PODVISOR_TEST_IMAGE'] ?? 'localhost/podvisor:latest';

const env = { ...process.env, CONTAINERS_CONF };

export interface PodmanResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** Runs podman; throws with its stderr on a non-zero exit unless `check: false`. */
export async function podman(args: readonly string[], options: { check?: boolean; input?: string; timeoutMs?: number } = {}): Promise<PodmanResult> {
  const r = await execa('podman', [...args], { env, reject: false, input: options.input, timeout: options.timeoutMs ?? 120_000 });
  const out = { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
  if (options.check !== false && out.exitCode !== 0) throw new Error(`podman ${args.join(' ')} failed (${r.exitCode ?? r.signal}): ${out.stderr.trim() || out.stdout.trim()}`);
  return out;
}

/** Follows `podman logs -f` of a container: stdout is the serial console, stderr the JSON logs. */
export class PodmanLogs extends ChildOutput {
  constructor(container: string) {
    super(spawn('podman', ['logs', '-f', container], { env, stdio: ['ignore', 'pipe', 'pipe'] }), "the container's logs", 180_000);
  }

  stop(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}

type Obj = Record<string, unknown>;

export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string> } & Obj;
  spec?: Obj;
  data?: Record<string, string>;
}

export interface PodFromStatefulSet {
  /** The pod's name (podman names its container `<pod>-<container>`). */
  podName: string;
  /** The pod's hostname, as a StatefulSet gives its ordinal pod (`<set>-0`). */
  hostname: string;
  /** volumeClaimTemplates and persistentVolumeClaim claim names -> podman volume names. */
  claims: Record<string, string>;
  /** ConfigMap names -> the names the test gives them. */
  configMaps: Record<string, string>;
  /** Environment values to set (replacing the manifest's) on the first container. */
  env: Record<string, string>;
  /** The first container's image, instead of the manifest's. */
  image?: string;
}

/**
 * The Pod that the StatefulSet's controller would create for `hostname`,
 * with its claims as podman volumes. Pure.
 */
export function podFromStatefulSet(sts: KubeObject, o: PodFromStatefulSet): KubeObject {
  const template = structuredClone(sts.spec?.['template']) as { metadata?: Obj; spec: Obj };
  const spec = template.spec;
  const claimTemplates = (sts.spec?.['volumeClaimTemplates'] ?? []) as { metadata: { name: string } }[];
  const volumes = ((spec['volumes'] ?? []) as Obj[]).map((v) => {
    const pvc = v['persistentVolumeClaim'] as { claimName: string } | undefined;
    const cm = v['configMap'] as { name: string } | undefined;
    if (pvc !== undefined) return { ...v, persistentVolumeClaim: { ...pvc, claimName: mapped(o.claims, pvc.claimName, 'claim') } };
    if (cm !== undefined) return { ...v, configMap: { ...cm, name: mapped(o.configMaps, cm.name, 'ConfigMap') } };
    return v;
  });
  for (const t of claimTemplates) volumes.push({ name: t.metadata.name, persistentVolumeClaim: { claimName: mapped(o.claims, t.metadata.name, 'claim template') } });
  const containers = (spec['containers'] as Obj[]).map((c, i) => {
    const { startupProbe: _s, livenessProbe: _l, readinessProbe: _r, ports: _p, ...rest } = c;
    if (i !== 0) return rest;
    const envList = ((c['env'] ?? []) as { name: string; value?: string }[]).filter((e) => !(e.name in o.env));
    return { ...rest, ...(o.image === undefined ? {} : { image: o.image }), env: [...envList, ...Object.entries(o.env).map(([name, value]) => ({ name, value }))] };
  });
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: o.podName, labels: (template.metadata?.['labels'] ?? {}) as Record<string, string> },
    spec: { ...spec, hostname: o.hostname, restartPolicy: 'Never', containers, volumes },
  };
}

function mapped(map: Record<string, string>, name: string, what: string): string {
  const to = map[name];
  if (to === undefined) throw new Error(`the manifest's ${what} ${name} has no test name`);
  return to;
}

/** The capability names of a container's securityContext `add` list as Linux names (`NET_ADMIN` -> `CAP_NET_ADMIN`). */
export function declaredCapabilities(sts: KubeObject): string[] {
  const c = ((sts.spec?.['template'] as { spec: Obj }).spec['containers'] as Obj[])[0] as { securityContext?: { capabilities?: { add?: string[] } } };
  return (c.securityContext?.capabilities?.add ?? []).map((n) => `CAP_${n}`);
}
