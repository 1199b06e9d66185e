/**
 * The domain events of one VM's life. Events are named in the past tense with
 * their subject, carry an explicit `schemaVersion`, and are never rewritten:
 * changing a shape means a new version plus an upcaster (see `upcasters.ts`).
 */

export type Accelerator = 'kvm' | 'tcg';
export type AcceleratorChoice = 'auto' | Accelerator;
export type RestartPolicy = 'always' | 'on-failure' | 'never';

/** The closed set of actions on a VM (HTTP, CLI and signals all map onto it). */
export type VmAction = 'powerdown' | 'reset' | 'pause' | 'resume' | 'restart' | 'stop';

export const VM_ACTIONS: readonly VmAction[] = ['powerdown', 'reset', 'pause', 'resume', 'restart', 'stop'];

/** Who asked for an action: a signal, the unix socket, a named token, or podvisor itself. */
export type Requester = string;

/** How one qemu process ended, as observed at the qemu boundary. */
export interface VmExitInfo {
  code: number | null;
  signal: string | null;
  /**
   * Why it ended: `guest-shutdown` (the guest powered off, QMP SHUTDOWN guest=true),
   * `host-shutdown` (podvisor asked: powerdown/quit), `killed` (SIGKILL by podvisor),
   * `crashed` (anything else: a signal from outside, a non-zero exit, a panic).
   */
  reason: 'guest-shutdown' | 'host-shutdown' | 'killed' | 'crashed';
  /** The qemu stderr tail, when it says something. */
  stderr?: string;
}

/** The data of each event type, at its current schema version. */
export interface EventDataMap {
  SupervisorStarted: { version: string; pid: number; hostname: string; accel: AcceleratorChoice; restartPolicy: RestartPolicy; network: string };
  /**
   * The preflight of `podvisor run` found a prerequisite missing (a capability, a device, a sysctl, a
   * volume, a binary); nothing was pulled or started. Each finding names its fix.
   */
  PreflightFailed: { findings: Array<{ id: string; status: 'fail' | 'warn'; finding: string; fix: string }> };
  AcceleratorProbed: { requested: AcceleratorChoice; selected: Accelerator; kvmWorks: boolean; probeMs: number; detail: string };
  /** A warning: `auto` found KVM unusable and fell back to TCG (slow). */
  AcceleratorFellBack: { from: Accelerator; to: Accelerator; reason: string };
  ImageImported: { source: string; target: string; path: string; bytes: number; sha256: string; reused: boolean };
  /** Throttled download progress of a base (the source URL without credentials). */
  ImagePullProgressed: { source: string; target: string; bytes: number; total: number | null; percent: number | null; bytesPerSecond: number };
  /** A download attempt failed and is retried; `resumeFrom` > 0 means a `Range` request continues it. */
  ImagePullRetried: { source: string; target: string; attempt: number; delayMs: number; resumeFrom: number; reason: string };
  /** The source now has other content than the base the pet disk was made from; the disk keeps its base until a rebase. */
  ImageNewerBaseAvailable: { disk: string; currentBacking: string; currentSha256: string | null; newerPath: string; newerSha256: string; target: string };
  /** The pet disk was moved onto another base with a safe `qemu-img rebase` (guest-visible data unchanged). */
  DiskRebased: { path: string; fromBacking: string; toBacking: string; sha256: string; durationMs: number };
  /** The pet disk's virtual size grew to PODVISOR_DISK_SIZE. */
  DiskResized: { path: string; fromBytes: number; toBytes: number };
  DiskCreated: { path: string; backingFile: string; backingFormat: string };
  DiskReused: { path: string; backingFile: string | null };
  ConfigDriveBuilt: { path: string; format: string; instanceId: string; bytes: number };
  NetworkAttached: { backend: string; nics: Array<{ id: string; mac: string; addresses: string[] }>; detail: Record<string, unknown> };
  NetworkDetached: { backend: string };
  /** Settings were given that only another network backend reads (e.g. `AUTO_ATTACH` under `nat-bridge`): they have no effect. */
  SettingsIgnored: { settings: string[]; backend: string; usedBy: string };
  /** A warning the supervisor recorded without stopping (plugin or host condition). */
  WarningRaised: { code: string; message: string; hint?: string };
  VmStarting: { attempt: number; accel: Accelerator };
  /** qemu runs and QMP answers; `argv` is qemu's command line, secrets in it hidden (`redactArgv`). */
  VmStarted: { attempt: number; pid: number; qmpVersion: string; startMs: number; argv: string[] };
  VmPaused: { by: Requester; reason: string };
  VmResumed: { by: Requester };
  VmReset: { by: Requester; guest: boolean };
  /** One ACPI power-button press sent over QMP during a shutdown. */
  VmPowerdownRequested: { by: Requester; attempt: number };
  VmQuitRequested: { by: Requester };
  VmKillRequested: { by: Requester; signal: string };
  /** An operator or a signal asked for an action; the decider accepted it. */
  VmActionRequested: { action: VmAction; by: Requester };
  GuestShutdownObserved: { guest: boolean; reason: string };
  GuestPanicked: { action: string; info?: Record<string, unknown> };
  VmExited: { attempt: number; exit: VmExitInfo; uptimeMs: number };
  VmRestartScheduled: { attempt: number; delayMs: number; reason: string };
  VmCrashLoopDetected: { restarts: number; windowSeconds: number };
  VmFailed: { code: string; message: string; hint?: string };
  VmStopped: { reason: string };
  SupervisorExited: { exitCode: number; reason: string };
}

