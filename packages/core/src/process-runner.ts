/**
 * Every child process podvisor starts goes through one `ProcessRunner`. It logs
 * the argv (secrets hidden, `redactArgv`), keeps the tail of stderr for error messages, waits for `close`
 * (not `exit`) before trusting output, and registers long-lived children so
 * that `stopAll()` leaves nothing behind when the supervisor exits.
 */
import { execa, type ResultPromise } from 'execa';
import { accessSync, constants, statSync } from 'node:fs';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { PodvisorError, redactArgv } from './errors.js';
import type { Logger } from './logger.js';
import type { Prerequisites } from './ports.js';

export interface RunOptions {
  cwd?: string;
  /** Added to the inherited environment. */
  env?: Record<string, string | undefined>;
  input?: string | Buffer;
  timeoutMs?: number;
  signal?: AbortSignal;
  /** When false, a non-zero exit resolves instead of throwing. Default true. */
  check?: boolean;
}

export interface RunResult {
  argv: readonly string[];
  exitCode: number;
  signal: string | undefined;
  stdout: string;
  stderr: string;
  durationMs: number;
}

export interface SpawnOptions {
  /** A short name for logs and `children()`, e.g. `qemu` or `dnsmasq`. */
  name: string;
  cwd?: string;
  env?: Record<string, string | undefined>;
  stdin?: 'pipe' | 'ignore';
  stdout?: 'pipe' | 'ignore' | 'inherit';
  /** Open file descriptors passed to the child as fd 3, 4, ... in order. */
  extraFds?: readonly number[];
}

export interface ChildExit {
  code: number | null;
  signal: string | null;
  /** The last few KiB of stderr, for error messages. */
  stderrTail: string;
  durationMs: number;
}

export interface ChildHandle {
  readonly name: string;
  readonly pid: number;
  /** The command line as logs show it: secrets in it hidden (`redactArgv`). */
  readonly argv: readonly string[];
  readonly stdout: Readable | null;
  readonly stdin: Writable | null;
  /** Resolves once the child has exited and its stdio closed. Never rejects. */
  readonly exited: Promise<ChildExit>;
  /** True until `exited` resolves. */
  readonly running: boolean;
  /** The stderr seen so far (tail). */
  stderrTail(): string;
  /**
   * Sends a signal; a no-op after exit. Returns false when it could not be
   * sent: EPERM, when the child changed its user (dnsmasq drops to `nobody`)
   * and podvisor lacks CAP_KILL.
   */
  kill(signal?: NodeJS.Signals): boolean;
}

export interface ProcessRunner {
  /**
   * Runs a command to completion. Throws `ERR_PROCESS_NOT_FOUND` when the binary
   * is missing, `ERR_PROCESS_TIMEOUT` past `timeoutMs`, and `ERR_PROCESS_FAILED`
   * (with the stderr tail) on a non-zero exit unless `check: false`.
   */
  run(file: string, args: readonly string[], options?: RunOptions): Promise<RunResult>;
  /** Starts a long-lived child and registers it until it exits. Throws `ERR_PROCESS_NOT_FOUND`. */
  spawn(file: string, args: readonly string[], options: SpawnOptions): Promise<ChildHandle>;
  /** The registered children still running. */
  children(): readonly ChildHandle[];
  /**
   * Every pid this runner started whose exit it has not yet observed (both
   * `run` and `spawn`), registered synchronously at spawn. An orphan reaper
   * must never wait for these: libuv reaps them itself.
   */
  ownedPids(): ReadonlySet<number>;
  /** SIGTERM to every registered child, SIGKILL to those still alive after `graceMs`. */
  stopAll(graceMs: number): Promise<void>;
}

export const ProcessRunner = Symbol.for('podvisor.ProcessRunner');

