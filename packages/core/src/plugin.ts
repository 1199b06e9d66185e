/**
 * The plugin API. A plugin is a package whose default export is a
 * `PluginManifest`: a name, the range of plugin API versions it supports,
 * what it provides (each provision a kind, a name and the settings it owns),
 * what it depends on, and an inversify `ContainerModule` holding only
 * bindings. Built-in plugins load through this same loader; there is no back door.
 */
import { ContainerModule, type interfaces } from 'inversify';
import { PodvisorError } from './errors.js';
import { pluginSettingDeclarationProblems, type PluginSetting } from './plugin-settings.js';
import { ConfigDriveBuilder, ImageSource, NetworkBackend, VmRuntime } from './ports.js';
import { parseSemver, parseSemverRange, satisfiesSemverRange } from './semver-range.js';

/** The plugin API version this core implements. A plugin states the versions it supports as a semver range (`apiRange`). */
export const PLUGIN_API_VERSION = '2.2.0';

/**
 * The kinds of plugin, each a port, and the port symbol a provision of that
 * kind binds with `.whenTargetNamed(provision.name)`:
 * - `network-backend`: `NetworkBackend`, chosen by `PODVISOR_NETWORK`;
 * - `image-source`: `ImageSource`, chosen by the URL scheme of the image (the name is the scheme, e.g. `https`);
 * - `config-drive`: `ConfigDriveBuilder`, chosen by `PODVISOR_CONFIGDRIVE` (the name is the format);
 * - `vm-runtime`: `VmRuntime`, chosen by `PODVISOR_VM_RUNTIME`.
 */
export const PLUGIN_KINDS = {
  'network-backend': NetworkBackend,
  'image-source': ImageSource,
  'config-drive': ConfigDriveBuilder,
  'vm-runtime': VmRuntime,
} as const;

export type PluginKind = keyof typeof PLUGIN_KINDS;

const KIND_NAMES = Object.keys(PLUGIN_KINDS) as PluginKind[];

/** The name under which a provision's resolved `PluginSettings` are bound: `image-source:s3`. */
export function pluginSettingsName(kind: PluginKind, name: string): string {
  return `${kind}:${name}`;
}

export interface PluginProvision {
  kind: PluginKind;
  /** The name users select it by: `nat-bridge` for `PODVISOR_NETWORK`, `https` for an image URL, `nocloud` for `PODVISOR_CONFIGDRIVE`. */
  name: string;
  /**
   * The settings this provision owns. They are resolved (and checked, with
   * podvisor's own settings) when the provision is selected; set while
   * another provision of the kind is selected, they are reported as ignored.
   */
  settings?: readonly PluginSetting[];
}

export interface PluginManifest {
  name: string;
  /** The plugin API versions it works with, a semver range such as `^2.0.0` (see semver-range.ts for the subset). */
  apiRange: string;
  provides: readonly PluginProvision[];
  /** Other plugins (by manifest name) that must be loaded too. */
  dependsOn?: readonly string[];
  /** Bindings only. A provision of kind K named N binds `PLUGIN_KINDS[K]` with `.whenTargetNamed(N)`. */
  module: ContainerModule;
}

export interface LoadedPlugin {
  manifest: PluginManifest;
  /** Where it was loaded from (module specifier or path). */
  from: string;
}

/** Setting names that belong to podvisor itself: a plugin may not declare them. */
export interface ReservedSettings {
  keys: readonly string[];
  env: readonly string[];
}

/** Checks a manifest's shape; returns the problems. */
export function manifestProblems(candidate: unknown): string[] {
  const problems: string[] = [];
  if (typeof candidate !== 'object' || candidate === null) return ['the default export is not an object (expected a PluginManifest)'];
  const m = candidate as Partial<PluginManifest> & { apiVersion?: unknown };
  if (typeof m.name !== 'string' || !/^(@[a-z0-9._-]+\/)?[a-z0-9][a-z0-9._-]*$/.test(m.name)) problems.push(`name: got ${JSON.stringify(m.name)}, expected a lower-case plugin name`);
  // A plugin written for API 1 declared `apiVersion: 1`; it is read as the range `1.x` and refused as incompatible, naming both versions.
  if (m.apiRange === undefined && typeof m.apiVersion === 'number') {
    // checked by PluginRegistry.add
  } else if (typeof m.apiRange !== 'string' || parseSemverRange(m.apiRange) === undefined) {
    problems.push(`apiRange: got ${JSON.stringify(m.apiRange)}, expected a semver range of plugin API versions such as "^${PLUGIN_API_VERSION}"`);
  }
  if (!Array.isArray(m.provides) || m.provides.length === 0) problems.push('provides: expected a non-empty list of {kind, name}');
  else
    for (const [i, p] of m.provides.entries()) {
      if (!KIND_NAMES.includes(p?.kind)) problems.push(`provides[${i}].kind: got ${JSON.stringify(p?.kind)}, expected ${KIND_NAMES.join(' | ')}`);
      if (typeof p?.name !== 'string' || !/^[a-z0-9][a-z0-9+._-]*$/.test(p.name)) problems.push(`provides[${i}].name: got ${JSON.stringify(p?.name)}, expected a lower-case name`);
      if (p?.settings !== undefined) {
        if (!Array.isArray(p.settings)) problems.push(`provides[${i}].settings: expected a list of setting declarations`);
        else {
          for (const [j, s] of p.settings.entries()) problems.push(...pluginSettingDeclarationProblems(s, `provides[${i}].settings[${j}]`));
          const names: unknown[] = p.settings.map((s: PluginSetting) => s?.name);
          for (const dup of names.filter((n, k) => names.indexOf(n) !== k)) problems.push(`provides[${i}].settings: ${JSON.stringify(dup)} is declared twice`);
        }
      }
    }
  if (m.dependsOn !== undefined && !(Array.isArray(m.dependsOn) && m.dependsOn.every((d) => typeof d === 'string'))) problems.push('dependsOn: expected a list of plugin names');
  if (!(m.module instanceof ContainerModule) && !isContainerModuleLike(m.module)) problems.push('module: expected an inversify ContainerModule');
  return problems;
}

