import { describe, expect, it } from 'vitest';
import { ConfigError } from '@podvisor/core';
import { ControlTokens } from './control-tokens.js';

const FILE = `# control tokens
ops:admin:aaaaaaaaaaaaaaaaaaaaaaaa

grafana:read:bbbbbbbbbbbbbbbbbbbbbbbb
`;

describe('ControlTokens', () => {
  it('parses name:role:token lines and authenticates by token', () => {
    const t = ControlTokens.parse(FILE, '/tokens');
    expect(t.configured).toBe(true);
    expect(t.authenticate('aaaaaaaaaaaaaaaaaaaaaaaa')).toEqual({ name: 'ops', role: 'admin' });
    expect(t.authenticate('bbbbbbbbbbbbbbbbbbbbbbbb')).toEqual({ name: 'grafana', role: 'read' });
    expect(t.authenticate('aaaaaaaaaaaaaaaaaaaaaaa')).toBeNull();
    expect(t.authenticate('')).toBeNull();
  });

  it('reports every bad line by file:line without echoing the token', () => {
    let err: unknown;
    try {
      ControlTokens.parse('ops:root:aaaaaaaaaaaaaaaaaaaaaaaa\nshort:read:abc\nops:admin:cccccccccccccccccccccc\nops:read:dddddddddddddddddddd\n', '/tokens');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const problems = (err as ConfigError).problems;
    expect(problems.map((p) => p.path)).toEqual(['/tokens:1', '/tokens:2', '/tokens:4']);
    expect(JSON.stringify(problems)).not.toContain('aaaaaaaa');
  });

  it('with no tokens, none is configured and nothing authenticates', () => {
    expect(ControlTokens.none().configured).toBe(false);
    expect(ControlTokens.none().authenticate('aaaaaaaaaaaaaaaaaaaaaaaa')).toBeNull();
  });
});
