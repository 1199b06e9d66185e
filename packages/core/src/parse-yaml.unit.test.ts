import { describe, expect, it } from 'vitest';
import { billionLaughsYaml } from './billion-laughs.js';
import { YAML_MAX_ALIAS_COUNT, parseYaml } from './parse-yaml.js';

describe('parseYaml', () => {
  it('returns plain data, aliases included, for ordinary YAML', () => {
    expect(parseYaml('base: &b {cpu: 2}\nvm: *b\n')).toEqual({ ok: true, value: { base: { cpu: 2 }, vm: { cpu: 2 } } });
    expect(parseYaml('a: yes\n', { version: '1.1' })).toEqual({ ok: true, value: { a: true } });
    expect(parseYaml('')).toEqual({ ok: true, value: null });
  });

  it('refuses a billion-laughs document with the line of the alias that passes the bound, without expanding it', () => {
    const r = parseYaml(billionLaughsYaml());
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.problems).toHaveLength(1);
    expect(r.problems[0]).toMatchObject({ code: 'ALIAS_BOMB', line: 4, column: 9, expected: `at most ${YAML_MAX_ALIAS_COUNT} alias expansions in the document` });
    expect(r.problems[0]?.message).toBe('aliases expand to more than 100 nodes at alias *c (a "billion laughs" alias bomb is refused)');
  });

  it('honours a lower bound, counting each alias with the aliases it expands to, and refuses an alias inside its own anchor', () => {
    const text = 'a: &a [1]\nb: &b [*a, *a]\nc: [*b]\n';
    // *a, *a, then *b (itself and the two inside it): 5.
    expect(parseYaml(text, { maxAliasCount: 5 }).ok).toBe(true);
    expect(parseYaml(text, { maxAliasCount: 4 })).toMatchObject({ ok: false, problems: [{ code: 'ALIAS_BOMB', line: 3, column: 5 }] });
    expect(parseYaml('a: &a [*a]\n')).toMatchObject({ ok: false, problems: [{ code: 'ALIAS_BOMB', line: 1, column: 8 }] });
  });

  it('names an alias with no anchor instead of throwing', () => {
    expect(parseYaml('a: 1\nb: *nowhere\n')).toEqual({
      ok: false,
      problems: [{ code: 'UNRESOLVED_ALIAS', message: 'alias *nowhere has no anchor &nowhere before it', expected: 'every alias *NAME after its anchor &NAME', line: 2, column: 4 }],
    });
  });

  it('lists syntax errors with line, column and the excerpt', () => {
    const r = parseYaml('vm:\n  vcpus: [1\n');
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.problems[0]).toMatchObject({ expected: 'valid YAML', line: expect.any(Number), column: expect.any(Number) });
    expect(r.problems[0]?.message).not.toMatch(/at line/);
  });
});