function isContainerModuleLike(value: unknown): boolean {
  return typeof value === 'object' && value !== null && typeof (value as { registry?: unknown }).registry === 'function' && typeof (value as { id?: unknown }).id === 'number';
}

/**
 * Collects manifests, refusing bad shapes, incompatible API ranges,
 * duplicate names, duplicate provisions, settings that podvisor or another
 * kind of plugin owns, and missing dependencies. Throws `ERR_PLUGIN_*`
 * errors that name the plugin and where it came from.
 */
export class PluginRegistry {
  private readonly plugins = new Map<string, LoadedPlugin>();

  constructor(private readonly reserved: ReservedSettings = { keys: [], env: [] }) {}

  add(candidate: unknown, from: string): LoadedPlugin {
    const problems = manifestProblems(candidate);
    if (problems.length > 0) {
      throw new PodvisorError('ERR_PLUGIN_INVALID', `plugin from ${from} has an invalid manifest: ${problems.join('; ')}`, {
        hint: 'a plugin default-exports {name, apiRange, provides, module} (see PLUGINS.md)',
        details: { from, problems },
      });
    }
    const manifest = candidate as PluginManifest & { apiVersion?: number };
    const apiRange = manifest.apiRange ?? `${String(manifest.apiVersion)}.x`;
    if (!satisfiesSemverRange(parseSemver(PLUGIN_API_VERSION) as NonNullable<ReturnType<typeof parseSemver>>, parseSemverRange(apiRange) ?? [])) {
      throw new PodvisorError(
        'ERR_PLUGIN_INCOMPATIBLE',
        `plugin ${manifest.name} (from ${from}) supports plugin API ${apiRange}, but this podvisor implements plugin API ${PLUGIN_API_VERSION}`,
        { hint: `use a release of ${manifest.name} whose apiRange includes ${PLUGIN_API_VERSION}`, details: { from, apiRange, apiVersion: PLUGIN_API_VERSION } },
      );
    }
    const existing = this.plugins.get(manifest.name);
    if (existing !== undefined) {
      throw new PodvisorError('ERR_PLUGIN_DUPLICATE', `plugin ${manifest.name} is loaded twice: from ${existing.from} and from ${from}`, {
        hint: 'list each plugin once in PODVISOR_PLUGINS',
      });
    }
    for (const p of manifest.provides) {
      const clash = this.provider(p.kind, p.name);
      if (clash !== undefined) {
        throw new PodvisorError(
          'ERR_PLUGIN_DUPLICATE',
          `${p.kind} "${p.name}" is provided by both ${clash.manifest.name} (from ${clash.from}) and ${manifest.name} (from ${from})`,
          { hint: 'remove one of the two plugins' },
        );
      }
      for (const s of p.settings ?? []) this.checkSettingOwner(manifest, from, p, s);
    }
    const loaded = { manifest, from };
    this.plugins.set(manifest.name, loaded);
    return loaded;
  }

  /** A setting's key and variables belong to podvisor, or to provisions of the same kind (only one of them is selected at a time). */
  private checkSettingOwner(manifest: PluginManifest, from: string, p: PluginProvision, s: PluginSetting): void {
    const refuse = (what: string, owner: string): never => {
      throw new PodvisorError('ERR_PLUGIN_SETTING_CLASH', `plugin ${manifest.name} (from ${from}) declares the setting ${what}, which ${owner} owns`, {
        hint: 'give the setting its own YAML key and environment variable',
        details: { from, provision: `${p.kind}:${p.name}`, setting: s.name },
      });
    };
    if (this.reserved.keys.some((k) => k === s.key || s.key.startsWith(`${k}.`) || k.startsWith(`${s.key}.`))) refuse(`key ${s.key}`, 'podvisor');
    for (const e of s.env ?? []) if (this.reserved.env.includes(e)) refuse(`variable ${e}`, 'podvisor');
    for (const other of this.plugins.values()) {
      for (const q of other.manifest.provides) {
        if (q.kind === p.kind) continue;
        for (const t of q.settings ?? []) {
          if (t.key === s.key) refuse(`key ${s.key}`, `${q.kind} "${q.name}" of ${other.manifest.name}`);
          for (const e of s.env ?? []) if ((t.env ?? []).includes(e)) refuse(`variable ${e}`, `${q.kind} "${q.name}" of ${other.manifest.name}`);
        }
      }
    }
  }

