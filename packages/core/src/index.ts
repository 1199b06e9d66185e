/**
 * @podvisor/core: the domain of podvisor. VM events and their store, the
 * lifecycle decider and projection, restart policies, the plugin API and the
 * ports that the other packages implement. It depends on nothing in the repo.
 * Importing it loads no native module: the SQLite event store, which needs
 * better-sqlite3, is the separate entry `@podvisor/core/sqlite`.
 */
export { PodvisorError, ConfigError, formatValue, isPodvisorError, errorMessage, redactUrl, redactUrlsIn, redactArgv } from './errors.js';
export type { PodvisorErrorOptions, ConfigProblem } from './errors.js';
export { YAML_MAX_ALIAS_COUNT, parseYaml } from './parse-yaml.js';
export type { ParseYamlOptions, YamlParseResult, YamlProblem } from './parse-yaml.js';
export { JsonLogger, SilentLogger, Logger, parseLogLevel } from './logger.js';
export type { LogLevel, LogSink } from './logger.js';
export { Clock, SystemClock } from './clock.js';
export { ExecaProcessRunner, KILL_WAIT_MS, ProcessRunner, PROCESS_RUNNER_PREREQUISITES, UNKILLABLE_HINT, exitedWithin, terminateChild, resolveExecutable, debianPackageOf } from './process-runner.js';
export { CAPABILITY_NAMES, capabilityBit, capabilityName, decodeCapabilities, hasCapabilities, ownEffectiveCapabilities, parseEffectiveCapabilities, parseStatusCapabilities } from './capabilities.js';
export type { ProcessCapabilities } from './capabilities.js';
export type { RunOptions, RunResult, SpawnOptions, ChildExit, ChildHandle, TerminateOutcome } from './process-runner.js';
export { EVENT_SCHEMA_VERSIONS, WARNING_EVENTS, event, isEventType } from './events.js';
export type {
  Accelerator,
  AcceleratorChoice,
  RestartPolicy,
  Requester,
  VmExitInfo,
  EventDataMap,
  EventType,
  DomainEvent,
  EventOf,
  StoredEvent,
} from './events.js';
export { EventStore } from './event-store.js';
export type { AppendOptions, EventLogBacklog, EventLogRecovery } from './event-store.js';
export { NetworkBackend, ImageSource, ImageSourceCatalog, ImageStore, ConfigDriveBuilder, VmRuntime, imageSourceCatalogOf } from './ports.js';
export type {
  NicBackend,
  VmNic,
  VncListen,
  NetworkAttachSpec,
  PodPort,
  StackedPodPort,
  NetworkAttachment,
  NetworkHooks,
  PluginWarning,
  FetchProgress,
  ImageFetchResult,
  ImageFetchOptions,
  SourceValidators,
  FetchRetry,
  ImagePullProgress,
  EnsureBaseRequest,
  RebaseResult,
  BaseImage,
  Overlay,
  ConfigDriveFormat,
  ConfigDriveRequest,
  ConfigDrive,
  AcceleratorProbeResult,
  VmLaunchPlan,
  QmpEventMessage,
  VmHandle,
  Prerequisites,
  ProbeFinding,
  BinaryNeed,
  CapabilityNeed,
  DeviceNeed,
  SysctlNeed,
} from './ports.js';
export { PLUGIN_API_VERSION, PLUGIN_KINDS, PluginRegistry, loadPlugins, manifestProblems, pluginSettingsName } from './plugin.js';
export type { PluginKind, PluginProvision, PluginManifest, LoadedPlugin, ReservedSettings } from './plugin.js';
export { PluginSettings, parsePluginSetting, pluginSettingDeclarationProblems, resolvePluginSettings, yamlAt } from './plugin-settings.js';
export type { PluginSetting, PluginSettingType, PluginSettingValue, PluginSettingSources, ResolvedPluginSetting } from './plugin-settings.js';
export { compareSemver, formatSemver, parseSemver, parseSemverRange, satisfiesSemverRange } from './semver-range.js';
export type { SemVer, SemverRange } from './semver-range.js';
export { VM_ACTIONS } from './events.js';
export type { VmAction } from './events.js';
export { initialVmState, evolveVm, projectVm, allowedActions, decideVmAction } from './vm-lifecycle.js';
export type { VmStatus, VmFacts, VmState, RequestVmAction } from './vm-lifecycle.js';
export { DEFAULT_RESTART_SETTINGS, decideRestart, isFailure, describeExit } from './restart-policy.js';
export type { RestartSettings, RestartDecision } from './restart-policy.js';
export {
  lifecycleDecider,
  initialLifecycleState,
  splitStopBudget,
  actionsAllowedIn,
  isActionSatisfied,
  refuseAction,
  LIFECYCLE_SIGNALS,
} from './lifecycle-decider.js';
export type {
  LifecycleDecider,
  LifecycleSettings,
  LifecycleCommand,
  LifecycleDecision,
  LifecycleEffect,
  LifecycleOutcome,
  LifecycleState,
  LifecycleSignal,
  LifecycleTimer,
  LifecycleQmpCommand,
  LifecycleFailure,
  StopBudget,
  TimedEvent,
  RunFacts,
  QemuFacts,
  StopFacts,
} from './lifecycle-decider.js';
export { Supervisor } from './supervisor.js';
export { vncListen } from './vm-preparation.js';
export type { SupervisorSettings, SupervisorOutcome, SupervisorDeps } from './supervisor.js';
export { MemoryEventStore } from './memory-event-store.js';
export type { MemoryEventStoreOptions } from './memory-event-store.js';
export { UpcasterRegistry, UPCASTERS } from './upcasters.js';
export type { Upcaster, UpcasterRegistryOptions, VersionedEvent } from './upcasters.js';
export type { EventStoreBaseOptions } from './event-store-base.js';
export type { EncodedEvent } from './event-store-base.js';
export { UNWRITTEN_EVENTS_FILE, keepUnwrittenEvents, replayUnwrittenEvents } from './unwritten-events-journal.js';
