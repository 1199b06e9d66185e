#!/usr/bin/env node
// Bundles noVNC's RFB client (the @novnc/novnc package ships Babel-built
// CommonJS only) into one browser ES module, apps/supervisord/dist/web/novnc-rfb.mjs,
// which the control endpoint serves at /console/novnc/novnc-rfb.mjs.
import { build } from 'esbuild';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const require = createRequire(new URL('../apps/supervisord/package.json', import.meta.url));
// lib/util/browser.js (Babel's CommonJS output) keeps one top-level `await`,
// which cannot live in a CommonJS wrapper: esbuild then treats the file as ESM
// and `exports` is undefined in the browser. The awaited check only decides
// whether to offer H.264 decoding, which qemu's VNC server never uses, so the
// build keeps the default (false) instead of awaiting it.
const noTopLevelAwait = {
  name: 'novnc-no-top-level-await',
  setup(b) {
    b.onLoad({ filter: /@novnc[\\/]novnc[\\/]lib[\\/]util[\\/]browser\.js$/ }, async (args) => {
      const text = await readFile(args.path, 'utf8');
      const patched = text.replace(/^exports\.supportsWebCodecsH264Decode = supportsWebCodecsH264Decode = await _checkWebCodecsH264DecodeSupport\(\);$/m, '');
      if (patched === text) throw new Error(`${args.path}: the top-level await to remove was not found (noVNC changed?)`);
      return { contents: patched, loader: 'js' };
    });
  },
};

await build({
  entryPoints: [require.resolve('@novnc/novnc/lib/rfb.js')],
  plugins: [noTopLevelAwait],
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  minify: true,
  legalComments: 'eof',
  outfile: fileURLToPath(new URL('../apps/supervisord/dist/web/novnc-rfb.mjs', import.meta.url)),
  logLevel: 'warning',
});
