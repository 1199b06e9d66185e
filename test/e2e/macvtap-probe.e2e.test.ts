/**
 * The macvtap backend's preflight probe for real: `podvisor doctor` in the
 * container image (`make image`), joined to a Calico-style pod namespace made
 * by test/support/pod.sh (`podman run --network ns:...`), with the overlay's
 * capabilities but without the device-cgroup rule for the macvtap devices:
 * doctor fails on `device.macvtap`, naming the rule `c <major>:* rwm` with
 * the major of this machine, and exits 3. With the rule, the same check
 * passes; without MKNOD or NET_ADMIN it names those. Each time the pod is
 * left as it was (no probe link; the int test checks the node and its
 * directory are removed, which a container's /dev tmpfs would hide). Everything
 * is named with a unique prefix and removed, even on failure.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PreflightFinding } from '../../apps/supervisord/src/preflight/preflight-model.js';
import { PODVISOR_IMAGE, podman } from '../support/podman.js';
import { createPod, destroyPod, macvtapMajor, podView } from './support/pod-namespace.js';

const ID = `pvmvp${randomBytes(3).toString('hex')}`;
const POD = `${ID}-pod`;
const OVERLAY_CAPS = ['NET_ADMIN', 'MKNOD', 'NET_BIND_SERVICE'];

let work = '';
let major = 0;

beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), `${ID}-`));
  await writeFile(path.join(work, 'resolv.conf'), 'nameserver 10.96.0.10\n');
  createPod(POD, ['eth0=10.92.4.7/32'], path.join(work, 'resolv.conf'));
  major = macvtapMajor(POD);
});

afterAll(async () => {
  destroyPod(POD);
  if (work !== '') await rm(work, { recursive: true, force: true });
});

/** Runs `podvisor doctor --json` for macvtap in a container joined to the pod, with `caps` and podman `extra` options. */
async function doctorInPod(caps: readonly string[], extra: readonly string[] = []): Promise<{ code: number; findings: Map<string, PreflightFinding> }> {
  const name = `${ID}-${randomBytes(2).toString('hex')}`;
  try {
    const r = await podman(
      [
        'run', '--name', name, '--network', `ns:/run/netns/${POD}`,
        '--cap-drop', 'ALL', ...(caps.length === 0 ? [] : ['--cap-add', caps.join(',')]),
        '--security-opt', 'no-new-privileges', ...extra,
        '-e', 'PODVISOR_NETWORK=macvtap', '-e', 'PODVISOR_ACCEL=tcg', // doctor pulls nothing: the source is never asked.
        '-e', 'IMG_SOURCE=https://images.podvisor.invalid/guest.qcow2', '-e', 'PODVISOR_LOG_LEVEL=warn',
        PODVISOR_IMAGE, 'podvisor', 'doctor', '--json',
      ],
      { check: false },
    );
    let report: { findings: PreflightFinding[] };
    try {
      report = JSON.parse(r.stdout) as { findings: PreflightFinding[] };
    } catch {
      throw new Error(`doctor printed no JSON (exit ${r.exitCode}): ${r.stdout}\n${r.stderr}`);
    }
    return { code: r.exitCode, findings: new Map(report.findings.map((f) => [f.id, f])) };
  } finally {
    await podman(['rm', '-f', '-t', '0', name], { check: false });
  }
}

describe('the macvtap probe of podvisor doctor, in a container joined to a pod namespace', () => {
  it('without the device-cgroup rule: device.macvtap fails, naming the rule c <major>:* rwm and EPERM; exit 3; the pod is as it was', async () => {
    const before = podView(POD);
    const r = await doctorInPod(OVERLAY_CAPS);
    const finding = r.findings.get('device.macvtap');
    expect(finding?.status).toBe('fail');
    expect(finding?.finding).toMatch(new RegExp(`cannot open the tap device /dev/podvisor-tap-\\w+/tap\\d+ \\(char ${major}:\\d+\\): EPERM`));
    expect(finding?.fix).toContain(`allow 'c ${major}:* rwm'`);
    // Everything else passes: the exit code is the probe's.
    expect([...r.findings.values()].filter((f) => f.status === 'fail').map((f) => f.id)).toEqual(['device.macvtap']);
    expect(r.code).toBe(3);
    expect(podView(POD)).toEqual(before);
  }, 180_000);

  it('with the rule c <major>:* rwm: device.macvtap is ok and doctor exits 0; the pod is as it was', async () => {
    const before = podView(POD);
    const r = await doctorInPod(OVERLAY_CAPS, ['--device-cgroup-rule', `c ${major}:* rwm`]);
    expect(r.findings.get('device.macvtap')).toMatchObject({ status: 'ok', finding: `a macvtap device (char major ${major}) on eth0 opens read-write` });
    expect(r.code).toBe(0);
    expect(podView(POD)).toEqual(before);
  }, 180_000);

  it('without MKNOD: device.macvtap names CAP_MKNOD', async () => {
    const r = await doctorInPod(OVERLAY_CAPS.filter((c) => c !== 'MKNOD'));
    expect(r.findings.get('device.macvtap')).toMatchObject({ status: 'fail', finding: expect.stringContaining(`cannot make the tap node`) as string, fix: expect.stringContaining('CAP_MKNOD') as string });
    expect(r.code).toBe(3);
  }, 180_000);

  it('without NET_ADMIN: the link is refused, and device.macvtap names NET_ADMIN', async () => {
    const before = podView(POD);
    const r = await doctorInPod(OVERLAY_CAPS.filter((c) => c !== 'NET_ADMIN'));
    expect(r.findings.get('device.macvtap')).toMatchObject({ status: 'fail', finding: expect.stringContaining('cannot create a macvtap link on eth0') as string, fix: 'add NET_ADMIN to the container securityContext capabilities' });
    expect(r.code).toBe(3);
    expect(podView(POD)).toEqual(before);
  }, 180_000);
});
