/**
 * The inversify bindings of @podvisor/qemu: `VmRuntime` is `QemuVmRuntime`,
 * one per container. Bindings only; `QemuRuntimeSettings` is optional and
 * bound by the composition root when it changes a default.
 */
import { ContainerModule } from 'inversify';
import { VmRuntime } from '@podvisor/core';
import { QemuVmRuntime } from './qemu-vm-runtime.js';

export const qemuModule = new ContainerModule((bind) => {
  bind(QemuVmRuntime).toSelf().inSingletonScope();
  bind(VmRuntime).toService(QemuVmRuntime);
});
