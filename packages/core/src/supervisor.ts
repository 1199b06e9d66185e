/**
 * The supervisor: the effect runner of one VM's lifecycle. Every decision
 * (what a signal, an action, a QMP event, qemu's exit or a deadline means) is
 * made by the pure decider in `lifecycle-decider.ts`; this class only
 * performs the effects a decision names (prepare, launch, QMP calls with a
 * deadline, timers through the injected Clock, SIGKILL, teardown) and feeds
 * each result back as a command. Every fact is appended to the event store
 * before anything else sees it, through one `record` path that never throws.
 * It knows only ports: no HTTP, no env, no argv, no exit codes.
 */
import type { Subscription } from 'rxjs';
import type { Clock } from './clock.js';
import { PodvisorError, errorMessage, isPodvisorError } from './errors.js';
import type { EventLogRecovery, EventStore } from './event-store.js';
import { EVENT_SCHEMA_VERSIONS, WARNING_EVENTS } from './events.js';
import type { AcceleratorChoice, DomainEvent, Requester, StoredEvent, VmAction } from './events.js';
import {
  lifecycleDecider,
  splitStopBudget,
  type LifecycleCommand,
  type LifecycleDecider,
  type LifecycleDecision,
  type LifecycleEffect,
  type LifecycleFailure,
  type LifecycleOutcome,
  type LifecycleQmpCommand,
  type LifecycleSignal,
  type LifecycleState,
  type LifecycleTimer,
  type StopBudget,
} from './lifecycle-decider.js';
import type { Logger } from './logger.js';
import type { ConfigDriveBuilder, ConfigDriveFormat, ImageStore, NetworkAttachSpec, NetworkAttachment, NetworkBackend, VmHandle, VmLaunchPlan, VmRuntime } from './ports.js';
import type { RestartSettings } from './restart-policy.js';
import { prepareVm } from './vm-preparation.js';
import { evolveVm, initialVmState, type VmState } from './vm-lifecycle.js';

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
  /** The whole stop budget in seconds (`PODVISOR_STOP_GRACE`), split by `splitStopBudget`. */
  stopGraceSeconds: number;
  /** Interval between ACPI power-button presses during a stop. */
  powerdownIntervalMs: number;
  /** Deadline of each QMP call of the lifecycle. Default 2000. */
  qmpTimeoutMs?: number;
  vnc: { enabled: boolean; port: number };
  extraArgs: string[];
}

/** How the run ended, with the exit code the app chose for it. */
export type SupervisorOutcome = LifecycleOutcome & { exitCode: number };

export interface SupervisorDeps {
  store: EventStore;
  runtime: VmRuntime;
  images: ImageStore;
  configDrive: ConfigDriveBuilder;
  /** `null` for the `none` network. */
  network: NetworkBackend | null;
  /** Stacked backends (`PODVISOR_NETWORK_EXTRA`), each with its own spec; attached after `network`, in order, and detached before it, in reverse. */
  extraNetworks?: ReadonlyArray<{ backend: NetworkBackend; spec: NetworkAttachSpec }>;
  clock: Clock;
  log: Logger;
  /** The app's exit-code table: recorded in `SupervisorExited`. */
  exitCodeOf: (outcome: LifecycleOutcome) => number;
  /** Receives each qemu's serial console (stdout relay, ring buffer). */
  onConsole?: (vm: VmHandle) => void;
  /** Told about each append that failed (the run goes on; the failure is logged to stderr). */
  onRecordFailed?: (err: unknown, events: readonly DomainEvent[]) => void;
}

const DEFAULT_QMP_TIMEOUT_MS = 2000;

export class Supervisor {
  private view: VmState = initialVmState();
  private state: LifecycleState;
  private readonly decider: LifecycleDecider;
  private readonly budget: StopBudget;
  private readonly qmpTimeoutMs: number;
  private readonly log: Logger;
  // What the effects hold: resources, not lifecycle state.
  private vm: VmHandle | null = null;
  private vmSubscription: Subscription | null = null;
  private plan: VmLaunchPlan | null = null;
  private prepareAbort: AbortController | null = null;
  private network: { attachment: NetworkAttachment | null } | null = null;
  private readonly timers = new Map<LifecycleTimer, AbortController>();
  /** Commands that arrive before `run()` (an early signal), replayed after the run's first event. */
  private early: LifecycleCommand[] | null = [];
  private finishing: Promise<SupervisorOutcome> | null = null;
  /** When the stop that ends podvisor was asked for (a signal or `stop`): the stop budget counts from here. */
  private exitRequestedAt: number | null = null;
  private resolveRun: (o: SupervisorOutcome) => void = () => undefined;
  private failedAppends = 0;