/** What the runner itself spawns: every child goes through `setpriv --pdeathsig KILL` when it is installed. */
export const PROCESS_RUNNER_PREREQUISITES: Prerequisites = {
  binaries: [{ name: 'setpriv', why: 'children die with podvisor even when it is killed (PR_SET_PDEATHSIG); without it a child could outlive a killed podvisor', optional: true }],
};

const STDERR_TAIL = 8 * 1024;

export class ExecaProcessRunner implements ProcessRunner {
  private readonly live = new Set<ChildHandle>();
  private readonly owned = new Set<number>();

  constructor(private readonly log: Logger) {
    installExitHook();
    RUNNERS.add(this);
  }

  /** SIGKILL to every live child, synchronously. */
  killAllNow(): void {
    for (const c of this.live) c.kill('SIGKILL');
  }

  async run(file: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
    // What logs, results, handles and errors show: secrets in arguments (a VNC password, a token, a URL's credentials) hidden.
    const argv = redactArgv([file, ...args]);
    const started = performance.now();
    this.log.debug('run', { argv });
    // A short-lived child dies with podvisor too (setpriv --pdeathsig, as for `spawn`): a qemu-img or an nft
    // that hangs (a stalled volume) while podvisor is SIGKILLed would otherwise be left behind.
    const resolved = resolveExecutable(file);
    if (resolved === null) throw notFound(file, argv, undefined);
    const setpriv = setprivPath();
    const [cmd, ...cmdArgs] = setpriv === null ? [resolved, ...args] : [setpriv, '--pdeathsig', 'KILL', resolved, ...args];
    const subprocess = execa(cmd as string, cmdArgs, {
      reject: false,
      cwd: options.cwd,
      env: options.env,
      input: options.input,
      timeout: options.timeoutMs,
      cancelSignal: options.signal,
      stripFinalNewline: false,
      encoding: 'utf8',
    });
    const pid = subprocess.pid;
    if (pid !== undefined) this.owned.add(pid);
    const result = await subprocess.finally(() => {
      if (pid !== undefined) this.owned.delete(pid);
    });
    const durationMs = Math.round(performance.now() - started);
    const out: RunResult = {
      argv,
      exitCode: result.exitCode ?? -1,
      signal: result.signal,
      stdout: String(result.stdout ?? ''),
      stderr: String(result.stderr ?? ''),
      durationMs,
    };
    if (isNotFound(result)) {
      throw notFound(file, argv, result.cause);
    }
    if (result.timedOut) {
      throw new PodvisorError('ERR_PROCESS_TIMEOUT', `${file} did not finish within ${options.timeoutMs} ms`, {
        details: { argv, stderr: tail(out.stderr) },
      });
    }
    if (result.isCanceled) {
      throw new PodvisorError('ERR_PROCESS_CANCELED', `${file} was canceled`, { details: { argv } });
    }
    this.log.debug('ran', { argv, exitCode: out.exitCode, durationMs });
    if (options.check !== false && (out.exitCode !== 0 || out.signal !== undefined)) {
      throw new PodvisorError(
        'ERR_PROCESS_FAILED',
        `${argv.join(' ')} failed (${out.signal ?? `exit ${out.exitCode}`}): ${tail(out.stderr).trim() || tail(out.stdout).trim()}`,
        { details: { argv, exitCode: out.exitCode, signal: out.signal, stderr: tail(out.stderr) } },
      );
    }
    return out;
  }

