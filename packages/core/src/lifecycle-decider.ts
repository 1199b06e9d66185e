/**
 * The whole lifecycle of one VM as pure functions, Emmett style:
 * `initialLifecycleState()`, `evolve(state, event)` and
 * `decide(command, state)`, made by `lifecycleDecider(settings)`. Every
 * transition, every signal, the restart policy, the crash-loop limit, the
 * backoff and the shutdown escalation (ACPI presses, QMP `quit`, SIGKILL,
 * giving up) are decided here; the `Supervisor` only performs the effects a
 * decision names (spawn, QMP calls with a deadline, timers, kill, teardown)
 * and feeds each result back as a command. Time comes in as data (`now`, and
 * the `at` of each stored event); nothing here does I/O or reads a clock.
 *
 * The state is a projection of the current run's events (it starts over at
 * `SupervisorStarted`): what the decider must remember, such as the phase of a
 * stop, when it began, who asked for a pause, and the recent restarts, is
 * folded from the events the decider itself emitted. There is no flag beside it.
 */
import { PodvisorError } from './errors.js';
import type { Accelerator, DomainEvent, EventDataMap, Requester, VmAction, VmExitInfo } from './events.js';
import { decideRestart, type RestartSettings } from './restart-policy.js';
import type { VmStatus } from './vm-lifecycle.js';

/** The signals a PID 1 acts on (see docs/lifecycle.md#signals). */
export type LifecycleSignal = 'SIGTERM' | 'SIGINT' | 'SIGQUIT' | 'SIGHUP';
export const LIFECYCLE_SIGNALS: readonly LifecycleSignal[] = ['SIGTERM', 'SIGINT', 'SIGQUIT', 'SIGHUP'];

/** `backoff`: the restart delay ends; `stop`: the next step of a stop is due (a press, `quit`, SIGKILL, giving up). */
export type LifecycleTimer = 'backoff' | 'stop';

/** The QMP commands the lifecycle sends (QMP reference: system_powerdown, quit, cont, stop, system_reset). */
export type LifecycleQmpCommand = 'system_powerdown' | 'quit' | 'cont' | 'stop' | 'system_reset';

/**
 * The one stop budget (`PODVISOR_STOP_GRACE`), split into slices that follow
 * each other from the moment a stop is asked for: ACPI presses, then QMP
 * `quit`, then SIGKILL and a short wait for qemu to go, then the teardown.
 */
export interface StopBudget {
  totalMs: number;
  /** ACPI power-button presses, about once per `powerdownIntervalMs`. */
  acpiMs: number;
  /** After QMP `quit`, before SIGKILL. */
  quitMs: number;
  /** After SIGKILL, before giving up on qemu (a process stuck in the kernel). */
  killWaitMs: number;
  /** Network teardown and exit. */
  teardownMs: number;
}

/**
 * Splits the stop budget: the last fifth (at least 2 s, at most 6 s) is kept
 * for SIGKILL and the teardown, `quit` gets 15 % (at most 4 s), ACPI the rest.
 * 30 s (Kubernetes' default terminationGracePeriodSeconds) gives ACPI 20 s,
 * quit 4 s, SIGKILL wait 3 s and teardown 3 s.
 */
export function splitStopBudget(graceSeconds: number): StopBudget {
  const totalMs = Math.max(0, Math.round(graceSeconds * 1000));
  const margin = Math.min(totalMs, Math.min(6000, Math.max(2000, Math.round(totalMs * 0.2))));
  const quitMs = Math.min(totalMs - margin, Math.min(4000, Math.round(totalMs * 0.15)));
  const acpiMs = totalMs - margin - quitMs;
  const killWaitMs = Math.floor(margin / 2);
  return { totalMs, acpiMs, quitMs, killWaitMs, teardownMs: margin - killWaitMs };
}

export interface LifecycleSettings {
  restart: RestartSettings;
  stop: StopBudget;
  /** Interval between ACPI presses during a stop (a booting guest may miss the first). */
  powerdownIntervalMs: number;
  /** Deadline of every QMP call the lifecycle makes. */
  qmpTimeoutMs: number;
}

/** An error as the decider sees it: a code, a message and a hint. */
export interface LifecycleFailure {
  code: string;
  message: string;
  hint?: string;
}

