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

const REDACTED = '***';

/**
 * A URL as logs, events, error messages, API answers and the image cache's
 * metadata may show it: the user and password, the value of every query
 * parameter (presigned S3 `X-Amz-Signature`, `?token=`, `?sig=`...) and the
 * fragment become `***`; the parameter names stay, to say what was there
 * (a part that does not look like `name=value` is hidden whole).
 * Text that does not parse as a URL loses what looks like credentials
 * (`//user:pw@`) and a query; a local path is returned as given.
 */
export function redactUrl(source: string): string {
  let u: URL;
  try {
    u = new URL(source);
  } catch {
    if (!source.includes('//')) return source;
    return source.replace(/\/\/[^@/\s]*@/, `//${REDACTED}@`).replace(/\?.*$/s, `?${REDACTED}`);
  }
  if (u.username === '' && u.password === '' && u.search === '' && u.hash === '') return source;
  if (u.username !== '') u.username = REDACTED;
  if (u.password !== '') u.password = REDACTED;
  if (u.search !== '') u.search = `?${redactQuery(u.search.slice(1))}`;
  if (u.hash !== '') u.hash = REDACTED;
  return u.toString();
}

/** Every absolute URL in a text (an error message, a command line argument) passed through `redactUrl`. */
export function redactUrlsIn(text: string): string {
  return text.includes('://') ? text.replace(/\b[a-zA-Z][a-zA-Z0-9+.-]*:\/\/[^\s"'<>]+/g, (url) => redactUrl(url)) : text;
}

/** Option keys whose value is a secret, in qemu's `key=value,...` lists and in `--name=value` / `--name value` flags. */
const SECRET_KEY = /^(?:password|passwd|pass|secret|token|api[-_]?key|auth|authorization|credentials?|private[-_]?key)$/i;
/** A secret-valued flag name anywhere in a `--flag`: `--vnc-password`, `--auth-token`, `--client-secret`. */
const SECRET_FLAG = /^--?[A-Za-z0-9-]*(?:password|passwd|token|secret|api-?key|credential)[A-Za-z0-9-]*$/i;
/** qemu booleans: `password=on` says that a password is asked for, it is not one. */
const NOT_A_SECRET = /^(?:on|off|true|false|yes|no)$/;

/**
 * A command line as logs, events and error messages may show it (qemu's argv,
 * with the container CMD's arguments in it): every URL passes through
 * `redactUrl`; in qemu's comma lists, the value of a secret key
 * (`password=`, `token=`, `key=`...) and the `data=` of a `secret` object
 * (`-object secret,id=s0,data=...`) become `***`; so do the value of a
 * `--password=...` style flag and the argument after a bare `--password`.
 * Everything else (paths, devices, sizes, ids) stays, so the line still says
 * what ran. Pure.
 */
export function redactArgv(argv: readonly string[]): string[] {
  return argv.map((arg, i) => {
    const prev = i > 0 ? argv[i - 1] : undefined;
    if (prev !== undefined && SECRET_FLAG.test(prev) && !arg.startsWith('-')) return REDACTED;
    const flag = /^(--?[A-Za-z0-9-]+)=(.*)$/s.exec(arg);
    if (flag !== null && SECRET_FLAG.test(flag[1] as string)) return `${flag[1]}=${REDACTED}`;
    return redactOptionList(arg);
  });
}

/** qemu's `key=value,key=value` (a `,,` is a literal comma inside a value): each part on its own, so a URL hides only its own secrets. */
function redactOptionList(arg: string): string {
  const secretObject = /^secret(?:,|$)/.test(arg) || /(?:^|,)qom-type=secret(?:,|$)/.test(arg);
  return splitOptions(arg)
    .map((part) => {
      const m = /^([A-Za-z][A-Za-z0-9_.-]*)=(.*)$/s.exec(part);
      if (m !== null && (SECRET_KEY.test(m[1] as string) || (secretObject && m[1] === 'data')) && !NOT_A_SECRET.test(m[2] as string)) return `${m[1]}=${REDACTED}`;
      return redactUrlsIn(part);
    })
    .join(',');
}

function splitOptions(arg: string): string[] {
  const parts: string[] = [];
  let current = '';
  for (let i = 0; i < arg.length; i++) {
    if (arg[i] !== ',') current += arg[i];
    else if (arg[i + 1] === ',') {
      current += ',,';
      i++;
    } else {
      parts.push(current);
      current = '';
    }
  }
  parts.push(current);
  return parts;
}

function redactQuery(query: string): string {
  const parts = query.split('&').map((part) => {
    const eq = part.indexOf('=');
    const name = eq < 0 ? '' : part.slice(0, eq);
    return /^[A-Za-z][A-Za-z0-9_.-]{0,39}$/.test(name) ? `${name}=${REDACTED}` : REDACTED;
  });
  return [...new Set(parts)].join('&');
}
