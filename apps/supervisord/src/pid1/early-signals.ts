/**
 * Signals that arrive before `podvisor run` is ready for them. A PID 1 ignores
 * every signal it has no handler for, so a SIGTERM sent while the bundle loads
 * or the configuration is read would be lost. The launcher (and `cli.ts`, for
 * the unbundled build) installs a buffering handler first thing; `run` takes
 * over once the supervisor exists and replays what was buffered, in order.
 * The buffer lives on a global symbol because the launcher is not bundled.
 */

/** The signals `podvisor run` handles (docs/lifecycle.md#signals). */
export const RUN_SIGNALS = ['SIGTERM', 'SIGINT', 'SIGQUIT', 'SIGHUP'] as const;
export type RunSignal = (typeof RUN_SIGNALS)[number];

interface SignalBuffer {
  received: RunSignal[];
  handler: (signal: NodeJS.Signals) => void;
  /** The handler that took over, if any. */
  current: ((signal: RunSignal) => void) | null;
}

const KEY = Symbol.for('podvisor.earlySignals');

function buffer(): SignalBuffer | undefined {
  return (globalThis as Record<symbol, SignalBuffer | undefined>)[KEY];
}

/** Installs the buffering handlers; a no-op when the launcher already did. */
export function bufferEarlySignals(): void {
  if (buffer() !== undefined) return;
  const b: SignalBuffer = {
    received: [],
    current: null,
    handler: (signal) => {
      if (b.current !== null) b.current(signal as RunSignal);
      else b.received.push(signal as RunSignal);
    },
  };
  (globalThis as Record<symbol, SignalBuffer>)[KEY] = b;
  for (const s of RUN_SIGNALS) process.on(s, b.handler);
}

/**
 * Routes every handled signal to `handler`, first the buffered ones. Returns
 * a function that goes back to buffering (late signals are then kept, not
 * acted on, and never kill the process).
 */
export function takeOverSignals(handler: (signal: RunSignal) => void): () => void {
  bufferEarlySignals();
  const b = buffer() as SignalBuffer;
  // The launcher's buffer has no `current` slot: give it one.
  if (!('current' in b)) Object.assign(b, { current: null });
  const early = b.received.splice(0);
  b.current = handler;
  for (const s of early) handler(s);
  return () => {
    if (b.current === handler) b.current = null;
  };
}
