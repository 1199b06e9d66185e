import { describe, expect, it } from 'vitest';
import type { VmExitInfo } from './events.js';
import { DEFAULT_RESTART_SETTINGS, decideRestart, type RestartSettings } from './restart-policy.js';

const crashed: VmExitInfo = { code: null, signal: 'SIGKILL', reason: 'crashed' };
const poweredOff: VmExitInfo = { code: 0, signal: null, reason: 'guest-shutdown' };
const s = (over: Partial<RestartSettings>): RestartSettings => ({ ...DEFAULT_RESTART_SETTINGS, ...over });
const now = 1_000_000_000;

describe('restart policy', () => {
  it('on-failure restarts a crash but not a guest power-off', () => {
    expect(decideRestart(s({ policy: 'on-failure' }), crashed, [], now)).toEqual({ kind: 'restart', delayMs: 1000, reason: 'qemu was killed by SIGKILL' });
    expect(decideRestart(s({ policy: 'on-failure' }), poweredOff, [], now)).toMatchObject({ kind: 'stop', failed: false });
  });

  it('always restarts a power-off too; never restarts nothing and marks crashes failed', () => {
    expect(decideRestart(s({ policy: 'always' }), poweredOff, [], now).kind).toBe('restart');
    expect(decideRestart(s({ policy: 'never' }), crashed, [], now)).toMatchObject({ kind: 'stop', failed: true });
    expect(decideRestart(s({ policy: 'never' }), poweredOff, [], now)).toMatchObject({ kind: 'stop', failed: false });
  });

  it('backs off exponentially up to the cap', () => {
    const settings = s({ backoffInitialMs: 100, backoffMaxMs: 350, maxRestarts: 10 });
    const delays = [0, 1, 2, 3].map((n) => {
      const d = decideRestart(settings, crashed, Array.from({ length: n }, (_, i) => now - i), now);
      return d.kind === 'restart' ? d.delayMs : -1;
    });
    expect(delays).toEqual([100, 200, 350, 350]);
  });

  it('declares a crash loop past maxRestarts inside the window, and forgets restarts outside it', () => {
    const settings = s({ maxRestarts: 2, windowSeconds: 60 });
    expect(decideRestart(settings, crashed, [now - 1000, now - 2000], now)).toEqual({ kind: 'crash-loop', restarts: 2, windowSeconds: 60 });
    expect(decideRestart(settings, crashed, [now - 61_000, now - 62_000], now).kind).toBe('restart');
  });
});
