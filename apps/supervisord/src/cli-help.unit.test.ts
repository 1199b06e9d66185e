import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { main } from './cli-main.js';
import type { CommandIo } from './commands/run-command.js';

const repo = fileURLToPath(new URL('../../../', import.meta.url));

/** Runs the dispatcher with captured output. */
async function podvisor(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const io = {
    stdout: { write: (s: string) => ((stdout += s), true) },
    stderr: { write: (s: string) => ((stderr += s), true) },
    env: {},
  } as unknown as CommandIo;
  const code = await main(argv, io);
  return { code, stdout, stderr };
}

/** The commands `podvisor --help` lists. */
async function commands(): Promise<string[]> {
  const { stdout } = await podvisor('--help');
  return [...stdout.slice(stdout.indexOf('Commands:')).matchAll(/^ {2}(\w+) {2,}/gm)].map((m) => m[1] as string);
}

describe('podvisor --help and docs/cli.md', () => {
  it('podvisor --help lists the commands docs/cli.md documents, in its synopsis and with a section each', async () => {
    const doc = readFileSync(`${repo}docs/cli.md`, 'utf8');
    const synopsis = doc.slice(doc.indexOf('```'), doc.indexOf('```', doc.indexOf('```') + 3));
    const listed = await commands();
    expect(listed).toEqual(['run', 'doctor', 'events', 'ctl', 'console', 'image', 'plugins', 'version']);
    expect(listed.filter((c) => !synopsis.includes(`\npodvisor ${c} `) && !synopsis.includes(`\npodvisor ${c}\n`))).toEqual([]);
    expect(listed.filter((c) => !new RegExp(`^## podvisor ${c}\\b|^## .*\\bpodvisor ${c}$`, 'm').test(doc))).toEqual([]);
  });

  it('every command answers --help with its usage on stdout and exit 0, and an unknown argument with exit 2', async () => {
    for (const c of await commands()) {
      const help = await podvisor(c, '--help');
      expect([c, help.code, help.stderr, help.stdout.startsWith(`Usage: podvisor ${c}`)]).toEqual([c, 0, '', true]);
      expect([c, (await podvisor(c, '--no-such-flag')).code]).toEqual([c, 2]);
    }
  }, 60_000);

  it('each option row of every --help is "flag [METAVAR]", two spaces or more, then its description, all in one column', async () => {
    const bad: string[] = [];
    const helps = [...(await commands()).map((c) => [c]), ...['pull', 'ls', 'gc', 'rebase'].map((s) => ['image', s])];
    for (const argv of helps) {
      const { code, stdout } = await podvisor(...argv, '--help');
      expect([argv, code]).toEqual([argv, 0]);
      const rows = stdout.split('\n').filter((l) => /^ {2}-[\w-]/.test(l));
      for (const line of rows) {
        if (!/^ {2}(-\w, )?--?[\w-]+( [\w|]+)?( {2,}\S.*)?$/.test(line)) bad.push(`${argv.join(' ')}: ${line}`);
      }
      const columns = new Set(rows.filter((l) => / {2,}\S/.test(l.slice(2))).map((l) => 2 + (/ {2,}\S/.exec(l.slice(2)) as RegExpExecArray).index + (/ {2,}/.exec(l.slice(2)) as RegExpExecArray)[0].length));
      if (columns.size > 1) bad.push(`${argv.join(' ')}: descriptions start at columns ${[...columns].join(', ')}`);
    }
    expect(bad).toEqual([]);
  }, 60_000);
});
