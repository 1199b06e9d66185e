/**
 * The subset of semver ranges a plugin uses to state which plugin API
 * versions it supports, checked by the plugin loader. Pure and exact for that
 * subset (no prereleases, no build metadata):
 *
 * - a version `2.1.0` (exactly that one), with missing parts as wildcards:
 *   `2` and `2.x` mean `>=2.0.0 <3.0.0`, `2.1` and `2.1.x` mean `>=2.1.0 <2.2.0`;
 * - `^2.1.0`: compatible with 2.1.0 (`>=2.1.0 <3.0.0`; for 0.y.z, `<0.(y+1).0`);
 * - `~2.1.0`: the same minor (`>=2.1.0 <2.2.0`);
 * - comparators `>=`, `>`, `<=`, `<`, `=` with a full version, joined by spaces (all must hold);
 * - alternatives joined by `||` (any may hold).
 *
 * Anything else is not a range: `parseSemverRange` returns `undefined`.
 */

export interface SemVer {
  major: number;
  minor: number;
  patch: number;
}

type Comparator = { op: '>=' | '>' | '<=' | '<' | '='; version: SemVer };

/** A parsed range: alternatives of comparator sets. */
export type SemverRange = readonly (readonly Comparator[])[];

const NUM = '(0|[1-9][0-9]*)';
const VERSION = new RegExp(`^${NUM}\\.${NUM}\\.${NUM}$`);
const PARTIAL = new RegExp(`^${NUM}(?:\\.(${NUM.slice(1, -1)}|x|\\*)(?:\\.(${NUM.slice(1, -1)}|x|\\*))?)?$`);

/** `1.2.3` exactly (no `v`, no leading zeros, no prerelease), else undefined. */
export function parseSemver(text: string): SemVer | undefined {
  const m = VERSION.exec(text.trim());
  if (m === null) return undefined;
  return { major: Number(m[1]), minor: Number(m[2]), patch: Number(m[3]) };
}

export function formatSemver(v: SemVer): string {
  return `${v.major}.${v.minor}.${v.patch}`;
}

/** Negative, zero or positive as `a` is lower than, equal to or higher than `b`. */
export function compareSemver(a: SemVer, b: SemVer): number {
  return a.major - b.major || a.minor - b.minor || a.patch - b.patch;
}

/** Parses a range of the documented subset; undefined when it is not one. */
export function parseSemverRange(text: string): SemverRange | undefined {
  if (typeof text !== 'string' || text.trim() === '') return undefined;
  const sets: Comparator[][] = [];
  for (const alternative of text.split('||')) {
    const parts = alternative.trim().split(/\s+/);
    if (parts.length === 0 || parts[0] === '') return undefined;
    const set: Comparator[] = [];
    for (const part of parts) {
      const comparators = parseComparator(part);
      if (comparators === undefined) return undefined;
      set.push(...comparators);
    }
    sets.push(set);
  }
  return sets;
}

function parseComparator(part: string): Comparator[] | undefined {
  const op = /^(>=|<=|>|<|=|\^|~)?(.*)$/.exec(part);
  const prefix = op?.[1];
  const rest = op?.[2] ?? '';
  if (prefix === '>=' || prefix === '>' || prefix === '<=' || prefix === '<' || prefix === '=') {
    const version = parseSemver(rest);
    return version === undefined ? undefined : [{ op: prefix, version }];
  }
  if (prefix === '^' || prefix === '~') {
    const v = parseSemver(rest);
    if (v === undefined) return undefined;
    const upper =
      prefix === '~' || v.major === 0 ? { major: v.major, minor: v.minor + 1, patch: 0 } : { major: v.major + 1, minor: 0, patch: 0 };
    return [
      { op: '>=', version: v },
      { op: '<', version: upper },
    ];
  }
  const exact = parseSemver(rest);
  if (exact !== undefined) return [{ op: '=', version: exact }];
  const m = PARTIAL.exec(rest);
  if (m === null) return undefined;
  const major = Number(m[1]);
  const minor = m[2] === undefined || m[2] === 'x' || m[2] === '*' ? undefined : Number(m[2]);
  if (minor === undefined && m[3] !== undefined && m[3] !== 'x' && m[3] !== '*') return undefined;
  if (minor === undefined) return [{ op: '>=', version: { major, minor: 0, patch: 0 } }, { op: '<', version: { major: major + 1, minor: 0, patch: 0 } }];
  return [{ op: '>=', version: { major, minor, patch: 0 } }, { op: '<', version: { major, minor: minor + 1, patch: 0 } }];
}

/** True when `version` lies in `range`. */
export function satisfiesSemverRange(version: SemVer, range: SemverRange): boolean {
  return range.some((set) =>
    set.every(({ op, version: bound }) => {
      const c = compareSemver(version, bound);
      switch (op) {
        case '>=':
          return c >= 0;
        case '>':
          return c > 0;
        case '<=':
          return c <= 0;
        case '<':
          return c < 0;
        case '=':
          return c === 0;
        default: {
          const never: never = op;
          return never;
        }
      }
    }),
  );
}
