/**
 * The contract every `ConfigDriveBuilder` must pass, as a reusable vitest
 * suite, for each format it provides. Plugin authors run it against theirs
 * the same way. It checks what the supervisor relies on: no drive (and no
 * file) when neither user-data nor meta-data exists; a drive at the output
 * path, of the format asked, whose identity comes from meta-data or else the
 * defaults; a rebuild replaces the previous drive; malformed meta-data is a
 * coded error that names the file and writes nothing.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PodvisorError } from './errors.js';
import type { ConfigDriveBuilder, ConfigDriveRequest } from './ports.js';

export interface ConfigDriveContractSubject {
  builder: ConfigDriveBuilder;
  /** The format to build (the provision's name). */
  format: string;
  /** Removes what the factory made; runs after every test, even a failed one. */
  cleanup?: () => Promise<void>;
}

/** Registers the `ConfigDriveBuilder` contract tests under `describe(name)`. */
export function describeConfigDriveContract(name: string, make: () => Promise<ConfigDriveContractSubject>): void {
  describe(`ConfigDriveBuilder contract: ${name}`, () => {
    let subject: ConfigDriveContractSubject;
    let dir: string;
    let request: ConfigDriveRequest;

    beforeEach(async () => {
      subject = await make();
      dir = await mkdtemp(join(tmpdir(), 'podvisor-config-drive-contract-'));
      request = {
        format: subject.format,
        userDataPath: join(dir, 'userdata'),
        metaDataPath: join(dir, 'metadata'),
        defaultInstanceId: 'iid-contract',
        defaultHostname: 'contract-vm',
        outputPath: join(dir, 'drive.iso'),
      };
    });

    afterEach(async () => {
      await subject.cleanup?.();
      await rm(dir, { recursive: true, force: true });
    });

    it('builds nothing, and writes nothing, when neither user-data nor meta-data exists', async () => {
      expect(await subject.builder.build(request)).toBeNull();
      expect(existsSync(request.outputPath)).toBe(false);
    });

    it('builds the format asked at the output path, with the default identity when meta-data is absent', async () => {
      await writeFile(request.userDataPath, '#cloud-config\nruncmd: [true]\n');
      const drive = await subject.builder.build(request);
      expect(drive).toEqual({ path: request.outputPath, format: subject.format, instanceId: 'iid-contract', hostname: 'contract-vm', bytes: (await stat(request.outputPath)).size });
      expect(drive?.bytes).toBeGreaterThan(0);
    });

    it("takes the identity from meta-data, and a rebuild replaces the previous drive", async () => {
      await writeFile(request.userDataPath, '#cloud-config\n');
      await subject.builder.build(request);
      await writeFile(request.metaDataPath, 'instance-id: iid-from-metadata\nlocal-hostname: host-from-metadata\n');
      const drive = await subject.builder.build(request);
      expect(drive).toMatchObject({ path: request.outputPath, instanceId: 'iid-from-metadata', hostname: 'host-from-metadata' });
      expect(drive?.bytes).toBe((await stat(request.outputPath)).size);
    });

    it('malformed meta-data is a coded error naming the file, and writes nothing', async () => {
      await writeFile(request.metaDataPath, 'instance-id: [unclosed\n');
      const err = await subject.builder.build(request).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(PodvisorError);
      expect((err as PodvisorError).code).toMatch(/^ERR_[A-Z0-9_]+$/);
      expect((err as PodvisorError).message).toContain(request.metaDataPath);
      expect(existsSync(request.outputPath)).toBe(false);
    });
  });
}
