#!/usr/bin/env node
// Builds the `podvisor` executable into apps/supervisord/dist/bundle/:
//   podvisor-app.cjs  the built CLI (dist/cli.js) and every workspace package it
//                     imports, in one CommonJS file;
//   podvisor.cjs      the launcher (apps/supervisord/launcher/podvisor.cjs), which
//                     runs the app through V8's code cache.
// One file loads in a fraction of the time Node needs to resolve and read ~300
// modules, and the code cache removes most of the compile time (bench/startup);
// both matter for a PID 1 that a pod waits on. better-sqlite3 stays external: it
// loads its native addon relative to its own package. The bundle lives one
// folder below dist/, like dist/http and dist/pid1, so the files found relative
// to a module (the reaper addon, api/openapi.yaml, dist/web) resolve the same.
// Then it warms the cache of `run` (module loading is most of a start).
import { execFileSync } from 'node:child_process';
import { chmod, copyFile, readdir, rm } from 'node:fs/promises';
import { build } from 'esbuild';
import { fileURLToPath } from 'node:url';

const dir = fileURLToPath(new URL('../apps/supervisord/dist/bundle/', import.meta.url));
await rm(dir, { recursive: true, force: true });
await build({
  entryPoints: [fileURLToPath(new URL('../apps/supervisord/dist/cli.js', import.meta.url))],
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  external: ['better-sqlite3'],
  // The sources are ES modules that find files next to themselves.
  define: { 'import.meta.url': '__podvisorModuleUrl' },
  banner: { js: "var __podvisorModuleUrl = require('node:url').pathToFileURL(__filename).href;" },
  // Whitespace and syntax only: identifiers stay as written, for readable stack traces.
  minifyWhitespace: true,
  minifySyntax: true,
  sourcemap: 'linked',
  outfile: `${dir}podvisor-app.cjs`,
  logLevel: 'warning',
});
const launcher = `${dir}podvisor.cjs`;
await copyFile(fileURLToPath(new URL('../apps/supervisord/launcher/podvisor.cjs', import.meta.url)), launcher);
await chmod(launcher, 0o755);
// Warm the cache of `run`: a configuration error after all of run's modules are loaded.
try {
  execFileSync(process.execPath, [launcher, 'run', '--config', '/nonexistent/podvisor.yaml'], { stdio: 'ignore', env: { ...process.env, HOSTNAME: 'warmup' } });
} catch {
  // exit 2 is the expected outcome
}
const caches = (await readdir(dir)).filter((f) => f.endsWith('.v8cache'));
if (caches.length === 0) throw new Error('the code cache of run was not written');
