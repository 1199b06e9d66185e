import { describe, expect, it } from 'vitest';
import type { ProcStat } from './proc-stat.js';
import { selectOrphans } from './select-orphans.js';

const SELF = 100;
const proc = (pid: number, state: string, ppid: number): ProcStat => ({ pid, comm: `p${pid}`, state, ppid });

describe('selectOrphans', () => {
  const processes = [
    proc(1, 'S', 0),
    proc(SELF, 'S', 1),
    proc(201, 'Z', SELF), // an orphan re-parented to us
    proc(202, 'Z', SELF), // a child the runner owns (libuv will reap it)
    proc(203, 'S', SELF), // a live child
    proc(204, 'Z', 7), // someone else's zombie
  ];

  it('suspects its own non-owned zombie children on first sight, reaps none, and asks for a confirming sweep', () => {
    const s = selectOrphans({ processes, selfPid: SELF, ownedPids: new Set([202]), suspects: new Set() });
    expect(s.reap).toEqual([]);
    expect([...s.suspects]).toEqual([201]);
    expect(s.confirmDue).toBe(true);
  });

  it('reaps a zombie seen by the previous sweep, and asks for no further sweep', () => {
    const s = selectOrphans({ processes, selfPid: SELF, ownedPids: new Set([202]), suspects: new Set([201]) });
    expect(s.reap.map((p) => p.pid)).toEqual([201]);
    expect([...s.suspects]).toEqual([201]);
    expect(s.confirmDue).toBe(false);
  });

  it('never selects an owned pid, however often it was seen', () => {
    const s = selectOrphans({ processes, selfPid: SELF, ownedPids: new Set([201, 202]), suspects: new Set([201, 202]) });
    expect(s.reap).toEqual([]);
    expect(s.suspects.size).toBe(0);
    expect(s.confirmDue).toBe(false);
  });

  it('never selects live children or zombies of another parent', () => {
    const s = selectOrphans({ processes, selfPid: SELF, ownedPids: new Set(), suspects: new Set([203, 204]) });
    expect(s.reap.map((p) => p.pid)).toEqual([]);
    expect([...s.suspects].sort()).toEqual([201, 202]);
  });

  it('forgets a suspect that is gone, and reaps the confirmed one while suspecting a new one', () => {
    const s = selectOrphans({
      processes: [proc(301, 'Z', SELF), proc(302, 'Z', SELF)],
      selfPid: SELF,
      ownedPids: new Set(),
      suspects: new Set([201, 301]),
    });
    expect(s.reap.map((p) => p.pid)).toEqual([301]);
    expect([...s.suspects]).toEqual([301, 302]);
    expect(s.confirmDue).toBe(true);
  });
});
