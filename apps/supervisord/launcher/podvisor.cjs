#!/usr/bin/env node
'use strict';
// The podvisor executable. It runs the bundled app (podvisor-app.cjs, built by
// scripts/bundle-cli.mjs) through V8's code cache: compiling the bundle and the
// functions a start runs costs ~90 ms each time (bench/startup), which a PID 1
// that a pod waits on should not pay on every start. Node 20 has no module
// compile cache (Node 22's NODE_COMPILE_CACHE), so this does it with vm.Script.
// One cache per command (`run`, `ctl`, ...), next to the bundle, written at exit
// (see below) atomically and only where the folder is writable; V8 rejects a
// cache made by another Node, with other flags, or for another bundle.
// First of all, for `run`: a PID 1 ignores signals it has no handler for, so a
// SIGTERM sent while the app loads would be lost. Buffer them; `run` takes over
// and replays them (apps/supervisord/src/pid1/early-signals.ts, same symbol).
if (process.argv[2] === 'run') {
  const buffer = { received: [], current: null, handler: null };
  buffer.handler = (signal) => (buffer.current !== null ? buffer.current(signal) : buffer.received.push(signal));
  globalThis[Symbol.for('podvisor.earlySignals')] = buffer;
  for (const s of ['SIGTERM', 'SIGINT', 'SIGQUIT', 'SIGHUP']) process.on(s, buffer.handler);
}
const fs = require('node:fs');
const path = require('node:path');
const vm = require('node:vm');
const { createRequire, wrap } = require('node:module');

const app = path.join(__dirname, 'podvisor-app.cjs');
const command = /^[a-z]+$/.test(process.argv[2] || '') ? process.argv[2] : 'default';
const cacheFile = path.join(__dirname, `.podvisor-app.${command}.${process.version}-${process.arch}.v8cache`);
// The bundle keeps cli.js's `#!` line; inside the wrapper it must be a comment.
const source = fs.readFileSync(app, 'utf8').replace(/^#!/, '//');
let cachedData;
try {
  cachedData = fs.readFileSync(cacheFile);
} catch {
  cachedData = undefined;
}
const script = new vm.Script(wrap(source), { filename: app, cachedData });
// Only its length is needed later: the buffer itself (~1.3 MB) is not kept for the daemon's lifetime.
const cachedLength = cachedData === undefined ? undefined : cachedData.length;
cachedData = undefined;
// Code run by vm.Script cannot import() (Node 20 has no stable hook for it), so
// this file, an ordinary module, imports third-party plugins for the bundle.
globalThis[Symbol.for('podvisor.import')] = (specifier) => import(specifier);
// At exit the cache also holds the functions this run compiled: it is written
// when there was none, when V8 rejected it, or when this run compiled
// noticeably more (the build warms it with a start that stops early).
process.once('exit', () => {
  const tmp = `${cacheFile}.${process.pid}.tmp`;
  try {
    const data = script.createCachedData();
    if (cachedLength !== undefined && !script.cachedDataRejected && data.length < cachedLength * 1.1) return;
    fs.writeFileSync(tmp, data);
    fs.renameSync(tmp, cacheFile);
  } catch {
    try {
      fs.rmSync(tmp, { force: true });
    } catch {
      // a read-only folder: run without a cache
    }
  }
});
const appModule = { exports: {}, id: app, filename: app, loaded: false, children: [], paths: [] };
script.runInThisContext().call(appModule.exports, appModule.exports, createRequire(app), appModule, app, __dirname);
