import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ExecaProcessRunner, JsonLogger, PodvisorError, SilentLogger, type ConfigDriveRequest } from '@podvisor/core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GenisoimageConfigDriveBuilder } from './genisoimage-config-drive-builder.js';

const runner = new ExecaProcessRunner(new SilentLogger());
const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAII+k1AYpUX7Y6+pVzkw3JPbRPNpoh7m1rZBP4Qa37Wz2 a@host';
const USER_DATA = '#cloud-config\nusers:\n  - name: root\n    ssh-authorized-keys:\n      - "ssh-ed25519 AAAA user@host"\nssh_pwauth: true\n';

let dir: string;
let mounted: string | undefined;
let logLines: string[];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'podvisor-configdrive-int-'));
  logLines = [];
});

afterEach(async () => {
  if (mounted !== undefined) await runner.run('umount', [mounted], { check: false });
  mounted = undefined;
  await rm(dir, { recursive: true, force: true });
});

function builder(): GenisoimageConfigDriveBuilder {
  return new GenisoimageConfigDriveBuilder(runner, new JsonLogger({ write: (l: string) => logLines.push(l) }, 'test', 'debug'));
}

function request(overrides: Partial<ConfigDriveRequest> = {}): ConfigDriveRequest {
  return {
    format: 'config-2',
    userDataPath: join(dir, 'userdata'),
    metaDataPath: join(dir, 'metadata'),
    defaultInstanceId: 'vm-7',
    defaultHostname: 'vm-7',
    outputPath: join(dir, 'out', 'config-drive.iso'),
    ...overrides,
  };
}

async function volumeId(iso: string): Promise<string> {
  const { stdout } = await runner.run('isoinfo', ['-d', '-i', iso]);
  return /^Volume id: (.*)$/m.exec(stdout)?.[1] ?? '(none)';
}

async function listFiles(iso: string): Promise<string[]> {
  const { stdout } = await runner.run('isoinfo', ['-R', '-f', '-i', iso]);
  return stdout.split('\n').filter((l) => l !== '').sort();
}

async function extract(iso: string, path: string): Promise<string> {
  return (await runner.run('isoinfo', ['-R', '-x', path, '-i', iso])).stdout;
}

async function caught(promise: Promise<unknown>): Promise<PodvisorError> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof PodvisorError) return err;
    throw err;
  }
  throw new Error('expected a PodvisorError');
}

