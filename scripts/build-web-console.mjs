#!/usr/bin/env node
// Bundles noVNC's RFB client (the @novnc/novnc package ships Babel-built
// CommonJS only) into one browser ES module, apps/supervisord/dist/web/novnc-rfb.mjs,
// which the control endpoint serves at /console/novnc/novnc-rfb.mjs.
import { build } from 'esbuild';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const require = createRequire(new URL('../apps/supervisord/package.json', import.meta.url));
await build({
  entryPoints: [require.resolve('@novnc/novnc/lib/rfb.js')],
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  minify: true,
  legalComments: 'eof',
  outfile: fileURLToPath(new URL('../apps/supervisord/dist/web/novnc-rfb.mjs', import.meta.url)),
  logLevel: 'warning',
});
