/**
 * The qemu implementation of core's `VmRuntime` port. `launch` builds the
 * argv, starts qemu paused through the `ProcessRunner`, connects QMP before
 * the guest runs a single instruction (and sets the VNC password, when there
 * is one), resumes it with `cont`, and hands back a `VmHandle`. When qemu
 * exits, its QMP client disconnects and every pending command fails with
 * `QmpInterruptedError`.
 */
import { lstat, rm } from 'node:fs/promises';
import { inject, injectable, optional } from 'inversify';
import {
  Logger,
  PodvisorError,
  ProcessRunner,
  errorMessage,
  type AcceleratorChoice,
  type AcceleratorProbeResult,
  type ChildHandle,
  type Prerequisites,
  type VmHandle,
  type VmLaunchPlan,
  type VmRuntime,
} from '@podvisor/core';
import { DEFAULT_PROBE_TIMEOUT_MS, probeAccelerator } from './accel-probe.js';
import { bufferUntilSubscribed } from './buffer-until-subscribed.js';
import { buildQemuArgv } from './build-qemu-argv.js';
import { QmpClient } from './qmp-client.js';

/** Optional settings of the runtime; bind `QemuRuntimeSettings` to change them. */
export interface QemuRuntimeSettings {
  /** Default `qemu-system-x86_64` (looked up on PATH). */
  qemuBinary?: string;
  /** How long qemu has to open QMP after it starts. Default 10 000 ms. */
  qmpConnectTimeoutMs?: number;
  /** The accelerator probe's bound when the caller gives none. Default 3000 ms. */
  probeTimeoutMs?: number;
  /** Keep a QMP transcript per launch (`QemuVmHandle.qmp.transcript`). Default false. */
  qmpTranscript?: boolean;
  /**
   * The VNC password (VNC authentication uses its first 8 characters). Set
   * over QMP `change-vnc-password` before the guest runs; without it VNC asks
   * for none. Default: none.
   */
  vncPassword?: string;
}

export const QemuRuntimeSettings = Symbol.for('podvisor.qemu.QemuRuntimeSettings');

/** A `VmHandle` that also exposes its QMP client (transcript, round trip, state). */
export interface QemuVmHandle extends VmHandle {
  readonly qmp: QmpClient;
}

@injectable()
export class QemuVmRuntime implements VmRuntime {
  private readonly log: Logger;
  private readonly settings: Required<Omit<QemuRuntimeSettings, 'vncPassword'>> & Pick<QemuRuntimeSettings, 'vncPassword'>;

  constructor(
    @inject(ProcessRunner) private readonly runner: ProcessRunner,
    @inject(Logger) log: Logger,
    @inject(QemuRuntimeSettings) @optional() settings: QemuRuntimeSettings = {},
  ) {
    this.log = log.child({ name: 'qemu/QemuVmRuntime' });
    this.settings = {
      qemuBinary: settings.qemuBinary ?? 'qemu-system-x86_64',
      qmpConnectTimeoutMs: settings.qmpConnectTimeoutMs ?? 10_000,
      probeTimeoutMs: settings.probeTimeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS,
      qmpTranscript: settings.qmpTranscript ?? false,
      vncPassword: settings.vncPassword,
    };
  }

  /** Pure: the qemu binary it spawns (the accelerator probe runs the same one). */
  prerequisites(): Prerequisites {
    return { binaries: [{ name: this.settings.qemuBinary, why: 'runs the VM, and the bounded KVM probe' }] };
  }

  /** See `probeAccelerator`: `kvm` throws `ERR_ACCEL_KVM_UNAVAILABLE`, `auto` falls back to TCG. */
  probeAccelerator(choice: AcceleratorChoice, options: { timeoutMs?: number } = {}): Promise<AcceleratorProbeResult> {
    return probeAccelerator(this.runner, choice, {
      qemuBinary: this.settings.qemuBinary,
      timeoutMs: options.timeoutMs ?? this.settings.probeTimeoutMs,
      log: this.log,
    });
  }

