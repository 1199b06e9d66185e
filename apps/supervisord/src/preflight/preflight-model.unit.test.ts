import { describe, expect, it } from 'vitest';
import type { Prerequisites } from '@podvisor/core';
import { evaluatePreflight, formatFindings, probeList, worstStatus, type PreflightFacts, type PreflightNeeds, type VolumeNeed } from './preflight-model.js';

const NET: Prerequisites = {
  binaries: [{ name: 'ip', why: 'links' }, { name: 'dnsmasq', why: 'DHCP' }],
  capabilities: [{ name: 'NET_ADMIN', why: 'links and nftables' }, { name: 'KILL', why: 'signals dnsmasq' }],
  devices: [{ path: '/dev/net/tun', why: 'the tap', fix: 'mount /dev/net/tun (hostPath CharDevice or a device plugin)' }],
  sysctls: [{ name: 'net.ipv4.ip_forward', value: '1', why: 'forwarding', setsItself: true }],
};
const RUNNER: Prerequisites = { binaries: [{ name: 'setpriv', why: 'children die with podvisor', optional: true }, { name: 'ip', why: 'netns' }] };
const VOLUMES: VolumeNeed[] = [
  { role: 'images', path: '/var/lib/podvisor/images', setting: 'PODVISOR_IMAGES_DIR', neededBytes: 2_000_000_000, minFreeBytes: 0, why: 'cache' },
  { role: 'disk', path: '/var/lib/podvisor/disk', setting: 'PODVISOR_DISK_DIR', neededBytes: null, minFreeBytes: 256 * 1024 ** 2, why: 'pet disk' },
];
const needs = (accelerator: PreflightNeeds['accelerator'] = null): PreflightNeeds => ({
  components: [
    { component: 'process runner', prerequisites: RUNNER },
    { component: 'nat-bridge', prerequisites: NET },
  ],
  volumes: VOLUMES,
  accelerator,
});
const GOOD: PreflightFacts = {
  capabilities: { effective: new Set(['NET_ADMIN', 'KILL']), bounding: new Set(['NET_ADMIN', 'KILL']) },
  devices: { '/dev/net/tun': { opens: true } },
  sysctls: { 'net.ipv4.ip_forward': { value: '1', writable: { code: 'EROFS', message: 'read-only file system' } } },
  binaries: { ip: '/usr/sbin/ip', dnsmasq: '/usr/sbin/dnsmasq', setpriv: '/usr/bin/setpriv' },
  volumes: {
    '/var/lib/podvisor/images': { state: 'writable', exists: true, existing: '/var/lib/podvisor/images', freeBytes: 10e9 },
    '/var/lib/podvisor/disk': { state: 'writable', exists: false, existing: '/var/lib/podvisor', freeBytes: 10e9 },
  },
};
const find = (facts: PreflightFacts, id: string, accelerator: PreflightNeeds['accelerator'] = null) => evaluatePreflight(needs(accelerator), facts).find((f) => f.id === id);

