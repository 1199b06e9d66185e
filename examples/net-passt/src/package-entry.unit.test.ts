import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

describe('the installed podvisor packages', () => {
  it('importing the plugin API and net-support loads no native module', () => {
    const script = `await import('@podvisor/core'); await import('@podvisor/net-support');
      const { readFileSync } = await import('node:fs');
      console.log(JSON.stringify(readFileSync('/proc/self/maps', 'utf8').split('\\n').filter((l) => l.endsWith('.node'))));`;
    const loaded = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: process.cwd(), encoding: 'utf8' })) as string[];
    expect(loaded).toEqual([]);
  });
});
