/**
 * Bearer tokens of the control endpoint. The token file (`PODVISOR_TOKEN_FILE`)
 * holds one token per line as `name:role:token`, where `role` is `read` or
 * `admin`; blank lines and lines starting with `#` are skipped. A token is at
 * least 16 characters of `[A-Za-z0-9._~+/=-]`. Tokens are kept only as SHA-256
 * digests and compared in constant time against every entry, so neither the
 * answer's timing nor its path tells which entry, or how much of one, matched.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { ConfigError, type ConfigProblem } from '@podvisor/core';

export type ControlRole = 'read' | 'admin';

export interface ControlToken {
  /** Names the requester in events: `token:<name>`. */
  name: string;
  role: ControlRole;
}

interface StoredToken extends ControlToken {
  digest: Buffer;
}

const LINE = /^([A-Za-z0-9._-]{1,64}):(read|admin):([A-Za-z0-9._~+/=-]{16,512})$/;

export class ControlTokens {
  private readonly tokens: StoredToken[];

  private constructor(tokens: StoredToken[]) {
    this.tokens = tokens;
  }

  /** No tokens: TCP is read-only. */
  static none(): ControlTokens {
    return new ControlTokens([]);
  }

  /**
   * Parses a token file's text. Throws `ConfigError` listing every bad line
   * (by `file:line`, never echoing a token) and duplicate names.
   */
  static parse(text: string, file: string): ControlTokens {
    const problems: ConfigProblem[] = [];
    const tokens: StoredToken[] = [];
    for (const [i, raw] of text.split('\n').entries()) {
      const line = raw.trim();
      if (line === '' || line.startsWith('#')) continue;
      const m = LINE.exec(line);
      if (m === null) {
        problems.push({ path: `${file}:${i + 1}`, value: '(redacted)', expected: 'name:role:token with role read or admin and a token of 16+ characters [A-Za-z0-9._~+/=-]' });
        continue;
      }
      const [, name = '', role = 'read', token = ''] = m;
      if (tokens.some((t) => t.name === name)) problems.push({ path: `${file}:${i + 1}`, value: name, expected: 'a token name used once' });
      tokens.push({ name, role: role as ControlRole, digest: digest(token) });
    }
    if (problems.length > 0) throw new ConfigError(problems, { hint: 'fix the token file; the control endpoint did not start' });
    return new ControlTokens(tokens);
  }

  get configured(): boolean {
    return this.tokens.length > 0;
  }

  /** The token's entry, or `null` when it matches none. Constant time in the presented token. */
  authenticate(presented: string): ControlToken | null {
    const d = digest(presented);
    let found: StoredToken | null = null;
    for (const t of this.tokens) {
      // No early exit: every entry is compared whatever matched before.
      if (timingSafeEqual(d, t.digest) && found === null) found = t;
    }
    return found === null ? null : { name: found.name, role: found.role };
  }
}

function digest(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}
