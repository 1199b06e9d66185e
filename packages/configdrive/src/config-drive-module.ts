/**
 * The package's bindings and its plugin manifest. `configDriveModule` binds
 * the `ConfigDriveBuilder` port, named after each format (`config-2`,
 * `nocloud`), to one genisoimage builder per container; the builder needs `ProcessRunner` and `Logger` bound by the
 * composition root. The manifest lets the built-in drive load through the same
 * plugin loader as a third-party one.
 */
import { ContainerModule } from 'inversify';
import { ConfigDriveBuilder, PLUGIN_API_VERSION, type PluginManifest } from '@podvisor/core';
import { CONFIG_DRIVE_FORMATS } from './config-drive-layout.js';
import { GenisoimageConfigDriveBuilder } from './genisoimage-config-drive-builder.js';

export const configDriveModule = new ContainerModule((bind) => {
  bind(GenisoimageConfigDriveBuilder).toSelf().inSingletonScope();
  for (const format of CONFIG_DRIVE_FORMATS) {
    bind<ConfigDriveBuilder>(ConfigDriveBuilder).toDynamicValue((ctx) => ctx.container.get(GenisoimageConfigDriveBuilder)).whenTargetNamed(format);
  }
});

export const configDrivePlugin: PluginManifest = {
  name: '@podvisor/configdrive',
  apiRange: `^${PLUGIN_API_VERSION}`,
  provides: CONFIG_DRIVE_FORMATS.map((name) => ({ kind: 'config-drive' as const, name })),
  module: configDriveModule,
};
