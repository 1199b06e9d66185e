import { describe, expect, it } from 'vitest';
import type { PodvisorError, VmLaunchPlan } from '@podvisor/core';
import { buildQemuArgv } from './build-qemu-argv.js';

const base: VmLaunchPlan = {
  name: 'web-0',
  uuid: '0f8fad5b-d9cb-469f-a165-70867728950e',
  accel: 'tcg',
  vcpus: 1,
  memoryMb: 512,
  disk: { path: '/var/lib/podvisor/disk/web-0.qcow2', format: 'qcow2' },
  cdrom: null,
  nics: [],
  vnc: null,
  qmpSocket: '/run/podvisor/qmp.sock',
  extraArgs: [],
  pidFile: '/run/podvisor/qemu.pid',
};

const tail = [
  '-chardev', 'socket,id=qmp,path=/run/podvisor/qmp.sock,server=on,wait=off',
  '-mon', 'chardev=qmp,mode=control',
  '-chardev', 'stdio,id=serial0,signal=off',
  '-serial', 'chardev:serial0',
  '-pidfile', '/run/podvisor/qemu.pid',
];

describe('buildQemuArgv', () => {
  it('builds a TCG VM with only a disk, no display and no NICs', () => {
    expect(buildQemuArgv(base)).toEqual({
      argv: [
        '-nodefaults', '-no-user-config',
        '-name', 'guest=web-0,debug-threads=on',
        '-uuid', '0f8fad5b-d9cb-469f-a165-70867728950e',
        '-machine', 'q35,accel=tcg',
        '-cpu', 'max',
        '-smp', '1',
        '-m', '512',
        '-S',
        '-blockdev', 'driver=file,node-name=pet-file,filename=/var/lib/podvisor/disk/web-0.qcow2',
        '-blockdev', 'driver=qcow2,node-name=pet,file=pet-file',
        '-device', 'virtio-blk-pci,drive=pet,id=pet-disk,bootindex=1',
        '-display', 'none',
        ...tail,
      ],
      passFds: [],
    });
  });

  it('builds a KVM VM with a config drive, every NIC kind in order, VNC on TCP, and extra args last', () => {
    const { argv, passFds } = buildQemuArgv({
      ...base,
      accel: 'kvm',
      vcpus: 2,
      memoryMb: 2048,
      disk: { path: '/d/raw.img', format: 'raw' },
      cdrom: '/state/config-2.iso',
      nics: [
        { id: 'net0', mac: '52:54:00:00:00:01', backend: { kind: 'tap', ifname: 'tap0' }, addresses: [] },
        { id: 'net1', mac: '52:54:00:00:00:02', backend: { kind: 'tap-fd', fd: 17, vhostFd: 18 }, addresses: [] },
        { id: 'net2', mac: '52:54:00:00:00:03', backend: { kind: 'tap-fd', fd: 21 }, addresses: [] },
        { id: 'net3', mac: '52:54:00:00:00:04', backend: { kind: 'user' }, addresses: [], mtu: 1370 },
        { id: 'net4', mac: '52:54:00:00:00:05', backend: { kind: 'stream', path: '/state/passt,0.sock' }, addresses: [], mtu: 1500 },
      ],
      vnc: { kind: 'tcp', host: '0.0.0.0', display: 0 },
      extraArgs: ['-cpu', 'EPYC', '-device', 'virtio-rng-pci'],
    });
    expect(passFds).toEqual([17, 18, 21]);
    expect(argv).toEqual([
      '-nodefaults', '-no-user-config',
      '-name', 'guest=web-0,debug-threads=on',
      '-uuid', '0f8fad5b-d9cb-469f-a165-70867728950e',
      '-machine', 'q35,accel=kvm',
      '-smp', '2',
      '-m', '2048',
      '-S',
      '-blockdev', 'driver=file,node-name=pet-file,filename=/d/raw.img',
      '-blockdev', 'driver=raw,node-name=pet,file=pet-file',
      '-device', 'virtio-blk-pci,drive=pet,id=pet-disk,bootindex=1',
      '-blockdev', 'driver=file,node-name=cdrom-file,filename=/state/config-2.iso,read-only=on',
      '-blockdev', 'driver=raw,node-name=cdrom,file=cdrom-file,read-only=on',
      '-device', 'ide-cd,drive=cdrom,id=cdrom-dev,bus=ide.0',
      '-netdev', 'tap,id=net0,ifname=tap0,script=no,downscript=no',
      '-device', 'virtio-net-pci,netdev=net0,mac=52:54:00:00:00:01,id=net0-dev',
      '-netdev', 'tap,id=net1,fd=3,vhost=on,vhostfd=4',
      '-device', 'virtio-net-pci,netdev=net1,mac=52:54:00:00:00:02,id=net1-dev',
      '-netdev', 'tap,id=net2,fd=5',
      '-device', 'virtio-net-pci,netdev=net2,mac=52:54:00:00:00:03,id=net2-dev',
      '-netdev', 'user,id=net3',
      '-device', 'virtio-net-pci,netdev=net3,mac=52:54:00:00:00:04,id=net3-dev,host_mtu=1370',
      '-netdev', 'stream,id=net4,server=off,addr.type=unix,addr.path=/state/passt,,0.sock',
      '-device', 'virtio-net-pci,netdev=net4,mac=52:54:00:00:00:05,id=net4-dev,host_mtu=1500',
      '-vnc', '0.0.0.0:0',
      '-device', 'VGA',
      ...tail,
      '-cpu', 'EPYC', '-device', 'virtio-rng-pci',
    ]);
  });

  it('puts VNC on a unix socket, brackets IPv6 hosts, and doubles commas in option values', () => {
    const unix = buildQemuArgv({ ...base, name: 'a,b', disk: { path: '/d/x,y.qcow2', format: 'qcow2' }, vnc: { kind: 'unix', path: '/run/vnc,1.sock' } }).argv;
    expect(unix).toContain('guest=a,,b,debug-threads=on');
    expect(unix).toContain('driver=file,node-name=pet-file,filename=/d/x,,y.qcow2');
    expect(unix.slice(unix.indexOf('-vnc'), unix.indexOf('-vnc') + 4)).toEqual(['-vnc', 'unix:/run/vnc,,1.sock', '-device', 'VGA']);
    expect(unix).not.toContain('-display');
    const locked = buildQemuArgv({ ...base, vnc: { kind: 'tcp', host: '0.0.0.0', display: 0 } }, { vncPassword: true }).argv;
    expect(locked[locked.indexOf('-vnc') + 1]).toBe('0.0.0.0:0,password=on');
    const v6 = buildQemuArgv({ ...base, vnc: { kind: 'tcp', host: '::', display: 3 } }).argv;
    expect(v6[v6.indexOf('-vnc') + 1]).toBe('[::]:3');
  });

  it('numbers passed fds from firstPassedFd', () => {
    const { argv, passFds } = buildQemuArgv(
      { ...base, nics: [{ id: 'net0', mac: '52:54:00:00:00:01', backend: { kind: 'tap-fd', fd: 9 }, addresses: [] }] },
      { firstPassedFd: 10 },
    );
    expect(passFds).toEqual([9]);
    expect(argv).toContain('tap,id=net0,fd=10');
  });

  it('never adds -no-reboot or -no-shutdown: a guest reboot stays a reboot and a power-off ends qemu', () => {
    const { argv } = buildQemuArgv(base);
    expect(argv).not.toContain('-no-reboot');
    expect(argv).not.toContain('-no-shutdown');
  });

  it('rejects an invalid plan with ERR_QEMU_PLAN_INVALID naming every bad field', () => {
    let caught: PodvisorError | undefined;
    try {
      buildQemuArgv({
        ...base,
        uuid: 'nope',
        vcpus: 0,
        memoryMb: 8,
        nics: [
          { id: 'net0', mac: 'zz', backend: { kind: 'tap-fd', fd: -1 }, addresses: [] },
          { id: 'net0', mac: '52:54:00:00:00:02', backend: { kind: 'user' }, addresses: [], mtu: 20 },
          { id: 'net2', mac: '52:54:00:00:00:03', backend: { kind: 'stream', path: '' }, addresses: [] },
        ],
        qmpSocket: `/${'x'.repeat(120)}`,
      });
    } catch (err) {
      caught = err as PodvisorError;
    }
    expect(caught?.code).toBe('ERR_QEMU_PLAN_INVALID');
    const fields = (caught?.details?.problems as Array<{ path: string }>).map((p) => p.path);
    expect(fields).toEqual(['plan.uuid', 'plan.vcpus', 'plan.memoryMb', 'plan.nics[0].mac', 'plan.nics[0].backend.fd', 'plan.nics[1].id', 'plan.nics[1].mtu', 'plan.nics[2].backend.path', 'plan.qmpSocket']);
    expect(caught?.message).toContain('plan.vcpus: got 0, expected an integer from 1 to 255');
    expect(caught?.message).toContain('plan.memoryMb: got 8');
  });
});