/** What the runner observed or was asked; each carries `now` (epoch ms). */
export type LifecycleCommand =
  | { type: 'StartRun'; now: number; started: EventDataMap['SupervisorStarted'] }
  | { type: 'PrepareSucceeded'; now: number }
  | { type: 'PrepareFailed'; now: number; error: LifecycleFailure }
  | { type: 'LaunchSucceeded'; now: number; pid: number; qmpVersion: string; argv: readonly string[]; startMs: number }
  | { type: 'LaunchFailed'; now: number; error: LifecycleFailure }
  | { type: 'QmpEventObserved'; now: number; event: string; data: Readonly<Record<string, unknown>> }
  | { type: 'QmpCallFailed'; now: number; command: LifecycleQmpCommand; timedOut: boolean; message: string }
  | { type: 'QemuExited'; now: number; code: number | null; signal: string | null; stderrTail: string }
  | { type: 'ActionRequested'; now: number; action: VmAction; by: Requester }
  | { type: 'SignalReceived'; now: number; signal: LifecycleSignal }
  | { type: 'DeadlineReached'; now: number; timer: LifecycleTimer };

/** How a run ended; the app maps it to an exit code (core knows no exit codes). */
export type LifecycleOutcome =
  /** A requested stop that the guest honoured through ACPI. */
  | { kind: 'stopped'; reason: string }
  /** A requested stop that needed QMP `quit`, SIGKILL or giving up (or SIGQUIT). */
  | { kind: 'forced'; reason: string }
  /** The guest powered off and the restart policy does not restart it. */
  | { kind: 'guest-stopped'; reason: string }
  /** qemu failed and the restart policy does not restart it. */
  | { kind: 'vm-failed'; reason: string }
  | { kind: 'crash-loop'; reason: string }
  /** Preparation or the first launch failed; `code` is the error's code. */
  | { kind: 'failed'; code: string; reason: string };

/** What the runner must do. Results come back as commands. */
export type LifecycleEffect =
  | { type: 'Prepare' }
  | { type: 'AbortPrepare' }
  | { type: 'Launch' }
  | { type: 'SendQmp'; command: LifecycleQmpCommand; timeoutMs: number }
  | { type: 'KillQemu'; signal: 'SIGKILL' }
  | { type: 'StartTimer'; timer: LifecycleTimer; at: number }
  | { type: 'CancelTimer'; timer: LifecycleTimer }
  | { type: 'Finish'; outcome: LifecycleOutcome };

export interface LifecycleDecision {
  events: DomainEvent[];
  effects: LifecycleEffect[];
}

/** An event with the time it was recorded (a `StoredEvent` is one). */
export type TimedEvent = DomainEvent & { readonly at: string };

/** Facts of the current run that every status carries. */
export interface RunFacts {
  /** qemu launches in this run. */
  attempt: number;
  accel: Accelerator;
  /** Epoch ms of the policy restarts of this run (operator restarts do not count). */
  restartTimes: readonly number[];
  /** Epoch ms of the last `VmStarting`. */
  launchedAt: number;
}

type PendingQmp = 'STOP' | 'RESUME' | 'RESET';

/** A running qemu. */
export interface QemuFacts {
  pid: number;
  /** The guest asked for its own power-off (QMP SHUTDOWN guest=true). */
  guestShutdown: boolean;
  /** Who asked for the pause/resume/reset that qemu will confirm with an event. */
  pendingBy: Readonly<Partial<Record<PendingQmp, Requester>>>;
}

/** A stop (or an operator restart) in progress. */
export interface StopFacts {
  /** qemu's pid; `null` while preparation or a launch is still in flight. */
  pid: number | null;
  waitingFor: 'prepare' | 'launch' | 'qemu';
  by: Requester;
  /** `restart`: an operator restart (relaunch after qemu exits); a signal or `stop` turns it into `exit`. */
  then: 'exit' | 'restart';
  /** Epoch ms the stop was asked for: every slice of the budget counts from here. */
  since: number;
  presses: number;
  /** The guest said it is powering off (QMP SHUTDOWN) during this stop: no more presses, qemu is exiting. */
  shutdownObserved: boolean;
  quitAt: number | null;
  killAt: number | null;
  /** A QMP call of this stop got no answer in time (warned once per stop). */
  qmpUnresponsive: boolean;
}

export type LifecycleState =
  | ({ status: 'Pending' } & RunFacts)
  | ({ status: 'Preparing' } & RunFacts)
  | ({ status: 'Starting' } & RunFacts)
  | ({ status: 'Running' } & RunFacts & QemuFacts)
  | ({ status: 'Paused' } & RunFacts & QemuFacts)
  | ({ status: 'Stopping' } & RunFacts & StopFacts)
  | ({ status: 'Crashed'; exit: VmExitInfo } & RunFacts)
  | ({ status: 'BackingOff'; restartAt: number } & RunFacts)
  | ({ status: 'Stopped'; reason: string; requested: boolean } & RunFacts)
  | ({ status: 'Failed'; code: string; message: string } & RunFacts);

// Exhaustiveness: every lifecycle status is a public VmStatus and back.
type SameStatuses = [LifecycleState['status']] extends [VmStatus] ? ([VmStatus] extends [LifecycleState['status']] ? true : never) : never;
const statusesMatch: SameStatuses = true;
void statusesMatch;

