import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ExecaProcessRunner, SilentLogger } from '@podvisor/core';
import { DEFAULT_PROBE_TIMEOUT_MS, probeAccelerator, runFirmwareProbe } from './accel-probe.js';
import { QemuVmRuntime } from './qemu-vm-runtime.js';

let runner: ExecaProcessRunner;

beforeEach(() => {
  runner = new ExecaProcessRunner(new SilentLogger());
});

afterEach(async () => {
  const children = runner.children();
  for (const child of children) child.kill('SIGKILL');
  await Promise.all(children.map((c) => c.exited));
});

async function probeDirs(): Promise<string[]> {
  return (await readdir(tmpdir())).filter((n) => n.startsWith('podvisor-accel-probe-'));
}

describe('the accelerator probe with a real qemu', () => {
  it('proves itself under TCG: the firmware walks real, protected and long mode and qemu exits 85', async () => {
    const before = await probeDirs();
    // The firmware is what is tested, not how fast a loaded machine starts qemu: the bound is generous
    // (the default, 3 s, is for a KVM guest, and is not used under TCG).
    const outcome = await runFirmwareProbe(runner, 'tcg', { timeoutMs: 60_000 });
    expect(outcome).toMatchObject({ accel: 'tcg', works: true, markers: 'RPL' });
    expect(outcome.detail).toContain('ran real, protected and long mode code');
    expect(await probeDirs()).toEqual(before);
    console.info(`TCG firmware probe: ${outcome.durationMs} ms`);
  });

  it('tcg runs no probe', async () => {
    expect(await probeAccelerator(runner, 'tcg')).toEqual({ requested: 'tcg', selected: 'tcg', kvmWorks: false, probeMs: 0, detail: 'TCG requested, KVM not probed' });
  });

  it('auto falls back to TCG on this machine, whose nested KVM hangs guests (or has no /dev/kvm)', async () => {
    const result = await probeAccelerator(runner, 'auto');
    expect(result).toMatchObject({ requested: 'auto', selected: 'tcg', kvmWorks: false });
    if (existsSync('/dev/kvm')) {
      // FACTS: /dev/kvm opens, but the guest spins; the firmware gets through real mode and no further
      // (on a loaded machine, qemu may not have run any guest code yet when the bound runs out).
      expect(result.detail).toMatch(new RegExp(`^the kvm guest hung: no exit within ${DEFAULT_PROBE_TIMEOUT_MS} ms; it (reached real mode, then stopped|ran no guest code)$`));
      expect(result.probeMs).toBeGreaterThanOrEqual(DEFAULT_PROBE_TIMEOUT_MS);
    } else {
      expect(result.detail).toBe('/dev/kvm is missing');
    }
    expect(runner.children()).toEqual([]);
    console.info(`auto probe: ${result.probeMs} ms, ${result.detail}`);
  });

  it('kvm throws ERR_ACCEL_KVM_UNAVAILABLE on this machine, whose nested KVM hangs guests (or has no /dev/kvm), with a bounded wait', async () => {
    const runtime = new QemuVmRuntime(runner, new SilentLogger());
    const started = performance.now();
    const err = await runtime.probeAccelerator('kvm', { timeoutMs: 500 }).catch((e: unknown) => e);
    const ms = performance.now() - started;
    expect(err).toMatchObject({ code: 'ERR_ACCEL_KVM_UNAVAILABLE' });
    expect((err as { hint: string }).hint).toContain('PODVISOR_ACCEL=tcg');
    expect((err as Error).message).toMatch(/no exit within 500 ms|missing/);
    // The message names the bound given. The whole call also starts and kills qemu, which takes
    // seconds on a loaded machine: its time is only checked to be bounded, generously.
    expect(ms).toBeLessThan(30_000);
    console.info(`kvm probe with a 500 ms bound: ${Math.round(ms)} ms`);
  });

  it('kvm names a missing KVM device without starting qemu', async () => {
    const err = await probeAccelerator(runner, 'kvm', { kvmDevice: '/nonexistent/kvm' }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ERR_ACCEL_KVM_UNAVAILABLE', message: 'KVM was requested but does not work: /nonexistent/kvm is missing' });
  });
});
