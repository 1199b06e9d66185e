/**
 * Turns a download's byte counts into throttled progress reports: at most one
 * per interval, plus the final one, each with the percent (when the size is
 * known) and the rate over the last interval (the average, for the last one).
 * Time comes in as a function, so it is tested without waiting.
 */
import type { ImagePullProgress } from '@podvisor/core';

export class ProgressMeter {
  private readonly startedAt: number;
  private lastAt: number;
  private lastBytes = 0;

  constructor(
    private readonly target: string,
    private readonly intervalMs: number,
    private readonly emit: (p: ImagePullProgress) => void,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.startedAt = now();
    this.lastAt = this.startedAt;
  }

  /** Reports when an interval has passed since the last report. */
  update(bytes: number, total: number | undefined): void {
    const t = this.now();
    if (t - this.lastAt < this.intervalMs) return;
    const rate = ((bytes - this.lastBytes) * 1000) / Math.max(1, t - this.lastAt);
    this.lastAt = t;
    this.lastBytes = bytes;
    this.emit(this.report(bytes, total, rate, false));
  }

  /** The last report: the average rate over the whole download. */
  finish(bytes: number, total: number | undefined): void {
    const rate = (bytes * 1000) / Math.max(1, this.now() - this.startedAt);
    this.emit(this.report(bytes, total ?? bytes, rate, true));
  }

  private report(bytes: number, total: number | undefined, rate: number, done: boolean): ImagePullProgress {
    return {
      target: this.target,
      bytes,
      total: total ?? null,
      percent: total === undefined || total === 0 ? null : Math.min(100, Math.floor((bytes * 1000) / total) / 10),
      bytesPerSecond: Math.round(rate),
      done,
    };
  }
}
