#!/usr/bin/env node
// Collects every coded error, warning and notice podvisor raises (ERR_*, WARN_*,
// NOTICE_* string literals in the sources) with where it is raised and the
// first words of its message, and rewrites the generated table in
// docs/errors.md. `--check` exits 1 when the table is out of date (a unit test
// runs it), so the list of codes in the docs cannot drift from the code.
import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = fileURLToPath(new URL('../', import.meta.url));
const roots = ['packages', 'apps'];
const doc = path.join(repo, 'docs/errors.md');
const BEGIN = '<!-- BEGIN GENERATED: scripts/error-codes.mjs -->';
const END = '<!-- END GENERATED -->';

function* sources(dir) {
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules' || name === 'dist' || name === 'build') continue;
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) yield* sources(p);
    else if (/\.ts$/.test(name) && !/\.test\.ts$/.test(name) && !/-contract\.ts$/.test(name)) yield p;
  }
}

const codes = new Map();
for (const root of roots) {
  for (const file of sources(path.join(repo, root))) {
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/['"`]((?:ERR|WARN|NOTICE)_[A-Z0-9_]+)['"`]/g)) {
      const code = m[1];
      if (/_$/.test(code)) continue; // a prefix, not a code
      const rel = path.relative(repo, file);
      const pkg = rel.split('/').slice(0, 2).join('/');
      const entry = codes.get(code) ?? { where: new Set(), message: '' };
      entry.where.add(pkg);
      if (entry.message === '') {
        const after = text.slice(m.index + m[0].length, m.index + m[0].length + 300);
        const msg = /^\s*,\s*(['"`])((?:\\.|(?!\1).)*)\1/s.exec(after);
        if (msg) entry.message = msg[2].replace(/\$\{[^}]*\}/g, '…').replace(/\s+/g, ' ').slice(0, 110);
      }
      codes.set(code, entry);
    }
  }
}

const kind = (c) => (c.startsWith('ERR_') ? 'error' : c.startsWith('WARN_') ? 'warning' : 'notice');
const rows = [...codes.entries()]
  .sort(([a], [b]) => a.localeCompare(b))
  .map(([code, e]) => `| \`${code}\` | ${kind(code)} | ${[...e.where].sort().join(', ')} | ${e.message.replace(/\|/g, '\\|') || '—'} |`);
const table = [BEGIN, '', `${codes.size} codes.`, '', '| code | kind | raised in | message (start) |', '|---|---|---|---|', ...rows, '', END].join('\n');

const current = readFileSync(doc, 'utf8');
const start = current.indexOf(BEGIN);
const end = current.indexOf(END);
if (start < 0 || end < 0) throw new Error(`${doc} lacks the generated-table markers`);
const next = current.slice(0, start) + table + current.slice(end + END.length);
if (process.argv.includes('--check')) {
  if (next !== current) {
    console.error('docs/errors.md is out of date: run node scripts/error-codes.mjs');
    process.exit(1);
  }
  console.log(`docs/errors.md lists all ${codes.size} codes`);
} else {
  writeFileSync(doc, next);
  console.log(`docs/errors.md: ${codes.size} codes`);
}
