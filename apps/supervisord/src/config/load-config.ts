/**
 * Resolves podvisor's configuration with the precedence defaults < YAML file
 * < environment < flags, and reports every problem at once (each with where
 * the value came from, the value, and what was expected). Pure: file reads
 * and existence checks come in as functions.
 */
import path from 'node:path';
import { ConfigError, parseYaml, redactUrl, type ConfigProblem } from '@podvisor/core';
import { FIELDS, REMOVED_SETTINGS, type FieldName, type FieldSpec } from './config-fields.js';

type Values = { [K in FieldName]: (typeof FIELDS)[K] extends FieldSpec<infer T> ? T : never };

export interface PodvisorConfig extends Values {
  /** Where each value came from: `default`, `yaml KEY`, `env VAR` or `flag --x`. */
  origins: Record<FieldName, string>;
  /** The YAML file that was read, if any. */
  configFile: string | null;
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
  network: 'nat-bridge',
  networkSettings: {},
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

/** Throws `ConfigError` listing every problem. */
export function resolveConfig(inputs: ConfigInputs): PodvisorConfig {
  const problems: ConfigProblem[] = [];
  const yaml = inputs.yaml === null ? {} : readYaml(inputs.yaml, problems);
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

  // The image: required unless the pet disk exists; a local path must exist.
  const source = values['imageSource'] as string | undefined;
  const disk = path.join(String(values['diskDir']), `${String(values['name'])}.qcow2`);
  if (source === undefined) {
    if (!inputs.exists(disk)) {
      problems.push({ path: 'env IMG_SOURCE', value: undefined, expected: `an http(s) URL or a local path of a base image (required: there is no pet disk at ${disk})` });
    }
  } else if (/^[a-z][a-z0-9+.-]*:\/\//i.test(source)) {
    if (!/^(https?|file):\/\//i.test(source)) problems.push({ path: origins['imageSource'] ?? 'IMG_SOURCE', value: redactUrl(source), expected: 'an http://, https:// or file:// URL, or an absolute path' });
  } else if (!source.startsWith('/')) {
    problems.push({ path: origins['imageSource'] ?? 'IMG_SOURCE', value: source, expected: 'an http(s) URL or an absolute path' });
  } else if (!inputs.exists(source)) {
    problems.push({ path: origins['imageSource'] ?? 'IMG_SOURCE', value: source, expected: 'an existing image file (no such file)' });
  }

  if (problems.length > 0) throw new ConfigError(problems);
  return { ...(values as unknown as Values), origins: origins as Record<FieldName, string>, configFile: inputs.yaml?.path ?? null };
}

/** Parses the YAML file; syntax errors and unknown keys become problems. */
function readYaml(file: { text: string; path: string }, problems: ConfigProblem[]): Record<string, unknown> {
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
  const known = new Set([...Object.values(FIELDS).map((f) => f.key), ...REMOVED_SETTINGS.map((r) => r.key)]);
  const freeForm = new Set(['network.settings']);
  const walk = (obj: Record<string, unknown>, prefix: string): void => {
    for (const [k, v] of Object.entries(obj)) {
      const key = prefix === '' ? k : `${prefix}.${k}`;
      if (known.has(key) || freeForm.has(key)) continue;
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
