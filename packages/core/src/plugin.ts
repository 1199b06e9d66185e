/**
 * The plugin API. A plugin is a package whose default export is a
 * `PluginManifest`: a name, the plugin API version it was written for, what it
 * provides, what it depends on, and an inversify `ContainerModule` holding only
 * bindings. Built-in plugins load through this same loader; there is no back door.
 */
import { ContainerModule, type interfaces } from 'inversify';
import { PodvisorError } from './errors.js';

/** The plugin API version this core implements. A plugin must name exactly this major. */
export const PLUGIN_API_VERSION = 1;

export type PluginKind = 'network-backend' | 'image-source' | 'config-drive';

export interface PluginProvision {
  kind: PluginKind;
  /** The name users select it by, e.g. `nat-bridge` for `PODVISOR_NETWORK`. */
  name: string;
  /**
   * The environment variables only this provision reads (e.g. `VM_IP` for
   * `nat-bridge`), so that the app can say when they are set while another
   * provision of the same kind is selected.
   */
  settings?: readonly string[];
}

export interface PluginManifest {
  name: string;
  apiVersion: number;
  provides: readonly PluginProvision[];
  /** Other plugins (by manifest name) that must be loaded too. */
  dependsOn?: readonly string[];
  /** Bindings only. A `network-backend` named N binds `NetworkBackend` with `.whenTargetNamed(N)`. */
  module: ContainerModule;
}

export interface LoadedPlugin {
  manifest: PluginManifest;
  /** Where it was loaded from (module specifier or path). */
  from: string;
}

/** Checks a manifest's shape; returns the problems. */
export function manifestProblems(candidate: unknown): string[] {
  const problems: string[] = [];
  if (typeof candidate !== 'object' || candidate === null) return ['the default export is not an object (expected a PluginManifest)'];
  const m = candidate as Partial<PluginManifest>;
  if (typeof m.name !== 'string' || !/^(@[a-z0-9._-]+\/)?[a-z0-9][a-z0-9._-]*$/.test(m.name)) problems.push(`name: got ${JSON.stringify(m.name)}, expected a lower-case plugin name`);
  if (typeof m.apiVersion !== 'number') problems.push(`apiVersion: got ${JSON.stringify(m.apiVersion)}, expected a number`);
  if (!Array.isArray(m.provides) || m.provides.length === 0) problems.push('provides: expected a non-empty list of {kind, name}');
  else
    for (const [i, p] of m.provides.entries()) {
      if (!['network-backend', 'image-source', 'config-drive'].includes(p?.kind)) problems.push(`provides[${i}].kind: got ${JSON.stringify(p?.kind)}, expected network-backend | image-source | config-drive`);
      if (typeof p?.name !== 'string' || p.name === '') problems.push(`provides[${i}].name: expected a non-empty string`);
      if (p?.settings !== undefined && !(Array.isArray(p.settings) && p.settings.every((x: unknown) => typeof x === 'string'))) problems.push(`provides[${i}].settings: expected a list of environment variable names`);
    }
  if (m.dependsOn !== undefined && !(Array.isArray(m.dependsOn) && m.dependsOn.every((d) => typeof d === 'string'))) problems.push('dependsOn: expected a list of plugin names');
  if (!(m.module instanceof ContainerModule) && !isContainerModuleLike(m.module)) problems.push('module: expected an inversify ContainerModule');
  return problems;
}

function isContainerModuleLike(value: unknown): boolean {
  return typeof value === 'object' && value !== null && typeof (value as { registry?: unknown }).registry === 'function' && typeof (value as { id?: unknown }).id === 'number';
}

/**
 * Collects manifests, refusing bad shapes, incompatible API versions,
 * duplicate names, duplicate provisions and missing dependencies. Throws
 * `ERR_PLUGIN_*` errors that name the plugin and where it came from.
 */
export class PluginRegistry {
  private readonly plugins = new Map<string, LoadedPlugin>();

  add(candidate: unknown, from: string): LoadedPlugin {
    const problems = manifestProblems(candidate);
    if (problems.length > 0) {
      throw new PodvisorError('ERR_PLUGIN_INVALID', `plugin from ${from} has an invalid manifest: ${problems.join('; ')}`, {
        hint: 'a plugin default-exports {name, apiVersion, provides, module}',
        details: { from, problems },
      });
    }
    const manifest = candidate as PluginManifest;
    if (manifest.apiVersion !== PLUGIN_API_VERSION) {
      throw new PodvisorError(
        'ERR_PLUGIN_INCOMPATIBLE',
        `plugin ${manifest.name} (from ${from}) targets plugin API ${manifest.apiVersion}, but this podvisor implements API ${PLUGIN_API_VERSION}`,
        { hint: `use a release of ${manifest.name} built for plugin API ${PLUGIN_API_VERSION}`, details: { from, apiVersion: manifest.apiVersion } },
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
    }
    const loaded = { manifest, from };
    this.plugins.set(manifest.name, loaded);
    return loaded;
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

  /** The names available for a kind, for "unknown network X; available: ..." errors. */
  names(kind: PluginKind): string[] {
    return [...this.plugins.values()].flatMap((p) => p.manifest.provides.filter((x) => x.kind === kind).map((x) => x.name)).sort();
  }

  /**
   * The settings (environment variables set in `env`) that belong to other
   * providers of `kind` than the `selected` one(s) (the primary network
   * backend and the stacked ones), by provider name; a setting that a
   * selected one reads too is not listed.
   */
  settingsOfOthers(kind: PluginKind, selected: string | readonly string[], env: Readonly<Record<string, string | undefined>>): { usedBy: string; settings: string[] }[] {
    const chosen = new Set(typeof selected === 'string' ? [selected] : selected);
    const provisions = [...this.plugins.values()].flatMap((p) => p.manifest.provides.filter((x) => x.kind === kind));
    const own = new Set(provisions.filter((x) => chosen.has(x.name)).flatMap((x) => x.settings ?? []));
    return provisions
      .filter((x) => !chosen.has(x.name))
      .map((x) => ({ usedBy: x.name, settings: (x.settings ?? []).filter((s) => env[s] !== undefined && !own.has(s)) }))
      .filter((x) => x.settings.length > 0);
  }

  list(): LoadedPlugin[] {
    return [...this.plugins.values()];
  }

  /** Loads every plugin's module into the container. */
  loadInto(container: interfaces.Container): void {
    this.checkDependencies();
    for (const p of this.plugins.values()) container.load(p.manifest.module);
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
