import { readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { spawnableBinaries } from './preflight.js';

const repo = fileURLToPath(new URL('../../../../', import.meta.url));

function* sources(dir: string): Generator<string> {
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules' || name === 'dist') continue;
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) yield* sources(p);
    else if (name.endsWith('.ts') && !name.endsWith('.test.ts')) yield p;
  }
}

/** The executables the sources spawn by a literal name: `runner.run('ip', ...)`, `spawn('dnsmasq', ...)`, a `qemuBinary ?? '...'` default, `resolveExecutable('setpriv')`. */
function spawnedInSources(): Map<string, string[]> {
  const found = new Map<string, string[]>();
  const patterns = [/\.(?:run|spawn)\(\s*'([a-z0-9_.+-]+)'/g, /qemuBinary\s*\?\?\s*'([a-z0-9_.+-]+)'/g, /resolveExecutable\('([a-z0-9_.+-]+)'\)/g];
  for (const root of ['packages', 'apps']) {
    for (const file of sources(path.join(repo, root))) {
      const text = readFileSync(file, 'utf8');
      for (const re of patterns) for (const m of text.matchAll(re)) found.set(m[1] as string, [...(found.get(m[1] as string) ?? []), path.relative(repo, file)]);
    }
  }
  return found;
}

describe('spawnableBinaries: the adapters declare every binary they spawn', () => {
  it('lists each binary the sources spawn by name (a new spawn needs a prerequisites declaration)', async () => {
    const declared = await spawnableBinaries();
    const undeclared = [...spawnedInSources()].filter(([name]) => !declared.includes(name)).map(([name, files]) => `${name} (${[...new Set(files)].join(', ')})`);
    expect(undeclared).toEqual([]);
  });

  it('is sorted, without repeats, and holds what every configuration spawns', async () => {
    const binaries = await spawnableBinaries();
    expect(binaries).toEqual([...new Set(binaries)].sort());
    expect(binaries).toEqual(expect.arrayContaining(['qemu-system-x86_64', 'qemu-img', 'genisoimage', 'dnsmasq', 'ip', 'nft', 'setpriv']));
  });
});