  async spawn(file: string, args: readonly string[], options: SpawnOptions): Promise<ChildHandle> {
    // What logs, results, handles and errors show: secrets in arguments (a VNC password, a token, a URL's credentials) hidden.
    const argv = redactArgv([file, ...args]);
    const started = performance.now();
    const extra = (options.extraFds ?? []) as number[];
    // A missing binary is a coded error here, not a failure of the wrapper below.
    const resolved = resolveExecutable(file);
    if (resolved === null) throw notFound(file, argv, undefined);
    // `setpriv --pdeathsig KILL` sets PR_SET_PDEATHSIG between fork and exec, which
    // Node cannot: if podvisor itself is killed (SIGKILL, OOM), the kernel kills
    // the child too, so nothing it started outlives it even outside a container.
    const setpriv = setprivPath();
    const [cmd, ...cmdArgs] = setpriv === null ? [resolved, ...args] : [setpriv, '--pdeathsig', 'KILL', resolved, ...args];
    const child: ResultPromise = execa(cmd as string, cmdArgs, {
      reject: false,
      buffer: false,
      cwd: options.cwd,
      env: options.env,
      // execa's types do not list raw fd numbers past stderr, but Node's spawn accepts them.
      stdio: [options.stdin ?? 'ignore', options.stdout ?? 'pipe', 'pipe', ...extra] as never,
      // Its own process group: a Ctrl-C or a group-wide SIGTERM reaches podvisor
      // only, which then shuts the child down in order (ACPI first for qemu).
      detached: true,
      // execa does not clean up detached children; `killAllOnExit` does.
      cleanup: false,
    });
    if (child.pid !== undefined) this.owned.add(child.pid);
    // Wait for 'spawn' or 'error' so that a missing binary is a thrown error, not a dead handle.
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', () => resolve());
      child.once('error', (err) => reject(err));
    }).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') throw notFound(file, argv, err);
      throw new PodvisorError('ERR_PROCESS_SPAWN', `cannot start ${file}: ${err.message}`, { cause: err, details: { argv } });
    });

    // After spawn, a signal that cannot be sent (EPERM: the child changed its
    // user and podvisor lacks CAP_KILL) is emitted as an 'error' event, and an
    // 'error' event nobody listens to kills the process: PID 1 must not die
    // of it. kill() returns false for it as well.
    child.on('error', (err) => this.log.warn('child process error', { name: options.name, pid: child.pid, err }));
    let stderr = '';
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      stderr = (stderr + chunk).slice(-STDERR_TAIL);
    });
    let running = true;
    const pid = child.pid ?? -1;
    const exited: Promise<ChildExit> = child.then(
      (r) => ({ code: r.exitCode ?? null, signal: r.signal ?? null, stderrTail: stderr, durationMs: Math.round(performance.now() - started) }),
      (e: { exitCode?: number; signal?: string }) => ({
        code: e.exitCode ?? null,
        signal: e.signal ?? null,
        stderrTail: stderr,
        durationMs: Math.round(performance.now() - started),
      }),
    );
    const handle: ChildHandle = {
      name: options.name,
      pid,
      argv,
      stdout: child.stdout ?? null,
      stdin: child.stdin ?? null,
      exited,
      get running() {
        return running;
      },
      stderrTail: () => stderr,
      kill: (signal: NodeJS.Signals = 'SIGTERM') => (running ? child.kill(signal) : true),
    };
    this.live.add(handle);
    this.log.info('spawned', { name: options.name, pid, argv });
    void exited.then((exit) => {
      running = false;
      this.owned.delete(pid);
      this.live.delete(handle);
      this.log.info('child exited', { name: options.name, pid, code: exit.code, signal: exit.signal, durationMs: exit.durationMs });
    });
    return handle;
  }

  children(): readonly ChildHandle[] {
    return [...this.live];
  }

  ownedPids(): ReadonlySet<number> {
    return this.owned;
  }

  async stopAll(graceMs: number): Promise<void> {
    await Promise.all(
      [...this.live].map(async (c) => {
        const outcome = await terminateChild(c, graceMs);
        if (outcome === 'killed') this.log.warn('child ignored SIGTERM and was killed', { name: c.name, pid: c.pid });
        if (outcome === 'survived') this.log.error('child could not be stopped; left running', { name: c.name, pid: c.pid, hint: UNKILLABLE_HINT });
      }),
    );
  }
}

