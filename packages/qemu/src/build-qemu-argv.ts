/**
 * The qemu command line for a `VmLaunchPlan`, pure: a q35 machine with no
 * default devices, started paused (`-S`) so that QMP is connected before the
 * guest runs, the pet disk on virtio-blk, the config drive as a read-only AHCI
 * cdrom, the NICs in plan order, VNC or no display, QMP on a unix socket, the
 * serial console on qemu's stdio, then the plan's extra arguments as given.
 * A plan is validated first, and every problem is reported at once.
 */
import { PodvisorError, type ConfigProblem, type VmLaunchPlan, type VmNic } from '@podvisor/core';
import { stableUuid } from './stable-uuid.js';

export interface QemuArgvOptions {
  /** The child fd number of the first passed descriptor. Default 3, as `ProcessRunner` passes `extraFds`. */
  firstPassedFd?: number;
  /** VNC asks for a password (`password=on`); it is set over QMP with `change-vnc-password`. Default false. */
  vncPassword?: boolean;
}

export interface QemuArgv {
  /** The arguments, without the binary. */
  argv: string[];
  /** Host fds to pass to qemu, in order: the child sees them as 3, 4, ... */
  passFds: number[];
}

/**
 * Builds the argv. Throws `PodvisorError('ERR_QEMU_PLAN_INVALID')` naming
 * every invalid field (`details.problems`). Changes nothing.
 *
 * The CPU model: `-cpu max` under TCG. Under KVM no `-cpu` is given, so qemu's
 * default model is used: it is the model the accelerator probe ran, while
 * `-cpu host` aborts on hosts with broken nested virtualisation (FACTS: MSR
 * 0x10a). A `-cpu` in `extraArgs` overrides it, since qemu takes the last one.
 */
export function buildQemuArgv(plan: VmLaunchPlan, options: QemuArgvOptions = {}): QemuArgv {
  const problems = planProblems(plan);
  if (problems.length > 0) {
    const lines = problems.map((p) => `${p.path}: got ${JSON.stringify(p.value) ?? String(p.value)}, expected ${p.expected}`);
    throw new PodvisorError('ERR_QEMU_PLAN_INVALID', `invalid VM launch plan for ${plan.name || '(unnamed)'}: ${lines.join('; ')}`, {
      hint: 'the launch plan is built by the supervisor from the configuration; fix the listed fields',
      details: { problems },
    });
  }
  const argv: string[] = [
    '-nodefaults',
    '-no-user-config',
    '-name', `guest=${esc(plan.name)},debug-threads=on`,
    '-uuid', plan.uuid ?? stableUuid(plan.name),
    '-machine', `q35,accel=${plan.accel}`,
    ...(plan.accel === 'tcg' ? ['-cpu', 'max'] : []),
    '-smp', String(plan.vcpus),
    '-m', String(plan.memoryMb),
    '-S',
    '-blockdev', `driver=file,node-name=pet-file,filename=${esc(plan.disk.path)}`,
    '-blockdev', `driver=${plan.disk.format},node-name=pet,file=pet-file`,
    '-device', 'virtio-blk-pci,drive=pet,id=pet-disk,bootindex=1',
  ];
  if (plan.cdrom !== null) {
    argv.push(
      '-blockdev', `driver=file,node-name=cdrom-file,filename=${esc(plan.cdrom)},read-only=on`,
      '-blockdev', 'driver=raw,node-name=cdrom,file=cdrom-file,read-only=on',
      // q35's built-in ICH9 AHCI controller has six ports, ide.0 to ide.5.
      '-device', 'ide-cd,drive=cdrom,id=cdrom-dev,bus=ide.0',
    );
  }
  const passFds: number[] = [];
  const firstFd = options.firstPassedFd ?? 3;
  const passFd = (fd: number): number => passFds.push(fd) - 1 + firstFd;
  for (const nic of plan.nics) {
    argv.push('-netdev', netdev(nic, passFd), '-device', `virtio-net-pci,netdev=${nic.id},mac=${nic.mac},id=${nic.id}-dev${nic.mtu === undefined ? '' : `,host_mtu=${nic.mtu}`}`);
  }
  if (plan.vnc === null) argv.push('-display', 'none');
  else {
    const where = plan.vnc.kind === 'unix' ? `unix:${esc(plan.vnc.path)}` : `${hostPart(plan.vnc.host)}:${plan.vnc.display}`;
    argv.push('-vnc', options.vncPassword === true ? `${where},password=on` : where, '-device', 'VGA');
  }
  argv.push(
    '-chardev', `socket,id=qmp,path=${esc(plan.qmpSocket)},server=on,wait=off`,
    '-mon', 'chardev=qmp,mode=control',
    // The serial console is qemu's stdio; signal=off keeps a ^C on it from killing qemu.
    '-chardev', 'stdio,id=serial0,signal=off',
    '-serial', 'chardev:serial0',
    '-pidfile', plan.pidFile,
    ...plan.extraArgs,
  );
  return { argv, passFds };
}

function netdev(nic: VmNic, passFd: (fd: number) => number): string {
  const backend = nic.backend;
  switch (backend.kind) {
    case 'tap':
      return `tap,id=${nic.id},ifname=${esc(backend.ifname)},script=no,downscript=no`;
    case 'tap-fd': {
      const fd = passFd(backend.fd);
      return backend.vhostFd === undefined ? `tap,id=${nic.id},fd=${fd}` : `tap,id=${nic.id},fd=${fd},vhost=on,vhostfd=${passFd(backend.vhostFd)}`;
    }
    case 'stream':
      return `stream,id=${nic.id},server=off,addr.type=unix,addr.path=${esc(backend.path)}`;
    case 'user':
      return `user,id=${nic.id}`;
    default:
      return assertNever(backend);
  }
}

