/**
 * Settings a plugin owns. A plugin's manifest declares each of its settings
 * (its name, its YAML key, its environment variables, its type, its default
 * and its doc); the composition root resolves them together with podvisor's
 * own settings, with the same precedence (default < YAML < environment) and
 * every problem reported at once. A plugin never sees the raw environment:
 * it gets the typed values, each with the path it came from, for its own
 * cross-field checks. Pure.
 */
import type { ConfigProblem } from './errors.js';

/**
 * - `string`: a non-empty string (trimmed); with `values`, one of them.
 * - `boolean`: YAML true/false; in the environment yes/no, true/false, on/off, 1/0 (any case).
 * - `integer`: with optional `min` and `max`.
 * - `string-list`: a YAML list of strings, or one string split on commas and spaces.
 */
export type PluginSettingType = 'string' | 'boolean' | 'integer' | 'string-list';

export type PluginSettingValue = string | number | boolean | readonly string[];

export interface PluginSetting {
  /** The name the plugin reads the value by (camelCase), unique within its provision. */
  name: string;
  /** The full dotted YAML path, e.g. `network.settings.vmIp`. */
  key: string;
  /** Environment variables, the preferred one first; the others are aliases (they must agree when both are set). */
  env?: readonly string[];
  type: PluginSettingType;
  /** `string` only: the allowed values. */
  values?: readonly string[];
  /** `integer` only: the bounds, inclusive. */
  min?: number;
  max?: number;
  /** The value when none is given; without one the plugin gets `undefined`. */
  default?: PluginSettingValue;
  /** One line for docs/configuration.md and `podvisor plugins`. */
  doc: string;
  /** The value is shown as "(redacted)" in problems. */
  secret?: boolean;
}

/** A resolved value and where it came from: `env VM_IP`, `yaml network.settings.vmIp`, or (for a default) the first env variable or the YAML key. */
export interface ResolvedPluginSetting {
  value: PluginSettingValue | undefined;
  path: string;
  /** True when the value was given, false for a default. */
  given: boolean;
}

/**
 * A provision's resolved settings, by setting name. The composition root
 * binds them under the `PluginSettings` symbol named
 * `pluginSettingsName(kind, name)`, for plugins that read them from the
 * container; a network backend also gets them in its `NetworkAttachSpec`.
 */
export type PluginSettings = Readonly<Record<string, ResolvedPluginSetting>>;

export const PluginSettings = Symbol.for('podvisor.PluginSettings');

/** Where settings come from: the environment and the parsed YAML document (a mapping, or empty). */
export interface PluginSettingSources {
  env: Readonly<Record<string, string | undefined>>;
  yaml: Readonly<Record<string, unknown>>;
}

const YES = ['yes', 'y', 'true', 'on', '1'];
const NO = ['no', 'n', 'false', 'off', '0'];

/** What is wrong with a declaration (for the manifest check); empty when it is fine. */
export function pluginSettingDeclarationProblems(s: unknown, at: string): string[] {
  const problems: string[] = [];
  if (typeof s !== 'object' || s === null) return [`${at}: expected {name, key, type, doc}`];
  const d = s as Partial<PluginSetting>;
  if (typeof d.name !== 'string' || !/^[a-z][A-Za-z0-9]*$/.test(d.name)) problems.push(`${at}.name: got ${JSON.stringify(d.name)}, expected a camelCase name`);
  if (typeof d.key !== 'string' || !/^[A-Za-z][A-Za-z0-9]*(\.[A-Za-z][A-Za-z0-9-]*)+$/.test(d.key)) problems.push(`${at}.key: got ${JSON.stringify(d.key)}, expected a dotted YAML path such as network.settings.vmIp`);
  if (d.env !== undefined && !(Array.isArray(d.env) && d.env.every((e) => typeof e === 'string' && /^[A-Z_][A-Z0-9_]*$/.test(e)))) problems.push(`${at}.env: expected a list of environment variable names (upper case)`);
  if (!['string', 'boolean', 'integer', 'string-list'].includes(d.type as string)) problems.push(`${at}.type: got ${JSON.stringify(d.type)}, expected string | boolean | integer | string-list`);
  if (d.values !== undefined && (d.type !== 'string' || !Array.isArray(d.values) || !d.values.every((v) => typeof v === 'string'))) problems.push(`${at}.values: expected a list of strings, on a string setting`);
  for (const bound of ['min', 'max'] as const) {
    if (d[bound] !== undefined && (d.type !== 'integer' || !Number.isInteger(d[bound]))) problems.push(`${at}.${bound}: expected an integer, on an integer setting`);
  }
  if (typeof d.doc !== 'string' || d.doc === '') problems.push(`${at}.doc: expected a non-empty description`);
  if (problems.length === 0 && d.default !== undefined && 'expected' in parsePluginSetting(d as PluginSetting, d.default, 'yaml')) {
    problems.push(`${at}.default: got ${JSON.stringify(d.default)}, which is not a valid ${d.type}`);
  }
  return problems;
}

