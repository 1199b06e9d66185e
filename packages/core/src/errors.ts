/**
 * One coded error base for the whole of podvisor. Every error a user can meet
 * carries a stable `code` (`ERR_<AREA>_<REASON>`), a `hint` for the operator,
 * and the `cause` it wraps. Codes are listed in docs/errors.md; the composition
 * root maps them to HTTP statuses and exit codes, nothing else does.
 */

export interface PodvisorErrorOptions {
  /** What the operator can do about it. */
  hint?: string;
  /** The error this one wraps. */
  cause?: unknown;
  /** Structured facts for logs and API bodies (never secrets). */
  details?: Record<string, unknown>;
}

export class PodvisorError extends Error {
  readonly code: string;
  readonly hint: string | undefined;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: string, message: string, options: PodvisorErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'PodvisorError';
    this.code = code;
    this.hint = options.hint;
    this.details = options.details;
  }

  /** A JSON-safe view, for logs, events and API bodies. */
  toJSON(): { code: string; message: string; hint?: string; details?: Record<string, unknown> } {
    return {
      code: this.code,
      message: this.message,
      ...(this.hint === undefined ? {} : { hint: this.hint }),
      ...(this.details === undefined ? {} : { details: this.details }),
    };
  }
}

/** One problem with one configuration field. */
export interface ConfigProblem {
  /** Where the value came from and its path, e.g. `env IMG_RAM_MB` or `yaml vm.memoryMb`. */
  path: string;
  /** The value as given (already redacted if secret). */
  value: unknown;
  /** What was expected instead. */
  expected: string;
}

/** Bad input, reported all at once: every problem names its path, value and expectation. */
export class ConfigError extends PodvisorError {
  readonly problems: readonly ConfigProblem[];

  constructor(problems: readonly ConfigProblem[], options: PodvisorErrorOptions = {}) {
    const lines = problems.map((p) => `  - ${p.path}: got ${formatValue(p.value)}, expected ${p.expected}`);
    super(
      'ERR_CONFIG_INVALID',
      `invalid configuration (${problems.length} problem${problems.length === 1 ? '' : 's'}):\n${lines.join('\n')}`,
      { hint: 'fix every listed field; nothing was started or created', ...options },
    );
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

export function formatValue(value: unknown): string {
  if (value === undefined) return '(unset)';
  if (typeof value === 'string') return JSON.stringify(value);
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

export function isPodvisorError(err: unknown): err is PodvisorError {
  return err instanceof PodvisorError;
}

/** The message of anything thrown, for logs. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
