/**
 * Which raw QMP commands `POST /v1/qmp` may pass to qemu. The default is every
 * read-only `query-*` command plus the lifecycle commands. An operator extends
 * it (`control.qmpAllow`) with names or prefixes ending in `*`. Two deny-lists
 * sit above every allow entry, however broad (`*` included):
 * - `QMP_NEVER`: commands that break podvisor's own hold on qemu (its QMP
 *   session, its lifecycle, the VNC password the web console relies on) are
 *   refused whatever the list says;
 * - `QMP_EXACT_ONLY`: commands that can read or write host files, export or
 *   rewrite the disks, read guest memory, type into the guest or reconfigure
 *   qemu are refused unless the operator names them exactly.
 * Pure: the decision is made before anything is sent to qemu.
 */
import { PodvisorError } from '@podvisor/core';

export const DEFAULT_QMP_ALLOW: readonly string[] = ['query-*', 'system_powerdown', 'system_reset', 'stop', 'cont'];

/** A deny-list entry: a name or a prefix ending in `*`, and why (docs/api.md lists the same groups). */
interface Denied {
  readonly patterns: readonly string[];
  readonly why: string;
}

/** Refused even when named exactly (QMP reference, qemu 7.2). */
export const QMP_NEVER: readonly Denied[] = [
  { patterns: ['qmp_capabilities'], why: 'would renegotiate podvisor\'s own QMP session' },
  { patterns: ['quit'], why: 'kills qemu behind the lifecycle: use POST /v1/vm/actions {"action":"stop"}' },
  { patterns: ['set-action', 'watchdog-set-action'], why: 'changes what a guest shutdown, reboot, panic or watchdog does, which the supervisor\'s lifecycle depends on' },
  { patterns: ['set_password', 'expire_password', 'change-vnc-password', 'display-reload'], why: 'changes the VNC credentials that podvisor manages and the web console uses' },
  { patterns: ['getfd', 'closefd', 'add-fd', 'remove-fd', 'add_client'], why: 'passes or closes file descriptors of qemu\'s monitor and display, which HTTP cannot carry' },
  { patterns: ['x-exit-preconfig', 'migrate-incoming', 'xen-load-devices-state'], why: 'replaces the running machine\'s state' },
];

/** Refused unless named exactly in `control.qmpAllow` (QMP reference, qemu 7.2). */
export const QMP_EXACT_ONLY: readonly Denied[] = [
  { patterns: ['human-monitor-command'], why: 'the HMP monitor runs any command, outside this list' },
  {
    patterns: ['nbd-server-*', 'block-export-*'],
    why: 'exports a disk (the pet disk, read-write) over the network',
  },
  {
    patterns: ['change-backing-file', 'blockdev-*', 'block-*', 'block_*', 'drive-*', 'drive_*', 'transaction', 'eject', 'x-blockdev-*'],
    why: 'opens, creates, mirrors, backs up or rewrites host files and the pet disk\'s backing chain',
  },
  { patterns: ['migrate', 'migrate-*', 'migrate_*', 'client_migrate_info', 'snapshot-*', 'xen-*', 'x-colo-*'], why: 'writes the guest\'s memory and devices to a host file, a command or the network' },
  { patterns: ['dump-guest-memory', 'memsave', 'pmemsave', 'dump-skeys', 'screendump'], why: 'writes guest memory or the screen to a host path' },
  { patterns: ['device_add', 'device_del', 'object-add', 'object-del', 'netdev_add', 'netdev_del', 'chardev-*', 'qom-set', 'set_link', 'balloon'], why: 'reconfigures the machine: devices, objects (files, secrets), network back-ends (scripts), character devices' },
  { patterns: ['send-key', 'input-send-event', 'ringbuf-write', 'inject-nmi', 'system_wakeup'], why: 'types into or interrupts the guest, which is console access' },
  { patterns: ['sev-inject-launch-secret', 'yank', 'trace-event-set-state'], why: 'touches secrets, cuts qemu\'s connections, or floods the log' },
  { patterns: ['x-*'], why: 'experimental, unstable interface' },
];

/** Read-only commands, which a `read` token may run. */
export function isReadOnlyQmp(command: string): boolean {
  return command.startsWith('query-');
}

export class QmpAllowList {
  private readonly exact = new Set<string>();
  private readonly prefixes: string[] = [];

  /** `extra` adds entries to the default list (names, or prefixes ending in `*`). */
  constructor(extra: readonly string[] = []) {
    for (const entry of [...DEFAULT_QMP_ALLOW, ...extra]) {
      if (entry.endsWith('*')) this.prefixes.push(entry.slice(0, -1));
      else this.exact.add(entry);
    }
  }

  allows(command: string): boolean {
    if (denial(QMP_NEVER, command) !== undefined) return false;
    if (this.exact.has(command)) return true;
    if (denial(QMP_EXACT_ONLY, command) !== undefined) return false;
    return this.prefixes.some((p) => command.startsWith(p));
  }

  /** Throws `ERR_QMP_COMMAND_FORBIDDEN` (403) unless the command is allowed. Changes nothing. */
  assertAllowed(command: string): void {
    if (this.allows(command)) return;
    const never = denial(QMP_NEVER, command);
    const exactOnly = denial(QMP_EXACT_ONLY, command);
    const hint =
      never !== undefined
        ? `${command} is never passed through: it ${never}`
        : exactOnly !== undefined
          ? `${command} ${exactOnly}; an operator must name it exactly in control.qmpAllow (PODVISOR_QMP_ALLOW), a prefix does not allow it`
          : 'add it to control.qmpAllow (PODVISOR_QMP_ALLOW), or use POST /v1/vm/actions';
    throw new PodvisorError('ERR_QMP_COMMAND_FORBIDDEN', `QMP command ${command} is not on the allow-list`, { hint, details: { command } });
  }
}

function denial(list: readonly Denied[], command: string): string | undefined {
  return list.find((d) => d.patterns.some((p) => (p.endsWith('*') ? command.startsWith(p.slice(0, -1)) : command === p)))?.why;
}