/** Every problem of a plan, each naming its field. */
export function planProblems(plan: VmLaunchPlan): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const check = (ok: boolean, path: string, value: unknown, expected: string): void => {
    if (!ok) problems.push({ path, value, expected });
  };
  check(typeof plan.name === 'string' && plan.name !== '', 'plan.name', plan.name, 'a non-empty VM name');
  check(plan.uuid === undefined || (typeof plan.uuid === 'string' && UUID.test(plan.uuid)), 'plan.uuid', plan.uuid, 'a UUID (8-4-4-4-12 hex digits)');
  check(plan.accel === 'kvm' || plan.accel === 'tcg', 'plan.accel', plan.accel, 'kvm | tcg');
  check(Number.isInteger(plan.vcpus) && plan.vcpus >= 1 && plan.vcpus <= 255, 'plan.vcpus', plan.vcpus, 'an integer from 1 to 255');
  check(Number.isInteger(plan.memoryMb) && plan.memoryMb >= 16, 'plan.memoryMb', plan.memoryMb, 'an integer of at least 16 (MiB)');
  check(typeof plan.disk?.path === 'string' && plan.disk.path !== '', 'plan.disk.path', plan.disk?.path, 'the path of the pet disk');
  check(plan.disk?.format === 'qcow2' || plan.disk?.format === 'raw', 'plan.disk.format', plan.disk?.format, 'qcow2 | raw');
  check(plan.cdrom === null || (typeof plan.cdrom === 'string' && plan.cdrom !== ''), 'plan.cdrom', plan.cdrom, 'null or the path of the config drive ISO');
  const ids = new Set<string>();
  for (const [i, nic] of (plan.nics ?? []).entries()) {
    const at = `plan.nics[${i}]`;
    check(typeof nic.id === 'string' && QEMU_ID.test(nic.id) && !ids.has(nic.id), `${at}.id`, nic.id, 'a unique qemu id (a letter, then letters, digits, - . _)');
    ids.add(nic.id);
    check(typeof nic.mac === 'string' && MAC.test(nic.mac), `${at}.mac`, nic.mac, 'a MAC address like 52:54:00:12:34:56');
    // virtio 1.1, 5.1.4: the device MTU is 68 to 65535.
    check(nic.mtu === undefined || (Number.isInteger(nic.mtu) && nic.mtu >= 68 && nic.mtu <= 65535), `${at}.mtu`, nic.mtu, 'an MTU from 68 to 65535');
    const b = nic.backend;
    if (b?.kind === 'tap') check(typeof b.ifname === 'string' && b.ifname !== '' && b.ifname.length <= 15, `${at}.backend.ifname`, b.ifname, 'an interface name of 1 to 15 characters');
    else if (b?.kind === 'tap-fd') {
      check(isFd(b.fd), `${at}.backend.fd`, b.fd, 'an open file descriptor number');
      check(b.vhostFd === undefined || isFd(b.vhostFd), `${at}.backend.vhostFd`, b.vhostFd, 'an open file descriptor number');
    } else if (b?.kind === 'stream') checkSocketPath(check, `${at}.backend.path`, b.path);
    else check(b?.kind === 'user', `${at}.backend.kind`, b?.kind, 'tap | tap-fd | stream | user');
  }
  if (plan.vnc?.kind === 'tcp') {
    check(typeof plan.vnc.host === 'string', 'plan.vnc.host', plan.vnc.host, 'an address to listen on');
    check(Number.isInteger(plan.vnc.display) && plan.vnc.display >= 0 && plan.vnc.display <= 65535 - 5900, 'plan.vnc.display', plan.vnc.display, 'a display number (port - 5900)');
  } else if (plan.vnc?.kind === 'unix') checkSocketPath(check, 'plan.vnc.path', plan.vnc.path);
  else check(plan.vnc === null, 'plan.vnc', plan.vnc, 'null, {kind: tcp, host, display} or {kind: unix, path}');
  checkSocketPath(check, 'plan.qmpSocket', plan.qmpSocket);
  check(typeof plan.pidFile === 'string' && plan.pidFile !== '', 'plan.pidFile', plan.pidFile, 'the path of the pid file');
  check(Array.isArray(plan.extraArgs) && plan.extraArgs.every((a) => typeof a === 'string'), 'plan.extraArgs', plan.extraArgs, 'a list of strings');
  return problems;
}

/** A unix socket path must fit `sockaddr_un.sun_path` (108 bytes with the NUL), or qemu fails to bind. */
function checkSocketPath(check: (ok: boolean, path: string, value: unknown, expected: string) => void, field: string, value: string): void {
  check(typeof value === 'string' && value !== '' && Buffer.byteLength(value) <= 107, field, value, 'a unix socket path of 1 to 107 bytes');
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const QEMU_ID = /^[A-Za-z][A-Za-z0-9_.-]*$/;
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;

function isFd(fd: unknown): boolean {
  return typeof fd === 'number' && Number.isInteger(fd) && fd >= 0;
}

/** qemu option values are comma-separated; a literal comma is written twice. */
function esc(value: string): string {
  return value.replaceAll(',', ',,');
}

function hostPart(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

function assertNever(value: never): never {
  throw new Error(`unexpected NIC backend ${JSON.stringify(value)}`);
}
