/**
 * `podvisor run`: the daemon. Resolves and validates the configuration (every
 * problem at once, before anything is created), builds the container, opens
 * the event log, runs the supervisor, and maps the outcome to an exit code.
 * As PID 1 it turns SIGTERM/SIGINT into a graceful VM shutdown.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import {
  Clock,
  ConfigDriveBuilder,
  ConfigError,
  ImageStore,
  Logger,
  NetworkBackend,
  PluginSettings,
  ProcessRunner,
  Supervisor,
  VmRuntime,
  errorMessage,
  event,
  isPodvisorError,
  pluginSettingsName,
  type ConfigProblem,
  type NetworkAttachSpec,
  type PluginKind,
  type PluginRegistry,
  type PodPort,
  type StackedPodPort,
  type SupervisorSettings,
} from '@podvisor/core';
import { keepUnwrittenEvents, replayUnwrittenEvents } from '@podvisor/core';
import { SqliteEventStore } from '@podvisor/core/sqlite';
import { QemuRuntimeSettings } from '@podvisor/qemu';
import { buildAppContainer, type AppContainer } from '../app-container.js';
import { preflightForRun } from '../preflight/run-preflight.js';
import { FIELDS, REMOVED_SETTINGS } from '../config/config-fields.js';
import { ExitCode, runExitCode } from '../exit-codes.js';
import { takeOverSignals } from '../pid1/early-signals.js';
import { collectConfig, vncOf, type ConfigInputs, type PodvisorConfig, type SelectedProvision } from '../config/load-config.js';
import { ConsoleRelay } from '../console-relay.js';
import { OrphanReaper } from '../pid1/orphan-reaper.js';
import { ControlTokens } from '../http/control-tokens.js';
import { startControlServer } from '../http/control-server.js';
import { configuredVncPassword, ensureVncPassword } from '../http/vnc-password.js';
import { VERSION } from '../version.js';
import { VolumeLock } from '../volume-lock.js';

export const DEFAULT_CONFIG_FILE = '/etc/podvisor/podvisor.yaml';

export interface CommandIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  env: Readonly<Record<string, string | undefined>>;
}

/** The configuration flags of `run` (also accepted by `doctor`, which checks the same configuration). Removed flags still parse, so that the configuration check names their replacement. */
export const RUN_FLAGS = Object.fromEntries(
  [...Object.values(FIELDS), ...REMOVED_SETTINGS]
    .filter((f) => f.flag !== undefined)
    .map((f) => [f.flag as string, { type: 'string' as const }]),
);

/** Two columns, the second one starting two spaces after the longest first cell. */
function helpRows(rows: readonly (readonly [string, string])[]): string {
  const width = Math.max(...rows.map(([flag]) => flag.length)) + 2;
  return rows.map(([flag, doc]) => `  ${flag.padEnd(width)}${doc}`).join('\n');
}

export const RUN_HELP = `Usage: podvisor run [flags] [--] [qemu arguments...]

Runs one VM as this container's main process. Arguments after the flags are
appended to qemu's command line as given (the container's CMD).

Flags (each also an environment variable and a YAML key; see docs/configuration.md):
${helpRows([
  ['--config FILE', `YAML configuration (default ${DEFAULT_CONFIG_FILE} if it exists)`],
  ...Object.values(FIELDS)
    .filter((f) => f.flag !== undefined)
    .map((f): [string, string] => [`--${f.flag} VALUE`, `${f.doc}${f.env === undefined ? '' : ` [${f.env.join(', ')}]`}`]),
  ['-h, --help', 'this help'],
])}

Signals: SIGTERM/SIGINT stop the VM within PODVISOR_STOP_GRACE (ACPI, then QMP quit,
then SIGKILL); a second one skips to QMP quit; SIGQUIT kills qemu at once; SIGHUP is
ignored (docs/lifecycle.md).

Exit codes: 0 clean stop, 1 internal error, 2 invalid configuration, 3 preparation
failed (or the preflight found a missing prerequisite: see podvisor doctor), 4 KVM
unavailable, 5 crash loop, 6 VM failed (no restart), 7 shutdown forced.
`;

