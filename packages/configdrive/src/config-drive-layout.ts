/**
 * The pure half of the config drive: from the mounted sources (user-data,
 * meta-data as YAML, an optional network-config) and the VM's defaults, decide
 * which files go on the drive, with what bytes, under which volume label, and
 * which instance id and hostname the guest will see. Two layouts exist: the
 * OpenStack `config-2` drive that Berth wrote (`openstack/2012-08-10/` and
 * `openstack/latest/`, read by cloud-init's ConfigDrive datasource) and the
 * NoCloud `cidata` seed (`meta-data`, `user-data`, `network-config`). Nothing
 * here touches the file system; bad input is a `PodvisorError` that names the
 * file, and for YAML the line and column.
 */
import { PodvisorError, formatValue, parseYaml, type YamlProblem } from '@podvisor/core';
import { stringify } from 'yaml';

/**
 * The largest source file accepted, in bytes. Nova caps `user_data` at 65535
 * bytes of base64 in its API (nova docs, "Provide user data to instances"),
 * which is an API storage limit a self-built drive does not share; 64 KiB of
 * raw bytes keeps the same order of magnitude and stops a wrong mount (a disk
 * image, a log) from being copied into the guest.
 */
export const CONFIG_DRIVE_MAX_SOURCE_BYTES = 64 * 1024;

/** The formats this package builds, each a `config-drive` provision of its plugin. */
export const CONFIG_DRIVE_FORMATS = ['config-2', 'nocloud'] as const;

export type GenisoimageFormat = (typeof CONFIG_DRIVE_FORMATS)[number];

export function isGenisoimageFormat(format: string): format is GenisoimageFormat {
  return (CONFIG_DRIVE_FORMATS as readonly string[]).includes(format);
}

/** The volume label cloud-init looks for, per format. */
export const CONFIG_DRIVE_VOLUME_LABELS: Readonly<Record<GenisoimageFormat, string>> = {
  'config-2': 'config-2',
  nocloud: 'cidata',
};

/**
 * The dated metadata version Berth's startvm.sh wrote (`openstack/2012-08-10`,
 * Folsom) next to `latest`. cloud-init picks the newest version folder it
 * knows and falls back to `latest`, so both hold the same files.
 */
export const OPENSTACK_METADATA_VERSION = '2012-08-10';

export type ConfigDriveSourceRole = 'user-data' | 'meta-data' | 'network-config';

/** One mounted source file: where it came from (for messages) and its bytes. */
export interface ConfigDriveSource {
  path: string;
  content: Uint8Array | string;
}

/** The sources that exist; an absent one was not given. */
export interface ConfigDriveSources {
  userData?: ConfigDriveSource;
  metaData?: ConfigDriveSource;
  networkConfig?: ConfigDriveSource;
}

export interface ConfigDriveLayoutOptions {
  format: GenisoimageFormat;
  /** Used when meta-data names no instance id: the VM's name, stable across restarts. */
  defaultInstanceId: string;
  /** Used when meta-data names no hostname. */
  defaultHostname: string;
}

/** One file on the drive; `path` is relative to the drive's root, with `/`. */
export interface ConfigDriveFile {
  path: string;
  content: Uint8Array | string;
}

export interface ConfigDriveLayout {
  format: GenisoimageFormat;
  volumeLabel: string;
  instanceId: string;
  hostname: string;
  files: readonly ConfigDriveFile[];
}

/** The meta-data keys that have a NoCloud name and an OpenStack name. */
const KEY_PAIRS = {
  instanceId: { nocloud: 'instance-id', openstack: 'uuid' },
  hostname: { nocloud: 'local-hostname', openstack: 'hostname' },
  publicKeys: { nocloud: 'public-keys', openstack: 'public_keys' },
} as const;

const CLOUD_CONFIG_HEADER = '#cloud-config';

/**
 * Computes the drive's files and identity. Returns `null` when neither
 * user-data nor meta-data is given (network-config alone makes no drive, as
 * the `ConfigDriveBuilder` port says).
 *
 * Throws `ERR_CONFIGDRIVE_TOO_LARGE` for a source over
 * `CONFIG_DRIVE_MAX_SOURCE_BYTES`, `ERR_CONFIGDRIVE_YAML` for malformed YAML
 * in meta-data, network-config or `#cloud-config` user-data (with path, line
 * and column), and `ERR_CONFIGDRIVE_INVALID` for YAML of the wrong shape (not
 * a mapping, a non-string hostname, both the NoCloud and the OpenStack name of
 * a key with different values, cloud-init network config on a `config-2`
 * drive). Changes nothing.
 */