  constructor(
    private readonly settings: SupervisorSettings,
    private readonly deps: SupervisorDeps,
  ) {
    this.log = deps.log.child({ name: 'Supervisor', vm: settings.vmName });
    this.budget = splitStopBudget(settings.stopGraceSeconds);
    this.qmpTimeoutMs = settings.qmpTimeoutMs ?? DEFAULT_QMP_TIMEOUT_MS;
    this.decider = lifecycleDecider({ restart: settings.restart, stop: this.budget, powerdownIntervalMs: settings.powerdownIntervalMs, qmpTimeoutMs: this.qmpTimeoutMs });
    this.state = this.decider.initialState();
    // History survives pod restarts: the projection starts from the whole log.
    for (const e of deps.store.readAfter(0)) this.view = evolveVm(this.view, e);
    deps.store.recovered.subscribe((r) => {
      try {
        this.recovered(r);
      } catch (err) {
        this.log.error('reporting the event log recovery failed', { err });
      }
    });
  }

  /** The projected state (what the API shows). */
  current(): VmState {
    return this.view;
  }

  /** The decider's state (for tests and diagnostics). */
  lifecycle(): LifecycleState {
    return this.state;
  }

  /** The split of the stop budget in use. */
  stopBudget(): StopBudget {
    return this.budget;
  }

  /** Appends in this run that were not written at once (deferred or failed; each logged to stderr). */
  failedAppendCount(): number {
    return this.failedAppends;
  }

  /** The running qemu, if any (for raw QMP and metrics). */
  handle(): VmHandle | null {
    return this.vm;
  }

  /**
   * Runs the VM until it stops for good, then tears the network down.
   * Never throws: every ending is an event and an outcome.
   */
  run(): Promise<SupervisorOutcome> {
    const done = new Promise<SupervisorOutcome>((resolve) => (this.resolveRun = resolve));
    const s = this.settings;
    this.dispatch({
      type: 'StartRun',
      now: this.now(),
      started: { version: s.version, pid: process.pid, hostname: s.vmName, accel: s.accel, restartPolicy: s.restart.policy, network: s.networkName },
    });
    const early = this.early ?? [];
    this.early = null;
    for (const c of early) this.dispatch({ ...c, now: this.now() });
    return done;
  }

  /** A signal reached PID 1 (see docs/lifecycle.md#signals). Never throws. */
  signal(signal: LifecycleSignal): void {
    this.log.info('signal received', { signal });
    this.submit({ type: 'SignalReceived', now: this.now(), signal });
  }

  /**
   * Requests an action (from the HTTP API or the CLI). Throws
   * `ERR_VM_ACTION_REFUSED` when the current status refuses it; an action
   * that is already satisfied is a no-op. Resolves when qemu has answered
   * (pause, resume, reset, powerdown; a QMP error or `ERR_QMP_TIMEOUT` is
   * thrown) or, for stop and restart, when the stop has started.
   */
  async act(action: VmAction, by: Requester): Promise<void> {
    const command: LifecycleCommand = { type: 'ActionRequested', now: this.now(), action, by };
    if (this.early !== null) {
      this.early.push(command);
      return;
    }
    const decision = this.decider.decide(command, this.state);
    const calls = this.apply(decision);
    if (action === 'stop' || action === 'restart') {
      // The stop goes on whatever QMP answers (its failures were fed back already); never an unhandled rejection.
      for (const c of calls) c.catch(() => undefined);
      return;
    }
    await Promise.all(calls);
  }

  // ------------------------------------------------------------ the loop

  private now(): number {
    return this.deps.clock.now().getTime();
  }

  private submit(command: LifecycleCommand): void {
    if (this.early !== null) this.early.push(command);
    else this.dispatch(command);
  }

  /** Decides and applies one command. Never throws: it runs in timers, subscribers and promise callbacks. */
  private dispatch(command: LifecycleCommand): void {
    try {
      const calls = this.apply(this.decider.decide(command, this.state));
      // Failures of these calls were fed back as commands already.
      for (const c of calls) c.catch(() => undefined);
    } catch (err) {
      this.log.error('lifecycle command failed', { command: command.type, err });
    }
  }

  /** Records the decision's events, then performs its effects. Returns the QMP calls it started. */
  private apply(decision: LifecycleDecision): Array<Promise<void>> {
    if (decision.events.length > 0) this.record(decision.events);
    const calls: Array<Promise<void>> = [];
    for (const effect of decision.effects) {
      const call = this.perform(effect);
      if (call !== null) calls.push(call);
    }
    return calls;
  }

