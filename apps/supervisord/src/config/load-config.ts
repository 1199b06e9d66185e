/**
 * Resolves podvisor's configuration with the precedence defaults < YAML file
 * < environment < flags, and reports every problem at once (each with where
 * the value came from, the value, and what was expected). The plugin
 * registry says which network backends, config-drive formats, VM runtimes
 * and image URL schemes exist, and the settings of the selected provisions
 * (declared in their manifests) are resolved and checked here too, with the
 * core settings. Pure: file reads and existence checks come in as functions.
 */
import path from 'node:path';
import {
  ConfigError,
  parseYaml,
  redactUrl,
  resolvePluginSettings,
  type ConfigProblem,
  type NetworkAttachSpec,
  type PluginKind,
  type PluginRegistry,
  type PluginSettings,
} from '@podvisor/core';
import { schemeOf } from '@podvisor/image-store';
import { FIELDS, REMOVED_SETTINGS, type FieldName, type FieldSpec } from './config-fields.js';

type Values = { [K in FieldName]: (typeof FIELDS)[K] extends FieldSpec<infer T> ? T : never };

/** The provision selected for a kind, and its resolved settings. */
export interface SelectedProvision {
  name: string;
  settings: PluginSettings;
}

export interface PodvisorConfig extends Values {
  /** Where each value came from: `default`, `yaml KEY`, `env VAR` or `flag --x`. */
  origins: Record<FieldName, string>;
  /** The YAML file that was read, if any. */
  configFile: string | null;
  /**
   * Per plugin kind, the provision selected and its settings: the network
   * backend (none for `none`), the config-drive format, the VM runtime, and
   * the image source of IMG_SOURCE's scheme (none without an image).
   */
  selected: Partial<Record<PluginKind, SelectedProvision>>;
  /**
   * The stacked network backends (`network.extra`) that the registry has,
   * other than the primary, in order, each with its resolved settings; the
   * composition root checks that each is stackable.
   */
  selectedExtra: SelectedProvision[];
}

export interface ConfigInputs {
  /** The YAML text and its path, when a file is used. */
  yaml: { text: string; path: string } | null;
  env: Readonly<Record<string, string | undefined>>;
  /** Flag values by flag name (without `--`). */
  flags: Readonly<Record<string, string | undefined>>;
  /** Positional arguments of `podvisor run`: extra qemu arguments. */
  extraArgs: readonly string[];
  hostname: string;
  /** Whether a path exists (for "IMG_SOURCE required unless a disk exists"). */
  exists: (p: string) => boolean;
}

const DEFAULTS: Partial<Values> = {
  vcpus: 1,
  memoryMb: 512,
  accel: 'auto',
  accelProbeTimeoutMs: 3000,
  extraArgs: [],
  imageSource: undefined,
  imageTarget: undefined,
  imageSha256: undefined,
  imageFormat: 'qcow2',
  diskSize: undefined,
  rebase: false,
  imageTimeoutSeconds: 30,
  imageRetries: 5,
  maxVirtualSizeGb: 2048,
  imagesDir: '/var/lib/podvisor/images',
  diskDir: '/var/lib/podvisor/disk',
  userData: '/userdata',
  metaData: '/metadata',
  configDriveFormat: 'config-2',
  vmRuntime: 'qemu',
  network: 'nat-bridge',
  networkExtra: {},
  plugins: [],
  noVnc: false,
  vncPasswordFile: undefined,
  listen: '0.0.0.0:5800',
  tokenFile: undefined,
  qmpAllow: [],
  vncPassword: undefined,
  restartPolicy: 'on-failure',
  backoffInitialMs: 1000,
  backoffMaxMs: 60_000,
  maxRestarts: 5,
  restartWindowSeconds: 600,
  stopGrace: 30,
  powerdownIntervalMs: 1000,
  logLevel: 'info',
};

/**
 * Throws `ConfigError` listing every problem. `plugins` is the registry of
 * the loaded plugins; with `null` no plugin is known (every selection of a
 * plugin kind is then a problem).
 */
export function resolveConfig(inputs: ConfigInputs, plugins: PluginRegistry | null): PodvisorConfig {
  const { config, problems } = collectConfig(inputs, plugins);
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}

/**
 * Like `resolveConfig`, but returns the problems instead of throwing; where
 * a value has a problem, the config holds its default. Used to learn which
 * plugins to load before the configuration can be checked whole.
 */
