/**
 * The preflight's pure model: what the chosen configuration needs (the
 * prerequisites each adapter declares, the volumes, the accelerator), what the
 * probes saw on this host, and the findings that come out of comparing them.
 * Every finding that is not `ok` names its fix in the words of a pod spec.
 * `podvisor doctor` prints the findings; `podvisor run` stops on a `fail`
 * before anything is pulled. No I/O here: the probes live in
 * `preflight-probes.ts`.
 */
import { capabilityName, debianPackageOf, type AcceleratorChoice, type Prerequisites, type ProbeFinding, type ProcessCapabilities } from '@podvisor/core';
import { formatBytes } from '../commands/image-command.js';

export type PreflightStatus = ProbeFinding['status'];

/** One finding; a backend's own `probe()` returns the same shape. */
export type PreflightFinding = ProbeFinding;

/** The prerequisites of one component of the chosen configuration (`nat-bridge`, `qemu`, ...). */
export interface ComponentPrerequisites {
  component: string;
  prerequisites: Prerequisites;
}

export type VolumeRole = 'images' | 'disk' | 'state';

export interface VolumeNeed {
  role: VolumeRole;
  path: string;
  /** The setting that names it, for the fix (`PODVISOR_IMAGES_DIR`). */
  setting: string;
  /** Bytes that must be free, when known (the size of a local image not yet cached). */
  neededBytes: number | null;
  /** Below this many free bytes, a warning (the documented minimum when the size is unknown). */
  minFreeBytes: number;
  /** What the volume is for, in words. */
  why: string;
}

export interface PreflightNeeds {
  components: readonly ComponentPrerequisites[];
  volumes: readonly VolumeNeed[];
  /** The accelerator to probe; `null` leaves it to the supervisor's own probe (run does). */
  accelerator: AcceleratorChoice | null;
}

export type DeviceProbe = { opens: true } | { opens: false; code: string; message: string };

export interface SysctlProbe {
  /** The current value, or null when it cannot be read. */
  value: string | null;
  /** Whether it can be written (the error code when not, e.g. `EROFS`). */
  writable: true | { code: string; message: string };
}

export type VolumeProbe =
  /** `existing` is the directory that exists (the volume itself, or the ancestor it would be created in). */
  | { state: 'writable'; exists: boolean; existing: string; freeBytes: number }
  | { state: 'not-writable'; existing: string; code: string; message: string }
  | { state: 'not-a-directory'; blocker: string }
  | { state: 'error'; code: string; message: string };

export type AcceleratorProbe =
  | { selected: 'kvm' | 'tcg'; kvmWorks: boolean; detail: string }
  | { error: string; hint?: string };

export interface PreflightFacts {
  capabilities: ProcessCapabilities | { error: string };
  devices: Readonly<Record<string, DeviceProbe>>;
  sysctls: Readonly<Record<string, SysctlProbe>>;
  /** The resolved path of each binary, or null when it is not on PATH. */
  binaries: Readonly<Record<string, string | null>>;
  volumes: Readonly<Record<string, VolumeProbe>>;
  accelerator?: AcceleratorProbe;
}

/** What the probes must look at for `needs`: one entry per device, sysctl, binary and volume path. */
export function probeList(needs: PreflightNeeds): { devices: string[]; sysctls: string[]; binaries: string[]; volumes: string[] } {
  const all = needs.components.map((c) => c.prerequisites);
  return {
    devices: unique(all.flatMap((p) => (p.devices ?? []).map((d) => d.path))),
    sysctls: unique(all.flatMap((p) => (p.sysctls ?? []).map((s) => s.name))),
    binaries: unique(all.flatMap((p) => (p.binaries ?? []).map((b) => b.name))),
    volumes: unique(needs.volumes.map((v) => v.path)),
  };
}

/** The findings, in a stable order: capabilities, devices, sysctls, volumes, binaries, accelerator. */
export function evaluatePreflight(needs: PreflightNeeds, facts: PreflightFacts): PreflightFinding[] {
  return [
    ...capabilityFindings(needs.components, facts.capabilities),
    ...deviceFindings(needs.components, facts.devices),
    ...sysctlFindings(needs.components, facts.sysctls),
    ...needs.volumes.map((v) => volumeFinding(v, facts.volumes[v.path])),
    ...binaryFindings(needs.components, facts.binaries),
    ...(needs.accelerator === null ? [] : [acceleratorFinding(needs.accelerator, facts.accelerator)]),
  ];
}

/** The worst status of a list of findings (`ok` for none). */
export function worstStatus(findings: readonly PreflightFinding[]): PreflightStatus {
  if (findings.some((f) => f.status === 'fail')) return 'fail';
  return findings.some((f) => f.status === 'warn') ? 'warn' : 'ok';
}

/** Human-readable lines: one per finding, its fix below it. */
export function formatFindings(findings: readonly PreflightFinding[]): string {
  const mark: Record<PreflightStatus, string> = { ok: 'ok  ', warn: 'WARN', fail: 'FAIL' };
  return findings.map((f) => `${mark[f.status]}  ${f.id}: ${f.finding}${f.fix === undefined ? '' : `\n      fix: ${f.fix}`}\n`).join('');
}

