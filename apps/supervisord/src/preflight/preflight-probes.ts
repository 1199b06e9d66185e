/**
 * The preflight's probes: what this host really allows, seen from this
 * process. Each probe does the smallest real thing that answers its question
 * (open the device, open the sysctl for writing, create and remove a file in
 * the volume) and changes nothing that outlives it. The KVM probe is the
 * qemu runtime's own bounded probe, passed in. Nothing here decides: the
 * model in `preflight-model.ts` turns these facts into findings.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, constants, openSync, readFileSync, statSync, statfsSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import { errorMessage, parseStatusCapabilities, resolveExecutable } from '@podvisor/core';
import type { AcceleratorProbe, DeviceProbe, PreflightFacts, SysctlProbe, VolumeProbe } from './preflight-model.js';

export interface ProbeOptions {
  /** Runs the bounded KVM probe; absent when the accelerator is not checked. */
  accelerator?: () => Promise<AcceleratorProbe>;
  /** Default `/proc/self/status`. */
  statusFile?: string;
  /** Default `/proc/sys`. */
  procSys?: string;
}

/**
 * Probes everything in `list` (see `probeList`). The file-system probes are
 * synchronous: each takes microseconds, and run's startup should not wait for
 * the thread pool. Never throws: a failed probe is a fact.
 */
export async function probeHost(list: { devices: string[]; sysctls: string[]; binaries: string[]; volumes: string[] }, options: ProbeOptions = {}): Promise<PreflightFacts> {
  const accelerator = options.accelerator?.();
  const facts: PreflightFacts = {
    capabilities: readCapabilities(options.statusFile ?? '/proc/self/status'),
    devices: Object.fromEntries(list.devices.map((d) => [d, probeDevice(d)])),
    sysctls: Object.fromEntries(list.sysctls.map((name) => [name, probeSysctl(name, options.procSys ?? '/proc/sys')])),
    binaries: Object.fromEntries(list.binaries.map((b) => [b, resolveExecutable(b)])),
    volumes: Object.fromEntries(list.volumes.map((v) => [v, probeVolume(v)])),
  };
  return accelerator === undefined ? facts : { ...facts, accelerator: await accelerator };
}

export function readCapabilities(statusFile: string): PreflightFacts['capabilities'] {
  try {
    return parseStatusCapabilities(readFileSync(statusFile, 'utf8'));
  } catch (err) {
    return { error: `${statusFile}: ${errorMessage(err)}` };
  }
}

/** Opens the device read-write (non-blocking, so a tty or tun never waits) and closes it again. */
export function probeDevice(device: string): DeviceProbe {
  try {
    closeSync(openSync(device, constants.O_RDWR | constants.O_NONBLOCK));
    return { opens: true };
  } catch (err) {
    return { opens: false, code: (err as NodeJS.ErrnoException).code ?? 'EIO', message: errorMessage(err) };
  }
}

/**
 * Reads a sysctl and whether it could be written: opening its file for
 * writing runs the same permission and read-only-mount checks as a write,
 * and closing it without writing changes nothing.
 */
export function probeSysctl(name: string, procSys = '/proc/sys'): SysctlProbe {
  const file = path.join(procSys, ...name.split('.'));
  let value: string | null = null;
  try {
    value = readFileSync(file, 'utf8').trim();
  } catch {
    // unreadable: reported as such
  }
  try {
    closeSync(openSync(file, constants.O_WRONLY));
    return { value, writable: true };
  } catch (err) {
    return { value, writable: { code: (err as NodeJS.ErrnoException).code ?? 'EIO', message: errorMessage(err) } };
  }
}

/**
 * Whether `dir` exists as a directory or can be created, and is writable:
 * finds the nearest existing ancestor, refuses a file in the way, then
 * creates and removes one uniquely named file there. Reports the free bytes
 * (for an unprivileged user) of that filesystem.
 */
export function probeVolume(dir: string): VolumeProbe {
  let existing = path.resolve(dir);
  for (;;) {
    try {
      const s = statSync(existing);
      if (!s.isDirectory()) return { state: 'not-a-directory', blocker: existing };
      break;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if ((code !== 'ENOENT' && code !== 'ENOTDIR') || existing === path.dirname(existing)) return { state: 'error', code: code ?? 'EIO', message: errorMessage(err) };
      existing = path.dirname(existing);
    }
  }
  const probe = path.join(existing, `.podvisor-preflight-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    closeSync(openSync(probe, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600));
    unlinkSync(probe);
  } catch (err) {
    return { state: 'not-writable', existing, code: (err as NodeJS.ErrnoException).code ?? 'EIO', message: errorMessage(err) };
  }
  try {
    const fs = statfsSync(existing);
    return { state: 'writable', exists: existing === path.resolve(dir), existing, freeBytes: fs.bavail * fs.bsize };
  } catch (err) {
    return { state: 'error', code: (err as NodeJS.ErrnoException).code ?? 'EIO', message: errorMessage(err) };
  }
}
