import { describe, expect, it } from 'vitest';
import { QMP_EXACT_ONLY, QMP_NEVER, QmpAllowList } from './qmp-allow-list.js';

/** Every command of qemu 7.2's QMP reference that can touch host files, the disks, guest memory or input, or podvisor's hold on qemu. */
const DANGEROUS_72 = [
  'change-backing-file', 'nbd-server-start', 'nbd-server-add', 'nbd-server-remove', 'nbd-server-stop', 'block-export-add', 'block-export-del',
  'send-key', 'input-send-event', 'set-action', 'watchdog-set-action', 'human-monitor-command', 'migrate', 'migrate-incoming', 'migrate-set-parameters',
  'migrate_cancel', 'client_migrate_info', 'dump-guest-memory', 'drive-mirror', 'drive-backup', 'blockdev-mirror', 'blockdev-backup', 'blockdev-add',
  'blockdev-del', 'blockdev-create', 'blockdev-snapshot-sync', 'blockdev-change-medium', 'block-commit', 'block-stream', 'block_resize', 'transaction',
  'device_add', 'device_del', 'object-add', 'object-del', 'netdev_add', 'chardev-add', 'chardev-change', 'getfd', 'add-fd', 'closefd', 'remove-fd',
  'add_client', 'screendump', 'memsave', 'pmemsave', 'dump-skeys', 'snapshot-save', 'snapshot-load', 'xen-save-devices-state', 'qom-set', 'quit',
  'qmp_capabilities', 'set_password', 'expire_password', 'change-vnc-password', 'display-reload', 'ringbuf-write', 'inject-nmi', 'x-exit-preconfig',
  'x-blockdev-change', 'x-colo-lost-heartbeat', 'sev-inject-launch-secret', 'eject', 'set_link', 'yank',
];

describe('QmpAllowList', () => {
  it('allows query-* and the lifecycle commands by default, nothing else', () => {
    const a = new QmpAllowList();
    for (const c of ['query-status', 'query-blockstats', 'system_powerdown', 'system_reset', 'stop', 'cont']) expect(a.allows(c), c).toBe(true);
    for (const c of [...DANGEROUS_72, 'x-query-foo', 'qom-list']) expect(a.allows(c), c).toBe(false);
  });

  it('denies every dangerous qemu 7.2 command under a wildcard allow-list, and under any prefix of it', () => {
    for (const allow of [['*'], ['n*', 'b*', 's*', 'd*', 'm*', 'c*', 'x*', 'q*', 'h*', 'i*', 'o*', 'g*', 'a*', 'p*', 'r*', 'e*', 'y*', 'w*']]) {
      const a = new QmpAllowList(allow);
      expect(DANGEROUS_72.filter((c) => a.allows(c)), allow.join(',')).toEqual([]);
    }
    // Harmless commands do pass a wildcard.
    const any = new QmpAllowList(['*']);
    for (const c of ['qom-list', 'ringbuf-read', 'calc-dirty-rate', 'trace-event-get-state']) expect(any.allows(c), c).toBe(true);
  });

  it('an exact name opts in to an exact-only command, never to one that breaks podvisor\'s hold on qemu', () => {
    const a = new QmpAllowList(['qom-*', 'human-monitor-command', 'nbd-server-start', 'quit', 'set_password', 'set-action', 'getfd', '*']);
    expect(a.allows('qom-list')).toBe(true);
    expect(a.allows('human-monitor-command')).toBe(true);
    expect(a.allows('nbd-server-start')).toBe(true);
    expect(a.allows('nbd-server-add')).toBe(false);
    for (const c of ['quit', 'set_password', 'set-action', 'getfd', 'qmp_capabilities', 'device_add', 'blockdev-add', 'inject-nmi']) expect(a.allows(c), c).toBe(false);
  });

  it('no command is on both lists, and every entry says why', () => {
    const never = QMP_NEVER.flatMap((d) => d.patterns);
    const exact = QMP_EXACT_ONLY.flatMap((d) => d.patterns);
    expect(never.filter((p) => exact.includes(p))).toEqual([]);
    for (const d of [...QMP_NEVER, ...QMP_EXACT_ONLY]) expect(d.why.length).toBeGreaterThan(10);
  });

  it('refuses with ERR_QMP_COMMAND_FORBIDDEN naming the command, why, and how to allow it', () => {
    expect(() => new QmpAllowList(['*']).assertAllowed('nbd-server-start')).toThrow(
      expect.objectContaining({ code: 'ERR_QMP_COMMAND_FORBIDDEN', details: { command: 'nbd-server-start' }, hint: expect.stringMatching(/exports a disk.*name it exactly/) }),
    );
    expect(() => new QmpAllowList(['quit']).assertAllowed('quit')).toThrow(expect.objectContaining({ hint: expect.stringMatching(/never passed through.*action/) }));
    expect(() => new QmpAllowList().assertAllowed('qom-list')).toThrow(expect.objectContaining({ hint: expect.stringMatching(/add it to control.qmpAllow/) }));
  });
});