// ------------------------------------------------------------------ checks

interface Needed<T> {
  need: T;
  by: string[];
}

/** Merges the same need declared by several components (keyed by `key`), keeping who needs it. */
function merged<T>(components: readonly ComponentPrerequisites[], pick: (p: Prerequisites) => readonly T[] | undefined, key: (t: T) => string): Needed<T>[] {
  const out = new Map<string, Needed<T>>();
  for (const c of components) {
    for (const need of pick(c.prerequisites) ?? []) {
      const k = key(need);
      const seen = out.get(k);
      if (seen === undefined) out.set(k, { need, by: [c.component] });
      else if (!seen.by.includes(c.component)) seen.by.push(c.component);
    }
  }
  return [...out.values()];
}

function capabilityFindings(components: readonly ComponentPrerequisites[], caps: PreflightFacts['capabilities']): PreflightFinding[] {
  return merged(components, (p) => p.capabilities, (c) => capabilityName(c.name)).map(({ need, by }) => {
    const name = capabilityName(need.name);
    const base = { id: `capability.${name}`, check: `capability ${name} (${by.join(', ')}: ${need.why})` };
    const fix = `add ${name} to the container's securityContext.capabilities.add (docker/podman: --cap-add ${name})`;
    if ('error' in caps) return { ...base, status: 'fail', finding: `cannot read this process's capabilities: ${caps.error}`, fix };
    const effective = caps.effective.has(name);
    const bounding = caps.bounding.has(name);
    if (effective && bounding) return { ...base, status: 'ok', finding: `${name} is effective` };
    // Children started as root get the bounding set; podvisor itself uses the effective one.
    const missing = [effective ? null : 'effective', bounding ? null : 'bounding'].filter((s) => s !== null).join(' and ');
    return { ...base, status: 'fail', finding: `${name} is not in the ${missing} capability set; ${by.join(' and ')} needs it for: ${need.why}`, fix };
  });
}

function deviceFindings(components: readonly ComponentPrerequisites[], devices: PreflightFacts['devices']): PreflightFinding[] {
  return merged(components, (p) => p.devices, (d) => d.path).map(({ need, by }) => {
    const base = { id: `device.${need.path}`, check: `device ${need.path} opens read-write (${by.join(', ')}: ${need.why})` };
    const probe = devices[need.path];
    if (probe?.opens === true) return { ...base, status: 'ok', finding: `${need.path} opens` };
    const seen =
      probe === undefined ? 'was not probed'
      : probe.code === 'ENOENT' ? 'is missing'
      : probe.code === 'EPERM' || probe.code === 'EACCES' ? `cannot be opened: ${probe.code} (the container's device cgroup does not allow it)`
      : `cannot be opened: ${probe.message}`;
    const consequence = need.optional === true ? `; ${by.join(' and ')} falls back without it` : '';
    return { ...base, status: need.optional === true ? 'warn' : 'fail', finding: `${need.path} ${seen}${consequence}`, fix: need.fix };
  });
}

function sysctlFindings(components: readonly ComponentPrerequisites[], sysctls: PreflightFacts['sysctls']): PreflightFinding[] {
  return merged(components, (p) => p.sysctls, (s) => s.name).map(({ need, by }) => {
    const base = { id: `sysctl.${need.name}`, check: `sysctl ${need.name}=${need.value} in the pod (${by.join(', ')}: ${need.why})` };
    const fix = `set the pod sysctl ${need.name}=${need.value} (Kubernetes: spec.securityContext.sysctls: [{name: ${need.name}, value: "${need.value}"}], which the kubelet must allow with --allowed-unsafe-sysctls=${need.name}; docker/podman: --sysctl ${need.name}=${need.value})`;
    const probe = sysctls[need.name];
    if (probe === undefined || probe.value === null) return { ...base, status: 'fail', finding: `${need.name} cannot be read`, fix };
    if (probe.value === need.value) return { ...base, status: 'ok', finding: `${need.name} is ${need.value}` };
    if (need.setsItself && probe.writable === true) {
      return { ...base, status: 'ok', finding: `${need.name} is ${probe.value}; /proc/sys is writable, so ${by.join(' and ')} sets it to ${need.value}` };
    }
    const why = probe.writable === true ? `${by.join(' and ')} does not set it` : `/proc/sys is not writable here (${probe.writable.code}), so it cannot be set`;
    return { ...base, status: 'fail', finding: `${need.name} is ${probe.value}, not ${need.value}, and ${why}`, fix };
  });
}

