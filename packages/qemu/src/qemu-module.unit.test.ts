import { Container } from 'inversify';
import { describe, expect, it } from 'vitest';
import { ExecaProcessRunner, Logger, ProcessRunner, SilentLogger, VmRuntime } from '@podvisor/core';
import { qemuModule } from './qemu-module.js';
import { QemuRuntimeSettings, QemuVmRuntime } from './qemu-vm-runtime.js';

function container(): Container {
  const c = new Container();
  c.bind(Logger).toConstantValue(new SilentLogger());
  c.bind(ProcessRunner).toConstantValue(new ExecaProcessRunner(new SilentLogger()));
  c.load(qemuModule);
  return c;
}

describe('qemuModule', () => {
  it('binds VmRuntime to one QemuVmRuntime, with or without settings bound', async () => {
    const c = container();
    const runtime = c.getNamed<VmRuntime>(VmRuntime, 'qemu');
    expect(runtime).toBeInstanceOf(QemuVmRuntime);
    expect(c.getNamed<VmRuntime>(VmRuntime, 'qemu')).toBe(runtime);
    expect(c.get(QemuVmRuntime)).toBe(runtime);

    const withSettings = container();
    withSettings.bind<QemuRuntimeSettings>(QemuRuntimeSettings).toConstantValue({ qemuBinary: '/nonexistent/qemu-system-x86_64' });
    const configured = withSettings.getNamed<VmRuntime>(VmRuntime, 'qemu');
    // The bound binary is the one launched: a missing one fails before anything else happens.
    await expect(
      configured.launch({
        name: 'vm',
        uuid: '0f8fad5b-d9cb-469f-a165-70867728950e',
        accel: 'tcg',
        vcpus: 1,
        memoryMb: 64,
        disk: { path: '/nonexistent/disk.qcow2', format: 'qcow2' },
        cdrom: null,
        nics: [],
        vnc: null,
        qmpSocket: '/nonexistent/qmp.sock',
        extraArgs: [],
        pidFile: '/nonexistent/qemu.pid',
      }),
    ).rejects.toMatchObject({ code: 'ERR_PROCESS_NOT_FOUND', message: expect.stringContaining('/nonexistent/qemu-system-x86_64') });
  });
});