export function planConfigDrive(sources: ConfigDriveSources, options: ConfigDriveLayoutOptions): ConfigDriveLayout | null {
  const { userData, metaData, networkConfig } = sources;
  if (userData === undefined && metaData === undefined) return null;
  if (userData !== undefined) checkSourceSize('user-data', userData.path, byteLength(userData.content));
  if (metaData !== undefined) checkSourceSize('meta-data', metaData.path, byteLength(metaData.content));
  if (networkConfig !== undefined) checkSourceSize('network-config', networkConfig.path, byteLength(networkConfig.content));

  if (userData !== undefined) checkUserData(userData);
  const meta = metaData === undefined ? {} : parseMapping('meta-data', metaData, { emptyIs: {} });
  const networkValue = networkConfig === undefined ? undefined : parseMapping('network-config', networkConfig, { emptyIs: undefined });
  const input: LayoutInput = {
    id: resolveIdentity(meta, metaData?.path, options),
    userData,
    network: networkConfig === undefined || networkValue === undefined ? undefined : { ...networkConfig, value: networkValue },
  };
  const files = options.format === 'config-2' ? configTwoFiles(input) : noCloudFiles(input);
  return { format: options.format, volumeLabel: CONFIG_DRIVE_VOLUME_LABELS[options.format], instanceId: input.id.instanceId, hostname: input.id.hostname, files };
}

/**
 * Throws `ERR_CONFIGDRIVE_TOO_LARGE` when `bytes` is over the limit. The I/O
 * half calls it with the size from `stat` before reading a file.
 */
export function checkSourceSize(role: ConfigDriveSourceRole, path: string, bytes: number): void {
  if (bytes <= CONFIG_DRIVE_MAX_SOURCE_BYTES) return;
  throw new PodvisorError(
    'ERR_CONFIGDRIVE_TOO_LARGE',
    `${role} ${path} is ${bytes} bytes, over the config drive limit of ${CONFIG_DRIVE_MAX_SOURCE_BYTES} bytes (64 KiB)`,
    {
      hint: `check that ${path} is the ConfigMap you meant to mount; move large content out of ${role} (for instance, fetch it from the guest)`,
      details: { path, role, bytes, limit: CONFIG_DRIVE_MAX_SOURCE_BYTES },
    },
  );
}

// ---------------------------------------------------------------- identity and keys

interface DriveIdentity {
  instanceId: string;
  hostname: string;
  /** OpenStack's display name, if meta-data gave one. */
  name: string | undefined;
  /** The public keys as name/key pairs, if meta-data gave any (names only exist for a mapping). */
  publicKeys: PublicKeys | undefined;
  /** Every other meta-data key, as given and in order. */
  rest: Record<string, unknown>;
}

type PublicKeys = { kind: 'named'; entries: Record<string, string | string[]> } | { kind: 'list'; keys: string[] };

function resolveIdentity(meta: Record<string, unknown>, path: string | undefined, options: ConfigDriveLayoutOptions): DriveIdentity {
  const source = path ?? '(no meta-data)';
  const instanceId = pickPair(meta, KEY_PAIRS.instanceId, source);
  const hostname = pickPair(meta, KEY_PAIRS.hostname, source);
  const publicKeys = pickPair(meta, KEY_PAIRS.publicKeys, source);
  const mapped = new Set<string>(Object.values(KEY_PAIRS).flatMap((p) => [p.nocloud, p.openstack]));
  const rest = Object.fromEntries(Object.entries(meta).filter(([k]) => !mapped.has(k) && k !== 'name'));
  return {
    instanceId: instanceId === undefined ? options.defaultInstanceId : identityString(instanceId.value, instanceId.key, source),
    hostname: hostname === undefined ? options.defaultHostname : identityString(hostname.value, hostname.key, source),
    name: meta.name === undefined ? undefined : identityString(meta.name, 'name', source),
    publicKeys: publicKeys === undefined ? undefined : normalizePublicKeys(publicKeys.value, publicKeys.key, source),
    rest,
  };
}