/** The child's exit, or `null` if it is still running after `ms`. */
export async function exitedWithin(child: ChildHandle, ms: number): Promise<ChildExit | null> {
  let timer: NodeJS.Timeout | undefined;
  const result = await Promise.race([
    child.exited,
    new Promise<null>((resolve) => {
      timer = setTimeout(() => resolve(null), ms);
    }),
  ]);
  clearTimeout(timer);
  return result;
}

/** How `terminateChild` ended: by SIGTERM (or already gone), by SIGKILL, or not at all. */
export type TerminateOutcome = 'exited' | 'killed' | 'survived';

/** How long `terminateChild` waits for a SIGKILLed child before giving up on it. */
export const KILL_WAIT_MS = 2000;

/** Why a child can survive SIGKILL, for logs. */
export const UNKILLABLE_HINT = 'a signal to a child that runs as another user needs CAP_KILL (EPERM otherwise); it ends with the container';

/**
 * SIGTERM, then SIGKILL if the child is still running after `graceMs`. Always
 * bounded: gives up `killWaitMs` after SIGKILL and returns `survived`, so
 * that a child podvisor may not signal (EPERM) cannot hang a teardown. A
 * SIGTERM that cannot be sent skips the grace period.
 */
export async function terminateChild(child: ChildHandle, graceMs: number, killWaitMs: number = KILL_WAIT_MS): Promise<TerminateOutcome> {
  if (!child.running) return 'exited';
  if (child.kill('SIGTERM') && (await exitedWithin(child, graceMs)) !== null) return 'exited';
  if (!child.running) return 'exited';
  child.kill('SIGKILL');
  return (await exitedWithin(child, killWaitMs)) !== null ? 'killed' : 'survived';
}

/** The absolute path of an executable (as given when it contains a slash, else found on PATH), or null. */
export function resolveExecutable(file: string): string | null {
  const candidates = file.includes('/') ? [file] : (process.env['PATH'] ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin').split(':').filter((d) => d !== '').map((d) => path.join(d, file));
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      if (statSync(c).isFile()) return c;
    } catch {
      // not here
    }
  }
  return null;
}

let setpriv: string | null | undefined;

/** util-linux's setpriv, looked up once per process (null when it is not installed). */
function setprivPath(): string | null {
  if (setpriv === undefined) setpriv = resolveExecutable('setpriv');
  return setpriv;
}

const RUNNERS = new Set<ExecaProcessRunner>();
let exitHookInstalled = false;

/** Last resort, when podvisor exits without stopAll() (a crash): nothing it started outlives it. */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const r of RUNNERS) r.killAllNow();
  });
}

function isNotFound(result: { code?: string; cause?: unknown; failed: boolean; exitCode?: number }): boolean {
  const cause = result.cause as NodeJS.ErrnoException | undefined;
  return result.failed && result.exitCode === undefined && (result.code === 'ENOENT' || cause?.code === 'ENOENT');
}

const PACKAGE_HINTS: Record<string, string> = {
  'qemu-system-x86_64': 'qemu-system-x86',
  'qemu-img': 'qemu-utils',
  dnsmasq: 'dnsmasq-base',
  nft: 'nftables',
  ip: 'iproute2',
  genisoimage: 'genisoimage',
  sysctl: 'procps',
  setpriv: 'util-linux',
  mknod: 'coreutils',
  cat: 'coreutils',
};

/** The Debian package that provides an executable podvisor spawns, when known. */
export function debianPackageOf(file: string): string | undefined {
  return PACKAGE_HINTS[file.split('/').pop() ?? file];
}

function notFound(file: string, argv: readonly string[], cause: unknown): PodvisorError {
  const base = file.split('/').pop() ?? file;
  const pkg = debianPackageOf(base);
  return new PodvisorError('ERR_PROCESS_NOT_FOUND', `${file} is not installed or not on PATH`, {
    hint: pkg === undefined ? `install ${base}` : `install the Debian package ${pkg} (apt-get install ${pkg})`,
    cause,
    details: { argv },
  });
}

function tail(s: string): string {
  return s.length > 2000 ? s.slice(-2000) : s;
}
