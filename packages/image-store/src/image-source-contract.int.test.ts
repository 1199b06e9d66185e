/** The built-in image sources pass the ImageSource contract suite that plugin authors run: file paths, and http against a local server. */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describeImageSourceContract } from '@podvisor/core/testing';
import { HttpImageServer } from '../../../test/support/http-image-server.js';
import { HttpImageSource } from './http-image-source.js';
import { LocalFileImageSource } from './local-file-image-source.js';

describeImageSourceContract('file', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'pv-file-contract-'));
  return {
    source: new LocalFileImageSource(),
    serve: async (content) => {
      const file = path.join(dir, `image-${randomBytes(3).toString('hex')}.qcow2`);
      await writeFile(file, content);
      return `file://${file}`;
    },
    missing: async () => `file://${path.join(dir, 'nothing-here.qcow2')}`,
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
});

describeImageSourceContract('http', async () => {
  const server = await new HttpImageServer().start();
  // Quick retries; the source's own timeouts (30 s), which a loaded machine does not run into.
  const fast = { backoffInitialMs: 10, backoffMaxMs: 50, maxAttempts: 2 };
  return {
    source: new HttpImageSource(fast),
    serve: async (content) => {
      const p = `/image-${randomBytes(3).toString('hex')}`;
      await server.serve(p, content);
      return server.url(p);
    },
    missing: async () => server.url('/nothing-here'),
    cleanup: () => server.close(),
  };
});
