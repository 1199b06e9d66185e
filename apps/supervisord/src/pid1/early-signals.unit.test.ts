import { afterEach, describe, expect, it } from 'vitest';
import { RUN_SIGNALS, bufferEarlySignals, takeOverSignals } from './early-signals.js';

const KEY = Symbol.for('podvisor.earlySignals');

afterEach(() => {
  // Leave this test process as it was: no handler of ours on any signal.
  const b = (globalThis as Record<symbol, { handler: (s: NodeJS.Signals) => void } | undefined>)[KEY];
  if (b !== undefined) for (const s of RUN_SIGNALS) process.off(s, b.handler);
  delete (globalThis as Record<symbol, unknown>)[KEY];
});

describe('early signals', () => {
  it('a signal that arrives before run takes over is kept and replayed, then signals go straight to the handler', async () => {
    bufferEarlySignals();
    const delivered = new Promise<void>((resolve) => process.once('SIGHUP', () => resolve()));
    process.kill(process.pid, 'SIGHUP');
    await delivered;
    const seen: string[] = [];
    const release = takeOverSignals((s) => seen.push(s));
    expect(seen).toEqual(['SIGHUP']);
    const again = new Promise<void>((resolve) => process.once('SIGHUP', () => resolve()));
    process.kill(process.pid, 'SIGHUP');
    await again;
    expect(seen).toEqual(['SIGHUP', 'SIGHUP']);
    release();
    const late = new Promise<void>((resolve) => process.once('SIGHUP', () => resolve()));
    process.kill(process.pid, 'SIGHUP');
    await late;
    expect(seen).toHaveLength(2);
  });

  it('installing twice keeps one handler per signal', () => {
    bufferEarlySignals();
    const before = process.listenerCount('SIGTERM');
    bufferEarlySignals();
    expect(process.listenerCount('SIGTERM')).toBe(before);
  });
});
