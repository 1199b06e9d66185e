#!/usr/bin/env node
// bench/control: the control endpoint's cost, against a running podvisor and the
// test guest under TCG, loopback only, bounded in count and time.
//   1. GET /v1/vm: latency p50/p99 and throughput, over TCP and the unix socket,
//      with N concurrent keep-alive connections (undici), and the CPU the daemon
//      used meanwhile (from /proc: podvisor is one Node thread, i.e. one core).
//   2. QMP query-status through POST /v1/qmp, against the same command sent
//      straight to a second QMP monitor of the same qemu (added through the
//      container-CMD extra arguments), one at a time, alternating blocks.
// Prints a Markdown section for docs/benchmarks.md.
// Usage: node bench/control/run.mjs [requests=50000] [concurrency=32]   (needs `make build guest`)
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createConnection } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent, request } from 'undici';

const repo = fileURLToPath(new URL('../../', import.meta.url));
const cli = path.join(repo, 'apps/supervisord/dist/bundle/podvisor.cjs');
const guest = path.join(repo, 'test/guest/.cache/guest.qcow2');
const total = Number(process.argv[2] ?? 50_000);
const concurrency = Number(process.argv[3] ?? 32);
const QMP_ROUNDS = 2000;
const TIME_BOUND_MS = 30_000;
const root = mkdtempSync(path.join(tmpdir(), 'pv-bench-control-'));
const qmp2 = path.join(root, 'qmp2.sock');

const child = spawn(process.execPath, [cli, 'run', '--', '-chardev', `socket,id=qmp2,path=${qmp2},server=on,wait=off`, '-mon', 'chardev=qmp2,mode=control'], {
  env: {
    PATH: process.env.PATH,
    HOSTNAME: 'pvbench',
    IMG_SOURCE: guest,
    IMG_RAM_MB: '256',
    PODVISOR_IMAGES_DIR: path.join(root, 'images'),
    PODVISOR_DISK_DIR: path.join(root, 'disk'),
    PODVISOR_USERDATA: path.join(root, 'none'),
    PODVISOR_METADATA: path.join(root, 'none'),
    PODVISOR_NETWORK: 'none',
    PODVISOR_ACCEL: 'tcg',
    PODVISOR_LISTEN: '127.0.0.1:0',
    PODVISOR_STOP_GRACE: '10',
    NO_VNC: '1',
  },
  stdio: ['ignore', 'pipe', 'pipe'],
});
let stdout = '';
let stderr = '';
const waiters = new Set();
child.stdout.setEncoding('utf8').on('data', (d) => ((stdout += d), waiters.forEach((w) => w())));
child.stderr.setEncoding('utf8').on('data', (d) => ((stderr += d), waiters.forEach((w) => w())));
child.on('close', () => waiters.forEach((w) => w()));

function waitFor(check, what, ms = 120_000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => (waiters.delete(poll), reject(new Error(`timed out waiting for ${what}\n${stderr.slice(-2000)}`))), ms);
    const poll = () => {
      const v = check();
      if (v) (clearTimeout(timer), waiters.delete(poll), resolve(v));
      else if (child.exitCode !== null) (clearTimeout(timer), waiters.delete(poll), reject(new Error(`podvisor exited before ${what}\n${stderr.slice(-2000)}`)));
    };
    waiters.add(poll);
    poll();
  });
}

const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
const ms = (x) => x.toFixed(3);

/** CPU seconds (user + system) of a pid, from /proc/<pid>/stat. */
function cpuSeconds(pid) {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
}

/** `total` requests with `concurrency` workers, each waiting for its answer; bounded by TIME_BOUND_MS. */
async function load(agent, origin, pathName, count) {
  const lat = [];
  let next = 0;
  let failed = 0;
  const deadline = performance.now() + TIME_BOUND_MS;
  const worker = async () => {
    while (next < count && performance.now() < deadline) {
      next += 1;
      const t0 = performance.now();
      const res = await request(`${origin}${pathName}`, { dispatcher: agent });
      await res.body.dump();
      if (res.statusCode !== 200) failed += 1;
      lat.push(performance.now() - t0);
    }
  };
  const cpu0 = cpuSeconds(child.pid);
  const t0 = performance.now();
  await Promise.all(Array.from({ length: concurrency }, worker));
  const elapsed = (performance.now() - t0) / 1000;
  const cpu = cpuSeconds(child.pid) - cpu0;
  lat.sort((a, b) => a - b);
  return { n: lat.length, failed, rps: lat.length / elapsed, p50: pct(lat, 50), p99: pct(lat, 99), cores: cpu / elapsed };
}