  /** Throws `ERR_PLUGIN_DEPENDENCY` when a plugin depends on one that is not loaded. */
  checkDependencies(): void {
    for (const { manifest, from } of this.plugins.values()) {
      for (const dep of manifest.dependsOn ?? []) {
        if (!this.plugins.has(dep)) {
          throw new PodvisorError('ERR_PLUGIN_DEPENDENCY', `plugin ${manifest.name} (from ${from}) needs plugin ${dep}, which is not loaded`, {
            hint: `add ${dep} to PODVISOR_PLUGINS`,
          });
        }
      }
    }
  }

  provider(kind: PluginKind, name: string): LoadedPlugin | undefined {
    for (const p of this.plugins.values()) if (p.manifest.provides.some((x) => x.kind === kind && x.name === name)) return p;
    return undefined;
  }

  /** The provision of a kind by name, with its declared settings. */
  provision(kind: PluginKind, name: string): PluginProvision | undefined {
    return this.provisions(kind).find((x) => x.name === name);
  }

  /** Every provision of a kind, in load order. */
  provisions(kind: PluginKind): PluginProvision[] {
    return [...this.plugins.values()].flatMap((p) => p.manifest.provides.filter((x) => x.kind === kind));
  }

  /** The names available for a kind, for "unknown network X; available: ..." errors. */
  names(kind: PluginKind): string[] {
    return this.provisions(kind).map((x) => x.name).sort();
  }

  /**
   * The environment variables set in `env` that belong to other providers of
   * `kind` than the `selected` one(s) (the primary network backend and the
   * stacked ones), by provider name; a variable that a selected one reads too
   * is not listed.
   */
  settingsOfOthers(kind: PluginKind, selected: string | readonly string[], env: Readonly<Record<string, string | undefined>>): { usedBy: string; settings: string[] }[] {
    const chosen = new Set(typeof selected === 'string' ? [selected] : selected);
    const provisions = this.provisions(kind);
    const envOf = (p: PluginProvision): string[] => (p.settings ?? []).flatMap((s) => s.env ?? []);
    const own = new Set(provisions.filter((x) => chosen.has(x.name)).flatMap(envOf));
    return provisions
      .filter((x) => !chosen.has(x.name))
      .map((x) => ({ usedBy: x.name, settings: envOf(x).filter((s) => env[s] !== undefined && !own.has(s)) }))
      .filter((x) => x.settings.length > 0);
  }

  list(): LoadedPlugin[] {
    return [...this.plugins.values()];
  }

  /**
   * Loads every plugin's module into the container, then checks that each
   * provision is bound under its kind's port and its name. Throws
   * `ERR_PLUGIN_DEPENDENCY` or `ERR_PLUGIN_INVALID` (naming the binding that is missing).
   */
  loadInto(container: interfaces.Container): void {
    this.checkDependencies();
    for (const p of this.plugins.values()) container.load(p.manifest.module);
    for (const { manifest, from } of this.plugins.values()) {
      for (const p of manifest.provides) {
        if (!container.isBoundNamed(PLUGIN_KINDS[p.kind], p.name)) {
          throw new PodvisorError('ERR_PLUGIN_INVALID', `plugin ${manifest.name} (from ${from}) provides ${p.kind} "${p.name}" but its module binds no ${String(PLUGIN_KINDS[p.kind].description)} named "${p.name}"`, {
            hint: `bind it with .whenTargetNamed(${JSON.stringify(p.name)})`,
          });
        }
      }
    }
  }
}

/**
 * Imports each specifier (a package name or a path) and registers its default
 * export. Throws `ERR_PLUGIN_NOT_FOUND` for a module that cannot be imported.
 */
export async function loadPlugins(
  registry: PluginRegistry,
  specifiers: readonly string[],
  importer: (specifier: string) => Promise<unknown> = (s) => import(s),
): Promise<LoadedPlugin[]> {
  const loaded: LoadedPlugin[] = [];
  for (const spec of specifiers) {
    let mod: unknown;
    try {
      mod = await importer(spec);
    } catch (cause) {
      throw new PodvisorError('ERR_PLUGIN_NOT_FOUND', `cannot load plugin ${spec}: ${(cause as Error).message}`, {
        hint: 'install the plugin package, or give an absolute path to its entry file',
        cause,
      });
    }
    const manifest = (mod as { default?: unknown }).default ?? mod;
    loaded.push(registry.add(manifest, spec));
  }
  return loaded;
}
