/**
 * What happens after qemu exits on its own: restart now, later, or stop the
 * supervisor. Pure: the caller passes the exit, the times of recent restarts
 * and "now". Backoff is exponential (initial × 2^n, capped), and more than
 * `maxRestarts` restarts inside `windowSeconds` is a crash loop.
 */
import type { RestartPolicy, VmExitInfo } from './events.js';

export interface RestartSettings {
  policy: RestartPolicy;
  /** First backoff delay. */
  backoffInitialMs: number;
  /** Upper bound of the backoff delay. */
  backoffMaxMs: number;
  /** Restarts allowed inside the window before the run is a crash loop. */
  maxRestarts: number;
  windowSeconds: number;
}

export const DEFAULT_RESTART_SETTINGS: RestartSettings = {
  policy: 'on-failure',
  backoffInitialMs: 1000,
  backoffMaxMs: 60_000,
  maxRestarts: 5,
  windowSeconds: 600,
};

export type RestartDecision =
  | { kind: 'restart'; delayMs: number; reason: string }
  | { kind: 'stop'; failed: boolean; reason: string }
  | { kind: 'crash-loop'; restarts: number; windowSeconds: number };

/** A failure is any end the supervisor did not ask for and the guest did not choose. */
export function isFailure(exit: VmExitInfo): boolean {
  return exit.reason === 'crashed' || exit.reason === 'killed';
}

/**
 * @param restartTimes epoch ms of the restarts already done in this run
 * @param now epoch ms
 */
export function decideRestart(settings: RestartSettings, exit: VmExitInfo, restartTimes: readonly number[], now: number): RestartDecision {
  const failed = isFailure(exit);
  const wanted = settings.policy === 'always' || (settings.policy === 'on-failure' && failed);
  if (!wanted) {
    return {
      kind: 'stop',
      failed,
      reason: failed ? `qemu ${describeExit(exit)}; restart policy ${settings.policy} does not restart` : `the guest shut down; restart policy ${settings.policy}`,
    };
  }
  const windowStart = now - settings.windowSeconds * 1000;
  const recent = restartTimes.filter((t) => t >= windowStart).length;
  if (recent >= settings.maxRestarts) {
    return { kind: 'crash-loop', restarts: recent, windowSeconds: settings.windowSeconds };
  }
  const delayMs = Math.min(settings.backoffMaxMs, settings.backoffInitialMs * 2 ** recent);
  return { kind: 'restart', delayMs, reason: failed ? `qemu ${describeExit(exit)}` : 'the guest shut down; restart policy always' };
}

export function describeExit(exit: VmExitInfo): string {
  if (exit.signal !== null) return `was killed by ${exit.signal}`;
  return `exited with code ${exit.code ?? 'unknown'}`;
}