  /**
   * Starts qemu for `plan` and resolves once the guest runs. Throws
   * `ERR_QEMU_PLAN_INVALID` for a bad plan (nothing started), and
   * `ERR_QEMU_START` with qemu's stderr when qemu exits or QMP does not answer
   * in time (qemu is then killed). Removes a stale socket at `plan.qmpSocket`;
   * qemu writes `plan.pidFile`.
   */
  async launch(plan: VmLaunchPlan): Promise<QemuVmHandle> {
    const vncPassword = plan.vnc === null ? undefined : this.settings.vncPassword;
    const { argv, passFds } = buildQemuArgv(plan, { vncPassword: vncPassword !== undefined });
    const log = this.log.child({ vm: plan.name });
    await removeStaleSocket(plan.qmpSocket);
    const started = performance.now();
    const child = await this.runner.spawn(this.settings.qemuBinary, argv, { name: 'qemu', stdin: 'pipe', stdout: 'pipe', extraFds: passFds });
    const qmp = new QmpClient({ log: log.child({ name: 'qmp' }), transcript: this.settings.qmpTranscript });
    const qemuGone = new AbortController();
    void child.exited.then((exit) => {
      qemuGone.abort(new Error(`qemu exited (${exit.signal ?? `status ${exit.code}`})`));
      void qmp.disconnect();
    });
    let events: VmHandle['events'];
    try {
      await qmp.connect(plan.qmpSocket, { timeoutMs: this.settings.qmpConnectTimeoutMs, signal: qemuGone.signal });
      // Subscribe before `cont`: qemu sends RESUME before the reply to `cont`.
      events = bufferUntilSubscribed(qmp.events);
      // Before `cont`, so that no VNC client ever meets the display without its password.
      if (vncPassword !== undefined) await qmp.execute('change-vnc-password', { password: vncPassword });
      await qmp.execute('cont');
    } catch (err) {
      throw await startFailure(plan, child, err);
    }
    log.info('qemu started', { pid: child.pid, qmpVersion: qmp.version, startMs: Math.round(performance.now() - started) });
    return {
      pid: child.pid,
      argv: child.argv,
      qmpVersion: qmp.version,
      serial: child.stdout,
      serialInput: child.stdin,
      events,
      execute: <T = unknown>(command: string, args?: Record<string, unknown>) => qmp.execute<T>(command, args),
      exited: child.exited.then((exit) => ({ code: exit.code, signal: exit.signal, stderrTail: exit.stderrTail })),
      kill: (signal: NodeJS.Signals) => child.kill(signal),
      qmp,
    };
  }
}

/** Kills qemu if it still runs and turns the failure into `ERR_QEMU_START` with qemu's own words. */
async function startFailure(plan: VmLaunchPlan, child: ChildHandle, err: unknown): Promise<PodvisorError> {
  const stillRunning = child.running;
  if (stillRunning) child.kill('SIGKILL');
  const exit = await child.exited;
  const said = exit.stderrTail.trim().split('\n').slice(-5).join('\n');
  const what = stillRunning
    ? `qemu for VM ${plan.name} did not become ready: ${errorMessage(err)}`
    : `qemu for VM ${plan.name} exited (${exit.signal ?? `status ${exit.code}`}) before it was ready`;
  return new PodvisorError('ERR_QEMU_START', said === '' ? what : `${what}: ${said}`, {
    cause: err,
    hint: 'read qemu\'s message; a bad extra argument (the container\'s CMD) or a missing file is the usual cause',
    details: { argv: child.argv, code: exit.code, signal: exit.signal, stderr: exit.stderrTail },
  });
}

/** A socket left by a crashed run must go, so that a socket at the path means this qemu made it. Other file types are left for qemu to refuse. */
async function removeStaleSocket(path: string): Promise<void> {
  try {
    if ((await lstat(path)).isSocket()) await rm(path, { force: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}
