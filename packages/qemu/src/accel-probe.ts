/**
 * The accelerator probe: decides between KVM and TCG by running guest code,
 * because opening /dev/kvm proves nothing (FACTS: on hosts with broken nested
 * virtualisation KVM_CREATE_VM succeeds and guests then hang). It boots the
 * probe firmware (`kvm-probe-firmware.ts`) under the accelerator with a time
 * bound and checks that qemu exits with the firmware's status. `tcg` runs no
 * probe, `auto` falls back to TCG, `kvm` fails fast.
 */
import { constants } from 'node:fs';
import { access, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  PodvisorError,
  SilentLogger,
  errorMessage,
  type Accelerator,
  type AcceleratorChoice,
  type AcceleratorProbeResult,
  type Logger,
  type ProcessRunner,
  exitedWithin,
} from '@podvisor/core';
import { PROBE_EXIT_STATUS, PROBE_STAGES, kvmProbeFirmware } from './kvm-probe-firmware.js';

export interface AcceleratorProbeOptions {
  /** Default `qemu-system-x86_64`. */
  qemuBinary?: string;
  /** How long the probe guest may take before it counts as hung. Default 3000 ms. */
  timeoutMs?: number;
  /** The KVM device checked before qemu runs. Default `/dev/kvm`. */
  kvmDevice?: string;
  log?: Logger;
}

/** What one run of the probe firmware under one accelerator showed. */
export interface FirmwareProbeOutcome {
  accel: Accelerator;
  /** True when the guest ran to the end (qemu exited with status 85). */
  works: boolean;
  /** What happened, in words: the exit, the signal, or how far a hung guest got. */
  detail: string;
  /** The debug-console markers the guest wrote, e.g. `RPL`. */
  markers: string;
  durationMs: number;
}

export const DEFAULT_PROBE_TIMEOUT_MS = 3000;

/**
 * Decides the accelerator for `choice`. `tcg` resolves at once. `kvm` and
 * `auto` check the KVM device and run the probe firmware under KVM. When KVM
 * does not work, `auto` resolves with `selected: 'tcg'` (the caller records the
 * fallback warning) and `kvm` throws `PodvisorError('ERR_ACCEL_KVM_UNAVAILABLE')`.
 * Creates and removes a temp dir; registers the probe qemu with the runner
 * while it runs and never leaves it running.
 */
export async function probeAccelerator(runner: ProcessRunner, choice: AcceleratorChoice, options: AcceleratorProbeOptions = {}): Promise<AcceleratorProbeResult> {
  const log = options.log ?? new SilentLogger();
  if (choice === 'tcg') {
    return { requested: 'tcg', selected: 'tcg', kvmWorks: false, probeMs: 0, detail: 'TCG requested, KVM not probed' };
  }
  const started = performance.now();
  const device = options.kvmDevice ?? '/dev/kvm';
  const deviceProblem = await kvmDeviceProblem(device);
  const outcome: Pick<FirmwareProbeOutcome, 'works' | 'detail'> = deviceProblem === null ? await runFirmwareProbe(runner, 'kvm', options) : { works: false, detail: deviceProblem };
  const probeMs = Math.round(performance.now() - started);
  log.info('accelerator probed', { requested: choice, kvmWorks: outcome.works, probeMs, detail: outcome.detail });
  if (outcome.works) return { requested: choice, selected: 'kvm', kvmWorks: true, probeMs, detail: outcome.detail };
  if (choice === 'auto') return { requested: 'auto', selected: 'tcg', kvmWorks: false, probeMs, detail: outcome.detail };
  throw new PodvisorError('ERR_ACCEL_KVM_UNAVAILABLE', `KVM was requested but does not work: ${outcome.detail}`, {
    hint: 'enable (nested) virtualisation for this node, give the container /dev/kvm with read-write access, or set PODVISOR_ACCEL=tcg (slow) or auto',
    details: { device, probeMs, detail: outcome.detail },
  });
}

/**
 * Runs the probe firmware once under `accel` with the time bound and reports
 * what happened. Never throws for a guest that fails (that is the outcome);
 * throws `ERR_PROCESS_NOT_FOUND` when qemu is missing, and fs errors for the
 * temp dir. Kills the probe qemu when it hangs.
 */
export async function runFirmwareProbe(runner: ProcessRunner, accel: Accelerator, options: AcceleratorProbeOptions = {}): Promise<FirmwareProbeOutcome> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS;
  const dir = await mkdtemp(join(tmpdir(), 'podvisor-accel-probe-'));
  try {
    const firmware = join(dir, 'probe.rom');
    await writeFile(firmware, kvmProbeFirmware());
    const started = performance.now();
    const child = await runner.spawn(
      options.qemuBinary ?? 'qemu-system-x86_64',
      // prettier-ignore
      [
        '-accel', accel, '-machine', 'pc', '-m', '16', '-nodefaults', '-no-user-config', '-display', 'none',
        '-bios', firmware,
        '-debugcon', 'stdio',
        '-device', 'isa-debug-exit,iobase=0xf4,iosize=0x04',
      ],
      { name: `accel-probe-${accel}`, stdin: 'ignore', stdout: 'pipe' },
    );
    let markers = '';
    child.stdout?.setEncoding('latin1');
    child.stdout?.on('data', (chunk: string) => {
      markers += chunk;
    });
    const hung = (await exitedWithin(child, timeoutMs)) === null;
    if (hung) child.kill('SIGKILL');
    const exit = await child.exited;
    const durationMs = Math.round(performance.now() - started);
    const stage = reached(markers);
    const stderr = lastLine(exit.stderrTail);
    let detail: string;
    if (hung) detail = `the ${accel} guest hung: no exit within ${timeoutMs} ms; it ${stage}`;
    else if (exit.code === PROBE_EXIT_STATUS) detail = `the ${accel} guest ran real, protected and long mode code and exited in ${durationMs} ms`;
    else if (exit.signal === 'SIGABRT') detail = `qemu aborted under ${accel}${stderr}; the guest ${stage}`;
    else if (exit.signal !== null) detail = `qemu was killed by ${exit.signal} under ${accel}${stderr}; the guest ${stage}`;
    else detail = `qemu exited with status ${exit.code} under ${accel}${stderr}; the guest ${stage}`;
    return { accel, works: !hung && exit.code === PROBE_EXIT_STATUS, detail, markers, durationMs };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function kvmDeviceProblem(device: string): Promise<string | null> {
  try {
    await access(device, constants.R_OK | constants.W_OK);
    return null;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return `${device} is missing`;
    if (code === 'EACCES' || code === 'EPERM') return `permission denied on ${device}`;
    return `cannot open ${device}: ${errorMessage(err)}`;
  }
}

function reached(markers: string): string {
  const stages = [...markers].map((m) => PROBE_STAGES[m]).filter((s): s is string => s !== undefined);
  return stages.length === 0 ? 'ran no guest code' : `reached ${stages.join(', ')}, then stopped`;
}

function lastLine(stderr: string): string {
  const lines = stderr.trim().split('\n').filter((l) => l.trim() !== '' && !l.includes("host doesn't support requested feature"));
  const line = lines.at(-1);
  return line === undefined ? '' : ` (${line.trim()})`;
}
