/**
 * The configuration table: every setting, its YAML path, its environment
 * variables (the seeds' names first), its `podvisor run` flag, its default and
 * its parser. Pure data plus pure parsers; `load-config.ts` applies the
 * precedence defaults < YAML < environment < flags.
 */
import type { ConfigDriveFormat, AcceleratorChoice, RestartPolicy } from '@podvisor/core';

/** A parser returns the value, or a string saying what was expected. */
export type Parse<T> = (raw: unknown, source: 'yaml' | 'env' | 'flag') => { ok: T } | { expected: string };

export interface FieldSpec<T> {
  /** Dotted YAML path, e.g. `vm.memoryMb`. */
  key: string;
  env?: readonly string[];
  flag?: string;
  parse: Parse<T>;
  /** Secret values are shown as "(redacted)" in errors. */
  secret?: boolean;
  doc: string;
}

const str: Parse<string> = (raw) => (typeof raw === 'string' && raw !== '' ? { ok: raw } : { expected: 'a non-empty string' });

const optionalStr: Parse<string | undefined> = (raw) =>
  raw === null || raw === '' ? { ok: undefined } : typeof raw === 'string' ? { ok: raw } : { expected: 'a string' };

function int(min: number, max: number): Parse<number> {
  return (raw) => {
    const n = typeof raw === 'number' ? raw : typeof raw === 'string' && /^-?\d+$/.test(raw.trim()) ? Number(raw.trim()) : Number.NaN;
    if (!Number.isInteger(n)) return { expected: `an integer from ${min} to ${max}` };
    if (n < min || n > max) return { expected: `an integer from ${min} to ${max}` };
    return { ok: n };
  };
}

function oneOf<T extends string>(values: readonly T[]): Parse<T> {
  return (raw) => (typeof raw === 'string' && (values as readonly string[]).includes(raw) ? { ok: raw as T } : { expected: `one of ${values.join(', ')}` });
}

/** YAML booleans are booleans; an env flag is "set" when non-empty and not 0/false/no/off. */
const flagBool: Parse<boolean> = (raw, source) => {
  if (typeof raw === 'boolean') return { ok: raw };
  if (source !== 'yaml' && typeof raw === 'string') return { ok: raw !== '' && !/^(0|false|no|off)$/i.test(raw) };
  return { expected: 'true or false' };
};

const sha256: Parse<string | undefined> = (raw) => {
  if (raw === null || raw === '') return { ok: undefined };
  if (typeof raw !== 'string') return { expected: 'a sha256 as 64 hex digits (optionally prefixed sha256:)' };
  const hex = raw.replace(/^sha256:/i, '').toLowerCase();
  return /^[0-9a-f]{64}$/.test(hex) ? { ok: hex } : { expected: 'a sha256 as 64 hex digits (optionally prefixed sha256:)' };
};

const absPath: Parse<string> = (raw) => (typeof raw === 'string' && raw.startsWith('/') ? { ok: raw.replace(/\/+$/, '') || '/' } : { expected: 'an absolute path' });

const stringList: Parse<string[]> = (raw) => {
  if (Array.isArray(raw) && raw.every((x) => typeof x === 'string')) return { ok: raw as string[] };
  if (typeof raw === 'string') return { ok: raw.split(',').map((s) => s.trim()).filter((s) => s !== '') };
  return { expected: 'a list of strings (or a comma-separated string)' };
};

const listen: Parse<string> = (raw) => {
  if (typeof raw !== 'string') return { expected: 'HOST:PORT' };
  const m = /^(.*):(\d{1,5})$/.exec(raw);
  if (m === null || Number(m[2]) > 65535) return { expected: 'HOST:PORT, e.g. 0.0.0.0:5800' };
  return { ok: raw };
};

/** A size such as `20G`, `512M`, `1T` or plain bytes (binary units). */
const size: Parse<number | undefined> = (raw) => {
  if (raw === null || raw === '' || raw === undefined) return { ok: undefined };
  const m = /^(\d+)\s*([KMGT]i?B?|B)?$/i.exec(String(raw).trim());
  if (m === null) return { expected: 'a size like 20G, 512M or a number of bytes' };
  const unit = (m[2] ?? 'B').charAt(0).toUpperCase();
  const mult = { B: 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 }[unit] ?? 1;
  return { ok: Number(m[1]) * mult };
};

/**
 * Stacked network backends: a list of names (`l2-segment`, or `a,b` in the
 * environment), or in YAML a mapping of each name to its own settings (the keys that
 * backend declares, under `network.extra.NAME`).
 * Kept in the order given, which is the order of their NICs.
 */
const extraNetworks: Parse<Record<string, Record<string, unknown>>> = (raw, source) => {
  const list = stringList(raw, source);
  if ('ok' in list) return { ok: Object.fromEntries(list.ok.map((n) => [n, {}])) };
  if (typeof raw === 'object' && raw !== null && Object.values(raw).every((v) => v === null || (typeof v === 'object' && !Array.isArray(v)))) {
    return { ok: Object.fromEntries(Object.entries(raw).map(([k, v]) => [k, (v ?? {}) as Record<string, unknown>])) };
  }
  return { expected: 'a list of network backend names, or a mapping of each name to its settings' };
};

