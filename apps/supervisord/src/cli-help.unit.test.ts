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

  it('each option row of every --help is "flag [METAVAR]", then two spaces or more, then its description', async () => {
    const bad: string[] = [];
    for (const c of await commands()) {
      const { stdout } = await podvisor(c, '--help');
      for (const line of stdout.split('\n').filter((l) => /^ {2}-[\w-]/.test(l))) {
        if (!/^ {2}(-\w, )?--?[\w-]+( [A-Z]+)?( {2,}\S.*)?$/.test(line)) bad.push(`${c}: ${line}`);
      }
    }
    expect(bad).toEqual([]);
  }, 60_000);
});
