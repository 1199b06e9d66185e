import { describe, expect, it } from 'vitest';
import { SilentLogger, type PluginWarning, type ProcessRunner, type RunResult } from '@podvisor/core';
import { ManualClock } from '@podvisor/core/testing';
import { parseLatestHandshakes, watchHandshakes } from './handshake-watch.js';

const KEY_A = 'A'.repeat(43) + '=';
const KEY_B = 'B'.repeat(43) + '=';
const KEY_C = 'C'.repeat(43) + '=';

describe('parseLatestHandshakes', () => {
  it('reads each public key and its Unix time, 0 for never; skips what is not such a line', () => {
    expect(parseLatestHandshakes(`${KEY_A}\t1764675000\n${KEY_B}\t0\n\nnonsense\n`)).toEqual(new Map([
      [KEY_A, 1764675000],
      [KEY_B, 0],
    ]));
  });
});

describe('watchHandshakes (on a manual clock)', () => {
  it('warns once for each configured peer without a handshake when its bound has passed since it was configured, and reads wg only then', async () => {
    const clock = new ManualClock();
    const handshakes = new Map<string, number>([
      [KEY_A, 0],
      [KEY_B, 0],
    ]);
    const calls: string[] = [];
    const runner = {
      run: (file: string, args: readonly string[]): Promise<RunResult> => {
        calls.push([file, ...args].join(' '));
        return Promise.resolve({ stdout: [...handshakes].map(([k, t]) => `${k}\t${t}\n`).join(''), stderr: '', exitCode: 0 } as RunResult);
      },
    } as unknown as ProcessRunner;
    let peers = [
      { name: 'vm-a', publicKey: KEY_A, endpoint: '10.0.0.1:51820' },
      { name: 'vm-b', publicKey: KEY_B, endpoint: undefined },
    ];
    const warnings: PluginWarning[] = [];
    const stop = new AbortController();
    const done = watchHandshakes({ runner, clock, log: new SilentLogger(), hooks: { warn: (w) => warnings.push(w) }, wgName: 'pvwg0', peers: () => peers, boundMs: 120_000, pollMs: 1000, signal: stop.signal });
    const advance = async (ms: number): Promise<void> => {
      for (let t = 0; t < ms; t += 100) {
        clock.advance(100);
        // Every sleep those 100 ms ended has resumed by now (a macrotask runs after all their microtasks).
        await new Promise((r) => setImmediate(r));
      }
    };

    // vm-a completes its handshake after 30 s; vm-c joins (a reload) after 60 s.
    await advance(30_000);
    handshakes.set(KEY_A, 1767225630);
    await advance(30_000);
    peers = [...peers, { name: 'vm-c', publicKey: KEY_C, endpoint: '10.0.0.3:51820' }];
    handshakes.set(KEY_C, 0);
    await advance(59_000);
    expect(calls).toEqual([]);
    expect(warnings).toEqual([]);

    // 120 s: vm-b, never handshaken, is reported; vm-a is not.
    await advance(1_000);
    expect(calls).toEqual(['wg show pvwg0 latest-handshakes']);
    expect(warnings).toEqual([
      {
        code: 'WARN_L2_PEER_NO_HANDSHAKE',
        message: 'l2-segment: peer vm-b (no endpoint yet) has completed no WireGuard handshake with pvwg0 within 120 s of being configured',
        hint: expect.stringContaining('its UDP port is reachable from this pod'),
      },
    ]);
    // Decided peers are not read again: nothing is due until vm-c's bound, 120 s after the watch first saw it (the tick at 61 s).
    await advance(60_000);
    expect(calls.length).toBe(1);
    await advance(1_000);
    expect(calls.length).toBe(2);
    expect(warnings.map((w) => w.message)).toEqual([expect.stringContaining('peer vm-b '), expect.stringContaining('peer vm-c (10.0.0.3:51820)')]);
    // Nothing is due any more: no more reads, no more warnings.
    await advance(300_000);
    expect(calls.length).toBe(2);
    expect(warnings.length).toBe(2);

    stop.abort();
    await done;
  });

  it('a failed read (the interface being restarted) is tried again at the next tick, and a stop ends the watch', async () => {
    const clock = new ManualClock();
    let fail = true;
    let reads = 0;
    const runner = {
      run: (): Promise<RunResult> => {
        reads += 1;
        return fail ? Promise.reject(new Error('Unable to access interface: No such device')) : Promise.resolve({ stdout: `${KEY_A}\t0\n`, stderr: '', exitCode: 0 } as RunResult);
      },
    } as unknown as ProcessRunner;
    const warnings: PluginWarning[] = [];
    const stop = new AbortController();
    const done = watchHandshakes({ runner, clock, log: new SilentLogger(), hooks: { warn: (w) => warnings.push(w) }, wgName: 'pvwg0', peers: () => [{ name: 'vm-a', publicKey: KEY_A }], boundMs: 2000, pollMs: 1000, signal: stop.signal });
    const tick = async (): Promise<void> => {
      clock.advance(1000);
      await new Promise((r) => setImmediate(r));
    };
    await tick();
    await tick();
    expect([reads, warnings.length]).toEqual([1, 0]);
    fail = false;
    await tick();
    expect([reads, warnings.length]).toEqual([2, 1]);
    stop.abort();
    await done;
  });
});
