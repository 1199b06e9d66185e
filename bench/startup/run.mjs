#!/usr/bin/env node
// bench/startup: time from `podvisor run` to QMP connected, against a plain
// shell script (baseline.sh) that runs the same qemu command line and connects
// to QMP, alternating the two in the same run. Prints a Markdown table.
// Usage: node bench/startup/run.mjs [iterations]   (needs `make build guest`)
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir, cpus } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = fileURLToPath(new URL('../../', import.meta.url));
const cli = path.join(repo, 'apps/supervisord/dist/bundle/podvisor.cjs');
const guest = path.join(repo, 'test/guest/.cache/guest.qcow2');
const iterations = Number(process.argv[2] ?? 10);
const root = mkdtempSync(path.join(tmpdir(), 'pv-bench-startup-'));
// Removed however the bench ends: done, failed or interrupted.
const cleanup = () => rmSync(root, { recursive: true, force: true });
process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));

/** Spawns argv; resolves with ms from spawn until a stream line matches `re`; then runs `stop`. */
function timeUntil(argv, env, stream, re) {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(argv[0], argv.slice(1), { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let buf = '';
    let ms = null;
    let text = '';
    child[stream].setEncoding('utf8').on('data', (d) => {
      buf += d;
      if (ms === null && re.test(buf)) {
        ms = Number(process.hrtime.bigint() - t0) / 1e6;
        if (stream === 'stderr') child.kill('SIGTERM');
      }
      text = buf;
    });
    child.on('close', (code) => (ms === null ? reject(new Error(`no match (exit ${code}): ${text.slice(-2000)}`)) : resolve({ ms, text })));
  });
}

const env = {
  HOSTNAME: 'pvbench',
  IMG_SOURCE: guest,
  IMG_RAM_MB: '256',
  PODVISOR_IMAGES_DIR: path.join(root, 'images'),
  PODVISOR_DISK_DIR: path.join(root, 'disk'),
  PODVISOR_USERDATA: path.join(root, 'none'),
  PODVISOR_METADATA: path.join(root, 'none'),
  PODVISOR_NETWORK: 'none',
  PODVISOR_ACCEL: 'tcg',
  PODVISOR_STOP_GRACE: '0',
  NO_VNC: '1',
};

// One warm-up run creates the pet disk and gives the exact qemu argv podvisor uses.
const warm = await timeUntil([process.execPath, cli, 'run'], env, 'stderr', /"msg":"QMP connected"/);
const spawned = warm.text.split('\n').map((l) => { try { return JSON.parse(l); } catch { return null; } }).find((l) => l?.msg === 'spawned' && l.name === 'qemu');
const qemuArgv = spawned.argv;
const qmpChardev = qemuArgv.find((a) => a.startsWith('socket,id=qmp,'));
const sock = /path=([^,]+)/.exec(qmpChardev ?? '')?.[1];
if (sock === undefined) throw new Error(`cannot find the QMP socket in ${qemuArgv.join(' ')}`);

const pv = [];
const sh = [];
for (let i = 0; i < iterations; i++) {
  pv.push((await timeUntil([process.execPath, cli, 'run'], env, 'stderr', /"msg":"QMP connected"/)).ms);
  sh.push((await timeUntil(['bash', path.join(repo, 'bench/startup/baseline.sh'), sock, ...qemuArgv], {}, 'stdout', /QMP connected/)).ms);
}
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
const fmt = (x) => x.toFixed(0);
const mp = median(pv);
const ms = median(sh);
console.log(`machine: ${cpus().length} × ${cpus()[0]?.model}, node ${process.version}, ${new Date().toISOString().slice(0, 10)}, ${iterations} runs each, alternating`);
console.log('| | median ms | min ms | max ms |');
console.log('|---|---|---|---|');
console.log(`| podvisor run → QMP connected | ${fmt(mp)} | ${fmt(Math.min(...pv))} | ${fmt(Math.max(...pv))} |`);
console.log(`| shell script → QMP connected | ${fmt(ms)} | ${fmt(Math.min(...sh))} | ${fmt(Math.max(...sh))} |`);
console.log(`| podvisor overhead (median difference) | ${fmt(mp - ms)} | | |`);
console.log(`| ratio podvisor / shell | ${(mp / ms).toFixed(2)} | | |`);