/** Parses one given value of a setting; the environment gives strings, YAML gives any type. */
export function parsePluginSetting(s: PluginSetting, raw: unknown, source: 'env' | 'yaml'): { ok: PluginSettingValue } | { expected: string } {
  switch (s.type) {
    case 'string': {
      if (typeof raw !== 'string' || raw.trim() === '') return { expected: s.values === undefined ? 'a non-empty string' : `one of ${s.values.join(', ')}` };
      const v = raw.trim();
      if (s.values !== undefined && !s.values.includes(v)) return { expected: `one of ${s.values.join(', ')}` };
      return { ok: v };
    }
    case 'boolean': {
      if (typeof raw === 'boolean' && source === 'yaml') return { ok: raw };
      const v = typeof raw === 'string' ? raw.trim().toLowerCase() : undefined;
      if (v !== undefined && YES.includes(v)) return { ok: true };
      if (v !== undefined && NO.includes(v)) return { ok: false };
      return { expected: source === 'yaml' ? 'true or false' : 'yes or no (also true/false, on/off, 1/0)' };
    }
    case 'integer': {
      const n = typeof raw === 'number' ? raw : typeof raw === 'string' && /^-?\d+$/.test(raw.trim()) ? Number(raw.trim()) : Number.NaN;
      const min = s.min ?? Number.MIN_SAFE_INTEGER;
      const max = s.max ?? Number.MAX_SAFE_INTEGER;
      if (!Number.isInteger(n) || n < min || n > max) return { expected: s.min === undefined && s.max === undefined ? 'an integer' : `an integer from ${min} to ${max}` };
      return { ok: n };
    }
    case 'string-list': {
      if (Array.isArray(raw) && raw.every((x) => typeof x === 'string')) return { ok: raw.map((x: string) => x.trim()).filter((x) => x !== '') };
      if (typeof raw === 'string') return { ok: raw.split(/[\s,]+/).filter((x) => x !== '') };
      return { expected: 'a list of strings (or one string separated by commas or spaces)' };
    }
    default: {
      const never: never = s.type;
      return { expected: String(never) };
    }
  }
}

/**
 * Resolves declared settings: default < YAML < environment (an empty
 * variable counts as unset). Every given value is checked, not only the one
 * that wins, and two aliases given with different values are a problem.
 */
export function resolvePluginSettings(declared: readonly PluginSetting[], sources: PluginSettingSources): { settings: PluginSettings; problems: ConfigProblem[] } {
  const problems: ConfigProblem[] = [];
  const settings: Record<string, ResolvedPluginSetting> = {};
  for (const s of declared) {
    const shown = (raw: unknown): unknown => (s.secret === true ? '(redacted)' : raw);
    let chosen: ResolvedPluginSetting | undefined;
    const y = yamlAt(sources.yaml, s.key);
    if (y !== undefined && y !== null) {
      const r = parsePluginSetting(s, y, 'yaml');
      if ('expected' in r) problems.push({ path: `yaml ${s.key}`, value: shown(y), expected: r.expected });
      else chosen = { value: r.ok, path: `yaml ${s.key}`, given: true };
    }
    let fromEnv: { name: string; raw: string; value: PluginSettingValue } | undefined;
    for (const name of s.env ?? []) {
      const raw = sources.env[name];
      if (raw === undefined || raw.trim() === '') continue;
      const r = parsePluginSetting(s, raw, 'env');
      if ('expected' in r) {
        problems.push({ path: `env ${name}`, value: shown(raw), expected: r.expected });
        continue;
      }
      if (fromEnv === undefined) fromEnv = { name, raw, value: r.ok };
      else if (JSON.stringify(fromEnv.value) !== JSON.stringify(r.ok)) {
        problems.push({ path: `env ${name}`, value: shown(raw), expected: `the same value as ${fromEnv.name} (${JSON.stringify(shown(fromEnv.raw))}), or unset: it is an alias` });
      }
    }
    if (fromEnv !== undefined) chosen = { value: fromEnv.value, path: `env ${fromEnv.name}`, given: true };
    settings[s.name] = chosen ?? { value: s.default, path: s.env?.[0] === undefined ? `yaml ${s.key}` : `env ${s.env[0]}`, given: false };
  }
  return { settings, problems };
}

/** The value at a dotted path of a parsed YAML document. */
export function yamlAt(doc: Readonly<Record<string, unknown>>, dotted: string): unknown {
  let cur: unknown = doc;
  for (const part of dotted.split('.')) {
    if (typeof cur !== 'object' || cur === null || Array.isArray(cur)) return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}