export async function runCommand(argv: readonly string[], io: CommandIo): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: [...argv], options: { ...RUN_FLAGS, config: { type: 'string' }, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true });
  } catch (err) {
    io.stderr.write(`podvisor run: ${(err as Error).message}\n\n${RUN_HELP}`);
    return ExitCode.Config;
  }
  if (parsed.values.help === true) {
    io.stdout.write(RUN_HELP);
    return ExitCode.Ok;
  }

  // 1 and 2. The configuration, the container and the network backend, validated before anything is created.
  let setup: RunSetup;
  try {
    setup = await resolveRunSetup(parsed.values as Record<string, string | undefined>, parsed.positionals, io);
  } catch (err) {
    return reportStartupError(err, io);
  }
  const { config, app, network, networkSpec, extraNetworks, vncConfigured, tokens } = setup;
  const { container, registry } = app;
  const log = container.get<Logger>(Logger);

  // 2b. The preflight (podvisor doctor's checks, without the KVM probe that the supervisor runs first anyway):
  // a missing capability, device, sysctl, volume or binary stops the run here, before any pull.
  // The volume lock is taken once, by whichever needs it first: the preflight, to record its findings
  // (never into the log of another instance that holds the volume), or step 3.
  let volumeLock: VolumeLock | undefined;
  const lockVolume = (): VolumeLock => {
    if (volumeLock === undefined) {
      mkdirSync(config.stateDir, { recursive: true });
      volumeLock = VolumeLock.acquire(config.stateDir, { version: VERSION });
    }
    return volumeLock;
  };
  const preflight = await preflightForRun(setup, io, () => {
    try {
      lockVolume();
      return true;
    } catch {
      return false;
    }
  });
  if (preflight !== null) return preflight;

  // 3. From here on, things are created: the state dir and the event log.
  mkdirSync(config.stateDir, { recursive: true });
  mkdirSync(config.diskDir, { recursive: true });
  // One podvisor per VM volume: the lock comes before anything another instance owns (VNC password, socket, network, event log).
  // It is held until this process ends (volume-lock.ts).
  try {
    const { warning } = lockVolume();
    if (warning !== null) log.warn(warning.message, { code: warning.code, hint: warning.hint });
  } catch (err) {
    const code = reportStartupError(err, io);
    return isPodvisorError(err) && err.code === 'ERR_VOLUME_LOCKED' ? ExitCode.Config : code;
  }
  const vncPassword = ensureVncPassword(vncConfigured, config.stateDir, log);
  if (vncPassword !== undefined) container.bind(QemuRuntimeSettings).toConstantValue({ vncPassword });
  const clock = container.get<Clock>(Clock);
  const store = SqliteEventStore.open({ path: path.join(config.stateDir, 'events.db'), clock, log: log.child({ name: 'SqliteEventStore' }) });
  // Events an earlier run could not write before it exited go first, once (unwritten-events-journal.ts).
  try {
    const replayed = replayUnwrittenEvents(store, config.stateDir, config.name);
    if (replayed !== null) log.warn('events kept at the last exit were written into the event log', replayed);
  } catch (err) {
    log.error('events kept at the last exit could not be written into the event log yet; the journal stays for the next start', { err });
  }
  const relay = new ConsoleRelay(config.stateDir, io.stdout, undefined, (err) =>
    log.warn('the console log copy in the state dir cannot be written; paused for 30 s (the console still goes to stdout)', { err }),
  );
  // Settings only another network backend reads have no effect: say so, naming them and that backend.
  // Queued like every daemon append: a full or locked volume must not stop the start.
  for (const { usedBy, settings } of registry.settingsOfOthers('network-backend', [config.network, ...Object.keys(config.networkExtra)], io.env)) {
    log.warn('settings ignored', { settings, backend: config.network, usedBy });
    store.appendOrQueue(config.name, [event('SettingsIgnored', { settings, backend: config.network, usedBy })]);
  }
  const settings: SupervisorSettings = {
    version: VERSION,
    vmName: config.name,
    accel: config.accel,
    accelProbeTimeoutMs: config.accelProbeTimeoutMs,
    vcpus: config.vcpus,
    memoryMb: config.memoryMb,
    image: {
      source: config.imageSource ?? null,
      ...(config.imageTarget === undefined ? {} : { target: config.imageTarget }),
      ...(config.imageSha256 === undefined ? {} : { sha256: config.imageSha256 }),
      rebase: config.rebase,
    },
    diskDir: config.diskDir,
    stateDir: config.stateDir,
    ...(config.diskSize === undefined ? {} : { diskSizeBytes: config.diskSize }),
    configDrive: { format: config.configDriveFormat, userDataPath: config.userData, metaDataPath: config.metaData },
    networkName: config.network,
    networkSpec,
    restart: {
      policy: config.restartPolicy,
      backoffInitialMs: config.backoffInitialMs,
      backoffMaxMs: config.backoffMaxMs,
      maxRestarts: config.maxRestarts,
      windowSeconds: config.restartWindowSeconds,
    },
    stopGraceSeconds: config.stopGrace,
    powerdownIntervalMs: config.powerdownIntervalMs,
    vnc: vncOf(config),
    extraArgs: config.extraArgs,
  };
  const supervisor = new Supervisor(settings, {
    store,
    runtime: container.getNamed<VmRuntime>(VmRuntime, config.vmRuntime),
    images: container.get<ImageStore>(ImageStore),
    configDrive: container.getNamed<ConfigDriveBuilder>(ConfigDriveBuilder, config.configDriveFormat),
    network,
    extraNetworks,
    clock,
    log,
    exitCodeOf: runExitCode,
    onConsole: (vm) => relay.attach(vm),
  });

  let control;
  try {
    control = await startControlServer({ supervisor, store, config, log, version: VERSION, console: relay, tokens, vncPassword: () => vncPassword });
  } catch (err) {
    relay.close();
    store.close();
    return reportStartupError(err, io);
  }

  // 4. PID 1 duties: signals (also those buffered since the process began) go to the lifecycle decider.
  const releaseSignals = takeOverSignals((signal) => supervisor.signal(signal));
  // Orphans re-parented to podvisor (as PID 1, or as a subreaper) are waited for.
  const runner = container.get<ProcessRunner>(ProcessRunner);
  const { reaper } = OrphanReaper.load({ ownedPids: () => runner.ownedPids(), log });
  reaper?.start();

  log.info('podvisor starting', { version: VERSION, vm: config.name, configFile: config.configFile, origins: config.origins });
  let outcome;
  try {
    outcome = await supervisor.run();
  } finally {
    releaseSignals();
    // Nothing podvisor started outlives it.
    await runner.stopAll(2000);
    await control.close();
    reaper?.stop();
    relay.close();
    store.close();
    // What the log still refused at the end is kept in a journal beside it, written into the log at the next start;
    // when even that fails (a full volume), it goes to stderr whole, so that it is not lost.
    const unwritten = store.pendingRows();
    if (unwritten.length > 0) {
      try {
        const file = keepUnwrittenEvents(config.stateDir, unwritten);
        log.error('event log still refuses writes at exit: the unwritten events are kept in a journal, written into the log at the next start', { backlog: store.backlog(), file, events: unwritten.length });
      } catch (err) {
        log.error('event log still refuses writes at exit, and the journal cannot be written either: the unwritten events follow', { backlog: store.backlog(), err, events: unwritten });
      }
    }
  }
  log.info('podvisor exiting', { exitCode: outcome.exitCode, reason: outcome.reason });
  return outcome.exitCode;
}

