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
 * Resolves once every write queued on `stream` so far has reached the OS, or
 * the stream failed or is closed. A zero-length write's callback runs after
 * all earlier writes, in order. Never rejects.
 */
export function flushed(stream: NodeJS.WritableStream): Promise<void> {
  const s = stream as NodeJS.WritableStream & { destroyed?: boolean; writableEnded?: boolean };
  if (s.destroyed === true || s.writableEnded === true || !s.writable) return Promise.resolve();
  return new Promise((resolve) => {
    try {
      s.write('', () => resolve());
    } catch {
      resolve();
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
 * Watches the process's stdout and stderr for write errors, which would
 * otherwise be uncaught exceptions. For a command, the first error on stdout
 * calls `onStdoutError` (EPIPE: the reader went away; anything else, such as
 * ENOSPC, is a real failure); for the daemon (`daemon: true`) every write
 * error is ignored. Errors on stderr are ignored: there is nowhere to report them.
 */
export function watchOutput(
  streams: { stdout: NodeJS.WritableStream; stderr: NodeJS.WritableStream },
  options: { daemon: boolean; onStdoutError: (err: NodeJS.ErrnoException) => void },
): void {
  let failed = false;
  streams.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (options.daemon || failed) return;
    failed = true;
    options.onStdoutError(err);
  });
  streams.stderr.on('error', () => undefined);
}

/**
 * Ends the process with `code` once stdout and stderr are flushed. The explicit
 * exit (after the flush) is still needed: a command may leave handles open (a
 * signal listener, a keep-alive socket) that would keep a PID 1 alive.
 */
export async function exitWhenFlushed(code: number, streams: { stdout: NodeJS.WritableStream; stderr: NodeJS.WritableStream } = process): Promise<never> {
  process.exitCode = code;
  await Promise.all([flushed(streams.stdout), flushed(streams.stderr)]);
  process.exit(code);
}