export type EventType = keyof EventDataMap;

/** Current schema version per event type. Bump together with an upcaster. */
export const EVENT_SCHEMA_VERSIONS: { readonly [K in EventType]: number } = {
  SupervisorStarted: 1,
  PreflightFailed: 1,
  AcceleratorProbed: 1,
  AcceleratorFellBack: 1,
  ImageImported: 1,
  ImagePullProgressed: 1,
  ImagePullRetried: 1,
  ImageNewerBaseAvailable: 1,
  DiskRebased: 1,
  DiskResized: 1,
  DiskCreated: 1,
  DiskReused: 1,
  ConfigDriveBuilt: 1,
  NetworkAttached: 1,
  NetworkDetached: 1,
  SettingsIgnored: 1,
  WarningRaised: 1,
  VmStarting: 1,
  VmStarted: 1,
  VmPaused: 1,
  VmResumed: 1,
  VmReset: 1,
  VmPowerdownRequested: 1,
  VmQuitRequested: 1,
  VmKillRequested: 1,
  VmActionRequested: 1,
  GuestShutdownObserved: 1,
  GuestPanicked: 1,
  VmExited: 1,
  VmRestartScheduled: 1,
  VmCrashLoopDetected: 1,
  VmFailed: 1,
  VmStopped: 1,
  SupervisorExited: 1,
};

/** A domain event before it is stored. */
export type DomainEvent = { [K in EventType]: { readonly type: K; readonly data: Readonly<EventDataMap[K]> } }[EventType];

export type EventOf<K extends EventType> = Extract<DomainEvent, { type: K }>;

/** The stored envelope: `{position, at, type, schemaVersion, vm, data, correlationId}`. */
export type StoredEvent = DomainEvent & {
  readonly position: number;
  /** ISO-8601 time of append. */
  readonly at: string;
  readonly schemaVersion: number;
  readonly vm: string;
  readonly correlationId: string | null;
};

/** Events that warn an operator; shown as warnings by the CLI and logged at warn. */
export const WARNING_EVENTS: ReadonlySet<EventType> = new Set<EventType>([
  'AcceleratorFellBack',
  'WarningRaised',
  'SettingsIgnored',
  'GuestPanicked',
  'VmCrashLoopDetected',
  'ImagePullRetried',
  'ImageNewerBaseAvailable',
]);

export function event<K extends EventType>(type: K, data: EventDataMap[K]): EventOf<K> {
  return { type, data } as unknown as EventOf<K>;
}

export function isEventType(value: string): value is EventType {
  return Object.hasOwn(EVENT_SCHEMA_VERSIONS, value);
}
