/**
 * The supervisor: one VM's life inside one pod. It prepares the VM (accelerator,
 * image, pet disk, config drive, network), launches qemu, turns QMP events into
 * domain events, applies the restart policy when qemu exits, and runs the
 * graceful shutdown (ACPI power-down repeated until the grace period ends,
 * then QMP `quit`, then SIGKILL). Every fact is appended to the event store
 * before anything else sees it. It knows only ports: no HTTP, no env, no argv.
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import type { Subscription } from 'rxjs';
import type { Clock } from './clock.js';
import { PodvisorError, errorMessage, isPodvisorError, redactUrl } from './errors.js';
import type { EventStore } from './event-store.js';
import type { AcceleratorChoice, DomainEvent, Requester, StoredEvent, VmAction, VmExitInfo } from './events.js';
import { WARNING_EVENTS } from './events.js';
import type { Logger } from './logger.js';
import type {
  ConfigDriveBuilder,
  ConfigDriveFormat,
  ImageStore,
  NetworkAttachSpec,
  NetworkAttachment,
  NetworkBackend,
  QmpEventMessage,
  VmHandle,
  VmLaunchPlan,
  VmRuntime,
  VncListen,
} from './ports.js';
import { decideRestart, type RestartSettings } from './restart-policy.js';
import { decideVmAction, evolveVm, initialVmState, type VmState } from './vm-lifecycle.js';

export interface SupervisorSettings {
  version: string;
  vmName: string;
  accel: AcceleratorChoice;
  accelProbeTimeoutMs: number;
  vcpus: number;
  memoryMb: number;
  image: { source: string | null; target?: string; sha256?: string; /** Move an existing pet disk onto a newer base at start. */ rebase?: boolean };
  diskDir: string;
  stateDir: string;
  diskSizeBytes?: number;
  configDrive: { format: ConfigDriveFormat; userDataPath: string; metaDataPath: string; networkConfigPath?: string };
  /** The network backend's name (`none` means no NIC). */
  networkName: string;
  networkSpec: NetworkAttachSpec;
  restart: RestartSettings;
  shutdownGraceSeconds: number;
  /** Interval between ACPI power-button presses during a shutdown. */
  powerdownIntervalMs: number;
  /** How long to wait for qemu after QMP `quit` before SIGKILL. */
  quitTimeoutMs: number;
  vnc: { enabled: boolean; port: number };
  extraArgs: string[];
}

