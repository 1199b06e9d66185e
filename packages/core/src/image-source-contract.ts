/**
 * The contract every `ImageSource` must pass, as a reusable vitest suite. A
 * source's own test file calls `describeImageSourceContract` with a factory
 * that serves content under the source's scheme (a file the test wrote, a
 * local HTTP server, an object store it started); plugin authors run it
 * against theirs the same way. It checks what the image store relies on: the
 * bytes and sha256 of what was written, `dest` created exclusively and
 * removed on every failure, a coded error naming the URI, an abort that
 * stops the transfer, and conditional fetches that either say "not
 * modified" or fetch again.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PodvisorError } from './errors.js';
import type { FetchProgress, ImageSource } from './ports.js';

export interface ImageSourceContractSubject {
  source: ImageSource;
  /** Serves `content` and returns its URI, of one of `source.schemes`. */
  serve: (content: Buffer) => Promise<string>;
  /** A URI of the same scheme that names nothing. */
  missing: () => Promise<string>;
  /** Removes what the factory made; runs after every test, even a failed one. */
  cleanup: () => Promise<void>;
}

/** Registers the `ImageSource` contract tests under `describe(name)`. */
export function describeImageSourceContract(name: string, make: () => Promise<ImageSourceContractSubject>): void {
  describe(`ImageSource contract: ${name}`, () => {
    let subject: ImageSourceContractSubject;
    let dir: string;
    const content = Buffer.from(Array.from({ length: 256 * 1024 }, (_, i) => (i * 7) & 255));
    const sha256 = createHash('sha256').update(content).digest('hex');

    beforeEach(async () => {
      subject = await make();
      dir = await mkdtemp(join(tmpdir(), 'podvisor-image-source-contract-'));
    });

    afterEach(async () => {
      await subject.cleanup();
      await rm(dir, { recursive: true, force: true });
    });

    it('names its schemes in lower case', () => {
      expect(subject.source.schemes.length).toBeGreaterThan(0);
      for (const s of subject.source.schemes) expect(s).toMatch(/^[a-z][a-z0-9+.-]*$/);
    });

    it('writes the content to dest with its size and sha256, and reports progress up to the size', async () => {
      const uri = await subject.serve(content);
      const dest = join(dir, 'image');
      const progress: FetchProgress[] = [];
      const result = await subject.source.fetch(uri, dest, { onProgress: (p) => progress.push(p) });
      expect(result).toMatchObject({ notModified: false, bytes: content.length, sha256 });
      expect((await readFile(dest)).equals(content)).toBe(true);
      const seen = progress.map((p) => p.bytes);
      expect(seen).toEqual([...seen].sort((a, b) => a - b));
      if (seen.length > 0) expect(seen.at(-1)).toBe(content.length);
    });

    it('never overwrites an existing dest', async () => {
      const uri = await subject.serve(content);
      const dest = join(dir, 'image');
      await writeFile(dest, 'already here');
      await expect(subject.source.fetch(uri, dest, {})).rejects.toThrow();
      expect(await readFile(dest, 'utf8')).toBe('already here');
    });

    it('a missing source is a coded error that names it, and leaves no dest', async () => {
      const uri = await subject.missing();
      const dest = join(dir, 'image');
      const err = await subject.source.fetch(uri, dest, {}).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(PodvisorError);
      expect((err as PodvisorError).code).toMatch(/^ERR_[A-Z0-9_]+$/);
      expect(existsSync(dest)).toBe(false);
    });

    it('an aborted fetch rejects and leaves no dest', async () => {
      const uri = await subject.serve(content);
      const dest = join(dir, 'image');
      const controller = new AbortController();
      controller.abort(new Error('contract: aborted'));
      await expect(subject.source.fetch(uri, dest, { signal: controller.signal })).rejects.toThrow();
      expect(existsSync(dest)).toBe(false);
    });

    it('given the validators of the last fetch, says "not modified" and writes nothing, or fetches the same bytes again', async () => {
      const uri = await subject.serve(content);
      const first = await subject.source.fetch(uri, join(dir, 'first'), {});
      if (first.notModified) throw new Error('a fetch without validators answered notModified');
      const dest = join(dir, 'second');
      const again = await subject.source.fetch(uri, dest, { ifChanged: first.validators });
      if (again.notModified) expect(existsSync(dest)).toBe(false);
      else expect(again).toMatchObject({ bytes: content.length, sha256 });
    });
  });
}