/** The value of a key given under its NoCloud or its OpenStack name; both with different values is an error. */
function pickPair(
  meta: Record<string, unknown>,
  pair: { nocloud: string; openstack: string },
  path: string,
): { key: string; value: unknown } | undefined {
  const a = meta[pair.nocloud];
  const b = meta[pair.openstack];
  if (a !== undefined && b !== undefined && JSON.stringify(a) !== JSON.stringify(b)) {
    throw invalid(
      `meta-data ${path} gives both ${pair.nocloud} (${formatValue(a)}) and ${pair.openstack} (${formatValue(b)}), which differ`,
      `keep one of ${pair.nocloud} and ${pair.openstack}; they name the same thing`,
      { path, keys: [pair.nocloud, pair.openstack] },
    );
  }
  if (a !== undefined) return { key: pair.nocloud, value: a };
  if (b !== undefined) return { key: pair.openstack, value: b };
  return undefined;
}

function identityString(value: unknown, key: string, path: string): string {
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  if (typeof value === 'string' && value.trim() !== '') return value.trim();
  throw invalid(`meta-data ${path}: ${key} must be a non-empty string, got ${formatValue(value)}`, `quote the value of ${key} in ${path} (YAML 1.1 reads yes/no/on/off as booleans)`, {
    path,
    key,
  });
}

/** Accepts what cloud-init accepts: one string (one key a line), a list of strings, or a mapping name -> key(s). */
function normalizePublicKeys(value: unknown, key: string, path: string): PublicKeys {
  const bad = (what: string): PodvisorError =>
    invalid(`meta-data ${path}: ${key} ${what}, got ${formatValue(value)}`, `give ${key} as a list of "ssh-... key" strings or a mapping name: key`, { path, key });
  if (typeof value === 'string') return { kind: 'list', keys: keyLines(value) };
  if (Array.isArray(value)) {
    if (!value.every((k) => typeof k === 'string')) throw bad('must list strings');
    return { kind: 'list', keys: value.flatMap(keyLines) };
  }
  if (isMapping(value)) {
    const entries: Record<string, string | string[]> = {};
    for (const [name, k] of Object.entries(value)) {
      if (typeof k === 'string') entries[name] = k.trim();
      else if (Array.isArray(k) && k.every((x) => typeof x === 'string')) entries[name] = k.flatMap(keyLines);
      else throw bad(`entry ${name} must be a string or a list of strings`);
    }
    return { kind: 'named', entries };
  }
  throw bad('must be a string, a list or a mapping');
}

function keyLines(text: string): string[] {
  return text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
}

function publicKeysAsList(keys: PublicKeys): string[] {
  return keys.kind === 'list' ? keys.keys : Object.values(keys.entries).flat();
}

function publicKeysAsNamed(keys: PublicKeys): Record<string, string | string[]> {
  return keys.kind === 'named' ? keys.entries : Object.fromEntries(keys.keys.map((k, i) => [`key-${i}`, k]));
}

// ---------------------------------------------------------------- layouts

/** What both layouts are made from: the identity, the user-data as given, and the parsed network-config. */
interface LayoutInput {
  id: DriveIdentity;
  userData: ConfigDriveSource | undefined;
  network: (ConfigDriveSource & { value: Record<string, unknown> }) | undefined;
}

function configTwoFiles({ id, userData, network }: LayoutInput): ConfigDriveFile[] {
  const metaJson = {
    uuid: id.instanceId,
    hostname: id.hostname,
    name: id.name ?? id.hostname,
    ...(id.publicKeys === undefined ? {} : { public_keys: publicKeysAsNamed(id.publicKeys) }),
    ...id.rest,
  };
  const perVersion: ConfigDriveFile[] = [{ path: 'meta_data.json', content: `${JSON.stringify(metaJson, null, 2)}\n` }];
  if (userData !== undefined) perVersion.push({ path: 'user_data', content: userData.content });
  if (network !== undefined) {
    if ('version' in network.value || 'network' in network.value) {
      throw invalid(
        `network-config ${network.path} is cloud-init network config (version 1/2), which a config-2 drive cannot carry: cloud-init reads only OpenStack network_data.json from it`,
        'select the NoCloud drive (PODVISOR_CONFIGDRIVE=nocloud), or give OpenStack network_data (links, networks, services)',
        { path: network.path },
      );
    }
    perVersion.push({ path: 'network_data.json', content: `${JSON.stringify(network.value, null, 2)}\n` });
  }
  return [OPENSTACK_METADATA_VERSION, 'latest'].flatMap((version) =>
    perVersion.map((f) => ({ path: `openstack/${version}/${f.path}`, content: f.content })),
  );
}