  private perform(effect: LifecycleEffect): Promise<void> | null {
    switch (effect.type) {
      case 'Prepare':
        this.prepare();
        return null;
      case 'AbortPrepare':
        this.prepareAbort?.abort(new PodvisorError('ERR_SUPERVISOR_STOPPING', 'stopping'));
        return null;
      case 'Launch':
        this.launch();
        return null;
      case 'SendQmp':
        return this.qmp(effect.command, effect.timeoutMs);
      case 'KillQemu':
        this.vm?.kill(effect.signal);
        return null;
      case 'StartTimer':
        this.startTimer(effect.timer, effect.at);
        return null;
      case 'CancelTimer':
        this.timers.get(effect.timer)?.abort();
        this.timers.delete(effect.timer);
        return null;
      case 'Finish':
        this.finish(effect.outcome);
        return null;
      default: {
        const never: never = effect;
        throw new Error(`unknown effect ${JSON.stringify(never)}`);
      }
    }
  }

  // ------------------------------------------------------------ effects

  private prepare(): void {
    const abort = new AbortController();
    this.prepareAbort = abort;
    prepareVm(this.settings, this.deps, {
      record: (events) => this.record(events),
      onNetworkAttaching: () => (this.network = { attachment: null }),
      signal: abort.signal,
      log: this.log,
      clock: this.deps.clock,
    }).then(
      (prepared) => {
        this.plan = prepared.plan;
        if (this.network !== null) this.network.attachment = prepared.network;
        this.dispatch({ type: 'PrepareSucceeded', now: this.now() });
      },
      (err: unknown) => this.dispatch({ type: 'PrepareFailed', now: this.now(), error: failureOf(err) }),
    );
  }

  private launch(): void {
    const plan = this.plan;
    if (plan === null) {
      this.dispatch({ type: 'LaunchFailed', now: this.now(), error: { code: 'ERR_INTERNAL', message: 'launch before preparation' } });
      return;
    }
    const startedAt = this.now();
    this.deps.runtime.launch(plan).then(
      (vm) => {
        this.vm = vm;
        this.dispatch({ type: 'LaunchSucceeded', now: this.now(), pid: vm.pid, qmpVersion: vm.qmpVersion, argv: vm.argv, startMs: this.now() - startedAt });
        this.vmSubscription = vm.events.subscribe((e) => this.dispatch({ type: 'QmpEventObserved', now: this.now(), event: e.event, data: e.data }));
        this.deps.onConsole?.(vm);
        vm.exited.then(
          (raw) => this.exited(vm, raw),
          (err: unknown) => this.exited(vm, { code: null, signal: null, stderrTail: errorMessage(err) }),
        );
      },
      (err: unknown) => this.dispatch({ type: 'LaunchFailed', now: this.now(), error: failureOf(err) }),
    );
  }

  private exited(vm: VmHandle, raw: { code: number | null; signal: string | null; stderrTail: string }): void {
    if (this.vm === vm) {
      this.vmSubscription?.unsubscribe();
      this.vmSubscription = null;
      this.vm = null;
    }
    this.dispatch({ type: 'QemuExited', now: this.now(), code: raw.code, signal: raw.signal, stderrTail: raw.stderrTail });
  }

  /** One QMP call with a deadline; a failure is fed back as a command and rethrown to the caller. */
  private async qmp(command: LifecycleQmpCommand, timeoutMs: number): Promise<void> {
    const vm = this.vm;
    if (vm === null) throw new PodvisorError('ERR_VM_NOT_RUNNING', `cannot send ${command}: qemu is not running`);
    try {
      await this.withDeadline(vm.execute(command), timeoutMs, () => new PodvisorError('ERR_QMP_TIMEOUT', `QMP command ${command} did not answer within ${timeoutMs} ms`, { hint: 'qemu is stopped or stuck; a stop kills it when its budget runs out' }));
    } catch (err) {
      this.log.debug('qmp call failed', { command, err });
      this.dispatch({ type: 'QmpCallFailed', now: this.now(), command, timedOut: isPodvisorError(err) && err.code === 'ERR_QMP_TIMEOUT', message: errorMessage(err) });
      throw err;
    }
  }

  private async withDeadline<T>(work: Promise<T>, ms: number, timeout: () => Error): Promise<T> {
    const cancel = new AbortController();
    const expired = this.deps.clock.sleep(ms, cancel.signal).then(
      () => Promise.reject(timeout()),
      () => new Promise<never>(() => undefined),
    );
    try {
      return await Promise.race([work, expired]);
    } finally {
      cancel.abort();
    }
  }

  private startTimer(timer: LifecycleTimer, at: number): void {
    this.timers.get(timer)?.abort();
    const ac = new AbortController();
    this.timers.set(timer, ac);
    this.deps.clock.sleep(Math.max(0, at - this.now()), ac.signal).then(
      () => {
        if (this.timers.get(timer) !== ac) return;
        this.timers.delete(timer);
        this.dispatch({ type: 'DeadlineReached', now: this.now(), timer });
      },
      () => undefined,
    );
  }

