/**
 * The VM lifecycle as three pure functions, Emmett style: `initialVmState()`,
 * `evolveVm(state, event)` (the projection: current state is a fold of the
 * log) and `decideVmAction(command, state)` (which actions each status
 * accepts, refuses or treats as already done). Time and requesters come in as
 * data; nothing here does I/O.
 */
import { actionsAllowedIn, isActionSatisfied, refuseAction } from './lifecycle-decider.js';
import type { Accelerator, StoredEvent, VmAction, VmExitInfo, DomainEvent, Requester } from './events.js';

export type VmStatus =
  | 'Pending'
  | 'Preparing'
  | 'Starting'
  | 'Running'
  | 'Paused'
  | 'Stopping'
  | 'Stopped'
  | 'Crashed'
  | 'BackingOff'
  | 'Failed';

/** Facts that every status carries. */
export interface VmFacts {
  /** The VM's name; empty until the first event. */
  vm: string;
  /** Supervisor runs recorded in the log (pod starts). */
  runs: number;
  /** qemu launches in the current run. */
  attempt: number;
  /** Restarts in the current run (launches after the first). */
  restarts: number;
  accelerator: Accelerator | null;
  image: { source: string; target: string; sha256: string } | null;
  disk: { path: string; backingFile: string | null } | null;
  addresses: string[];
  lastExit: (VmExitInfo & { at: string }) | null;
  /** Position of the last event folded in. */
  position: number;
  /** ISO time of the last event. */
  updatedAt: string | null;
}

export type VmState =
  | ({ status: 'Pending' } & VmFacts)
  | ({ status: 'Preparing' } & VmFacts)
  | ({ status: 'Starting' } & VmFacts)
  | ({ status: 'Running'; pid: number; since: string } & VmFacts)
  | ({ status: 'Paused'; pid: number; since: string } & VmFacts)
  | ({ status: 'Stopping'; pid: number | null; requestedBy: Requester } & VmFacts)
  | ({ status: 'Stopped'; reason: string } & VmFacts)
  | ({ status: 'Crashed' } & VmFacts)
  | ({ status: 'BackingOff'; restartAt: string } & VmFacts)
  | ({ status: 'Failed'; code: string; message: string } & VmFacts);

export function initialVmState(): VmState {
  return {
    status: 'Pending',
    vm: '',
    runs: 0,
    attempt: 0,
    restarts: 0,
    accelerator: null,
    image: null,
    disk: null,
    addresses: [],
    lastExit: null,
    position: 0,
    updatedAt: null,
  };
}

function facts(state: VmState): VmFacts {
  return {
    vm: state.vm,
    runs: state.runs,
    attempt: state.attempt,
    restarts: state.restarts,
    accelerator: state.accelerator,
    image: state.image,
    disk: state.disk,
    addresses: state.addresses,
    lastExit: state.lastExit,
    position: state.position,
    updatedAt: state.updatedAt,
  };
}

function pidOf(state: VmState): number | null {
  return state.status === 'Running' || state.status === 'Paused' ? state.pid : state.status === 'Stopping' ? state.pid : null;
}