/** A bare QMP client on the second monitor: greeting, qmp_capabilities, then one command at a time. */
async function directQmp() {
  const sock = createConnection(qmp2);
  let buf = '';
  const lines = [];
  let wake = () => undefined;
  sock.setEncoding('utf8').on('data', (d) => {
    buf += d;
    for (let i = buf.indexOf('\n'); i !== -1; i = buf.indexOf('\n')) {
      lines.push(JSON.parse(buf.slice(0, i)));
      buf = buf.slice(i + 1);
    }
    wake();
  });
  const reply = async () => {
    for (;;) {
      const i = lines.findIndex((m) => 'return' in m || 'error' in m);
      if (i !== -1) return lines.splice(0, i + 1).at(-1);
      await new Promise((r) => (wake = r));
    }
  };
  await new Promise((r) => sock.once('connect', r));
  sock.write('{"execute":"qmp_capabilities"}\n');
  await reply();
  return {
    async run(command) {
      sock.write(`{"execute":"${command}"}\n`);
      return reply();
    },
    close: () => sock.destroy(),
  };
}

try {
  const listening = await waitFor(() => /"control endpoint listening".*"tcp":"127\.0\.0\.1:(\d+)"/.exec(stderr), 'the control endpoint');
  await waitFor(() => /PODVISOR-GUEST-READY/.test(stdout), 'the guest');
  const unix = new Agent({ connect: { socketPath: path.join(root, 'disk/.podvisor/control.sock') }, connections: concurrency });
  const tcpPort = Number(listening[1]);
  const tcp = new Agent({ connections: concurrency });
  const tcpOrigin = `http://127.0.0.1:${tcpPort}`;

  // Warm up both paths (JIT, connections).
  await load(tcp, tcpOrigin, '/v1/vm', 2000);
  await load(unix, 'http://localhost', '/v1/vm', 2000);
  const getTcp = await load(tcp, tcpOrigin, '/v1/vm', total);
  const getUnix = await load(unix, 'http://localhost', '/v1/vm', total);

  // QMP: HTTP vs direct, one at a time, alternating blocks of 100.
  const direct = await directQmp();
  const viaHttp = [];
  const viaQmp = [];
  const body = JSON.stringify({ execute: 'query-status' });
  for (let round = 0; round < QMP_ROUNDS / 100; round += 1) {
    for (let i = 0; i < 100; i += 1) {
      const t0 = performance.now();
      const r = await request('http://localhost/v1/qmp', { dispatcher: unix, method: 'POST', headers: { 'content-type': 'application/json' }, body });
      const text = await r.body.text();
      if (r.statusCode !== 200) throw new Error(`POST /v1/qmp: ${r.statusCode} ${text}`);
      viaHttp.push(performance.now() - t0);
    }
    for (let i = 0; i < 100; i += 1) {
      const t0 = performance.now();
      const m = await direct.run('query-status');
      if (!('return' in m)) throw new Error(`direct QMP: ${JSON.stringify(m)}`);
      viaQmp.push(performance.now() - t0);
    }
  }
  direct.close();
  viaHttp.sort((a, b) => a - b);
  viaQmp.sort((a, b) => a - b);

  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  const out = [];
  out.push(`Run: ${new Date().toISOString()}, ${cpus().length} × ${cpu}, Node ${process.version}, guest idle under TCG.`);
  out.push(`Load: ${total} requests per row, ${concurrency} concurrent keep-alive connections (undici), after 2000 warm-up requests; the generator runs in its own process.`);
  out.push('');
  out.push('| request | requests | errors | throughput (req/s) | p50 (ms) | p99 (ms) | podvisor CPU (cores) | req/s per podvisor core |');
  out.push('|---|---|---|---|---|---|---|---|');
  for (const [label, r] of [['GET /v1/vm, TCP 127.0.0.1', getTcp], ['GET /v1/vm, unix socket', getUnix]]) {
    out.push(`| ${label} | ${r.n} | ${r.failed} | ${Math.round(r.rps)} | ${ms(r.p50)} | ${ms(r.p99)} | ${r.cores.toFixed(2)} | ${Math.round(r.rps / r.cores)} |`);
  }
  out.push('');
  out.push(`QMP \`query-status\`, ${QMP_ROUNDS} each, one at a time, alternating blocks of 100:`);
  out.push('');
  out.push('| path | p50 (ms) | p99 (ms) |');
  out.push('|---|---|---|');
  out.push(`| POST /v1/qmp (unix socket, HTTP + podvisor's QMP client) | ${ms(pct(viaHttp, 50))} | ${ms(pct(viaHttp, 99))} |`);
  out.push(`| straight to a second QMP monitor of the same qemu | ${ms(pct(viaQmp, 50))} | ${ms(pct(viaQmp, 99))} |`);
  out.push(`| added by HTTP (p50 difference) | ${ms(pct(viaHttp, 50) - pct(viaQmp, 50))} | |`);
  process.stdout.write(`${out.join('\n')}\n`);
  await Promise.all([tcp.close(), unix.close()]);
} finally {
  if (child.exitCode === null) {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('close', r));
  }
  rmSync(root, { recursive: true, force: true });
}
