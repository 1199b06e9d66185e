/**
 * The composition root's container: the only place that binds the ports to
 * their implementations. Every port implementation comes from a plugin (the
 * built-in ones and those in PODVISOR_PLUGINS, through the same loader);
 * this binds what podvisor itself owns (logger, clock, process runner, the
 * image store's settings) and the image-source catalog built from the
 * registry.
 */
import 'reflect-metadata';
import { Container } from 'inversify';
import {
  Clock,
  ExecaProcessRunner,
  ImageSource,
  ImageSourceCatalog,
  JsonLogger,
  Logger,
  PluginRegistry,
  ProcessRunner,
  SystemClock,
  loadPlugins,
  type LogLevel,
} from '@podvisor/core';
import { HttpImageSourceSettings, ImageStoreSettings } from '@podvisor/image-store';
import { BUILT_IN_PLUGINS } from './built-in-plugins.js';
import { FIELDS, REMOVED_SETTINGS } from './config/config-fields.js';

/**
 * Imports a third-party plugin. In the shipped binary the bundle runs through
 * vm.Script, where import() is unavailable, and the launcher provides this.
 */
function importModule(specifier: string): Promise<unknown> {
  const fromLauncher = (globalThis as Record<symbol, unknown>)[Symbol.for('podvisor.import')];
  return typeof fromLauncher === 'function' ? (fromLauncher as (s: string) => Promise<unknown>)(specifier) : import(specifier);
}

export interface AppContainerOptions {
  logLevel: LogLevel;
  imagesDir: string;
  maxVirtualSizeBytes: number;
  /** IMG_FORMAT=raw: a base that is no qcow2 may be a raw disk. */
  allowRawImage?: boolean;
  /** HTTP pull timeouts and attempts; the package defaults when absent. */
  http?: Partial<HttpImageSourceSettings>;
  /** How often a pull reports progress (`podvisor image pull` draws a bar); the store's default when absent. */
  progressIntervalMs?: number;
  /** The longest wait for another process pulling the same name; the store's default when absent. */
  lockMaxWaitMs?: number;
  /** Extra plugin module specifiers (PODVISOR_PLUGINS). */
  plugins: readonly string[];
  logSink?: { write(line: string): unknown };
}

export interface AppContainer {
  container: Container;
  registry: PluginRegistry;
}

/** Builds the container. Throws `ERR_PLUGIN_*` for plugins that cannot load. */
export async function buildAppContainer(options: AppContainerOptions): Promise<AppContainer> {
  const container = new Container({ defaultScope: 'Singleton' });
  const log = new JsonLogger(options.logSink ?? process.stderr, 'podvisor', options.logLevel);
  container.bind<Logger>(Logger).toConstantValue(log);
  container.bind<Clock>(Clock).toConstantValue(new SystemClock());
  container.bind<ProcessRunner>(ProcessRunner).toConstantValue(new ExecaProcessRunner(log.child({ name: 'ProcessRunner' })));
  container.bind(ImageStoreSettings).toConstantValue({
    imagesDir: options.imagesDir,
    maxVirtualSizeBytes: options.maxVirtualSizeBytes,
    allowRaw: options.allowRawImage === true,
    ...(options.progressIntervalMs === undefined ? {} : { progressIntervalMs: options.progressIntervalMs }),
    ...(options.lockMaxWaitMs === undefined ? {} : { lock: { maxWaitMs: options.lockMaxWaitMs } }),
  });
  container.bind(HttpImageSourceSettings).toConstantValue(options.http ?? {});
  // podvisor's own settings are not a plugin's to declare.
  // The section under network.extra is the stacked network backends', each under its own name (network.extra.l2-segment.peers).
  const registry = new PluginRegistry({
    keys: [...Object.values(FIELDS).filter((f) => f.key !== FIELDS.networkExtra.key).map((f) => f.key), ...REMOVED_SETTINGS.map((r) => r.key)],
    env: [...Object.values(FIELDS).flatMap((f) => f.env ?? []), ...REMOVED_SETTINGS.flatMap((r) => (r.env === undefined ? [] : [r.env]))],
  });
  await loadPlugins(registry, [...Object.keys(BUILT_IN_PLUGINS), ...options.plugins], (specifier) => BUILT_IN_PLUGINS[specifier]?.() ?? importModule(specifier));
  registry.loadInto(container);
  // The image store finds a URI's source through the registry: every image-source provision, by scheme.
  container.bind<ImageSourceCatalog>(ImageSourceCatalog).toDynamicValue((ctx) => {
    const schemes = registry.names('image-source');
    return { schemes, forScheme: (scheme) => (schemes.includes(scheme) ? ctx.container.getNamed<ImageSource>(ImageSource, scheme) : undefined) };
  });
  return { container, registry };
}
