import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { deriveVmMac, ensureVmMac, isUnicastMac } from './vm-mac.js';

const CODES = { file: 'ERR_TEST_MAC_FILE', invalid: 'ERR_TEST_MAC_INVALID' };

describe('deriveVmMac', () => {
  it('is 52:54:00 followed by the first three bytes of sha256(name)', () => {
    // sha256("vm-1") starts with 2d 62 b0 (printf vm-1 | sha256sum).
    expect(deriveVmMac('vm-1')).toBe('52:54:00:2d:62:b0');
    expect(deriveVmMac('vm-1')).toBe(deriveVmMac('vm-1'));
    expect(deriveVmMac('vm-2')).not.toBe(deriveVmMac('vm-1'));
    expect(isUnicastMac(deriveVmMac('anything'))).toBe(true);
  });

  it('checks MACs', () => {
    expect(isUnicastMac('52:54:00:AB:cd:01')).toBe(true);
    expect(isUnicastMac('01:00:5e:00:00:01')).toBe(false);
    expect(isUnicastMac('52:54:00:ab:cd')).toBe(false);
    expect(isUnicastMac('52-54-00-ab-cd-01')).toBe(false);
  });
});

describe('ensureVmMac', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'podvisor-natmac-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('creates <diskDir>/<vm>.mac once, then keeps what the file says', async () => {
    const disk = join(dir, 'disk');
    expect(await ensureVmMac(disk, 'vm-1', CODES)).toEqual({ mac: '52:54:00:2d:62:b0', path: join(disk, 'vm-1.mac'), created: true });
    expect(await readFile(join(disk, 'vm-1.mac'), 'utf8')).toBe('52:54:00:2d:62:b0\n');
    await writeFile(join(disk, 'vm-1.mac'), '52:54:00:AA:BB:CC\n');
    expect(await ensureVmMac(disk, 'vm-1', CODES)).toEqual({ mac: '52:54:00:aa:bb:cc', path: join(disk, 'vm-1.mac'), created: false });
  });

  it('refuses a file that does not hold a unicast MAC', async () => {
    await writeFile(join(dir, 'vm-1.mac'), 'garbage\n');
    await expect(ensureVmMac(dir, 'vm-1', CODES)).rejects.toMatchObject({ code: 'ERR_TEST_MAC_INVALID' });
  });
});
