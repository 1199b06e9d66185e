/**
 * What a test reads from a child process it started: its stdout and stderr
 * as text, and waits on what they say (never on fixed sleeps). A wait
 * rejects as soon as the child has ended (exited, and all its output read)
 * without the awaited output, or
 * after its bound, with the tails of both streams. The podvisor binary
 * (e2e `PodvisorProcess`) and `podman logs -f` of a container (`PodmanLogs`)
 * are both read through it.
 */
import type { ChildProcess } from 'node:child_process';

export class ChildOutput {
  stdout = '';
  stderr = '';
  private readonly waiters = new Set<() => void>();
  private closed = false;

  /**
   * @param child the process to read; both its stdout and stderr must be pipes.
   * @param what how an error message names it ("podvisor", "the container's logs").
   * @param defaultTimeoutMs the bound of a wait that names none.
   */
  constructor(
    readonly child: ChildProcess,
    private readonly what: string,
    private readonly defaultTimeoutMs: number,
  ) {
    child.stdout?.setEncoding('utf8').on('data', (d: string) => {
      this.stdout += d;
      this.wake();
    });
    child.stderr?.setEncoding('utf8').on('data', (d: string) => {
      this.stderr += d;
      this.wake();
    });
    child.once('close', () => {
      this.closed = true;
      this.wake();
    });
  }

  /** True once the child has exited and all its output has been read (`close`, not `exit`). */
  get ended(): boolean {
    return this.closed;
  }

  /** The first match of `re` in stdout; rejects when the child ends first, or past the bound. */
  waitForStdout(re: RegExp, timeoutMs = this.defaultTimeoutMs): Promise<RegExpMatchArray> {
    return this.waitFor(() => this.stdout.match(re), `stdout to match ${re}`, timeoutMs);
  }

  /** The first match of `re` in stderr; rejects when the child ends first, or past the bound. */
  waitForStderr(re: RegExp, timeoutMs = this.defaultTimeoutMs): Promise<RegExpMatchArray> {
    return this.waitFor(() => this.stderr.match(re), `stderr to match ${re}`, timeoutMs);
  }

  /** Resolves with the first non-null result of `check`, re-run on every chunk of output. */
  waitFor<T>(check: () => T | null | undefined, what: string, timeoutMs = this.defaultTimeoutMs): Promise<T> {
    return new Promise((resolve, reject) => {
      let done = false;
      const finish = (fn: () => void): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        this.waiters.delete(poll);
        fn();
      };
      const poll = (): void => {
        const m = check();
        if (m !== null && m !== undefined) finish(() => resolve(m));
        else if (this.ended) {
          const end = this.child.exitCode ?? this.child.signalCode;
          finish(() => reject(new Error(`${this.what} ended (${end}) before ${what}\n--- stderr tail:\n${this.stderr.slice(-3000)}`)));
        }
      };
      const timer = setTimeout(
        () => finish(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what} from ${this.what}\n--- stdout tail:\n${this.stdout.slice(-2000)}\n--- stderr tail:\n${this.stderr.slice(-3000)}`))),
        timeoutMs,
      );
      this.waiters.add(poll);
      poll();
    });
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }
}