export const FIELDS = {
  name: { key: 'vm.name', env: ['PODVISOR_VM_NAME'], flag: 'name', parse: str, doc: "the VM's name (default: the pod's hostname)" } as FieldSpec<string>,
  vcpus: { key: 'vm.vcpus', env: ['IMG_VCPU'], flag: 'vcpus', parse: int(1, 255), doc: 'vCPUs (Berth: IMG_VCPU)' } as FieldSpec<number>,
  memoryMb: { key: 'vm.memoryMb', env: ['IMG_RAM_MB'], flag: 'memory', parse: int(16, 4 * 1024 * 1024), doc: 'memory in MiB (Berth: IMG_RAM_MB)' } as FieldSpec<number>,
  accel: { key: 'vm.accel', env: ['PODVISOR_ACCEL'], flag: 'accel', parse: oneOf<AcceleratorChoice>(['auto', 'kvm', 'tcg']), doc: 'auto | kvm | tcg' } as FieldSpec<AcceleratorChoice>,
  accelProbeTimeoutMs: { key: 'vm.accelProbeTimeoutMs', env: ['PODVISOR_ACCEL_PROBE_TIMEOUT_MS'], parse: int(100, 60_000), doc: 'bound of the KVM probe' } as FieldSpec<number>,
  extraArgs: { key: 'vm.extraArgs', parse: stringList, doc: 'extra qemu arguments (the container CMD)' } as FieldSpec<string[]>,
  imageSource: { key: 'image.source', env: ['IMG_SOURCE'], flag: 'image', parse: optionalStr, doc: 'URL (http, https, file, or an image-source plugin\'s scheme) or local path of the base qcow2' } as FieldSpec<string | undefined>,
  imageTarget: { key: 'image.target', env: ['IMG_TARGET'], parse: optionalStr, doc: 'name of the base in the images volume' } as FieldSpec<string | undefined>,
  imageSha256: { key: 'image.sha256', env: ['IMG_SHA256'], parse: sha256, doc: 'pinned sha256 of the base' } as FieldSpec<string | undefined>,
  imageFormat: { key: 'image.format', env: ['IMG_FORMAT'], parse: oneOf(['qcow2', 'raw'] as const), doc: 'format of the base: `raw` lets a body that is no qcow2 be a raw disk' } as FieldSpec<'qcow2' | 'raw'>,
  diskSize: { key: 'image.diskSize', env: ['PODVISOR_DISK_SIZE'], parse: size, doc: 'grow the pet disk to this virtual size (never shrinks)' } as FieldSpec<number | undefined>,
  rebase: { key: 'image.rebase', env: ['PODVISOR_REBASE'], parse: flagBool, doc: 'move the pet disk onto a newer base at start' } as FieldSpec<boolean>,
  imageTimeoutSeconds: { key: 'image.timeoutSeconds', env: ['PODVISOR_IMAGE_TIMEOUT'], parse: int(1, 3600), doc: 'HTTP headers/body silence allowed during a pull' } as FieldSpec<number>,
  imageRetries: { key: 'image.retries', env: ['PODVISOR_IMAGE_RETRIES'], parse: int(1, 100), doc: 'pull attempts in a row without progress' } as FieldSpec<number>,
  maxVirtualSizeGb: { key: 'image.maxVirtualSizeGb', env: ['PODVISOR_MAX_VIRTUAL_SIZE_GB'], parse: int(1, 65536), doc: 'largest accepted virtual size of a base, GiB' } as FieldSpec<number>,
  imagesDir: { key: 'paths.imagesDir', env: ['PODVISOR_IMAGES_DIR'], flag: 'images-dir', parse: absPath, doc: 'the shared base-image cache' } as FieldSpec<string>,
  diskDir: { key: 'paths.diskDir', env: ['PODVISOR_DISK_DIR'], flag: 'disk-dir', parse: absPath, doc: "this VM's volume (its pet disk)" } as FieldSpec<string>,
  stateDir: { key: 'paths.stateDir', env: ['PODVISOR_STATE_DIR'], flag: 'state-dir', parse: absPath, doc: 'event log, sockets, console buffer' } as FieldSpec<string>,
  userData: { key: 'configDrive.userData', env: ['PODVISOR_USERDATA'], parse: absPath, doc: 'user-data source file' } as FieldSpec<string>,
  metaData: { key: 'configDrive.metaData', env: ['PODVISOR_METADATA'], parse: absPath, doc: 'meta-data source file' } as FieldSpec<string>,
  configDriveFormat: { key: 'configDrive.format', env: ['PODVISOR_CONFIGDRIVE'], parse: str, doc: 'config-2 | nocloud | a config-drive plugin' } as FieldSpec<ConfigDriveFormat>,
  vmRuntime: { key: 'vm.runtime', env: ['PODVISOR_VM_RUNTIME'], parse: str, doc: 'qemu | a vm-runtime plugin' } as FieldSpec<string>,
  network: { key: 'network.backend', env: ['PODVISOR_NETWORK'], flag: 'network', parse: str, doc: 'nat-bridge | macvtap | none | a network-backend plugin' } as FieldSpec<string>,
  networkExtra: { key: 'network.extra', env: ['PODVISOR_NETWORK_EXTRA'], flag: 'network-extra', parse: extraNetworks, doc: 'more network backends that each add a NIC next to the primary one (e.g. l2-segment); in YAML, a mapping of each name to its settings' } as FieldSpec<Record<string, Record<string, unknown>>>,
  plugins: { key: 'plugins', env: ['PODVISOR_PLUGINS'], parse: stringList, doc: 'extra plugin modules (package names or paths)' } as FieldSpec<string[]>,
  noVnc: { key: 'vnc.disabled', env: ['NO_VNC'], parse: flagBool, doc: 'no VNC; 5900 is forwarded to the VM' } as FieldSpec<boolean>,
  vncPasswordFile: { key: 'vnc.passwordFile', env: ['PODVISOR_VNC_PASSWORD_FILE'], parse: optionalStr, doc: 'VNC password file' } as FieldSpec<string | undefined>,
  listen: { key: 'control.listen', env: ['PODVISOR_LISTEN'], flag: 'listen', parse: listen, doc: 'control endpoint TCP address' } as FieldSpec<string>,
  qmpAllow: { key: 'control.qmpAllow', env: ['PODVISOR_QMP_ALLOW'], parse: stringList, doc: 'extra QMP commands allowed on POST /v1/qmp' } as FieldSpec<string[]>,
  vncPassword: { key: 'vnc.password', env: ['PODVISOR_VNC_PASSWORD'], parse: optionalStr, secret: true, doc: 'VNC password (prefer the file)' } as FieldSpec<string | undefined>,
  tokenFile: { key: 'control.tokenFile', env: ['PODVISOR_TOKEN_FILE'], parse: optionalStr, doc: 'control endpoint tokens' } as FieldSpec<string | undefined>,
  restartPolicy: { key: 'restart.policy', env: ['PODVISOR_RESTART'], flag: 'restart', parse: oneOf<RestartPolicy>(['always', 'on-failure', 'never']), doc: 'always | on-failure | never' } as FieldSpec<RestartPolicy>,
  backoffInitialMs: { key: 'restart.backoffInitialMs', parse: int(0, 3_600_000), doc: 'first restart delay' } as FieldSpec<number>,
  backoffMaxMs: { key: 'restart.backoffMaxMs', parse: int(0, 3_600_000), doc: 'largest restart delay' } as FieldSpec<number>,
  maxRestarts: { key: 'restart.maxRestarts', env: ['PODVISOR_MAX_RESTARTS'], parse: int(0, 10_000), doc: 'restarts allowed within the window' } as FieldSpec<number>,
  restartWindowSeconds: { key: 'restart.windowSeconds', parse: int(1, 86_400 * 7), doc: 'crash-loop window' } as FieldSpec<number>,
  stopGrace: { key: 'shutdown.stopGraceSeconds', env: ['PODVISOR_STOP_GRACE'], flag: 'stop-grace', parse: int(0, 3600), doc: "the whole stop budget in seconds, from the signal to exit (match the pod's terminationGracePeriodSeconds)" } as FieldSpec<number>,
  powerdownIntervalMs: { key: 'shutdown.powerdownIntervalMs', parse: int(100, 60_000), doc: 'interval between ACPI presses' } as FieldSpec<number>,
  logLevel: { key: 'log.level', env: ['PODVISOR_LOG_LEVEL'], flag: 'log-level', parse: oneOf(['debug', 'info', 'warn', 'error'] as const), doc: 'debug | info | warn | error' } as FieldSpec<'debug' | 'info' | 'warn' | 'error'>,
} as const;

export type FieldName = keyof typeof FIELDS;

/** Settings that were removed: naming one is a configuration problem that names the replacement. */
export const REMOVED_SETTINGS: ReadonlyArray<{ key: string; env?: string; flag?: string; replacement: string }> = [
  {
    key: 'shutdown.graceSeconds',
    env: 'PODVISOR_SHUTDOWN_GRACE',
    flag: 'shutdown-grace',
    replacement: 'PODVISOR_STOP_GRACE (shutdown.stopGraceSeconds, --stop-grace): the whole stop budget, ACPI + quit + teardown, to match terminationGracePeriodSeconds (see docs/lifecycle.md)',
  },
  { key: 'shutdown.quitTimeoutMs', replacement: 'PODVISOR_STOP_GRACE (shutdown.stopGraceSeconds): the quit slice is part of the one stop budget (see docs/lifecycle.md)' },
];
