import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { probeDevice, probeSysctl, probeVolume, readCapabilities } from './preflight-probes.js';

let root: string;

beforeEach(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'pv-int-probes-'));
});

afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('the preflight probes, on this host', () => {
  it('a volume that exists is writable, reports its free bytes, and keeps no probe file', async () => {
    const probe = probeVolume(root);
    expect(probe).toMatchObject({ state: 'writable', exists: true, existing: root });
    expect(probe.state === 'writable' && probe.freeBytes > 0).toBe(true);
    expect(await readdir(root)).toEqual([]);
  });

  it('a volume that does not exist yet is checked in the nearest directory that does, and is not created', async () => {
    const nested = path.join(root, 'a', 'b', 'disk');
    expect(probeVolume(nested)).toMatchObject({ state: 'writable', exists: false, existing: root });
    expect(await readdir(root)).toEqual([]);
  });

  it('a file where a directory (or one of its parents) should be is named', async () => {
    await writeFile(path.join(root, 'disk'), 'x');
    expect(probeVolume(path.join(root, 'disk'))).toEqual({ state: 'not-a-directory', blocker: path.join(root, 'disk') });
    expect(probeVolume(path.join(root, 'disk', '.podvisor'))).toEqual({ state: 'not-a-directory', blocker: path.join(root, 'disk') });
  });

  it('devices: /dev/null opens read-write; a missing one says ENOENT', () => {
    expect(probeDevice('/dev/null')).toEqual({ opens: true });
    expect(probeDevice(path.join(root, 'no-such-device'))).toMatchObject({ opens: false, code: 'ENOENT' });
  });

  it('sysctls: reads the value and tries a write-open, which changes nothing', async () => {
    const before = probeSysctl('net.ipv4.ip_forward');
    expect(before.value).toMatch(/^[01]$/);
    expect(probeSysctl('net.ipv4.ip_forward').value).toBe(before.value);
    const missing = probeSysctl('net.ipv4.no_such_sysctl');
    expect(missing).toMatchObject({ value: null, writable: { code: 'ENOENT' } });
  });

  it("reads this process's capability sets", () => {
    const caps = readCapabilities('/proc/self/status');
    expect('effective' in caps && caps.effective.size > 0).toBe(process.getuid?.() === 0);
    expect(readCapabilities(path.join(root, 'status'))).toMatchObject({ error: expect.stringContaining('ENOENT') });
  });
});