export function collectConfig(inputs: ConfigInputs, plugins: PluginRegistry | null): { config: PodvisorConfig; problems: ConfigProblem[] } {
  const problems: ConfigProblem[] = [];
  const yaml = inputs.yaml === null ? {} : readYaml(inputs.yaml, pluginKeys(plugins), problems);
  const values: Record<string, unknown> = {};
  const origins: Record<string, string> = {};

  for (const r of REMOVED_SETTINGS) {
    const given: Array<[string, unknown]> = [
      [`yaml ${r.key}`, getPath(yaml, r.key)],
      ...(r.env === undefined ? [] : [[`env ${r.env}`, inputs.env[r.env]] as [string, unknown]]),
      ...(r.flag === undefined ? [] : [[`flag --${r.flag}`, inputs.flags[r.flag]] as [string, unknown]]),
    ];
    for (const [where, value] of given) {
      if (value !== undefined) problems.push({ path: where, value, expected: `no value: this setting was removed; use ${r.replacement}` });
    }
  }
  for (const [name, spec] of Object.entries(FIELDS) as Array<[FieldName, FieldSpec<unknown>]>) {
    const candidates: Array<{ raw: unknown; source: 'yaml' | 'env' | 'flag'; label: string }> = [];
    const y = getPath(yaml, spec.key);
    if (y !== undefined) candidates.push({ raw: y, source: 'yaml', label: `yaml ${spec.key}` });
    for (const v of [...(spec.env ?? [])].reverse()) {
      const raw = inputs.env[v];
      if (raw !== undefined) candidates.push({ raw, source: 'env', label: `env ${v}` });
    }
    if (spec.flag !== undefined && inputs.flags[spec.flag] !== undefined) {
      candidates.push({ raw: inputs.flags[spec.flag], source: 'flag', label: `flag --${spec.flag}` });
    }
    // Every given value is validated, not only the winning one: a bad value is a problem wherever it is.
    let chosen: { value: unknown; label: string } | null = null;
    for (const c of candidates) {
      const r = spec.parse(c.raw, c.source);
      if ('expected' in r) problems.push({ path: c.label, value: spec.secret === true ? '(redacted)' : c.raw, expected: r.expected });
      else chosen = { value: r.ok, label: c.label };
    }
    if (chosen !== null) {
      values[name] = chosen.value;
      origins[name] = chosen.label;
    } else {
      values[name] = (DEFAULTS as Record<string, unknown>)[name];
      origins[name] = 'default';
    }
  }

  // Derived defaults.
  if (values['name'] === undefined) {
    values['name'] = inputs.hostname;
    origins['name'] = 'hostname';
  }
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(String(values['name']))) {
    problems.push({ path: origins['name'] === 'hostname' ? 'hostname' : (origins['name'] ?? 'vm.name'), value: values['name'], expected: 'a name of letters, digits, dot, dash, underscore (at most 63)' });
  }
  if (values['stateDir'] === undefined) {
    values['stateDir'] = path.join(String(values['diskDir']), '.podvisor');
    origins['stateDir'] = 'derived from paths.diskDir';
  }
  if (inputs.extraArgs.length > 0) {
    values['extraArgs'] = [...inputs.extraArgs];
    origins['extraArgs'] = 'arguments';
  }
  if (Number(values['backoffMaxMs']) < Number(values['backoffInitialMs'])) {
    problems.push({ path: origins['backoffMaxMs'] ?? 'restart.backoffMaxMs', value: values['backoffMaxMs'], expected: `at least restart.backoffInitialMs (${String(values['backoffInitialMs'])})` });
  }

  // The image: required unless the pet disk exists; a URL's scheme must be one an image source serves; a local path must exist.
  const source = values['imageSource'] as string | undefined;
  const disk = path.join(String(values['diskDir']), `${String(values['name'])}.qcow2`);
  const schemes = plugins?.names('image-source') ?? [];
  const urlSchemes = schemes.filter((x) => x !== 'file').map((x) => `${x}://`);
  let imageScheme: string | undefined;
  if (source === undefined) {
    if (!inputs.exists(disk)) {
      problems.push({ path: 'env IMG_SOURCE', value: undefined, expected: `a URL or a local path of a base image (required: there is no pet disk at ${disk})` });
    }
  } else if (/^[a-z][a-z0-9+.-]*:\/\//i.test(source)) {
    imageScheme = schemeOf(source);
    if (!schemes.includes(imageScheme)) {
      problems.push({
        path: origins['imageSource'] ?? 'IMG_SOURCE',
        value: redactUrl(source),
        expected: `a URL of a scheme an image source serves (${[...urlSchemes, ...(schemes.includes('file') ? ['file://'] : [])].join(', ')}), or an absolute path; an image-source plugin named in PODVISOR_PLUGINS adds a scheme`,
      });
    }
  } else if (!source.startsWith('/')) {
    problems.push({ path: origins['imageSource'] ?? 'IMG_SOURCE', value: source, expected: `a URL (${urlSchemes.join(', ')}) or an absolute path` });
  } else if (!inputs.exists(source)) {
    problems.push({ path: origins['imageSource'] ?? 'IMG_SOURCE', value: source, expected: 'an existing image file (no such file)' });
  } else {
    imageScheme = 'file';
  }

  // The plugin kinds: each selection must name a provision the registry has, and the selected provision's settings join the check.
  const selections: Array<{ kind: PluginKind; field: FieldName | null; name: string | undefined; none?: string }> = [
    { kind: 'network-backend', field: 'network', name: String(values['network']), none: 'none' },
    { kind: 'config-drive', field: 'configDriveFormat', name: String(values['configDriveFormat']) },
    { kind: 'vm-runtime', field: 'vmRuntime', name: String(values['vmRuntime']) },
    { kind: 'image-source', field: null, name: imageScheme },
  ];
  const selected: Partial<Record<PluginKind, SelectedProvision>> = {};
  for (const { kind, field, name, none } of selections) {
    if (name === undefined || name === none) continue;
    const provision = plugins?.provision(kind, name);
    if (provision === undefined) {
      if (field !== null) {
        const available = [...(none === undefined ? [] : [none]), ...(plugins?.names(kind) ?? [])];
        problems.push({ path: origins[field] ?? FIELDS[field].key, value: name, expected: `one of ${available.join(', ')} (or a plugin that provides ${kind} "${name}", named in PODVISOR_PLUGINS)` });
      }
      continue;
    }
    const resolved = resolvePluginSettings(provision.settings ?? [], { env: inputs.env, yaml });
    problems.push(...resolved.problems);
    selected[kind] = { name, settings: resolved.settings };
  }

  // The stacked network backends: each one's settings join the check too (its YAML keys are under network.extra.NAME).
  const selectedExtra: SelectedProvision[] = [];
  for (const [name, section] of Object.entries(values['networkExtra'] as Record<string, Record<string, unknown>>)) {
    const provision = name === values['network'] ? undefined : plugins?.provision('network-backend', name);
    if (provision === undefined) continue;
    const keys = new Set((provision.settings ?? []).map((s) => s.key));
    for (const [k, v] of Object.entries(section)) {
      const key = `${FIELDS.networkExtra.key}.${name}.${k}`;
      if (!keys.has(key)) problems.push({ path: `yaml ${key}`, value: v, expected: `one of the ${name} settings: ${[...keys].map((x) => x.slice(x.lastIndexOf('.') + 1)).join(', ')}` });
    }
    const resolved = resolvePluginSettings(provision.settings ?? [], { env: inputs.env, yaml });
    problems.push(...resolved.problems);
    selectedExtra.push({ name, settings: resolved.settings });
  }

  return { config: { ...(values as unknown as Values), origins: origins as Record<FieldName, string>, configFile: inputs.yaml?.path ?? null, selected, selectedExtra }, problems };
}

