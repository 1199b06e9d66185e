/**
 * How the `podvisor` executable ends without losing output. A write to a pipe
 * is asynchronous in Node: `process.exit()` right after a command returns drops
 * whatever is still queued, so `podvisor events --json | wc -l` printed a third
 * of the log. Here the exit waits until stdout and stderr have handed every
 * queued byte to the kernel. A reader that goes away (`podvisor events | head`)
 * ends a command quietly with 141, what a shell reports for a process killed by
 * SIGPIPE; the daemon (`run`, PID 1) never dies from a failed write, it only
 * stops writing there.
 */

/** The exit code when stdout's reader went away: 128 + SIGPIPE (13), as a shell reports `cmd | head`. */
export const BROKEN_PIPE_EXIT_CODE = 141;

/**
 * Resolves once every write queued on `stream` so far has reached the OS,
 * with the write error if it failed (null otherwise, or when the stream is
 * already closed). A zero-length write's callback runs after all earlier
 * writes, in order. Never rejects.
 */
export function flushed(stream: NodeJS.WritableStream): Promise<NodeJS.ErrnoException | null> {
  const s = stream as NodeJS.WritableStream & { destroyed?: boolean; writableEnded?: boolean };
  if (s.destroyed === true || s.writableEnded === true || !s.writable) return Promise.resolve(null);
  return new Promise((resolve) => {
    try {
      s.write('', (err?: Error | null) => resolve((err as NodeJS.ErrnoException | null | undefined) ?? null));
    } catch (err) {
      resolve(err as NodeJS.ErrnoException);
    }
  });
}

/**
 * Writes `text`, and when the stream's buffer is full waits until it drains
 * (or the stream fails or closes), so a long listing never queues more than
 * one buffer's worth in memory. Never rejects.
 */
export function writeAll(stream: NodeJS.WritableStream, text: string): Promise<void> {
  if (stream.write(text) || (stream as { destroyed?: boolean }).destroyed === true) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      stream.off('drain', done);
      stream.off('error', done);
      stream.off('close', done);
      resolve();
    };
    stream.on('drain', done);
    stream.on('error', done);
    stream.on('close', done);
  });
}

/**
 * The process's stdout and stderr as the `podvisor` executable ends with them.
 * It listens for write errors (which would otherwise be uncaught exceptions):
 * for a command, the first error on stdout ends the process (EPIPE, the reader
 * went away: quietly with 141; anything else, such as ENOSPC behind `> file`:
 * with a message and 1); for the daemon (`daemon: true`, PID 1) write errors
 * are ignored. Errors on stderr are ignored: there is nowhere to report them.
 */
export class CliOutput {
  private failure: NodeJS.ErrnoException | null = null;

  constructor(
    private readonly streams: { stdout: NodeJS.WritableStream; stderr: NodeJS.WritableStream },
    private readonly daemon: boolean,
  ) {
    streams.stdout.on('error', (err: NodeJS.ErrnoException) => {
      if (!this.daemon && this.fail(err)) void this.exit(0); // the code comes from the failure
    });
    streams.stderr.on('error', () => undefined);
  }

  /**
   * Ends the process with `code` (or the stdout failure's code) once stdout
   * and stderr are flushed. The explicit exit, after the flush, is still
   * needed: a command may leave handles open (a signal listener, a keep-alive
   * socket) that would keep a PID 1 alive.
   */
  async exit(code: number): Promise<never> {
    const [outErr] = await Promise.all([flushed(this.streams.stdout), flushed(this.streams.stderr)]);
    if (outErr !== null && !this.daemon && this.fail(outErr)) await flushed(this.streams.stderr);
    const failure = this.daemon ? null : this.failure;
    const final = failure === null ? code : failure.code === 'EPIPE' ? BROKEN_PIPE_EXIT_CODE : code === 0 ? 1 : code;
    process.exitCode = final;
    process.exit(final);
  }

  /** Records the first stdout failure (reporting all but EPIPE); false when one was recorded already. */
  private fail(err: NodeJS.ErrnoException): boolean {
    if (this.failure !== null) return false;
    this.failure = err;
    if (err.code !== 'EPIPE') this.streams.stderr.write(`podvisor: cannot write to stdout: ${err.message}\n`);
    return true;
  }
}
