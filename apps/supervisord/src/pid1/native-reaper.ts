/**
 * Loads `native/reaper.node`, podvisor's N-API addon for the two system calls
 * Node.js lacks: `prctl(PR_SET_CHILD_SUBREAPER)` and `waitpid(pid, WNOHANG)` for
 * chosen pids. The addon is built by node-gyp from `native/reaper.c`; when it
 * is missing (not built, or built for another Node ABI) loading reports why
 * instead of throwing, so podvisor can run without it.
 */
import { createRequire } from 'node:module';
import { constants } from 'node:os';
import { fileURLToPath } from 'node:url';
import { PodvisorError } from '@podvisor/core';

/** One child that `reap()` waited for. */
export interface NativeReapedChild {
  readonly pid: number;
  /** The raw wait status. */
  readonly status: number;
  /** The exit code, or null when a signal ended it. */
  readonly code: number | null;
  /** The number of the signal that ended it, or null. */
  readonly signal: number | null;
}

/** The addon's exports (see native/reaper.c). */
export interface NativeReaper {
  /** Marks this process a child subreaper. Returns false when the kernel refused. Changes process state once, for good. */
  setChildSubreaper(): boolean;
  /**
   * `waitpid(pid, WNOHANG)` for each pid, returning those that had exited (and
   * are now gone). Skips pids still running or not its children. Throws a
   * RangeError/TypeError (code `ERR_PID1_REAPER_INVALID_ARG`) before waiting for
   * anything if any pid is not an integer >= 1, so it can never wait for "any
   * child" or a process group.
   */
  reap(pids: readonly number[]): NativeReapedChild[];
}

/** Where node-gyp puts the addon: `apps/supervisord/native/build/Release/reaper.node`, from `src/pid1` and `dist/pid1` alike. */
export const DEFAULT_REAPER_ADDON = fileURLToPath(new URL('../../native/build/Release/reaper.node', import.meta.url));

export type NativeReaperLoad = { readonly native: NativeReaper; readonly error: null } | { readonly native: null; readonly error: PodvisorError };

/** Loads the addon. Never throws: a failure comes back as `ERR_PID1_REAPER_UNAVAILABLE` with a hint. */
export function loadNativeReaper(addonPath: string = DEFAULT_REAPER_ADDON): NativeReaperLoad {
  try {
    const native = createRequire(import.meta.url)(addonPath) as Partial<NativeReaper>;
    if (typeof native.reap !== 'function' || typeof native.setChildSubreaper !== 'function') {
      throw new TypeError(`${addonPath} does not export reap() and setChildSubreaper()`);
    }
    return { native: native as NativeReaper, error: null };
  } catch (cause) {
    return {
      native: null,
      error: new PodvisorError('ERR_PID1_REAPER_UNAVAILABLE', `cannot load the orphan reaper addon ${addonPath}`, {
        hint: 'build it with `npm run build:native -w @podvisor/supervisord` (needs make, a C compiler and the Node headers); without it, orphaned processes stay zombies',
        cause,
        details: { addonPath },
      }),
    };
  }
}

const SIGNAL_NAMES = new Map<number, string>(Object.entries(constants.signals).map(([name, n]) => [n, name]));

/** `SIGTERM` for 15; `SIG<n>` for a number Node has no name for. */
export function signalName(signal: number): string {
  return SIGNAL_NAMES.get(signal) ?? `SIG${signal}`;
}
