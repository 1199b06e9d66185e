/**
 * A `Clock` that moves only when the test says so (`advance`), for tests of
 * timers, budgets and polls without waiting for them: `sleep` resolves once
 * the clock has been advanced past its end, and rejects with the signal's
 * reason when aborted. Exported from @podvisor/core/testing.
 */
import type { Clock } from './clock.js';

/** Starts at 2026-01-01T00:00:00Z. */
export class ManualClock implements Clock {
  private t = Date.parse('2026-01-01T00:00:00Z');
  private sleepers: Array<{ at: number; resolve: () => void }> = [];
  now(): Date {
    return new Date(this.t);
  }
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const sleeper = { at: this.t + ms, resolve };
      this.sleepers.push(sleeper);
      signal?.addEventListener('abort', () => {
        this.sleepers = this.sleepers.filter((s) => s !== sleeper);
        reject(signal.reason);
      }, { once: true });
    });
  }
  advance(ms: number): void {
    this.t += ms;
    const due = this.sleepers.filter((s) => s.at <= this.t);
    this.sleepers = this.sleepers.filter((s) => s.at > this.t);
    for (const s of due) s.resolve();
  }
}
