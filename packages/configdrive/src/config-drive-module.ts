/**
 * The package's bindings and its plugin manifest. `configDriveModule` binds
 * the `ConfigDriveBuilder` port to the genisoimage builder, once per
 * container; the builder needs `ProcessRunner` and `Logger` bound by the
 * composition root. The manifest lets the built-in drive load through the same
 * plugin loader as a third-party one.
 */
import { ContainerModule } from 'inversify';
import { ConfigDriveBuilder, PLUGIN_API_VERSION, type PluginManifest } from '@podvisor/core';
import { GenisoimageConfigDriveBuilder } from './genisoimage-config-drive-builder.js';

export const configDriveModule = new ContainerModule((bind) => {
  bind<ConfigDriveBuilder>(ConfigDriveBuilder).to(GenisoimageConfigDriveBuilder).inSingletonScope();
});

export const configDrivePlugin: PluginManifest = {
  name: 'configdrive',
  apiVersion: PLUGIN_API_VERSION,
  provides: [
    { kind: 'config-drive', name: 'config-2' },
    { kind: 'config-drive', name: 'nocloud' },
  ],
  module: configDriveModule,
};