export function initialLifecycleState(): LifecycleState {
  return { status: 'Pending', attempt: 0, accel: 'tcg', restartTimes: [], launchedAt: 0 };
}

function runFacts(s: LifecycleState): RunFacts {
  return { attempt: s.attempt, accel: s.accel, restartTimes: s.restartTimes, launchedAt: s.launchedAt };
}

function assertNever(x: never): never {
  throw new Error(`unexpected ${JSON.stringify(x)}`);
}

/**
 * The operator actions each status allows (Firecracker's "which state refuses
 * which action"). A status refuses every other action with
 * `ERR_VM_ACTION_REFUSED`, except those `satisfiedIn` it, which are no-ops.
 */
export function actionsAllowedIn(status: VmStatus): VmAction[] {
  switch (status) {
    case 'Running':
      return ['powerdown', 'reset', 'pause', 'restart', 'stop'];
    case 'Paused':
      return ['reset', 'resume', 'restart', 'stop'];
    case 'Pending':
    case 'Preparing':
    case 'Starting':
    case 'Crashed':
    case 'BackingOff':
    case 'Stopping':
      return ['stop'];
    case 'Stopped':
    case 'Failed':
      return [];
    default:
      return assertNever(status);
  }
}

/** Whether an action is already satisfied: repeating it is a no-op, not an error. */
export function isActionSatisfied(action: VmAction, status: VmStatus, restarting = false): boolean {
  switch (action) {
    case 'pause':
      return status === 'Paused';
    case 'resume':
      return status === 'Running';
    case 'stop':
      return (status === 'Stopping' && !restarting) || status === 'Stopped' || status === 'Failed';
    case 'powerdown':
      return status === 'Stopping';
    case 'restart':
      return status === 'Stopping' && restarting;
    case 'reset':
      return false;
    default:
      return assertNever(action);
  }
}

/** The refusal, with the status and what it allows. */
export function refuseAction(action: VmAction, status: VmStatus): PodvisorError {
  const allowed = actionsAllowedIn(status);
  return new PodvisorError('ERR_VM_ACTION_REFUSED', `action ${action} is not allowed while the VM is ${status}`, {
    hint: allowed.length === 0 ? 'no action is possible in this state' : `allowed now: ${allowed.join(', ')}`,
    details: { action, status, allowed },
  });
}

const NOTHING: LifecycleDecision = { events: [], effects: [] };

function timeOf(e: TimedEvent): number {
  return Date.parse(e.at);
}

/** The decider for one set of settings. */
export interface LifecycleDecider {
  initialState(): LifecycleState;
  evolve(state: LifecycleState, event: TimedEvent): LifecycleState;
  /** Throws `ERR_VM_ACTION_REFUSED` for an operator action the status refuses; never for anything else. */
  decide(command: LifecycleCommand, state: LifecycleState): LifecycleDecision;
}

