/**
 * NO_VNC's meaning is decided once, by podvisor, and handed to the network
 * backend: for every value, what qemu listens on and what the NAT bridge
 * forwards to the VM agree. Port 5900 is either qemu's VNC (and kept out of
 * the DNAT), or the VM's (forwarded like any port, and qemu serves no VNC).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { vncListen, type PluginRegistry, type VmLaunchPlan } from '@podvisor/core';
import { natExclusions, natVncListen, natVncPort } from '@podvisor/net-nat-bridge';
import { buildQemuArgv } from '@podvisor/qemu';
import { buildAppContainer } from './app-container.js';
import { resolveConfig, vncOf } from './config/load-config.js';

let registry: PluginRegistry;
beforeAll(async () => {
  ({ registry } = await buildAppContainer({ logLevel: 'error', imagesDir: '/nonexistent', maxVirtualSizeBytes: 1, plugins: [], logSink: { write: () => true } }));
});

const plan = (vnc: VmLaunchPlan['vnc']): VmLaunchPlan => ({
  name: 'vm',
  accel: 'tcg',
  vcpus: 1,
  memoryMb: 512,
  disk: { path: '/d/vm.qcow2', format: 'qcow2' },
  cdrom: null,
  nics: [],
  vnc,
  qmpSocket: '/s/qmp.sock',
  extraArgs: [],
  pidFile: '/s/qemu.pid',
});

/** What qemu's argv says about VNC: the -vnc value, or null for none. */
function qemuVnc(argv: readonly string[]): string | null {
  const i = argv.indexOf('-vnc');
  return i === -1 ? null : (argv[i + 1] ?? null);
}

// [NO_VNC as given (undefined: unset), VNC on?]
const table: Array<[string | undefined, boolean]> = [
  [undefined, true],
  ['', true],
  ['0', true],
  ['false', true],
  ['FALSE', true],
  ['no', true],
  ['off', true],
  ['1', false],
  ['true', false],
  ['yes', false],
  ['on', false],
  ['anything', false],
];

describe('NO_VNC: what qemu listens on and what the NAT bridge forwards agree', () => {
  it.each(table)('NO_VNC=%j: VNC on is %s', (value, on) => {
    const config = resolveConfig(
      { yaml: null, env: { IMG_SOURCE: '/i/base.qcow2', ...(value === undefined ? {} : { NO_VNC: value }) }, flags: {}, extraArgs: [], hostname: 'vm', exists: () => true },
      registry,
    );
    const vnc = vncOf(config);
    // The NAT bridge: the ports kept out of the DNAT to the VM, and where it has qemu listen.
    const kept = natExclusions({ vncPort: natVncPort(vnc), controlPort: 5800, extra: [] });
    const forwards5900 = !kept.some((e) => e.proto === 'tcp' && e.port === 5900);
    // qemu: the launch plan the supervisor makes from the same settings and the attachment, and its argv.
    const listen = qemuVnc(buildQemuArgv(plan(vncListen(vnc, { vnc: natVncListen(vnc) })), { vncPassword: true }).argv);

    expect({ qemu: listen, forwards5900 }).toEqual(on ? { qemu: '0.0.0.0:0,password=on', forwards5900: false } : { qemu: null, forwards5900: true });
    // Without a network backend (PODVISOR_NETWORK=none) qemu decides the same way.
    expect(qemuVnc(buildQemuArgv(plan(vncListen(vnc, null))).argv)).toBe(on ? '0.0.0.0:0' : null);
  });
});
