/**
 * The preflight's probes: what this host really allows, seen from this
 * process. Each probe does the smallest real thing that answers its question
 * (open the device, open the sysctl for writing, create and remove a file in
 * the volume) and changes nothing that outlives it. The KVM probe is the
 * qemu runtime's own bounded probe, passed in. Nothing here decides: the
 * model in `preflight-model.ts` turns these facts into findings.
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { open, readFile, stat, statfs, unlink } from 'node:fs/promises';
import path from 'node:path';
import { errorMessage, resolveExecutable } from '@podvisor/core';
import { parseStatusCapabilities } from './capabilities.js';
import type { AcceleratorProbe, DeviceProbe, PreflightFacts, SysctlProbe, VolumeProbe } from './preflight-model.js';

export interface ProbeOptions {
  /** Runs the bounded KVM probe; absent when the accelerator is not checked. */
  accelerator?: () => Promise<AcceleratorProbe>;
  /** Default `/proc/self/status`. */
  statusFile?: string;
  /** Default `/proc/sys`. */
  procSys?: string;
}

/** Probes everything in `list` (see `probeList`), concurrently. Never throws: a failed probe is a fact. */
export async function probeHost(list: { devices: string[]; sysctls: string[]; binaries: string[]; volumes: string[] }, options: ProbeOptions = {}): Promise<PreflightFacts> {
  const [capabilities, devices, sysctls, volumes, accelerator] = await Promise.all([
    readCapabilities(options.statusFile ?? '/proc/self/status'),
    entries(list.devices, probeDevice),
    entries(list.sysctls, (name) => probeSysctl(name, options.procSys ?? '/proc/sys')),
    entries(list.volumes, probeVolume),
    options.accelerator?.(),
  ]);
  const binaries = Object.fromEntries(list.binaries.map((b) => [b, resolveExecutable(b)]));
  return { capabilities, devices, sysctls, binaries, volumes, ...(accelerator === undefined ? {} : { accelerator }) };
}

async function entries<T>(keys: readonly string[], probe: (key: string) => Promise<T>): Promise<Record<string, T>> {
  return Object.fromEntries(await Promise.all(keys.map(async (k) => [k, await probe(k)] as const)));
}

export async function readCapabilities(statusFile: string): Promise<PreflightFacts['capabilities']> {
  try {
    return parseStatusCapabilities(await readFile(statusFile, 'utf8'));
  } catch (err) {
    return { error: `${statusFile}: ${errorMessage(err)}` };
  }
}

/** Opens the device read-write (non-blocking, so a tty or tun never waits) and closes it again. */
export async function probeDevice(device: string): Promise<DeviceProbe> {
  try {
    await (await open(device, constants.O_RDWR | constants.O_NONBLOCK)).close();
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
export async function probeSysctl(name: string, procSys = '/proc/sys'): Promise<SysctlProbe> {
  const file = path.join(procSys, ...name.split('.'));
  let value: string | null = null;
  try {
    value = (await readFile(file, 'utf8')).trim();
  } catch {
    // unreadable: reported as such
  }
  try {
    await (await open(file, constants.O_WRONLY)).close();
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
export async function probeVolume(dir: string): Promise<VolumeProbe> {
  let existing = path.resolve(dir);
  for (;;) {
    try {
      const s = await stat(existing);
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
    await (await open(probe, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600)).close();
    await unlink(probe);
  } catch (err) {
    return { state: 'not-writable', existing, code: (err as NodeJS.ErrnoException).code ?? 'EIO', message: errorMessage(err) };
  }
  try {
    const fs = await statfs(existing);
    return { state: 'writable', exists: existing === path.resolve(dir), existing, freeBytes: fs.bavail * fs.bsize };
  } catch (err) {
    return { state: 'error', code: (err as NodeJS.ErrnoException).code ?? 'EIO', message: errorMessage(err) };
  }
}