describe('GenisoimageConfigDriveBuilder with real genisoimage', () => {
  it('builds a config-2 drive in the layout Berth wrote, readable with isoinfo', async () => {
    await mkdir(join(dir, 'out'));
    await writeFile(join(dir, 'userdata'), USER_DATA);
    await writeFile(join(dir, 'metadata'), `instance-id: web-1\nlocal-hostname: web\npublic-keys:\n  - ${KEY}\n`);
    const req = request();

    const drive = await builder().build(req);

    expect(drive).toEqual({ path: req.outputPath, format: 'config-2', instanceId: 'web-1', hostname: 'web', bytes: (await stat(req.outputPath)).size });
    expect(drive?.bytes).toBeGreaterThan(0);
    expect(await volumeId(req.outputPath)).toBe('config-2');
    expect(await listFiles(req.outputPath)).toEqual([
      '/openstack',
      '/openstack/2012-08-10',
      '/openstack/2012-08-10/meta_data.json',
      '/openstack/2012-08-10/user_data',
      '/openstack/latest',
      '/openstack/latest/meta_data.json',
      '/openstack/latest/user_data',
    ]);
    const expectedMeta = `${JSON.stringify({ uuid: 'web-1', hostname: 'web', name: 'web', public_keys: { 'key-0': KEY } }, null, 2)}\n`;
    expect(await extract(req.outputPath, '/openstack/latest/meta_data.json')).toBe(expectedMeta);
    expect(await extract(req.outputPath, '/openstack/2012-08-10/meta_data.json')).toBe(expectedMeta);
    expect(await extract(req.outputPath, '/openstack/latest/user_data')).toBe(USER_DATA);
    // Nothing but the drive is left next to it.
    expect(await readdir(join(dir, 'out'))).toEqual(['config-drive.iso']);
    const built = logLines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === 'config drive built');
    expect(built).toMatchObject({ logger: 'test/configdrive', path: req.outputPath, instanceId: 'web-1' });
    expect(typeof built?.durationMs).toBe('number');
  });

  it('builds a NoCloud cidata seed with meta-data filled from the defaults', async () => {
    await mkdir(join(dir, 'out'));
    await writeFile(join(dir, 'metadata'), 'hostname: db\n');
    const network = 'version: 2\nethernets:\n  eth0:\n    dhcp4: true\n';
    await writeFile(join(dir, 'network-config'), network);
    const req = request({ format: 'nocloud', networkConfigPath: join(dir, 'network-config') });

    const drive = await builder().build(req);

    expect(drive).toMatchObject({ format: 'nocloud', instanceId: 'vm-7', hostname: 'db' });
    expect(await volumeId(req.outputPath)).toBe('cidata');
    expect(await listFiles(req.outputPath)).toEqual(['/meta-data', '/network-config', '/user-data']);
    expect(await extract(req.outputPath, '/meta-data')).toBe('instance-id: vm-7\nlocal-hostname: db\n');
    expect(await extract(req.outputPath, '/user-data')).toBe('');
    expect(await extract(req.outputPath, '/network-config')).toBe(network);
  });

  it('returns null and writes nothing when neither user-data nor meta-data exists', async () => {
    await mkdir(join(dir, 'out'));
    const req = request();
    expect(await builder().build(req)).toBeNull();
    expect(await readdir(join(dir, 'out'))).toEqual([]);
  });

  it('replaces an existing drive', async () => {
    await mkdir(join(dir, 'out'));
    const req = request();
    await writeFile(req.outputPath, 'old drive');
    await writeFile(join(dir, 'metadata'), 'uuid: second\n');
    const drive = await builder().build(req);
    expect(drive?.instanceId).toBe('second');
    expect(await volumeId(req.outputPath)).toBe('config-2');
    expect(await readdir(join(dir, 'out'))).toEqual(['config-drive.iso']);
  });

  it('reports malformed meta-data with the file, line and column, and writes nothing', async () => {
    await mkdir(join(dir, 'out'));
    await writeFile(join(dir, 'metadata'), 'instance-id: a\n  local-hostname: b\n');
    const req = request();
    const err = await caught(builder().build(req));
    expect(err.code).toBe('ERR_CONFIGDRIVE_YAML');
    expect(err.message).toContain(`meta-data ${req.metaDataPath} at line 1, column 14`);
    expect(await readdir(join(dir, 'out'))).toEqual([]);
  });

  it('reports a source that is a directory (a ConfigMap mounted without subPath)', async () => {
    await mkdir(join(dir, 'userdata'));
    const req = request();
    const err = await caught(builder().build(req));
    expect(err.code).toBe('ERR_CONFIGDRIVE_READ');
    expect(err.message).toBe(`cannot read user-data ${req.userDataPath}: it is a directory, not a file`);
    expect(err.hint).toContain('subPath');
  });

  it('refuses a source over the limit from its size, before reading it', async () => {
    await writeFile(join(dir, 'userdata'), Buffer.alloc(1024 * 1024));
    const err = await caught(builder().build(request()));
    expect(err.code).toBe('ERR_CONFIGDRIVE_TOO_LARGE');
    expect(err.message).toBe(`user-data ${join(dir, 'userdata')} is 1048576 bytes, over the config drive limit of 65536 bytes (64 KiB)`);
  });

  it('reports a missing output directory as a write error naming it', async () => {
    await writeFile(join(dir, 'metadata'), 'uuid: a\n');
    const req = request({ outputPath: join(dir, 'nowhere', 'drive.iso') });
    const err = await caught(builder().build(req));
    expect(err.code).toBe('ERR_CONFIGDRIVE_WRITE');
    expect(err.message).toContain(`cannot write the config drive ${req.outputPath}: cannot create a staging directory in ${join(dir, 'nowhere')}`);
  });

  describe.skipIf(process.getuid?.() !== 0)('when genisoimage itself fails (needs root to mount a tiny tmpfs)', () => {
    it('gives a clear error, keeps the previous drive and leaves no temporary file behind', async () => {
      const out = join(dir, 'out');
      await mkdir(out);
      // 100 KiB holds the staged files but not the ~370 KiB image: genisoimage fails with ENOSPC mid-write.
      await runner.run('mount', ['-t', 'tmpfs', '-o', 'size=100k', 'podvisor-configdrive-test', out]);
      mounted = out;
      const req = request();
      await writeFile(req.outputPath, 'previous drive');
      await writeFile(join(dir, 'metadata'), 'uuid: a\n');
      await writeFile(join(dir, 'userdata'), USER_DATA);

      const err = await caught(builder().build(req));

      expect(err.code).toBe('ERR_CONFIGDRIVE_ISO');
      expect(err.message).toMatch(new RegExp(`^genisoimage could not build the config drive ${req.outputPath}: .*No space left on device`));
      expect(err.hint).toContain('free space');
      expect(await readdir(out)).toEqual(['config-drive.iso']);
      expect(await readFile(req.outputPath, 'utf8')).toBe('previous drive');
    });
  });
});