export function lifecycleDecider(settings: LifecycleSettings): LifecycleDecider {
  const budget = settings.stop;
  const qmp = (command: LifecycleQmpCommand): LifecycleEffect => ({ type: 'SendQmp', command, timeoutMs: settings.qmpTimeoutMs });

  // ---------------------------------------------------------------- evolve

  function evolve(state: LifecycleState, e: TimedEvent): LifecycleState {
    const run = runFacts(state);
    switch (e.type) {
      case 'SupervisorStarted':
        return { ...initialLifecycleState(), status: 'Pending' };
      case 'AcceleratorProbed':
        return state.status === 'Pending' || state.status === 'Preparing' ? { ...state, status: 'Preparing', accel: e.data.selected } : { ...state, accel: e.data.selected };
      case 'ImageImported':
      case 'DiskCreated':
      case 'DiskReused':
        return state.status === 'Pending' ? { ...state, status: 'Preparing' } : state;
      case 'VmStarting':
        return { ...run, status: 'Starting', attempt: e.data.attempt, accel: e.data.accel, launchedAt: timeOf(e) };
      case 'VmStarted':
        if (state.status === 'Stopping') return { ...state, pid: e.data.pid, waitingFor: 'qemu' };
        return { ...run, status: 'Running', pid: e.data.pid, guestShutdown: false, pendingBy: {} };
      case 'VmPaused':
        return state.status === 'Running' ? { ...state, status: 'Paused', pendingBy: without(state.pendingBy, 'STOP') } : state;
      case 'VmResumed':
        return state.status === 'Paused' ? { ...state, status: 'Running', pendingBy: without(state.pendingBy, 'RESUME') } : state;
      case 'VmReset':
        return state.status === 'Running' || state.status === 'Paused' ? { ...state, pendingBy: without(state.pendingBy, 'RESET') } : state;
      case 'VmActionRequested':
        return evolveAction(state, e.data.action, e.data.by, timeOf(e));
      case 'WarningRaised':
        return state.status === 'Stopping' && e.data.code === 'WARN_QMP_UNRESPONSIVE' ? { ...state, qmpUnresponsive: true } : state;
      case 'VmPowerdownRequested':
        return state.status === 'Stopping' ? { ...state, presses: Math.max(state.presses, e.data.attempt) } : state;
      case 'VmQuitRequested':
        return state.status === 'Stopping' ? { ...state, quitAt: timeOf(e) } : state;
      case 'VmKillRequested':
        return state.status === 'Stopping' ? { ...state, killAt: timeOf(e) } : state;
      case 'GuestShutdownObserved':
        if (state.status === 'Stopping') return { ...state, shutdownObserved: true };
        return state.status === 'Running' || state.status === 'Paused' ? { ...state, guestShutdown: e.data.guest } : state;
      case 'VmExited':
        if (state.status === 'Stopping') return { ...run, status: 'Stopped', reason: e.data.exit.reason, requested: true };
        if (e.data.exit.reason === 'crashed' || e.data.exit.reason === 'killed') return { ...run, status: 'Crashed', exit: e.data.exit };
        return { ...run, status: 'Stopped', reason: e.data.exit.reason, requested: false };
      case 'VmRestartScheduled': {
        const operator = state.status === 'Stopped' && state.requested;
        // Only restarts inside the crash-loop window count: older ones are dropped, so a long run stays small.
        const since = timeOf(e) - settings.restart.windowSeconds * 1000;
        const restartTimes = operator ? run.restartTimes : [...run.restartTimes.filter((t) => t >= since), timeOf(e)];
        return { ...run, status: 'BackingOff', restartAt: timeOf(e) + e.data.delayMs, restartTimes };
      }
      case 'VmFailed':
        return { ...run, status: 'Failed', code: e.data.code, message: e.data.message };
      case 'VmStopped':
        return state.status === 'Failed' ? state : { ...run, status: 'Stopped', reason: e.data.reason, requested: state.status === 'Stopping' || (state.status === 'Stopped' && state.requested) };
      case 'ImagePullProgressed':
      case 'ImagePullRetried':
      case 'ImageNewerBaseAvailable':
      case 'DiskRebased':
      case 'DiskResized':
      case 'ConfigDriveBuilt':
      case 'NetworkAttached':
      case 'NetworkDetached':
      case 'AcceleratorFellBack':
      case 'GuestPanicked':
      case 'VmCrashLoopDetected':
      case 'SupervisorExited':
      // Recorded by the app around a run, never inside one: the preflight's failure ends the process before the
      // supervisor starts, and ignored settings are reported before SupervisorStarted.
      case 'PreflightFailed':
      case 'SettingsIgnored':
        return state;
      default:
        return assertNever(e);
    }
  }

  function evolveAction(state: LifecycleState, action: VmAction, by: Requester, at: number): LifecycleState {
    switch (action) {
      case 'stop':
      case 'restart': {
        const then = action === 'stop' ? 'exit' : 'restart';
        // A stop during an operator restart turns it into a stop; the budget already running keeps its start.
        if (state.status === 'Stopping') return then === 'exit' ? { ...state, then, by } : state;
        const pid = state.status === 'Running' || state.status === 'Paused' ? state.pid : null;
        const waitingFor = pid !== null ? 'qemu' : state.status === 'Starting' ? 'launch' : 'prepare';
        return { ...runFacts(state), status: 'Stopping', pid, waitingFor, by, then, since: at, presses: 0, shutdownObserved: false, quitAt: null, killAt: null, qmpUnresponsive: false };
      }
      case 'pause':
      case 'resume':
      case 'reset': {
        if (state.status !== 'Running' && state.status !== 'Paused') return state;
        const key: PendingQmp = action === 'pause' ? 'STOP' : action === 'resume' ? 'RESUME' : 'RESET';
        return { ...state, pendingBy: { ...state.pendingBy, [key]: by } };
      }
      case 'powerdown':
        return state;
      default:
        return assertNever(action);
    }
  }

  // ---------------------------------------------------------------- decide

  function decide(command: LifecycleCommand, state: LifecycleState): LifecycleDecision {
    switch (command.type) {
      case 'StartRun':
        return { events: [{ type: 'SupervisorStarted', data: command.started }], effects: [{ type: 'Prepare' }] };
      case 'PrepareSucceeded':
        if (state.status === 'Pending' || state.status === 'Preparing') return launch(state, [], []);
        if (state.status === 'Stopping' && state.waitingFor === 'prepare') return endStop(state, command.now, 'before qemu started', false);
        return NOTHING;
      case 'PrepareFailed':
        if (state.status === 'Pending' || state.status === 'Preparing') return fail(command.error);
        // Whatever the preparation says when it was aborted (an abort error, a copy cut short): a stop was asked for.
        if (state.status === 'Stopping' && state.waitingFor === 'prepare') return endStop(state, command.now, 'during preparation', false);
        return NOTHING;
      case 'LaunchSucceeded':
        return launched(command, state);
      case 'LaunchFailed':
        if (state.status === 'Starting') {
          if (state.attempt <= 1) return fail(command.error);
          // A later launch failing counts as a crash, so that the crash-loop limit applies.
          const exit: VmExitInfo = { code: null, signal: null, reason: 'crashed', stderr: command.error.message };
          return afterExit(state, exit, 0, command.now);
        }
        if (state.status === 'Stopping' && state.waitingFor === 'launch') return endStop(state, command.now, 'before qemu started', false);
        return NOTHING;
      case 'QmpEventObserved':
        return qmpEvent(command, state);
      case 'QmpCallFailed':
        return qmpFailed(command, state);
      case 'QemuExited':
        return qemuExited(command, state);
      case 'ActionRequested':
        return action(command.action, command.by, state, command.now);
      case 'SignalReceived':
        return signal(command.signal, state, command.now);
      case 'DeadlineReached':
        return deadline(command.timer, state, command.now);
      default:
        return assertNever(command);
    }
  }

  function fail(error: LifecycleFailure): LifecycleDecision {
    return {
      events: [{ type: 'VmFailed', data: { code: error.code, message: error.message, ...(error.hint === undefined ? {} : { hint: error.hint }) } }],
      effects: [{ type: 'Finish', outcome: { kind: 'failed', code: error.code, reason: error.message } }],
    };
  }

  function launch(state: LifecycleState, events: DomainEvent[], effects: LifecycleEffect[]): LifecycleDecision {
    return { events: [...events, { type: 'VmStarting', data: { attempt: state.attempt + 1, accel: state.accel } }], effects: [...effects, { type: 'Launch' }] };
  }

  function launched(c: Extract<LifecycleCommand, { type: 'LaunchSucceeded' }>, state: LifecycleState): LifecycleDecision {
    const started: DomainEvent = { type: 'VmStarted', data: { attempt: state.attempt, pid: c.pid, qmpVersion: c.qmpVersion, startMs: c.startMs, argv: [...c.argv] } };
    if (state.status === 'Starting') return { events: [started], effects: [] };
    if (state.status === 'Stopping' && state.waitingFor === 'launch') {
      // A stop arrived during the launch: qemu joins the stop where its budget now stands.
      const next = advanceStop({ ...state, pid: c.pid, waitingFor: 'qemu' }, c.now);
      return { events: [started, ...next.events], effects: next.effects };
    }
    // Nothing wants this qemu any more (the run ended while it launched).
    return { events: [], effects: [{ type: 'KillQemu', signal: 'SIGKILL' }] };
  }

  function qmpEvent(c: Extract<LifecycleCommand, { type: 'QmpEventObserved' }>, state: LifecycleState): LifecycleDecision {
    const live = state.status === 'Running' || state.status === 'Paused' || (state.status === 'Stopping' && state.pid !== null);
    if (!live) return NOTHING;
    const by = (key: PendingQmp): Requester => (state.status === 'Running' || state.status === 'Paused' ? (state.pendingBy[key] ?? 'qemu') : 'qemu');
    // QMP reference, "Events": SHUTDOWN, STOP, RESUME, RESET, GUEST_PANICKED.
    switch (c.event) {
      case 'SHUTDOWN':
        return { events: [{ type: 'GuestShutdownObserved', data: { guest: c.data['guest'] === true, reason: typeof c.data['reason'] === 'string' ? c.data['reason'] : 'unknown' } }], effects: [] };
      case 'STOP':
        return state.status === 'Running' ? { events: [{ type: 'VmPaused', data: { by: by('STOP'), reason: 'qmp STOP' } }], effects: [] } : NOTHING;
      case 'RESUME':
        return state.status === 'Paused' ? { events: [{ type: 'VmResumed', data: { by: by('RESUME') } }], effects: [] } : NOTHING;
      case 'RESET': {
        const guest = c.data['guest'] === true;
        return { events: [{ type: 'VmReset', data: { by: guest ? 'guest' : by('RESET'), guest } }], effects: [] };
      }
      case 'GUEST_PANICKED':
        return { events: [{ type: 'GuestPanicked', data: { action: String(c.data['action'] ?? 'unknown'), info: (c.data['info'] as Record<string, unknown> | undefined) ?? {} } }], effects: [] };
      default:
        return NOTHING;
    }
  }

  function qmpFailed(c: Extract<LifecycleCommand, { type: 'QmpCallFailed' }>, state: LifecycleState): LifecycleDecision {
    const live = state.status === 'Running' || state.status === 'Paused' || (state.status === 'Stopping' && state.pid !== null);
    if (!c.timedOut || !live) return NOTHING;
    // One warning per stop; its timers go on regardless of QMP.
    if (state.status === 'Stopping' && state.qmpUnresponsive) return NOTHING;
    return {
      events: [{ type: 'WarningRaised', data: { code: 'WARN_QMP_UNRESPONSIVE', message: `qemu did not answer QMP ${c.command} within ${settings.qmpTimeoutMs} ms`, hint: 'a stopped or stuck qemu is killed when the stop budget runs out' } }],
      effects: [],
    };
  }

  function qemuExited(c: Extract<LifecycleCommand, { type: 'QemuExited' }>, state: LifecycleState): LifecycleDecision {
    const stderr = c.stderrTail.trim();
    const raw = { code: c.code, signal: c.signal, ...(stderr === '' ? {} : { stderr: stderr.slice(-2000) }) };
    const uptimeMs = Math.max(0, c.now - state.launchedAt);
    switch (state.status) {
      case 'Running':
      case 'Paused': {
        const exit: VmExitInfo = { ...raw, reason: state.guestShutdown && c.code === 0 ? 'guest-shutdown' : 'crashed' };
        return afterExit(state, exit, uptimeMs, c.now);
      }
      case 'Stopping': {
        if (state.pid === null) return NOTHING;
        const exit: VmExitInfo = { ...raw, reason: state.killAt !== null ? 'killed' : 'host-shutdown' };
        const exited: DomainEvent = { type: 'VmExited', data: { attempt: state.attempt, exit, uptimeMs } };
        if (state.then === 'restart') {
          return launch(state, [exited, { type: 'VmRestartScheduled', data: { attempt: state.attempt + 1, delayMs: 0, reason: `restart requested by ${state.by}` } }], [{ type: 'CancelTimer', timer: 'stop' }]);
        }
        const end = endStop(state, c.now, '', false);
        return { events: [exited, ...end.events], effects: end.effects };
      }
      case 'Pending':
      case 'Preparing':
      case 'Starting':
      case 'Crashed':
      case 'BackingOff':
      case 'Stopped':
      case 'Failed':
        return NOTHING;
      default:
        return assertNever(state);
    }
  }

  /** qemu ended by itself: the restart policy decides. */
  function afterExit(state: LifecycleState, exit: VmExitInfo, uptimeMs: number, now: number): LifecycleDecision {
    const exited: DomainEvent = { type: 'VmExited', data: { attempt: state.attempt, exit, uptimeMs } };
    const d = decideRestart(settings.restart, exit, state.restartTimes, now);
    switch (d.kind) {
      case 'stop':
        return { events: [exited, { type: 'VmStopped', data: { reason: d.reason } }], effects: [{ type: 'Finish', outcome: { kind: d.failed ? 'vm-failed' : 'guest-stopped', reason: d.reason } }] };
      case 'crash-loop': {
        const message = `qemu was restarted ${d.restarts} times within ${d.windowSeconds} s and exited again`;
        return {
          events: [
            exited,
            { type: 'VmCrashLoopDetected', data: { restarts: d.restarts, windowSeconds: d.windowSeconds } },
            { type: 'VmFailed', data: { code: 'ERR_VM_CRASH_LOOP', message, hint: 'read the qemu stderr in the VmExited events and the serial log' } },
          ],
          effects: [{ type: 'Finish', outcome: { kind: 'crash-loop', reason: message } }],
        };
      }
      case 'restart':
        return {
          events: [exited, { type: 'VmRestartScheduled', data: { attempt: state.attempt + 1, delayMs: d.delayMs, reason: d.reason } }],
          effects: [{ type: 'StartTimer', timer: 'backoff', at: now + d.delayMs }],
        };
      default:
        return assertNever(d);
    }
  }

  function action(a: VmAction, by: Requester, state: LifecycleState, now: number): LifecycleDecision {
    const restarting = state.status === 'Stopping' && state.then === 'restart';
    if (isActionSatisfied(a, state.status, restarting)) return NOTHING;
    if (!actionsAllowedIn(state.status).includes(a)) throw refuseAction(a, state.status);
    const requested: DomainEvent = { type: 'VmActionRequested', data: { action: a, by } };
    switch (a) {
      case 'stop':
        return beginStop(state, by, 'exit', now);
      case 'restart':
        return beginStop(state, by, 'restart', now);
      case 'pause':
        return { events: [requested], effects: [qmp('stop')] };
      case 'resume':
        return { events: [requested], effects: [qmp('cont')] };
      case 'reset':
        return { events: [requested], effects: [qmp('system_reset')] };
      case 'powerdown':
        return { events: [requested, { type: 'VmPowerdownRequested', data: { by, attempt: 1 } }], effects: [qmp('system_powerdown')] };
      default:
        return assertNever(a);
    }
  }

  /** Begins a stop (or an operator restart) in any status that allows it. */
  function beginStop(state: LifecycleState, by: Requester, then: 'exit' | 'restart', now: number): LifecycleDecision {
    const requested: DomainEvent = { type: 'VmActionRequested', data: { action: then === 'exit' ? 'stop' : 'restart', by } };
    switch (state.status) {
      case 'Running':
      case 'Paused': {
        const stopping: Extract<LifecycleState, { status: 'Stopping' }> = { ...runFacts(state), status: 'Stopping', pid: state.pid, waitingFor: 'qemu', by, then, since: now, presses: 0, shutdownObserved: false, quitAt: null, killAt: null, qmpUnresponsive: false };
        const next = advanceStop(stopping, now);
        // ACPI needs running vCPUs: a paused guest never sees the button.
        return { events: [requested, ...next.events], effects: [...(state.status === 'Paused' ? [qmp('cont')] : []), ...next.effects] };
      }
      case 'Pending':
      case 'Preparing':
        return { events: [requested], effects: [{ type: 'AbortPrepare' }, { type: 'StartTimer', timer: 'stop', at: giveUpAt({ since: now, killAt: null }) }] };
      case 'Starting':
        return { events: [requested], effects: [{ type: 'StartTimer', timer: 'stop', at: giveUpAt({ since: now, killAt: null }) }] };
      case 'Crashed':
      case 'BackingOff':
        return {
          events: [requested, { type: 'VmStopped', data: { reason: `stopped by ${by} during backoff` } }],
          effects: [{ type: 'CancelTimer', timer: 'backoff' }, { type: 'Finish', outcome: { kind: 'stopped', reason: `stopped by ${by}` } }],
        };
      case 'Stopping':
        // Only a stop reaches here (a restart is satisfied): the restart becomes a stop.
        return { events: [requested], effects: [] };
      case 'Stopped':
      case 'Failed':
        return NOTHING;
      default:
        return assertNever(state);
    }
  }

  function giveUpAt(s: { since: number; killAt: number | null }): number {
    const planned = s.since + budget.acpiMs + budget.quitMs + budget.killWaitMs;
    return s.killAt === null ? planned : Math.min(planned, s.killAt + budget.killWaitMs);
  }

  /**
   * The next step of a stop, from where its budget stands at `now`: an ACPI
   * press while the ACPI slice lasts, then `quit`, then SIGKILL, then giving
   * up. It also names the timer of the step after, so a timer that fires
   * early only re-arms.
   */
  function advanceStop(s: Extract<LifecycleState, { status: 'Stopping' }>, now: number): LifecycleDecision {
    const timer = (at: number): LifecycleEffect => ({ type: 'StartTimer', timer: 'stop', at });
    const giveUp = giveUpAt(s);
    if (s.pid === null || s.killAt !== null) {
      if (now >= giveUp) {
        const what = s.pid === null ? `the ${s.waitingFor === 'prepare' ? 'preparation' : 'launch'} did not stop` : 'qemu did not exit after SIGKILL';
        const end = endStop(s, now, '', true);
        return {
          events: [{ type: 'WarningRaised', data: { code: 'WARN_STOP_GRACE_EXCEEDED', message: `${what} within the stop budget of ${budget.totalMs} ms; tearing down anyway` } }, ...end.events],
          effects: end.effects,
        };
      }
      return { events: [], effects: [timer(giveUp)] };
    }
    const acpiEnd = s.since + budget.acpiMs;
    if (s.quitAt === null) {
      // The guest is powering off: a press now would only race qemu's exit. The ACPI slice still bounds the wait.
      if (now < acpiEnd && s.shutdownObserved) return { events: [], effects: [timer(acpiEnd)] };
      if (now < acpiEnd) {
        return {
          events: [{ type: 'VmPowerdownRequested', data: { by: s.by, attempt: s.presses + 1 } }],
          effects: [qmp('system_powerdown'), timer(Math.min(now + settings.powerdownIntervalMs, acpiEnd))],
        };
      }
      const killDue = Math.min(now + budget.quitMs, acpiEnd + budget.quitMs);
      if (now < killDue) return { events: [{ type: 'VmQuitRequested', data: { by: s.by } }], effects: [qmp('quit'), timer(killDue)] };
    } else {
      const killDue = Math.min(s.quitAt + budget.quitMs, acpiEnd + budget.quitMs);
      if (now < killDue) return { events: [], effects: [timer(killDue)] };
    }
    return kill(s, s.by, now);
  }

  function kill(s: Extract<LifecycleState, { status: 'Stopping' }>, by: Requester, now: number): LifecycleDecision {
    return {
      events: [{ type: 'VmKillRequested', data: { by, signal: 'SIGKILL' } }],
      effects: [{ type: 'KillQemu', signal: 'SIGKILL' }, { type: 'StartTimer', timer: 'stop', at: giveUpAt({ since: s.since, killAt: now }) }],
    };
  }

  /** The stop is over: qemu is gone (or given up on). */
  function endStop(s: Extract<LifecycleState, { status: 'Stopping' }>, _now: number, when: string, gaveUp: boolean): LifecycleDecision {
    const reason = `stopped by ${s.by}${when === '' ? '' : ` ${when}`}`;
    const forced = gaveUp || s.quitAt !== null || s.killAt !== null || s.by === 'signal:SIGQUIT';
    return {
      events: [{ type: 'VmStopped', data: { reason } }],
      effects: [{ type: 'CancelTimer', timer: 'stop' }, { type: 'AbortPrepare' }, { type: 'Finish', outcome: forced ? { kind: 'forced', reason: `${reason} (${gaveUp ? 'gave up waiting' : s.killAt !== null ? 'SIGKILL' : s.quitAt !== null ? 'QMP quit' : 'SIGQUIT'})` } : { kind: 'stopped', reason } }],
    };
  }

  function signal(sig: LifecycleSignal, state: LifecycleState, now: number): LifecycleDecision {
    const by = `signal:${sig}`;
    switch (sig) {
      case 'SIGHUP':
        return {
          events: [{ type: 'WarningRaised', data: { code: 'WARN_SIGNAL_IGNORED', message: 'SIGHUP ignored: the configuration is fixed for the life of the pod', hint: 'SIGTERM or SIGINT stops the VM gracefully, SIGQUIT at once' } }],
          effects: [],
        };
      case 'SIGTERM':
      case 'SIGINT':
        if (state.status === 'Stopping' && state.then === 'exit') {
          // A second SIGTERM/SIGINT: skip the rest of the ACPI slice, ask qemu to quit now. After an
          // operator's stop, a signal is only the first one (the stop already under way goes on).
          if (!state.by.startsWith('signal:') || state.pid === null || state.quitAt !== null || state.killAt !== null) return NOTHING;
          const killDue = Math.min(now + budget.quitMs, state.since + budget.acpiMs + budget.quitMs);
          if (now >= killDue) return kill(state, by, now);
          return { events: [{ type: 'VmQuitRequested', data: { by } }], effects: [qmp('quit'), { type: 'StartTimer', timer: 'stop', at: killDue }] };
        }
        return action('stop', by, state, now);
      case 'SIGQUIT':
        return quitSignal(state, by, now);
      default:
        return assertNever(sig);
    }
  }

  /** SIGQUIT: SIGKILL qemu at once (no ACPI, no quit), then tear down. */
  function quitSignal(state: LifecycleState, by: Requester, now: number): LifecycleDecision {
    const requested: DomainEvent = { type: 'VmActionRequested', data: { action: 'stop', by } };
    switch (state.status) {
      case 'Running':
      case 'Paused': {
        const s: Extract<LifecycleState, { status: 'Stopping' }> = { ...runFacts(state), status: 'Stopping', pid: state.pid, waitingFor: 'qemu', by, then: 'exit', since: now, presses: 0, shutdownObserved: false, quitAt: null, killAt: null, qmpUnresponsive: false };
        const k = kill(s, by, now);
        return { events: [requested, ...k.events], effects: k.effects };
      }
      case 'Stopping': {
        const turned = state.then === 'restart' ? [requested] : [];
        if (state.pid === null) {
          const end = endStop({ ...state, by }, now, '', true);
          return { events: [...turned, ...end.events], effects: end.effects };
        }
        if (state.killAt !== null) return { events: turned, effects: [] };
        const k = kill(state, by, now);
        return { events: [...turned, ...k.events], effects: k.effects };
      }
      case 'Pending':
      case 'Preparing':
      case 'Starting':
      case 'Crashed':
      case 'BackingOff':
        return {
          events: [requested, { type: 'VmStopped', data: { reason: `stopped by ${by}` } }],
          effects: [{ type: 'CancelTimer', timer: 'backoff' }, { type: 'AbortPrepare' }, { type: 'Finish', outcome: { kind: 'forced', reason: `stopped by ${by}` } }],
        };
      case 'Stopped':
      case 'Failed':
        return NOTHING;
      default:
        return assertNever(state);
    }
  }

  function deadline(timer: LifecycleTimer, state: LifecycleState, now: number): LifecycleDecision {
    switch (timer) {
      case 'backoff':
        return state.status === 'BackingOff' ? launch(state, [], []) : NOTHING;
      case 'stop':
        return state.status === 'Stopping' ? advanceStop(state, now) : NOTHING;
      default:
        return assertNever(timer);
    }
  }

  return { initialState: initialLifecycleState, evolve, decide };
}

function without<K extends string, V>(map: Readonly<Partial<Record<K, V>>>, key: K): Partial<Record<K, V>> {
  const copy = { ...map };
  delete copy[key];
  return copy;
}