/** Documented exit codes of `podvisor run` (see docs/exit-codes.md). */
export const ExitCode = {
  /** The VM stopped cleanly: an ACPI shutdown on request, or the guest powered off and the policy does not restart. */
  Ok: 0,
  /** An unexpected internal error. */
  Internal: 1,
  /** Invalid configuration or usage: nothing was started or created. */
  Config: 2,
  /** Preparation failed: image, pet disk, config drive, network or the first qemu launch. */
  Prepare: 3,
  /** PODVISOR_ACCEL=kvm and KVM does not work here. */
  Accelerator: 4,
  /** The VM crashed more often than the restart limit allows. */
  CrashLoop: 5,
  /** qemu failed and the restart policy does not restart it. */
  VmFailed: 6,
  /** The shutdown needed QMP quit or SIGKILL: the guest ignored ACPI for the whole grace period. */
  ShutdownForced: 7,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

export interface SupervisorOutcome {
  exitCode: ExitCode;
  reason: string;
}

export interface SupervisorDeps {
  store: EventStore;
  runtime: VmRuntime;
  images: ImageStore;
  configDrive: ConfigDriveBuilder;
  /** `null` for the `none` network. */
  network: NetworkBackend | null;
  clock: Clock;
  log: Logger;
  /** Receives each qemu's serial console (stdout relay, ring buffer). */
  onConsole?: (vm: VmHandle) => void;
}

export class Supervisor {
  private state: VmState = initialVmState();
  private vm: VmHandle | null = null;
  private readonly stopController = new AbortController();
  private stopping: { by: Requester } | null = null;
  private restartRequested: Requester | null = null;
  private shutdownInFlight: Promise<void> | null = null;
  private forced = false;
  private killedByUs = false;
  private guestShutdown: { guest: boolean; reason: string } | null = null;
  /** Who asked for the pause/resume/reset that qemu will confirm with an event. */
  private readonly pendingBy = new Map<'STOP' | 'RESUME' | 'RESET', Requester>();
  private readonly restartTimes: number[] = [];
  private network: NetworkAttachment | null = null;
  private networkAttached = false;
  private readonly log: Logger;

  constructor(
    private readonly settings: SupervisorSettings,
    private readonly deps: SupervisorDeps,
  ) {
    this.log = deps.log.child({ name: 'Supervisor', vm: settings.vmName });
    // History survives pod restarts: the projection starts from the whole log.
    for (const e of deps.store.readAfter(0)) this.state = evolveVm(this.state, e);
  }

  /** The projected state. */
  current(): VmState {
    return this.state;
  }

  /** The running qemu, if any (for raw QMP and metrics). */
  handle(): VmHandle | null {
    return this.vm;
  }

  /**
   * Runs the VM until it stops for good, then tears the network down.
   * Never throws: every ending is an event and an exit code.
   */
  async run(): Promise<SupervisorOutcome> {
    const s = this.settings;
    this.record([
      {
        type: 'SupervisorStarted',
        data: { version: s.version, pid: process.pid, hostname: s.vmName, accel: s.accel, restartPolicy: s.restart.policy, network: s.networkName },
      },
    ]);
    let outcome: SupervisorOutcome;
    try {
      const plan = await this.prepare();
      outcome = await this.loop(plan);
    } catch (err) {
      outcome = this.failed(err);
    }
    await this.teardown();
    if (this.stopping !== null && outcome.exitCode === ExitCode.Ok && this.forced) {
      outcome = { exitCode: ExitCode.ShutdownForced, reason: 'the guest did not power off within the grace period' };
    }
    this.record([{ type: 'SupervisorExited', data: { exitCode: outcome.exitCode, reason: outcome.reason } }]);
    return outcome;
  }

  /**
   * Requests an action (from a signal, the HTTP API or the CLI). Throws
   * `ERR_VM_ACTION_REFUSED` when the current status refuses it; an action
   * that is already satisfied is a no-op. Resolves when qemu has been asked
   * (for stop/restart: when the shutdown has started).
   */
  async act(action: VmAction, by: Requester): Promise<void> {
    const events = decideVmAction({ type: 'RequestVmAction', action, by }, this.state);
    if (events.length === 0) return;
    this.record(events);
    switch (action) {
      case 'stop':
        this.requestStop(by);
        return;
      case 'restart':
        this.restartRequested = by;
        this.shutdownInFlight ??= this.shutdownVm(by).finally(() => {
          this.shutdownInFlight = null;
        });
        return;
      case 'pause':
        this.pendingBy.set('STOP', by);
        await this.qmp('stop');
        return;
      case 'resume':
        this.pendingBy.set('RESUME', by);
        await this.qmp('cont');
        return;
      case 'reset':
        this.pendingBy.set('RESET', by);
        await this.qmp('system_reset');
        return;
      case 'powerdown':
        this.record([{ type: 'VmPowerdownRequested', data: { by, attempt: 1 } }]);
        await this.qmp('system_powerdown');
        return;
      default: {
        const never: never = action;
        throw new PodvisorError('ERR_VM_ACTION_UNKNOWN', `unknown action ${String(never)}`);
      }
    }
  }

  /** Starts the graceful stop; safe to call more than once (signals repeat). */
  private requestStop(by: Requester): void {
    if (this.stopping === null) {
      this.stopping = { by };
      this.stopController.abort(new PodvisorError('ERR_SUPERVISOR_STOPPING', 'stopping'));
    }
    this.shutdownInFlight ??= this.shutdownVm(by).finally(() => {
      this.shutdownInFlight = null;
    });
  }

  // ------------------------------------------------------------ preparation

  private async prepare(): Promise<VmLaunchPlan> {
    const s = this.settings;
    const d = this.deps;
    const probe = await d.runtime.probeAccelerator(s.accel, { timeoutMs: s.accelProbeTimeoutMs });
    this.record([{ type: 'AcceleratorProbed', data: { ...probe } }]);
    if (probe.requested === 'auto' && probe.selected === 'tcg' && !probe.kvmWorks) {
      this.record([{ type: 'AcceleratorFellBack', data: { from: 'kvm', to: 'tcg', reason: probe.detail } }]);
    }
    this.throwIfStopping();

    let base = null;
    if (s.image.source !== null) {
      const source = redactUrl(s.image.source);
      // Progress every 5 s of a long pull, and the final figures: a quick pull records one event.
      let lastProgressAt = d.clock.now().getTime();
      base = await d.images.ensureBase({
        source: s.image.source,
        ...(s.image.target === undefined ? {} : { target: s.image.target }),
        ...(s.image.sha256 === undefined ? {} : { sha256: s.image.sha256 }),
        signal: this.stopController.signal,
        onProgress: (p) => {
          // The store throttles to about a second; the log keeps one event per 5 s, plus the last.
          const now = d.clock.now().getTime();
          if (!p.done && now - lastProgressAt < 5000) return;
          lastProgressAt = now;
          this.record([{ type: 'ImagePullProgressed', data: { source, target: p.target, bytes: p.bytes, total: p.total, percent: p.percent, bytesPerSecond: p.bytesPerSecond } }]);
        },
        onRetry: (r) => this.record([{ type: 'ImagePullRetried', data: { source, ...r } }]),
      });
      this.record([
        {
          type: 'ImageImported',
          data: { source, target: base.target, path: base.path, bytes: base.bytes, sha256: base.sha256, reused: base.reused },
        },
      ]);
    }
    const overlay = await d.images.ensureOverlay({
      base,
      diskDir: s.diskDir,
      name: s.vmName,
      ...(s.diskSizeBytes === undefined ? {} : { sizeBytes: s.diskSizeBytes }),
    });
    this.record([
      overlay.created
        ? { type: 'DiskCreated', data: { path: overlay.path, backingFile: overlay.backingFile ?? '', backingFormat: overlay.backingFormat ?? '' } }
        : { type: 'DiskReused', data: { path: overlay.path, backingFile: overlay.backingFile } },
    ]);
    if (overlay.resizedFrom !== undefined) {
      this.record([{ type: 'DiskResized', data: { path: overlay.path, fromBytes: overlay.resizedFrom, toBytes: overlay.virtualSize } }]);
    }
    if (base !== null && overlay.behindBase) {
      // The pet keeps booting on the base it was made from until a rebase is asked for.
      this.record([
        {
          type: 'ImageNewerBaseAvailable',
          data: { disk: overlay.path, currentBacking: overlay.backingFile ?? '', currentSha256: overlay.backingSha256, newerPath: base.path, newerSha256: base.sha256, target: base.target },
        },
      ]);
      if (s.image.rebase === true) {
        const r = await d.images.rebaseOverlay({ path: overlay.path, base });
        this.record([{ type: 'DiskRebased', data: { path: r.path, fromBacking: r.fromBacking, toBacking: r.toBacking, sha256: base.sha256, durationMs: r.durationMs } }]);
      }
    }

    const drive = await d.configDrive.build({
      format: s.configDrive.format,
      userDataPath: s.configDrive.userDataPath,
      metaDataPath: s.configDrive.metaDataPath,
      ...(s.configDrive.networkConfigPath === undefined ? {} : { networkConfigPath: s.configDrive.networkConfigPath }),
      defaultInstanceId: s.vmName,
      defaultHostname: s.vmName,
      outputPath: path.join(s.stateDir, 'configdrive.iso'),
    });
    if (drive !== null) {
      this.record([{ type: 'ConfigDriveBuilt', data: { path: drive.path, format: drive.format, instanceId: drive.instanceId, bytes: drive.bytes } }]);
    }
    this.throwIfStopping();

    if (d.network !== null) {
      this.networkAttached = true; // from here on, teardown must detach even if attach fails halfway
      this.network = await d.network.attach(s.networkSpec, {
        log: this.log.child({ name: d.network.name }),
        warn: (w) => this.record([{ type: 'WarningRaised', data: { ...w } }]),
        notice: (w) => this.record([{ type: 'WarningRaised', data: { ...w } }]),
      });
      this.record([
        {
          type: 'NetworkAttached',
          data: { backend: d.network.name, nics: this.network.nics.map((n) => ({ id: n.id, mac: n.mac, addresses: n.addresses })), detail: this.network.detail },
        },
      ]);
    }
    const vnc: VncListen | null = !s.vnc.enabled
      ? null
      : (this.network?.vnc ?? { kind: 'tcp', host: '0.0.0.0', display: s.vnc.port - 5900 });
    return {
      name: s.vmName,
      uuid: stableUuid(s.vmName),
      accel: probe.selected,
      vcpus: s.vcpus,
      memoryMb: s.memoryMb,
      disk: { path: overlay.path, format: 'qcow2' },
      cdrom: drive?.path ?? null,
      nics: this.network?.nics ?? [],
      vnc,
      qmpSocket: path.join(s.stateDir, 'qmp.sock'),
      extraArgs: s.extraArgs,
      pidFile: path.join(s.stateDir, 'qemu.pid'),
    };
  }

  // ------------------------------------------------------------ run loop

  private async loop(plan: VmLaunchPlan): Promise<SupervisorOutcome> {
    let attempt = 0;
    for (;;) {
      if (this.stopping !== null) return { exitCode: ExitCode.Ok, reason: `stopped by ${this.stopping.by} before qemu started` };
      attempt += 1;
      this.record([{ type: 'VmStarting', data: { attempt, accel: plan.accel } }]);
      const startedAt = this.deps.clock.now().getTime();
      let vm: VmHandle;
      try {
        vm = await this.deps.runtime.launch(plan);
      } catch (err) {
        if (attempt === 1) throw err;
        // A later launch failing counts as a crash, so that the crash-loop limit applies.
        const exit: VmExitInfo = { code: null, signal: null, reason: 'crashed', stderr: errorMessage(err) };
        this.record([{ type: 'VmExited', data: { attempt, exit, uptimeMs: 0 } }]);
        const next = await this.afterExit(exit);
        if (next !== null) return next;
        continue;
      }
      this.vm = vm;
      this.guestShutdown = null;
      this.killedByUs = false;
      const sub = this.watch(vm);
      this.deps.onConsole?.(vm);
      this.record([
        { type: 'VmStarted', data: { attempt, pid: vm.pid, qmpVersion: vm.qmpVersion, startMs: this.deps.clock.now().getTime() - startedAt, argv: [...vm.argv] } },
      ]);
      const early = this.stopRequest();
      if (early !== null) this.requestStop(early.by); // a signal arrived during launch

      const raw = await vm.exited;
      sub.unsubscribe();
      this.vm = null;
      await this.shutdownInFlight;
      const exit = this.classify(raw);
      this.record([{ type: 'VmExited', data: { attempt, exit, uptimeMs: this.deps.clock.now().getTime() - startedAt } }]);

      const stop = this.stopRequest();
      if (stop !== null) {
        this.record([{ type: 'VmStopped', data: { reason: `stopped by ${stop.by}` } }]);
        return { exitCode: ExitCode.Ok, reason: `stopped by ${stop.by}` };
      }
      if (this.restartRequested !== null) {
        const by = this.restartRequested;
        this.restartRequested = null;
        this.record([{ type: 'VmRestartScheduled', data: { attempt: attempt + 1, delayMs: 0, reason: `restart requested by ${by}` } }]);
        continue;
      }
      const next = await this.afterExit(exit);
      if (next !== null) return next;
    }
  }

  /** Applies the restart policy. Returns the outcome when the run ends, `null` to launch again. */
  private async afterExit(exit: VmExitInfo): Promise<SupervisorOutcome | null> {
    const now = this.deps.clock.now().getTime();
    const decision = decideRestart(this.settings.restart, exit, this.restartTimes, now);
    switch (decision.kind) {
      case 'stop':
        this.record([{ type: 'VmStopped', data: { reason: decision.reason } }]);
        return { exitCode: decision.failed ? ExitCode.VmFailed : ExitCode.Ok, reason: decision.reason };
      case 'crash-loop': {
        const message = `qemu was restarted ${decision.restarts} times within ${decision.windowSeconds} s and exited again`;
        this.record([
          { type: 'VmCrashLoopDetected', data: { restarts: decision.restarts, windowSeconds: decision.windowSeconds } },
          { type: 'VmFailed', data: { code: 'ERR_VM_CRASH_LOOP', message, hint: 'read the qemu stderr in the VmExited events and the serial log' } },
        ]);
        return { exitCode: ExitCode.CrashLoop, reason: message };
      }
      case 'restart': {
        this.restartTimes.push(now);
        this.record([{ type: 'VmRestartScheduled', data: { attempt: this.state.attempt + 1, delayMs: decision.delayMs, reason: decision.reason } }]);
        try {
          await this.deps.clock.sleep(decision.delayMs, this.stopController.signal);
        } catch {
          // Stopped during the backoff.
          this.record([{ type: 'VmStopped', data: { reason: `stopped by ${this.stopping?.by ?? 'request'} during backoff` } }]);
          return { exitCode: ExitCode.Ok, reason: `stopped by ${this.stopping?.by ?? 'request'}` };
        }
        return null;
      }
      default: {
        const never: never = decision;
        return never;
      }
    }
  }

  private classify(raw: { code: number | null; signal: string | null; stderrTail: string }): VmExitInfo {
    const stderr = raw.stderrTail.trim();
    const base = { code: raw.code, signal: raw.signal, ...(stderr === '' ? {} : { stderr: stderr.slice(-2000) }) };
    if (this.killedByUs) return { ...base, reason: 'killed' };
    if (this.stopping !== null || this.restartRequested !== null) return { ...base, reason: 'host-shutdown' };
    if (this.guestShutdown?.guest === true && raw.code === 0) return { ...base, reason: 'guest-shutdown' };
    return { ...base, reason: 'crashed' };
  }

  /** QMP events become domain events at the qemu boundary (QMP reference: SHUTDOWN, STOP, RESUME, RESET, GUEST_PANICKED). */
  private watch(vm: VmHandle): Subscription {
    return vm.events.subscribe((e: QmpEventMessage) => {
      switch (e.event) {
        case 'SHUTDOWN': {
          const guest = e.data['guest'] === true;
          const reason = typeof e.data['reason'] === 'string' ? e.data['reason'] : 'unknown';
          this.guestShutdown = { guest, reason };
          this.record([{ type: 'GuestShutdownObserved', data: { guest, reason } }]);
          return;
        }
        case 'STOP':
          if (this.state.status === 'Running') this.record([{ type: 'VmPaused', data: { by: this.takeBy('STOP'), reason: 'qmp STOP' } }]);
          return;
        case 'RESUME':
          if (this.state.status === 'Paused') this.record([{ type: 'VmResumed', data: { by: this.takeBy('RESUME') } }]);
          return;
        case 'RESET':
          this.record([{ type: 'VmReset', data: { by: e.data['guest'] === true ? 'guest' : this.takeBy('RESET'), guest: e.data['guest'] === true } }]);
          return;
        case 'GUEST_PANICKED':
          this.record([{ type: 'GuestPanicked', data: { action: String(e.data['action'] ?? 'unknown'), info: (e.data['info'] as Record<string, unknown>) ?? {} } }]);
          return;
        default:
          this.log.debug('qmp event', { event: e.event, data: e.data });
      }
    });
  }

  private takeBy(kind: 'STOP' | 'RESUME' | 'RESET'): Requester {
    const by = this.pendingBy.get(kind);
    this.pendingBy.delete(kind);
    return by ?? 'qemu';
  }

  // ------------------------------------------------------------ shutdown

  /**
   * ACPI power-down, repeated every `powerdownIntervalMs` until the grace
   * period ends (a guest may miss the first press while it boots), then QMP
   * `quit`, then SIGKILL.
   */
  private async shutdownVm(by: Requester): Promise<void> {
    const vm = this.vm;
    if (vm === null) return;
    const s = this.settings;
    const { clock } = this.deps;
    const exited = vm.exited.then(() => true);
    const wait = async (ms: number): Promise<boolean> => {
      let timer: NodeJS.Timeout | undefined;
      const done = await Promise.race([exited, new Promise<boolean>((r) => (timer = setTimeout(() => r(false), Math.max(0, ms))))]);
      clearTimeout(timer);
      return done;
    };
    if (this.state.status === 'Paused' || this.state.status === 'Stopping') {
      // ACPI needs running vCPUs: a paused guest never sees the button.
      await vm.execute('cont').catch(() => undefined);
    }
    const deadline = clock.now().getTime() + s.shutdownGraceSeconds * 1000;
    let attempt = 0;
    while (clock.now().getTime() < deadline) {
      attempt += 1;
      this.record([{ type: 'VmPowerdownRequested', data: { by, attempt } }]);
      await vm.execute('system_powerdown').catch((err: unknown) => this.log.debug('system_powerdown failed', { err }));
      if (await wait(Math.min(s.powerdownIntervalMs, deadline - clock.now().getTime()))) return;
    }
    this.forced = true;
    this.record([{ type: 'VmQuitRequested', data: { by } }]);
    await vm.execute('quit').catch(() => undefined);
    if (await wait(s.quitTimeoutMs)) return;
    this.killedByUs = true;
    this.record([{ type: 'VmKillRequested', data: { by, signal: 'SIGKILL' } }]);
    vm.kill('SIGKILL');
    await exited;
  }

  private async teardown(): Promise<void> {
    if (this.deps.network !== null && this.networkAttached) {
      try {
        await this.deps.network.detach(this.settings.networkSpec);
        this.record([{ type: 'NetworkDetached', data: { backend: this.deps.network.name } }]);
      } catch (err) {
        this.record([{ type: 'WarningRaised', data: { code: 'WARN_NETWORK_DETACH', message: `network teardown failed: ${errorMessage(err)}` } }]);
      }
    }
  }

  private failed(err: unknown): SupervisorOutcome {
    const e = isPodvisorError(err) ? err : new PodvisorError('ERR_INTERNAL', errorMessage(err), { cause: err });
    if (e.code === 'ERR_SUPERVISOR_STOPPING') {
      this.record([{ type: 'VmStopped', data: { reason: `stopped by ${this.stopping?.by ?? 'request'} during preparation` } }]);
      return { exitCode: ExitCode.Ok, reason: 'stopped during preparation' };
    }
    this.log.error('vm failed', { err: e });
    this.record([{ type: 'VmFailed', data: { code: e.code, message: e.message, ...(e.hint === undefined ? {} : { hint: e.hint }) } }]);
    const exitCode = e.code === 'ERR_ACCEL_KVM_UNAVAILABLE' ? ExitCode.Accelerator : e.code === 'ERR_INTERNAL' ? ExitCode.Internal : ExitCode.Prepare;
    return { exitCode, reason: e.message };
  }

  /** Read through a method: awaits in between can set it, which flow narrowing does not see. */
  private stopRequest(): { by: Requester } | null {
    return this.stopping;
  }

  private throwIfStopping(): void {
    if (this.stopping !== null) throw new PodvisorError('ERR_SUPERVISOR_STOPPING', 'stopping');
  }

  private async qmp(command: string): Promise<void> {
    const vm = this.vm;
    if (vm === null) throw new PodvisorError('ERR_VM_NOT_RUNNING', `cannot send ${command}: qemu is not running`);
    await vm.execute(command);
  }

  /** Appends, then folds into the projection, then logs. */
  private record(events: DomainEvent[]): StoredEvent[] {
    const stored = this.deps.store.append(this.settings.vmName, events);
    for (const e of stored) {
      this.state = evolveVm(this.state, e);
      const fields = { position: e.position, data: e.data };
      if (WARNING_EVENTS.has(e.type)) this.log.warn(e.type, fields);
      else this.log.info(e.type, fields);
    }
    return stored;
  }
}

/** A name-derived RFC 4122 v5-style UUID, stable across restarts. */
export function stableUuid(name: string): string {
  const h = createHash('sha1').update(`podvisor:${name}`).digest();
  h[6] = ((h[6] ?? 0) & 0x0f) | 0x50;
  h[8] = ((h[8] ?? 0) & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString('hex');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20, 32)}`;
}