  /** Cancels what is pending, detaches the network within the teardown slice, records the exit. */
  private finish(outcome: LifecycleOutcome): void {
    if (this.finishing !== null) return;
    for (const t of this.timers.values()) t.abort();
    this.timers.clear();
    this.prepareAbort?.abort(new PodvisorError('ERR_SUPERVISOR_STOPPING', 'stopping'));
    this.finishing = this.teardown().then(() => {
      const exitCode = this.deps.exitCodeOf(outcome);
      this.record([{ type: 'SupervisorExited', data: { exitCode, reason: outcome.reason } }]);
      const result = { ...outcome, exitCode };
      this.resolveRun(result);
      return result;
    });
  }

  private async teardown(): Promise<void> {
    if (this.network === null) return;
    const backends = [...(this.deps.extraNetworks ?? [])].reverse();
    if (this.deps.network !== null) backends.push({ backend: this.deps.network, spec: this.settings.networkSpec });
    // The teardown slice, or what is left of the whole stop budget when the
    // earlier slices ended early (a guest that powered off at once leaves most
    // of it): the budget is the time from the signal to the exit.
    const left = this.exitRequestedAt === null ? 0 : this.exitRequestedAt + this.budget.totalMs - this.now();
    const limit = Math.max(this.budget.teardownMs, left, 1000);
    for (const { backend, spec } of backends) {
      try {
        await this.withDeadline(backend.detach(spec), limit, () => new PodvisorError('ERR_NETWORK_DETACH_TIMEOUT', `network teardown (${backend.name}) did not finish within ${limit} ms`));
        this.record([{ type: 'NetworkDetached', data: { backend: backend.name } }]);
      } catch (err) {
        this.record([{ type: 'WarningRaised', data: { code: 'WARN_NETWORK_DETACH', message: `network teardown (${backend.name}) failed: ${errorMessage(err)}` } }]);
      }
    }
  }

  /**
   * The one way facts are recorded: append, then fold into both projections,
   * then log. When the log refuses the append (a full, read-only or locked
   * volume), the store keeps the events in memory and writes them, in order,
   * when it can (see docs/reliability.md); the decision stands meanwhile, so
   * both projections fold the decided events at once (the lifecycle must go
   * on: a stop must finish), while followers of the log (SSE, `podvisor
   * events -f`) see them only once committed. It never throws into a timer or
   * a subscriber.
   */
  private record(events: DomainEvent[]): void {
    let stored: readonly StoredEvent[] | null = null;
    try {
      stored = this.deps.store.appendOrQueue(this.settings.vmName, events);
      if (stored === null) {
        this.failedAppends += 1;
        this.log.warn('event append deferred: kept in memory, written when the event log takes writes again', { types: events.map((e) => e.type), backlog: this.deps.store.backlog() });
      }
    } catch (err) {
      // Only a bug gets here (an invalid event, a closed store): the events are not kept.
      this.failedAppends += 1;
      try {
        this.log.error('event append failed; the lifecycle goes on unrecorded', { types: events.map((e) => e.type), err });
        this.deps.onRecordFailed?.(err, events);
      } catch {
        // Reporting must not take PID 1 down either.
      }
    }
    if (stored === null) {
      // Not committed yet: the projection keeps its last committed position.
      const at = new Date(this.now()).toISOString();
      stored = events.map((e) => ({ ...e, position: this.view.position, at, schemaVersion: EVENT_SCHEMA_VERSIONS[e.type], vm: this.settings.vmName, correlationId: null }) as StoredEvent);
    }
    for (const e of stored) {
      this.view = evolveVm(this.view, e);
      this.state = this.decider.evolve(this.state, e);
      if (this.state.status === 'Stopping' && this.state.then === 'exit') this.exitRequestedAt ??= this.state.since;
      const fields = { position: e.position, data: e.data };
      if (WARNING_EVENTS.has(e.type)) this.log.warn(e.type, fields);
      else this.log.info(e.type, fields);
    }
  }

  /** A backlog reached the log: said in the log itself, once it takes writes again. */
  private recovered(r: EventLogRecovery): void {
    const lost = r.dropped === 0 ? '' : `; ${r.dropped} events beyond the in-memory bound were dropped`;
    this.record([
      {
        type: 'WarningRaised',
        data: {
          code: 'WARN_EVENT_LOG_RECOVERED',
          message: `the event log refused appends for ${(r.pendingMs / 1000).toFixed(1)} s (${r.lastError}); the ${r.events} events decided meanwhile were written late, in order${lost}`,
          hint: 'free space on (or unlock) the volume holding the state dir',
        },
      },
    ]);
  }
}

function failureOf(err: unknown): LifecycleFailure {
  const e = isPodvisorError(err) ? err : new PodvisorError('ERR_INTERNAL', errorMessage(err), { cause: err });
  return { code: e.code, message: e.message, ...(e.hint === undefined ? {} : { hint: e.hint }) };
}
