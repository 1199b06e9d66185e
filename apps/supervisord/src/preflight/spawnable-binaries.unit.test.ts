import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
// The one scan of the sources for spawned programs (also the container image test's).
import { scanSpawnedBinaries } from '../../../../test/support/spawned-binaries.js';
import { spawnableBinaries } from './preflight.js';

const repo = fileURLToPath(new URL('../../../../', import.meta.url));

describe('spawnableBinaries: the adapters declare every binary they spawn', () => {
  it('lists each binary the sources spawn by name (a new spawn needs a prerequisites declaration)', async () => {
    const declared = await spawnableBinaries();
    const { binaries, unresolved } = scanSpawnedBinaries(repo);
    expect(unresolved).toEqual([]);
    const undeclared = [...binaries].filter(([name]) => !declared.includes(name)).map(([name, files]) => `${name} (${[...files].join(', ')})`);
    expect(undeclared).toEqual([]);
  });

  it('is sorted, without repeats, and holds what every configuration spawns', async () => {
    const binaries = await spawnableBinaries();
    expect(binaries).toEqual([...new Set(binaries)].sort());
    expect(binaries).toEqual(expect.arrayContaining(['qemu-system-x86_64', 'qemu-img', 'genisoimage', 'dnsmasq', 'ip', 'nft', 'setpriv']));
  });
});