/** The YAML keys the loaded plugins declare. */
function pluginKeys(plugins: PluginRegistry | null): string[] {
  if (plugins === null) return [];
  return (['network-backend', 'image-source', 'config-drive', 'vm-runtime'] as const).flatMap((kind) => plugins.provisions(kind).flatMap((p) => (p.settings ?? []).map((s) => s.key)));
}

/** Parses the YAML file; syntax errors and unknown keys (neither podvisor's nor a loaded plugin's) become problems. */
function readYaml(file: { text: string; path: string }, extraKeys: readonly string[], problems: ConfigProblem[]): Record<string, unknown> {
  const parsed = parseYaml(file.text);
  if (!parsed.ok) {
    for (const e of parsed.problems) {
      problems.push({ path: `yaml ${file.path}${e.line === undefined ? '' : `:${e.line}:${e.column}`}`, value: `(${e.code})`, expected: `${e.expected} (${e.message})` });
    }
    return {};
  }
  const data: unknown = parsed.value;
  if (data === null || data === undefined) return {};
  if (typeof data !== 'object' || Array.isArray(data)) {
    problems.push({ path: `yaml ${file.path}`, value: data, expected: 'a mapping at the top level' });
    return {};
  }
  // Removed keys are reported with their replacement, not as unknown.
  const known = new Set([...Object.values(FIELDS).map((f) => f.key), ...REMOVED_SETTINGS.map((r) => r.key), ...extraKeys]);
  const walk = (obj: Record<string, unknown>, prefix: string): void => {
    for (const [k, v] of Object.entries(obj)) {
      const key = prefix === '' ? k : `${prefix}.${k}`;
      if (known.has(key)) continue;
      const isSection = [...known].some((x) => x.startsWith(`${key}.`));
      if (isSection && typeof v === 'object' && v !== null && !Array.isArray(v)) walk(v as Record<string, unknown>, key);
      else problems.push({ path: `yaml ${key}`, value: v, expected: isSection ? 'a mapping' : `a known key (unknown key; see docs/configuration.md)` });
    }
  };
  walk(data as Record<string, unknown>, '');
  return data as Record<string, unknown>;
}

function getPath(obj: Record<string, unknown>, dotted: string): unknown {
  let cur: unknown = obj;
  for (const part of dotted.split('.')) {
    if (typeof cur !== 'object' || cur === null || Array.isArray(cur)) return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

/**
 * What `NO_VNC` means, decided once: VNC is on unless `NO_VNC` is set (a
 * value other than empty, 0, false, no or off). When on, qemu serves it on
 * 5900 and no network backend forwards 5900 to the VM; when off, 5900 is
 * the VM's like any port. Every network backend gets this in its spec.
 */
export function vncOf(config: Pick<PodvisorConfig, 'noVnc'>): NetworkAttachSpec['vnc'] {
  return { enabled: !config.noVnc, port: 5900 };
}
