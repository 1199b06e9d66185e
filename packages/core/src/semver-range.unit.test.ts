import { describe, expect, it } from 'vitest';
import { compareSemver, parseSemver, parseSemverRange, satisfiesSemverRange } from './semver-range.js';

function sat(version: string, range: string): boolean {
  const v = parseSemver(version);
  const r = parseSemverRange(range);
  if (v === undefined || r === undefined) throw new Error(`bad test input ${version} / ${range}`);
  return satisfiesSemverRange(v, r);
}

describe('parseSemver', () => {
  it.each(['1.2.3', '0.0.0', '10.20.30'])('%s parses', (t) => expect(parseSemver(t)).toBeDefined());
  it.each(['1.2', 'v1.2.3', '01.2.3', '1.2.3-beta', '1.2.3+b', '1.2.3.4', '', 'x'])('%s does not', (t) => expect(parseSemver(t)).toBeUndefined());
  it('compares by major, minor, patch as numbers', () => {
    expect(compareSemver(parseSemver('1.10.0')!, parseSemver('1.9.9')!)).toBeGreaterThan(0);
    expect(compareSemver(parseSemver('2.0.0')!, parseSemver('2.0.0')!)).toBe(0);
    expect(compareSemver(parseSemver('1.0.9')!, parseSemver('1.0.10')!)).toBeLessThan(0);
  });
});

describe('satisfiesSemverRange, on the documented subset (the same answers as npm semver)', () => {
  // [version, range, satisfied]
  const table: Array<[string, string, boolean]> = [
    ['2.0.0', '^2.0.0', true],
    ['2.5.1', '^2.0.0', true],
    ['3.0.0', '^2.0.0', false],
    ['1.9.9', '^2.0.0', false],
    ['2.0.0', '^2.1.0', false],
    ['0.2.5', '^0.2.0', true],
    ['0.3.0', '^0.2.0', false],
    ['2.1.9', '~2.1.0', true],
    ['2.2.0', '~2.1.0', false],
    ['2.1.0', '~2.1.3', false],
    ['2.0.0', '2.0.0', true],
    ['2.0.1', '2.0.0', false],
    ['2.0.1', '=2.0.1', true],
    ['2.9.0', '2', true],
    ['3.0.0', '2', false],
    ['2.9.0', '2.x', true],
    ['2.1.7', '2.1', true],
    ['2.2.0', '2.1.x', false],
    ['1.0.0', '>=1.0.0 <2.0.0', true],
    ['2.0.0', '>=1.0.0 <2.0.0', false],
    ['2.0.0', '>1.0.0 <=2.0.0', true],
    ['1.0.0', '>1.0.0', false],
    ['1.5.0', '^1.0.0 || ^2.0.0', true],
    ['2.5.0', '^1.0.0 || ^2.0.0', true],
    ['3.0.0', '^1.0.0 || ^2.0.0', false],
    ['2.0.0', '  ^2.0.0  ', true],
  ];
  it.each(table)('%s in %s: %s', (version, range, expected) => expect(sat(version, range)).toBe(expected));

  it.each(['', ' ', '^2', '~2.1', '>=2', 'latest', '2.x.1', '>= 2.0.0', '^2.0.0 ||', 'a || b', '1.2.3-rc.1', '*'])('%j is not a range of the subset', (r) => {
    expect(parseSemverRange(r)).toBeUndefined();
  });
});
