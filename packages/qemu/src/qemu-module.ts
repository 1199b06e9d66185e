/**
 * The inversify bindings of @podvisor/qemu and its plugin manifest: the
 * `vm-runtime` named `qemu` is `QemuVmRuntime`, one per container. Bindings
 * only; `QemuRuntimeSettings` is optional and bound by the composition root
 * when it changes a default. The runtime loads through the same plugin loader
 * as a third-party one.
 */
import { ContainerModule } from 'inversify';
import { PLUGIN_API_VERSION, VmRuntime, type PluginManifest } from '@podvisor/core';
import { QemuVmRuntime } from './qemu-vm-runtime.js';

export const qemuModule = new ContainerModule((bind) => {
  bind(QemuVmRuntime).toSelf().inSingletonScope();
  bind<VmRuntime>(VmRuntime).toDynamicValue((ctx) => ctx.container.get(QemuVmRuntime)).whenTargetNamed('qemu');
});

export const qemuPlugin: PluginManifest = {
  name: '@podvisor/qemu',
  apiRange: `^${PLUGIN_API_VERSION}`,
  provides: [{ kind: 'vm-runtime', name: 'qemu' }],
  module: qemuModule,
};
