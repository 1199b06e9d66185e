#!/usr/bin/env node
// Bundles the built `podvisor` CLI (apps/supervisord/dist/cli.js and every
// workspace package it imports) into one ES module,
// apps/supervisord/dist/bundle/podvisor.mjs: the binary that ships and that the
// e2e tests run. One file loads in a fraction of the time Node needs to
// resolve and read ~300 modules (measured in bench/startup), which matters for
// a PID 1 that a pod waits on. better-sqlite3 stays external: it loads its
// native addon relative to its own package. The bundle lives one folder below
// dist/, like dist/http and dist/pid1, so the files found relative to a
// module (the reaper addon, api/openapi.yaml, dist/web) resolve the same.
import { chmod } from 'node:fs/promises';
import { build } from 'esbuild';
import { fileURLToPath } from 'node:url';

const outfile = fileURLToPath(new URL('../apps/supervisord/dist/bundle/podvisor.mjs', import.meta.url));
await build({
  entryPoints: [fileURLToPath(new URL('../apps/supervisord/dist/cli.js', import.meta.url))],
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  external: ['better-sqlite3'],
  // CommonJS dependencies bundled into ESM still call require() for Node built-ins.
  banner: { js: "import { createRequire as __podvisorCreateRequire } from 'node:module'; const require = __podvisorCreateRequire(import.meta.url);" },
  // Whitespace and syntax only: identifiers (class and function names) stay as
  // written, for readable stack traces; V8 compiles a smaller file faster.
  minifyWhitespace: true,
  minifySyntax: true,
  sourcemap: 'linked',
  outfile,
  logLevel: 'warning',
});
await chmod(outfile, 0o755);
