import { describe, expect, it } from 'vitest';
import { QmpAllowList } from './qmp-allow-list.js';

describe('QmpAllowList', () => {
  it('allows query-* and the lifecycle commands by default, nothing else', () => {
    const a = new QmpAllowList();
    for (const c of ['query-status', 'query-blockstats', 'system_powerdown', 'system_reset', 'stop', 'cont']) expect(a.allows(c), c).toBe(true);
    for (const c of ['human-monitor-command', 'migrate', 'blockdev-add', 'device_add', 'object-add', 'quit', 'screendump', 'dump-guest-memory', 'x-query-foo', 'qom-list'])
      expect(a.allows(c), c).toBe(false);
  });

  it('extends with names and prefixes, but dangerous commands need their exact name', () => {
    const a = new QmpAllowList(['qom-*', 'human-monitor-command', '*']);
    expect(a.allows('qom-list')).toBe(true);
    expect(a.allows('human-monitor-command')).toBe(true);
    expect(a.allows('device_add')).toBe(false);
    expect(a.allows('blockdev-add')).toBe(false);
    expect(a.allows('inject-nmi')).toBe(false);
    expect(a.allows('set_link')).toBe(true);
  });

  it('refuses with ERR_QMP_COMMAND_FORBIDDEN naming the command and how to allow it', () => {
    expect(() => new QmpAllowList().assertAllowed('human-monitor-command')).toThrow(
      expect.objectContaining({ code: 'ERR_QMP_COMMAND_FORBIDDEN', details: { command: 'human-monitor-command' }, hint: expect.stringMatching(/name it exactly/) }),
    );
  });
});
