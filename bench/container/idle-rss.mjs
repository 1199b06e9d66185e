#!/usr/bin/env node
// podvisor's idle resident memory with the guest running, per set of node
// options: for each set, `podvisor run` (the bundle, the test guest, TCG, no
// network) starts, and once the guest says it is ready, the VmRSS of the node
// process is sampled six times, 3 s apart; then the split of the last sample
// (anonymous memory vs file-backed pages, mostly node's own code), and
// node's own floor (an idle `node -e setInterval`) for comparison. Each set
// runs twice and the second start is reported: V8 rejects a code cache made
// with other flags, and the first start with new flags rewrites it.
//   usage: node bench/container/idle-rss.mjs ['OPTIONS' ...]    (make build guest first)
//   e.g.   node bench/container/idle-rss.mjs '' '--max-semi-space-size=1'
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = fileURLToPath(new URL('../../', import.meta.url));
const cli = path.join(repo, 'apps/supervisord/dist/bundle/podvisor.cjs');
const guest = path.join(repo, 'test/guest/.cache/guest.qcow2');
const sets = process.argv.length > 2 ? process.argv.slice(2) : ['', '--max-semi-space-size=1'];
const kib = (status, key) => Number(new RegExp(`${key}:\\s+(\\d+)`).exec(status)?.[1] ?? NaN);
const mib = (k) => (k / 1024).toFixed(1);

async function measure(options) {
  const root = mkdtempSync(path.join(tmpdir(), 'pvrss-'));
  const env = {
    PATH: process.env.PATH, HOSTNAME: 'rss', IMG_SOURCE: guest, IMG_TARGET: 'guest.qcow2', IMG_RAM_MB: '256',
    PODVISOR_IMAGES_DIR: path.join(root, 'images'), PODVISOR_DISK_DIR: path.join(root, 'disk'),
    PODVISOR_NETWORK: 'none', PODVISOR_ACCEL: 'tcg', PODVISOR_LISTEN: '127.0.0.1:0', NO_VNC: '1', PODVISOR_LOG_LEVEL: 'warn',
  };
  const child = spawn(process.execPath, [...options.split(' ').filter(Boolean), cli, 'run'], { env, stdio: ['ignore', 'pipe', 'ignore'] });
  try {
    let out = '';
    await new Promise((resolve, reject) => {
      child.stdout.on('data', (d) => {
        out += d;
        if (out.includes('PODVISOR-GUEST-READY')) resolve();
      });
      child.once('close', (code) => reject(new Error(`podvisor exited (${code}) before the guest was ready`)));
    });
    const samples = [];
    let status = '';
    for (let i = 0; i < 6; i++) {
      await new Promise((r) => setTimeout(r, 3000));
      status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
      samples.push(kib(status, 'VmRSS'));
    }
    return { samples, anon: kib(status, 'RssAnon'), file: kib(status, 'RssFile') };
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => (child.exitCode !== null ? r() : child.once('close', r)));
    rmSync(root, { recursive: true, force: true });
  }
}

const floor = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)']);
await new Promise((r) => setTimeout(r, 2000));
const floorStatus = readFileSync(`/proc/${floor.pid}/status`, 'utf8');
floor.kill();
console.log(`node ${process.version}, idle node -e setInterval: VmRSS ${mib(kib(floorStatus, 'VmRSS'))} MiB (anon ${mib(kib(floorStatus, 'RssAnon'))}, file ${mib(kib(floorStatus, 'RssFile'))})`);
console.log('| node options | VmRSS MiB, 6 samples | anon MiB | file-backed MiB |');
console.log('|---|---|---|---|');
for (const options of sets) {
  await measure(options);
  const { samples, anon, file } = await measure(options);
  console.log(`| ${options === '' ? '(none)' : `\`${options}\``} | ${samples.map(mib).join(', ')} | ${mib(anon)} | ${mib(file)} |`);
}