function binaryFindings(components: readonly ComponentPrerequisites[], binaries: PreflightFacts['binaries']): PreflightFinding[] {
  return merged(components, (p) => p.binaries, (b) => b.name).map(({ need, by }) => {
    // A need is optional only when every component that declares it can do without it.
    const optional = components.every((c) => (c.prerequisites.binaries ?? []).every((b) => b.name !== need.name || b.optional === true));
    const base = { id: `binary.${need.name}`, check: `${need.name} is on PATH (${by.join(', ')}: ${need.why})` };
    const found = binaries[need.name];
    if (found !== undefined && found !== null) return { ...base, status: 'ok', finding: `${need.name} is ${found}` };
    return {
      ...base,
      status: optional ? 'warn' : 'fail',
      finding: `${need.name} is not on PATH${optional ? `; without it ${by.join(' and ')} works, but: ${need.why}` : `, so ${by.join(' and ')} cannot run it`}`,
      fix: `install ${need.name} in the image${packageHint(need.name)} or put its directory on PATH`,
    };
  });
}

function packageHint(binary: string): string {
  const pkg = debianPackageOf(binary);
  return pkg === undefined ? '' : ` (the Debian package ${pkg})`;
}

function volumeFinding(need: VolumeNeed, probe: VolumeProbe | undefined): PreflightFinding {
  const base = { id: `volume.${need.role}`, check: `the ${need.role} volume ${need.path} is writable with free space (${need.why})` };
  const elsewhere = `or set ${need.setting} to a writable directory`;
  if (probe === undefined) return { ...base, status: 'fail', finding: `${need.path} was not probed`, fix: `mount a writable volume at ${need.path}` };
  switch (probe.state) {
    case 'not-a-directory':
      return {
        ...base,
        status: 'fail',
        finding: `the ${need.role} volume ${need.path} cannot be a directory: ${probe.blocker} is not a directory`,
        fix: `remove ${probe.blocker} or mount a volume (a directory) at ${need.path}, ${elsewhere}`,
      };
    case 'not-writable':
      return {
        ...base,
        status: 'fail',
        finding: `the ${need.role} volume ${need.path} is not writable: ${probe.existing === need.path ? '' : `${probe.existing}, where it would be created, refuses writes: `}${probe.code} (${probe.message})`,
        fix: `mount ${need.path} read-write (volumeMounts readOnly: false, and a volume the container's user may write), ${elsewhere}`,
      };
    case 'error':
      return { ...base, status: 'fail', finding: `the ${need.role} volume ${need.path} cannot be checked: ${probe.code} (${probe.message})`, fix: `mount a writable volume at ${need.path}, ${elsewhere}` };
    case 'writable': {
      const free = `${formatBytes(probe.freeBytes)} free`;
      const where = probe.exists ? '' : ` (it will be created in ${probe.existing})`;
      if (need.neededBytes !== null && probe.freeBytes < need.neededBytes) {
        return {
          ...base,
          status: 'fail',
          finding: `the ${need.role} volume ${need.path} has ${free} (${probe.freeBytes} bytes), the image needs ${formatBytes(need.neededBytes)} (${need.neededBytes} bytes)${where}`,
          fix: `give the ${need.role} volume more space (a larger claim), or remove unused bases with podvisor image gc`,
        };
      }
      if (probe.freeBytes < need.minFreeBytes) {
        return {
          ...base,
          status: 'warn',
          finding: `the ${need.role} volume ${need.path} has ${free} (${probe.freeBytes} bytes), less than ${formatBytes(need.minFreeBytes)}${where}`,
          fix: `give the ${need.role} volume more space (a larger claim)`,
        };
      }
      return { ...base, status: 'ok', finding: `${need.path} is writable, ${free} (${probe.freeBytes} bytes)${where}` };
    }
    default: {
      const never: never = probe;
      return never;
    }
  }
}

const KVM_FIX =
  'run on a node with (nested) virtualisation and give the container /dev/kvm (a hostPath CharDevice or a device plugin such as devices.kubevirt.io/kvm; docker/podman: --device /dev/kvm), or set PODVISOR_ACCEL=tcg to choose TCG (slow)';

function acceleratorFinding(choice: AcceleratorChoice, probe: AcceleratorProbe | undefined): PreflightFinding {
  const base = { id: 'accelerator', check: `PODVISOR_ACCEL=${choice}: KVM runs guest code (the bounded probe)` };
  if (choice === 'tcg') return { ...base, status: 'ok', finding: 'TCG is requested; KVM is not probed' };
  if (probe === undefined) return { ...base, status: choice === 'kvm' ? 'fail' : 'warn', finding: 'KVM was not probed', fix: KVM_FIX };
  if ('error' in probe) {
    return { ...base, status: choice === 'kvm' ? 'fail' : 'warn', finding: `the KVM probe could not run: ${probe.error}`, fix: probe.hint ?? KVM_FIX };
  }
  if (probe.kvmWorks) return { ...base, status: 'ok', finding: `KVM works: ${probe.detail}` };
  if (choice === 'kvm') return { ...base, status: 'fail', finding: `KVM does not work here: ${probe.detail}`, fix: KVM_FIX };
  return { ...base, status: 'warn', finding: `KVM does not work here, so TCG will be used (much slower): ${probe.detail}`, fix: KVM_FIX };
}

function unique(values: readonly string[]): string[] {
  return [...new Set(values)];
}