describe('the preflight model', () => {
  it('lists each thing to probe once, however many components need it', () => {
    expect(probeList(needs())).toEqual({ devices: ['/dev/net/tun'], sysctls: ['net.ipv4.ip_forward'], binaries: ['setpriv', 'ip', 'dnsmasq'], volumes: ['/var/lib/podvisor/images', '/var/lib/podvisor/disk'] });
  });

  it('all present: every finding ok, in a stable order, one per need', () => {
    const findings = evaluatePreflight(needs(), GOOD);
    expect(findings.map((f) => [f.id, f.status])).toEqual([
      ['capability.NET_ADMIN', 'ok'],
      ['capability.KILL', 'ok'],
      ['device./dev/net/tun', 'ok'],
      ['sysctl.net.ipv4.ip_forward', 'ok'],
      ['volume.images', 'ok'],
      ['volume.disk', 'ok'],
      ['binary.setpriv', 'ok'],
      ['binary.ip', 'ok'],
      ['binary.dnsmasq', 'ok'],
    ]);
    expect(findings.every((f) => f.fix === undefined)).toBe(true);
    expect(worstStatus(findings)).toBe('ok');
    expect(find(GOOD, 'binary.ip')?.check).toBe('ip is on PATH (process runner, nat-bridge: netns)');
  });

  it('a capability missing from the bounding set fails and names the securityContext fix', () => {
    const facts = { ...GOOD, capabilities: { effective: new Set(['KILL', 'NET_ADMIN']), bounding: new Set(['KILL']) } };
    expect(find(facts, 'capability.NET_ADMIN')).toEqual({
      id: 'capability.NET_ADMIN',
      check: 'capability NET_ADMIN (nat-bridge: links and nftables)',
      status: 'fail',
      finding: 'NET_ADMIN is not in the bounding capability set; nat-bridge needs it for: links and nftables',
      fix: "add NET_ADMIN to the container's securityContext.capabilities.add (docker/podman: --cap-add NET_ADMIN)",
    });
    expect(find({ ...GOOD, capabilities: { effective: new Set(), bounding: new Set() } }, 'capability.KILL')?.finding).toContain('not in the effective and bounding capability set');
    expect(find({ ...GOOD, capabilities: { error: '/proc/self/status: ENOENT' } }, 'capability.KILL')).toMatchObject({ status: 'fail', finding: "cannot read this process's capabilities: /proc/self/status: ENOENT" });
  });

  it('a missing device fails with the fix its backend declares; a device cgroup refusal says so', () => {
    expect(find({ ...GOOD, devices: { '/dev/net/tun': { opens: false, code: 'ENOENT', message: 'no such file' } } }, 'device./dev/net/tun')).toMatchObject({
      status: 'fail',
      finding: '/dev/net/tun is missing',
      fix: 'mount /dev/net/tun (hostPath CharDevice or a device plugin)',
    });
    expect(find({ ...GOOD, devices: { '/dev/net/tun': { opens: false, code: 'EPERM', message: 'operation not permitted' } } }, 'device./dev/net/tun')?.finding).toBe(
      "/dev/net/tun cannot be opened: EPERM (the container's device cgroup does not allow it)",
    );
  });

  it('an optional device (vhost-net) that is missing is a warning: the fallback works', () => {
    const vhost: PreflightNeeds = { ...needs(), components: [{ component: 'macvtap', prerequisites: { devices: [{ path: '/dev/vhost-net', why: 'speed', fix: 'modprobe vhost-net', optional: true }] } }] };
    const [finding] = evaluatePreflight(vhost, { ...GOOD, devices: { '/dev/vhost-net': { opens: false, code: 'ENOENT', message: 'x' } } });
    expect(finding).toMatchObject({ id: 'device./dev/vhost-net', status: 'warn', finding: '/dev/vhost-net is missing; macvtap falls back without it', fix: 'modprobe vhost-net' });
  });

  it('ip_forward 0: ok when /proc/sys is writable (the backend sets it), a failure naming the pod sysctl when it is read-only', () => {
    expect(find({ ...GOOD, sysctls: { 'net.ipv4.ip_forward': { value: '0', writable: true } } }, 'sysctl.net.ipv4.ip_forward')).toMatchObject({
      status: 'ok',
      finding: 'net.ipv4.ip_forward is 0; /proc/sys is writable, so nat-bridge sets it to 1',
    });
    const ro = find({ ...GOOD, sysctls: { 'net.ipv4.ip_forward': { value: '0', writable: { code: 'EROFS', message: 'read-only' } } } }, 'sysctl.net.ipv4.ip_forward');
    expect(ro).toMatchObject({ status: 'fail', finding: 'net.ipv4.ip_forward is 0, not 1, and /proc/sys is not writable here (EROFS), so it cannot be set' });
    expect(ro?.fix).toMatch(/^set the pod sysctl net\.ipv4\.ip_forward=1 \(Kubernetes: spec\.securityContext\.sysctls/);
  });

  it('volumes: not writable, a file in the way, too little space for a known image, less than the minimum', () => {
    const images = '/var/lib/podvisor/images';
    const withImages = (probe: PreflightFacts['volumes'][string]): PreflightFacts => ({ ...GOOD, volumes: { ...GOOD.volumes, [images]: probe } });
    expect(find(withImages({ state: 'not-writable', existing: images, code: 'EROFS', message: 'read-only file system' }), 'volume.images')).toMatchObject({
      status: 'fail',
      finding: 'the images volume /var/lib/podvisor/images is not writable: EROFS (read-only file system)',
      fix: 'mount /var/lib/podvisor/images read-write (volumeMounts readOnly: false, and a volume the container\'s user may write), or set PODVISOR_IMAGES_DIR to a writable directory',
    });
    expect(find(withImages({ state: 'not-a-directory', blocker: '/var/lib/podvisor' }), 'volume.images')?.finding).toBe('the images volume /var/lib/podvisor/images cannot be a directory: /var/lib/podvisor is not a directory');
    expect(find(withImages({ state: 'writable', exists: true, existing: images, freeBytes: 1024 ** 3 }), 'volume.images')).toMatchObject({
      status: 'fail',
      finding: 'the images volume /var/lib/podvisor/images has 1.0 GiB free (1073741824 bytes), the image needs 1.9 GiB (2000000000 bytes)',
    });
    const disk = { ...GOOD, volumes: { ...GOOD.volumes, '/var/lib/podvisor/disk': { state: 'writable' as const, exists: false, existing: '/var/lib/podvisor', freeBytes: 1024 ** 2 } } };
    expect(find(disk, 'volume.disk')).toMatchObject({ status: 'warn', finding: 'the disk volume /var/lib/podvisor/disk has 1.0 MiB free (1048576 bytes), less than 256.0 MiB (it will be created in /var/lib/podvisor)' });
  });

  it('a missing binary fails naming its Debian package; a missing optional one warns', () => {
    const facts = { ...GOOD, binaries: { ...GOOD.binaries, dnsmasq: null, setpriv: null } };
    expect(find(facts, 'binary.dnsmasq')).toMatchObject({
      status: 'fail',
      finding: 'dnsmasq is not on PATH, so nat-bridge cannot run it',
      fix: 'install dnsmasq in the image (the Debian package dnsmasq-base) or put its directory on PATH',
    });
    expect(find(facts, 'binary.setpriv')).toMatchObject({ status: 'warn', finding: 'setpriv is not on PATH; without it process runner works, but: children die with podvisor' });
    expect(worstStatus(evaluatePreflight(needs(), facts))).toBe('fail');
  });

  it('the accelerator: tcg is not probed; auto without KVM warns that TCG will be used; kvm without KVM fails', () => {
    expect(find(GOOD, 'accelerator')).toBeUndefined();
    expect(find(GOOD, 'accelerator', 'tcg')).toMatchObject({ status: 'ok', finding: 'TCG is requested; KVM is not probed' });
    const broken = { ...GOOD, accelerator: { selected: 'tcg' as const, kvmWorks: false, detail: 'the kvm guest hung' } };
    expect(find(broken, 'accelerator', 'auto')).toMatchObject({ status: 'warn', finding: 'KVM does not work here, so TCG will be used (much slower): the kvm guest hung' });
    expect(find(broken, 'accelerator', 'kvm')).toMatchObject({ status: 'fail', finding: 'KVM does not work here: the kvm guest hung' });
    expect(find(broken, 'accelerator', 'kvm')?.fix).toContain('/dev/kvm');
    expect(find({ ...GOOD, accelerator: { selected: 'kvm', kvmWorks: true, detail: 'ran' } }, 'accelerator', 'kvm')?.status).toBe('ok');
  });

  it('formats each finding with its fix below it', () => {
    const facts = { ...GOOD, binaries: { ...GOOD.binaries, dnsmasq: null } };
    expect(formatFindings(evaluatePreflight(needs(), facts).filter((f) => f.id.startsWith('binary.d')))).toBe(
      'FAIL  binary.dnsmasq: dnsmasq is not on PATH, so nat-bridge cannot run it\n      fix: install dnsmasq in the image (the Debian package dnsmasq-base) or put its directory on PATH\n',
    );
  });
});
