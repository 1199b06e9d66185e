/**
 * podvisor-net-passt: the `passt` network backend as a podvisor plugin, built
 * outside podvisor's workspace against its published packages. The default
 * export is the plugin manifest; load it with
 * `PODVISOR_PLUGINS=podvisor-net-passt` and select it with
 * `PODVISOR_NETWORK=passt`.
 */
import { ContainerModule } from 'inversify';
import { NetworkBackend, type PluginManifest } from '@podvisor/core';
import { PASST_SETTINGS } from './passt-config.js';
import { PasstNetworkBackend } from './passt-network-backend.js';

export { PasstNetworkBackend, PASST_PRIVILEGE_DROP_CAPABILITIES, passtStatePaths, passtUser, nobodyIds, openFilesLimit } from './passt-network-backend.js';
export { PASST_SETTINGS, parsePasstPorts, resolvePasstConfig, passtPortSpec, passtPortCount, buildPasstArgs } from './passt-config.js';
export type { PasstConfig, PasstPorts, PasstArgsParams } from './passt-config.js';

/** The `passt` network backend, bound by name. Bindings only. */
export const passtModule = new ContainerModule((bind) => {
  bind<NetworkBackend>(NetworkBackend).to(PasstNetworkBackend).inSingletonScope().whenTargetNamed('passt');
});

const manifest: PluginManifest = {
  name: 'podvisor-net-passt',
  // The plugin API versions this plugin works with (written down, not the host's constant: the loader compares the two).
  apiRange: '^2.0.0',
  provides: [{ kind: 'network-backend', name: 'passt', settings: PASST_SETTINGS }],
  module: passtModule,
};

export default manifest;
