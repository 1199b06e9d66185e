/**
 * For tests of network backends: a `ProcessRunner` that runs every command
 * inside network namespace `ns` (`ip netns exec`), as if the supervisor lived
 * in the pod. Backends route every host change through the runner, so their
 * int tests can run the real backend against a simulated pod.
 */
import type { ChildHandle, ProcessRunner, RunOptions, RunResult, SpawnOptions } from '@podvisor/core';

export class NetnsProcessRunner implements ProcessRunner {
  constructor(
    private readonly inner: ProcessRunner,
    private readonly ns: string,
  ) {}

  run(file: string, args: readonly string[], options?: RunOptions): Promise<RunResult> {
    return this.inner.run('ip', ['netns', 'exec', this.ns, file, ...args], options);
  }

  spawn(file: string, args: readonly string[], options: SpawnOptions): Promise<ChildHandle> {
    return this.inner.spawn('ip', ['netns', 'exec', this.ns, file, ...args], options);
  }

  children(): readonly ChildHandle[] {
    return this.inner.children();
  }

  ownedPids(): ReadonlySet<number> {
    return this.inner.ownedPids();
  }

  stopAll(graceMs: number): Promise<void> {
    return this.inner.stopAll(graceMs);
  }
}