/** Folds one stored event into the state. Unknown future event types leave it unchanged. */
export function evolveVm(state: VmState, stored: StoredEvent): VmState {
  const base: VmFacts = { ...facts(state), vm: stored.vm, position: stored.position, updatedAt: stored.at };
  const e = stored as DomainEvent;
  switch (e.type) {
    case 'SupervisorStarted':
      return { ...base, status: 'Pending', runs: state.runs + 1, attempt: 0, restarts: 0, addresses: [] };
    case 'AcceleratorProbed':
      return { ...base, status: 'Preparing', accelerator: e.data.selected };
    case 'ImageImported':
      return { ...base, status: 'Preparing', image: { source: e.data.source, target: e.data.target, sha256: e.data.sha256 } };
    case 'DiskCreated':
      return { ...base, status: 'Preparing', disk: { path: e.data.path, backingFile: e.data.backingFile } };
    case 'DiskReused':
      return { ...base, status: 'Preparing', disk: { path: e.data.path, backingFile: e.data.backingFile } };
    case 'NetworkAttached':
      // One event per backend of the run (the primary, then the stacked ones): their addresses add up.
      return { ...keep(state, base), addresses: [...state.addresses, ...e.data.nics.flatMap((n) => n.addresses)] };
    case 'VmStarting':
      return { ...base, status: 'Starting', attempt: e.data.attempt, restarts: Math.max(0, e.data.attempt - 1), accelerator: e.data.accel };
    case 'VmStarted':
      // A stop that arrived during the launch goes on with this qemu.
      if (state.status === 'Stopping') return { ...base, status: 'Stopping', pid: e.data.pid, requestedBy: state.requestedBy };
      return { ...base, status: 'Running', pid: e.data.pid, since: stored.at };
    case 'VmPaused':
      return state.status === 'Running' ? { ...base, status: 'Paused', pid: state.pid, since: stored.at } : keep(state, base);
    case 'VmResumed':
      return state.status === 'Paused' ? { ...base, status: 'Running', pid: state.pid, since: stored.at } : keep(state, base);
    case 'VmActionRequested':
      if (e.data.action === 'stop' || e.data.action === 'restart') {
        if (state.status === 'Stopping') return { ...base, status: 'Stopping', pid: state.pid, requestedBy: e.data.by };
        return { ...base, status: 'Stopping', pid: pidOf(state), requestedBy: e.data.by };
      }
      return keep(state, base);
    case 'VmExited': {
      const lastExit = { ...e.data.exit, at: stored.at };
      const clean = state.status === 'Stopping' || e.data.exit.reason === 'guest-shutdown' || e.data.exit.reason === 'host-shutdown';
      return clean
        ? { ...base, lastExit, status: 'Stopped', reason: e.data.exit.reason }
        : { ...base, lastExit, status: 'Crashed' };
    }
    case 'VmRestartScheduled':
      return { ...base, status: 'BackingOff', restartAt: new Date(Date.parse(stored.at) + e.data.delayMs).toISOString() };
    case 'VmFailed':
      return { ...base, status: 'Failed', code: e.data.code, message: e.data.message };
    case 'PreflightFailed': {
      const failed = e.data.findings.filter((f) => f.status === 'fail');
      return { ...base, status: 'Failed', code: 'ERR_PREFLIGHT_FAILED', message: failed.map((f) => `${f.id}: ${f.finding}`).join('; ') };
    }
    case 'VmStopped':
      return state.status === 'Failed' ? keep(state, base) : { ...base, status: 'Stopped', reason: e.data.reason };
    case 'DiskRebased':
      return { ...keep(state, base), disk: { path: e.data.path, backingFile: e.data.toBacking } };
    case 'ImagePullProgressed':
    case 'ImagePullRetried':
    case 'ImageNewerBaseAvailable':
    case 'DiskResized':
    case 'ConfigDriveBuilt':
    case 'NetworkDetached':
    case 'WarningRaised':
    case 'SettingsIgnored':
    case 'AcceleratorFellBack':
    case 'VmReset':
    case 'VmPowerdownRequested':
    case 'VmQuitRequested':
    case 'VmKillRequested':
    case 'GuestShutdownObserved':
    case 'GuestPanicked':
    case 'VmCrashLoopDetected':
    case 'SupervisorExited':
      return keep(state, base);
    default:
      return assertNever(e, state);
  }
}

/** The same status with updated facts. */
function keep(state: VmState, base: VmFacts): VmState {
  return { ...state, ...base } as VmState;
}

function assertNever(_e: never, state: VmState): VmState {
  // A newer podvisor wrote an event type this one does not know: leave the state as it is.
  return state;
}

/** Folds a whole log. */
export function projectVm(events: Iterable<StoredEvent>, from: VmState = initialVmState()): VmState {
  let s = from;
  for (const e of events) s = evolveVm(s, e);
  return s;
}

/** The actions the status accepts (the table lives with the lifecycle decider). */
export function allowedActions(state: VmState): VmAction[] {
  return actionsAllowedIn(state.status);
}

export interface RequestVmAction {
  type: 'RequestVmAction';
  action: VmAction;
  by: Requester;
}

/**
 * Decides a requested action. Returns the events to append: one
 * `VmActionRequested`, or none when the action is already satisfied. Throws
 * `ERR_VM_ACTION_REFUSED` (details: status, allowed) when the status refuses it.
 */
export function decideVmAction(command: RequestVmAction, state: VmState): DomainEvent[] {
  if (isActionSatisfied(command.action, state.status)) return [];
  if (!actionsAllowedIn(state.status).includes(command.action)) throw refuseAction(command.action, state.status);
  return [{ type: 'VmActionRequested', data: { action: command.action, by: command.by } }];
}
