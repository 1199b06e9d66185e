import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { EVENT_SCHEMA_VERSIONS } from '@podvisor/core';
import { buildAppContainer } from './app-container.js';
import { FIELDS } from './config/config-fields.js';
import { ExitCode } from './exit-codes.js';

const repo = fileURLToPath(new URL('../../../', import.meta.url));

describe('the docs stay true to the code', () => {
  it('docs/errors.md lists every coded error, warning and notice in the sources', () => {
    const out = execFileSync(process.execPath, [`${repo}scripts/error-codes.mjs`, '--check'], { encoding: 'utf8' });
    expect(out).toMatch(/lists all \d+ codes/);
  });

  it('docs/configuration.md documents every setting: its YAML key and its environment variables', () => {
    const doc = readFileSync(`${repo}docs/configuration.md`, 'utf8');
    const missing = Object.values(FIELDS).flatMap((f) => [f.key, ...(f.env ?? []), ...(f.flag === undefined ? [] : [`--${f.flag}`])].filter((k) => !doc.includes(`\`${k}\``)));
    expect(missing).toEqual([]);
  });

  it('docs/configuration.md documents every built-in plugin setting in its provision\'s table: key, variables, type', async () => {
    const doc = readFileSync(`${repo}docs/configuration.md`, 'utf8');
    const { registry } = await buildAppContainer({ logLevel: 'error', imagesDir: '/nonexistent', maxVirtualSizeBytes: 1, plugins: [], logSink: { write: () => true } });
    const rows = doc.split('\n').filter((l) => l.startsWith('| `'));
    const missing = registry.list().flatMap(({ manifest }) =>
      manifest.provides.flatMap((p) =>
        (p.settings ?? []).flatMap((s) => {
          // The provision's section holds a row with the key, every variable and the type.
          const section = doc.slice(doc.indexOf(`### \`${p.name}\``));
          const row = rows.find((r) => r.startsWith(`| \`${s.key}\` |`) && section.includes(r));
          const ok = row !== undefined && (s.env ?? []).every((e) => row.includes(`\`${e}\``)) && row.includes(`| ${s.type} |`);
          return ok ? [] : [`${p.kind}:${p.name} ${s.key}`];
        }),
      ),
    );
    expect(missing).toEqual([]);
  });

  it('docs/events.md describes every event type', () => {
    const doc = readFileSync(`${repo}docs/events.md`, 'utf8');
    expect(Object.keys(EVENT_SCHEMA_VERSIONS).filter((t) => !doc.includes(`| \`${t}\` |`))).toEqual([]);
    // Each row says what the event means (its last cell is not empty).
    const rows = doc.split('\n').filter((l) => l.startsWith('| `'));
    const undescribed = Object.keys(EVENT_SCHEMA_VERSIONS).filter((t) => !rows.some((r) => r.startsWith(`| \`${t}\` |`) && !r.endsWith('|  |')));
    expect(undescribed).toEqual([]);
  });

  it('docs/cli.md lists every exit code of podvisor run, by number and name, as exit-codes.ts has them', () => {
    const cli = readFileSync(`${repo}docs/cli.md`, 'utf8');
    const doc = cli.slice(cli.indexOf('### Exit codes'), cli.indexOf('## podvisor events'));
    const listed = [...doc.matchAll(/^\| (\d+) \| (\w+) \|/gm)].map((m) => [m[2], Number(m[1])]);
    expect(listed).toEqual(Object.entries(ExitCode));
  });
});
