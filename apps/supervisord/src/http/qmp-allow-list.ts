/**
 * Which raw QMP commands `POST /v1/qmp` may pass to qemu. The default is every
 * read-only `query-*` command plus the lifecycle commands. An operator extends
 * it (`control.qmpAllow`) with names or prefixes ending in `*`; commands that
 * can touch host files, the guest's memory or qemu's own configuration are
 * refused unless named exactly, so a broad prefix never lets them through.
 * Pure: the decision is made before anything is sent to qemu.
 */
import { PodvisorError } from '@podvisor/core';

export const DEFAULT_QMP_ALLOW: readonly string[] = ['query-*', 'system_powerdown', 'system_reset', 'stop', 'cont'];

/** Only an exact entry in the allow-list enables these (QMP reference: each can read or write host files or change qemu). */
const DANGEROUS: readonly string[] = [
  'human-monitor-command', 'migrate', 'migrate-*', 'migrate_*', 'x-*', 'blockdev-*', 'block-*', 'block_*', 'drive-*', 'drive_*',
  'device_add', 'device_del', 'object-add', 'object-del', 'netdev_add', 'netdev_del', 'chardev-*', 'getfd', 'closefd', 'add-fd', 'remove-fd',
  'dump-guest-memory', 'screendump', 'memsave', 'pmemsave', 'snapshot-*', 'transaction', 'quit', 'qom-set', 'change-vnc-password',
  'set_password', 'expire_password', 'add_client', 'qmp_capabilities', 'eject', 'inject-nmi', 'xen-*',
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
    if (this.exact.has(command)) return true;
    if (matches(DANGEROUS, command)) return false;
    return this.prefixes.some((p) => command.startsWith(p));
  }

  /** Throws `ERR_QMP_COMMAND_FORBIDDEN` (403) unless the command is allowed. Changes nothing. */
  assertAllowed(command: string): void {
    if (this.allows(command)) return;
    throw new PodvisorError('ERR_QMP_COMMAND_FORBIDDEN', `QMP command ${command} is not on the allow-list`, {
      hint: matches(DANGEROUS, command)
        ? `${command} can touch host files or reconfigure qemu; an operator must name it exactly in control.qmpAllow (PODVISOR_QMP_ALLOW)`
        : 'add it to control.qmpAllow (PODVISOR_QMP_ALLOW), or use POST /v1/vm/actions',
      details: { command },
    });
  }
}

function matches(patterns: readonly string[], command: string): boolean {
  return patterns.some((p) => (p.endsWith('*') ? command.startsWith(p.slice(0, -1)) : command === p));
}