/** What `run` and `doctor` resolve before anything is created. */
export interface RunSetup {
  config: PodvisorConfig;
  app: AppContainer;
  /** The chosen network backend; null for `none`. */
  network: NetworkBackend | null;
  networkSpec: NetworkAttachSpec;
  /** The stacked backends (`PODVISOR_NETWORK_EXTRA`), in order, each with its spec (its own settings section). */
  extraNetworks: Array<{ backend: NetworkBackend; spec: NetworkAttachSpec }>;
  /** The operator's VNC password, `generate` (made in the state dir once things may be created), or none. */
  vncConfigured: string | 'generate' | undefined;
  tokens: ControlTokens | undefined;
}

/**
 * Steps 1 and 2 of `run`, shared with `doctor` so that it checks the
 * configuration `run` would use: resolves the configuration (flags, env,
 * YAML), builds the container with its plugins, and validates the network
 * settings, the VNC password file and the token file. Throws one
 * `ConfigError` with every problem, or `ERR_PLUGIN_*`. Creates nothing.
 */
export async function resolveRunSetup(flags: Record<string, string | undefined>, positionals: readonly string[], io: CommandIo): Promise<RunSetup> {
  // 1. Which plugins to load, from a first reading of the configuration (its problems are reported by the whole check below).
  const inputs: ConfigInputs = {
    yaml: readConfigFile(flags['config']),
    env: io.env,
    flags,
    extraArgs: positionals,
    hostname: io.env['HOSTNAME'] ?? os.hostname(),
    exists: existsSync,
  };
  const first = collectConfig(inputs, null).config;

  // 2. The container and the plugins; then the whole configuration, with the registry saying what exists and
  // the selected plugins' settings checked with podvisor's; the network backend's own validation joins the check.
  const app = await buildAppContainer({
    logLevel: first.logLevel,
    imagesDir: first.imagesDir,
    maxVirtualSizeBytes: first.maxVirtualSizeGb * 1024 ** 3,
    allowRawImage: first.imageFormat === 'raw',
    http: { headersTimeoutMs: first.imageTimeoutSeconds * 1000, bodyTimeoutMs: first.imageTimeoutSeconds * 1000, maxAttempts: first.imageRetries },
    plugins: first.plugins,
  });
  const { container, registry } = app;
  const { config, problems } = collectConfig(inputs, registry);
  for (const [kind, chosen] of Object.entries(config.selected) as Array<[PluginKind, SelectedProvision]>) {
    container.bind<PluginSettings>(PluginSettings).toConstantValue(chosen.settings).whenTargetNamed(pluginSettingsName(kind, chosen.name));
  }
  const controlPort = Number(config.listen.slice(config.listen.lastIndexOf(':') + 1));
  const networkSpec: NetworkAttachSpec = {
    vmName: config.name,
    stateDir: config.stateDir,
    diskDir: config.diskDir,
    settings: config.selected['network-backend']?.settings ?? {},
    vnc: vncOf(config),
    controlPort,
  };
  const chosenNetwork = config.selected['network-backend'];
  let network: NetworkBackend | null = null;
  if (chosenNetwork !== undefined) {
    network = container.getNamed<NetworkBackend>(NetworkBackend, chosenNetwork.name);
    // The backend's cross-field checks need its values type-checked: they run when its settings have no problem of their own.
    if (!problems.some((p) => settingPaths(registry, chosenNetwork.name).has(p.path))) problems.push(...network.validate(networkSpec));
  }
  const extraNetworks: RunSetup['extraNetworks'] = [];
  for (const name of Object.keys(config.networkExtra)) {
    const path = config.origins.networkExtra;
    if (name === config.network || registry.provider('network-backend', name) === undefined) {
      problems.push({ path, value: name, expected: `a stackable network backend other than the primary ${config.network} (${registry.names('network-backend').filter((n) => n !== config.network).join(', ')}, or a plugin's, named in PODVISOR_PLUGINS)` });
      continue;
    }
    const backend = container.getNamed<NetworkBackend>(NetworkBackend, name);
    if (backend.stackable !== true) {
      problems.push({ path, value: name, expected: `a backend that adds a NIC next to the primary one; ${name} takes over the pod network itself (use it as PODVISOR_NETWORK)` });
      continue;
    }
    const settings = config.selectedExtra.find((x) => x.name === name)?.settings ?? {};
    container.bind<PluginSettings>(PluginSettings).toConstantValue(settings).whenTargetNamed(pluginSettingsName('network-backend', name));
    const spec = { ...networkSpec, settings };
    extraNetworks.push({ backend, spec });
    // As for the primary: the cross-field checks run when the backend's settings have the right types.
    if (!problems.some((p) => settingPaths(registry, name).has(p.path))) problems.push(...backend.validate(spec));
  }
  // The VNC password (the operator's, else generated in the state dir) reaches qemu over QMP, set by the qemu runtime.
  const vncConfigured = configuredVncPassword({ ...config, origins: { vncPasswordFile: config.origins.vncPasswordFile } }, problems);
  // The control endpoint's tokens are configuration too: checked before anything is created.
  let tokens: ControlTokens | undefined;
  if (config.tokenFile !== undefined) {
    try {
      tokens = ControlTokens.parse(readFileSync(config.tokenFile, 'utf8'), config.tokenFile);
    } catch (err) {
      if (err instanceof ConfigError) problems.push(...err.problems);
      else problems.push({ path: config.origins.tokenFile, value: config.tokenFile, expected: `a readable token file (${(err as NodeJS.ErrnoException).code ?? 'unreadable'})` });
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  // The primary attaches first, so the pod ports the stacked backends listen on are asked for now and handed to it.
  const stackedPorts = await stackedPodPorts(extraNetworks, config.origins.networkExtra);
  if (stackedPorts.length > 0) networkSpec.stackedPorts = stackedPorts;
  return { config, app, network, networkSpec, extraNetworks, vncConfigured, tokens };
}

/**
 * The pod ports the stacked backends declare (`podPorts`, plugin API 2.1),
 * each with its backend's name, for the primary's `spec.stackedPorts`.
 * Throws a `ConfigError` naming the backend when one answers with something
 * that is not a TCP or UDP port, or throws.
 */
export async function stackedPodPorts(extraNetworks: RunSetup['extraNetworks'], path: string): Promise<StackedPodPort[]> {
  const ports: StackedPodPort[] = [];
  const problems: ConfigProblem[] = [];
  for (const { backend, spec } of extraNetworks) {
    let declared: unknown;
    try {
      declared = (await backend.podPorts?.(spec)) ?? [];
    } catch (err) {
      problems.push({ path, value: backend.name, expected: `a stacked backend whose podPorts answers (it threw: ${errorMessage(err)})` });
      continue;
    }
    for (const p of Array.isArray(declared) ? declared : [declared]) {
      const { proto, port } = (p ?? {}) as Partial<PodPort>;
      if ((proto === 'tcp' || proto === 'udp') && Number.isInteger(port) && (port as number) >= 1 && (port as number) <= 65535) ports.push({ proto, port: port as number, backend: backend.name });
      else problems.push({ path, value: `${backend.name} podPorts ${JSON.stringify(p)}`, expected: 'pod ports as {proto: "tcp" or "udp", port: 1-65535}' });
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return ports;
}

/** The problem paths of a network backend's declared settings (`yaml KEY`, `env VAR`). */
function settingPaths(registry: PluginRegistry, backend: string): Set<string> {
  return new Set((registry.provision('network-backend', backend)?.settings ?? []).flatMap((s) => [`yaml ${s.key}`, ...(s.env ?? []).map((e) => `env ${e}`)]));
}

function readConfigFile(explicit: string | undefined): { text: string; path: string } | null {
  const file = explicit ?? (existsSync(DEFAULT_CONFIG_FILE) ? DEFAULT_CONFIG_FILE : undefined);
  if (file === undefined) return null;
  try {
    return { text: readFileSync(file, 'utf8'), path: file };
  } catch (err) {
    throw new ConfigError([{ path: 'flag --config', value: file, expected: `a readable YAML file (${(err as NodeJS.ErrnoException).code ?? 'unreadable'})` }]);
  }
}

/** Startup errors go to stderr as one JSON line plus a readable block; nothing was created. */
export function reportStartupError(err: unknown, io: CommandIo): number {
  if (isPodvisorError(err)) {
    io.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), level: 'error', logger: 'podvisor', msg: 'startup failed', err: err.toJSON(), ...(err instanceof ConfigError ? { problems: err.problems } : {}) })}\n`);
    io.stderr.write(`podvisor: ${err.message}${err.hint === undefined ? '' : `\nhint: ${err.hint}`}\n`);
    return err instanceof ConfigError || err.code.startsWith('ERR_PLUGIN') ? ExitCode.Config : ExitCode.Internal;
  }
  io.stderr.write(`podvisor: internal error: ${(err as Error)?.stack ?? String(err)}\n`);
  return ExitCode.Internal;
}