function noCloudFiles({ id, userData, network }: LayoutInput): ConfigDriveFile[] {
  const meta = {
    'instance-id': id.instanceId,
    'local-hostname': id.hostname,
    ...(id.name === undefined ? {} : { name: id.name }),
    ...(id.publicKeys === undefined ? {} : { 'public-keys': publicKeysAsList(id.publicKeys) }),
    ...id.rest,
  };
  // NoCloud needs both meta-data and user-data on the seed, even empty (cloud-init docs, NoCloud).
  const files: ConfigDriveFile[] = [
    { path: 'meta-data', content: stringify(meta, { version: '1.1', lineWidth: 0 }) },
    { path: 'user-data', content: userData?.content ?? '' },
  ];
  if (network !== undefined) files.push({ path: 'network-config', content: network.content });
  return files;
}

// ---------------------------------------------------------------- parsing

/** `#cloud-config` user-data is YAML and must be a mapping; any other user-data (scripts, MIME, gzip) is passed as is. */
function checkUserData(source: ConfigDriveSource): void {
  const bytes = toBytes(source.content);
  if (!startsWithAscii(bytes, CLOUD_CONFIG_HEADER)) return;
  parseMapping('user-data', source, { emptyIs: undefined });
}

/**
 * Parses one YAML document as cloud-init does (PyYAML, YAML 1.1: `yes` is a
 * boolean, `0123` is octal) and returns it as a mapping; an empty document is
 * `emptyIs`.
 */
function parseMapping<E extends Record<string, unknown> | undefined>(
  role: ConfigDriveSourceRole,
  source: ConfigDriveSource,
  { emptyIs }: { emptyIs: E },
): Record<string, unknown> | E {
  const text = decodeText(role, source);
  const parsed = parseYaml(text, { version: '1.1' });
  if (!parsed.ok) throw yamlError(role, source.path, parsed.problems[0] as YamlProblem);
  const value: unknown = parsed.value;
  if (value === null || value === undefined) return emptyIs;
  if (!isMapping(value)) {
    throw invalid(
      `${role} ${source.path} must be a YAML mapping (key: value lines), but it is ${Array.isArray(value) ? 'a list' : `a ${typeof value}`}`,
      `write ${role} as "key: value" lines`,
      { path: source.path, role },
    );
  }
  return value;
}

function yamlError(role: ConfigDriveSourceRole, path: string, problem: YamlProblem): PodvisorError {
  const where = problem.line === undefined ? '' : ` at line ${problem.line}, column ${problem.column}`;
  const excerpt = problem.excerpt === undefined ? '' : `\n${problem.excerpt}`;
  return new PodvisorError('ERR_CONFIGDRIVE_YAML', `invalid YAML in ${role} ${path}${where}: ${problem.message}${excerpt}`, {
    hint: `fix the YAML in ${path}: expected ${problem.expected}${role === 'user-data' ? ' (user-data that starts with #cloud-config must be YAML)' : ''}`,
    details: { path, role, line: problem.line, column: problem.column, yamlCode: problem.code },
  });
}

function decodeText(role: ConfigDriveSourceRole, source: ConfigDriveSource): string {
  if (typeof source.content === 'string') return source.content;
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(source.content);
  } catch (cause) {
    throw invalid(`${role} ${source.path} is not UTF-8 text`, `save ${source.path} as UTF-8`, { path: source.path, role }, cause);
  }
}

function invalid(message: string, hint: string, details: Record<string, unknown>, cause?: unknown): PodvisorError {
  return new PodvisorError('ERR_CONFIGDRIVE_INVALID', message, { hint, details, cause });
}

function isMapping(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date) && !(value instanceof Uint8Array) && !(value instanceof Map) && !(value instanceof Set);
}

function toBytes(content: Uint8Array | string): Uint8Array {
  return typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
}

function byteLength(content: Uint8Array | string): number {
  return typeof content === 'string' ? Buffer.byteLength(content, 'utf8') : content.byteLength;
}

function startsWithAscii(bytes: Uint8Array, prefix: string): boolean {
  if (bytes.byteLength < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (bytes[i] !== prefix.charCodeAt(i)) return false;
  return true;
}

