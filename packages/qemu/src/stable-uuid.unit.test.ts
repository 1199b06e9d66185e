import { describe, expect, it } from 'vitest';
import type { VmLaunchPlan } from '@podvisor/core';
import { buildQemuArgv } from './build-qemu-argv.js';
import { stableUuid } from './stable-uuid.js';

describe('stableUuid', () => {
  it('is the same for the same name, different for another, and shaped like an RFC 4122 version 5 UUID', () => {
    expect(stableUuid('web-0')).toBe(stableUuid('web-0'));
    expect(stableUuid('web-0')).not.toBe(stableUuid('web-1'));
    expect(stableUuid('web-0')).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });

  it('is what qemu gets when the plan names no uuid', () => {
    const plan: VmLaunchPlan = {
      name: 'web-0',
      accel: 'tcg',
      vcpus: 1,
      memoryMb: 512,
      disk: { path: '/d/web-0.qcow2', format: 'qcow2' },
      cdrom: null,
      nics: [],
      vnc: null,
      qmpSocket: '/run/qmp.sock',
      extraArgs: [],
      pidFile: '/run/qemu.pid',
    };
    const { argv } = buildQemuArgv(plan);
    expect(argv[argv.indexOf('-uuid') + 1]).toBe(stableUuid('web-0'));
  });
});
