#!/usr/bin/env node
// bench/l2-segment: VM-to-VM throughput and latency over the l2-segment
// (VXLAN inside WireGuard), against the same VXLAN without encryption and
// against the pod network, in one run on the same two VMs.
// Two nodes (network namespaces joined by an underlay bridge) each hold a
// Calico-style pod (test/support/pod.sh) running the shipped podvisor with
// nat-bridge + l2-segment and the test guest under TCG. The guest on A
// measures, with its fetch CGI (busybox wget, timed from /proc/uptime):
//   throughput: a 4 MiB body from B's blob CGI;  latency: 10 pings (busybox
//   ping's average), and B's page (one small HTTP request, connection included).
// On the pod path the pings are answered by B's pod, not B's VM (nat-bridge
// forwards TCP and UDP only).
// Paths, alternated in each round:
//   segment   A's guest -> B's segment address (VXLAN in WireGuard, wireguard-go here);
//   plain     the same bridge and guest NIC, the VXLAN device swapped for one
//             straight over the pod IPs (port 4790, no WireGuard), then back;
//   pod       A's guest -> B's pod IP (A's NAT, the underlay, B's DNAT).
// Usage: node bench/l2-segment/run.mjs [rounds]   (root; needs make build guest, wireguard-go)
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = fileURLToPath(new URL('../../', import.meta.url));
const cli = path.join(repo, 'apps/supervisord/dist/bundle/podvisor.cjs');
const guest = path.join(repo, 'test/guest/.cache/guest.qcow2');
const podSh = path.join(repo, 'test/support/pod.sh');
const rounds = Number(process.argv[2] ?? 3);
const MIB = 4;
const tag = Math.random().toString(16).slice(2, 8);
const underlay = `pvl2bul-${tag}`;
const root = mkdtempSync(path.join(tmpdir(), 'pv-bench-l2-'));
const children = new Set();
const sh = (cmd, args, input) => execFileSync(cmd, args, { encoding: 'utf8', ...(input === undefined ? {} : { input }) });
const ns = (n, ...cmd) => sh('ip', ['netns', 'exec', n, ...cmd]);

const nodes = ['a', 'b'].map((k, i) => {
  const key = sh('wg', ['genkey']).trim();
  return { k, name: `pv-l2bench${k}-${tag}`, pod: `pvl2b${k}-${tag}`, node: `pvl2b${k}-${tag}-node`, ul: `10.98.1.${i + 1}`, tunnelIp: `10.255.0.${i + 1}`, address: `10.77.0.${11 + i}/24`, key, pub: sh('wg', ['pubkey'], key).trim(), dir: path.join(root, k) };
});

function cleanup() {
  for (const c of children) c.kill('SIGKILL');
  for (const n of nodes) {
    try {
      execFileSync(podSh, ['destroy', n.pod], { stdio: 'ignore' });
    } catch {}
  }
  try {
    execFileSync('ip', ['netns', 'del', underlay], { stdio: 'ignore' });
  } catch {}
  rmSync(root, { recursive: true, force: true });
}
process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));

// The underlay and the two pods.
sh('ip', ['netns', 'add', underlay]);
sh('ip', ['-n', underlay, 'link', 'add', 'ul0', 'type', 'bridge']);
sh('ip', ['-n', underlay, 'link', 'set', 'ul0', 'up']);
for (const n of nodes) {
  n.podIp = /^POD_IP=(.*)$/m.exec(sh(podSh, ['create', n.pod, '--node', n.node]))[1];
  sh('ip', ['-n', n.node, 'link', 'add', 'pvul0', 'type', 'veth', 'peer', 'name', `ul${n.k}`, 'netns', underlay]);
  ns(n.node, 'sysctl', '-q', '-w', 'net.ipv4.ip_forward=1');
  sh('ip', ['-n', n.node, 'addr', 'add', `${n.ul}/24`, 'dev', 'pvul0']);
  sh('ip', ['-n', n.node, 'link', 'set', 'pvul0', 'up']);
  sh('ip', ['-n', underlay, 'link', 'set', `ul${n.k}`, 'master', 'ul0', 'up']);
}
const [a, b] = nodes;
sh('ip', ['-n', a.node, 'route', 'add', `${b.podIp}/32`, 'via', b.ul]);
sh('ip', ['-n', b.node, 'route', 'add', `${a.podIp}/32`, 'via', a.ul]);
const map = ['segment: 42', 'members:', ...nodes.flatMap((n) => [`  ${n.name}:`, `    endpoint: ${n.podIp}`, `    publicKey: ${n.pub}`, `    tunnelIp: ${n.tunnelIp}`, `    address: ${n.address}`])].join('\n');

const procs = nodes.map((n) => {
  sh('mkdir', ['-p', n.dir]);
  writeFileSync(path.join(n.dir, 'peers.yaml'), `${map}\n`);
  writeFileSync(path.join(n.dir, 'key'), `${n.key}\n`, { mode: 0o600 });
  const env = {
    PATH: process.env.PATH,
    HOSTNAME: n.name,
    IMG_SOURCE: guest,
    IMG_TARGET: 'guest.qcow2',
    IMG_RAM_MB: '256',
    PODVISOR_IMAGES_DIR: path.join(n.dir, 'images'),
    PODVISOR_DISK_DIR: path.join(n.dir, 'disk'),
    PODVISOR_USERDATA: path.join(n.dir, 'userdata'),
    PODVISOR_METADATA: path.join(n.dir, 'metadata'),
    PODVISOR_ACCEL: 'tcg',
    PODVISOR_NETWORK: 'nat-bridge',
    PODVISOR_NETWORK_EXTRA: 'l2-segment',
    PODVISOR_NAT_EXCLUDE: 'udp/51820,udp/4790',
    PODVISOR_L2_PEERS: path.join(n.dir, 'peers.yaml'),
    PODVISOR_L2_PRIVATE_KEY: path.join(n.dir, 'key'),
    NO_VNC: '1',
  };
  const child = spawn('ip', ['netns', 'exec', n.pod, process.execPath, cli, 'run'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
  children.add(child);
  const p = { child, stdout: '' };
  child.stdout.setEncoding('utf8').on('data', (d) => (p.stdout += d));
  child.stderr.resume();
  return p;
});

async function until(check, what, ms = 300_000) {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
await Promise.all(procs.map((p, i) => until(() => p.stdout.includes('PODVISOR-GUEST-READY'), `VM ${nodes[i].name}`)));

/** A's guest fetches http://TARGET/PATH; returns the seconds its wget took, or throws. */
function fetchSeconds(target, urlPath) {
  const out = ns(a.node, 'curl', '-sS', '--max-time', '120', `http://${a.podIp}/cgi-bin/fetch.cgi?${target}/${urlPath}`);
  const m = /^fetch: exit=0 bytes=(\d+) seconds=([\d.]+)$/m.exec(out);
  if (m === null) throw new Error(`fetch of ${target}/${urlPath} failed: ${out.slice(0, 300)}`);
  return Number(m[2]);
}

/** A's guest pings TARGET 10 times; returns the average round trip in ms, or throws. */
function pingMs(target) {
  const out = ns(a.node, 'curl', '-sS', '--max-time', '60', `http://${a.podIp}/cgi-bin/ping.cgi?${target}`);
  const m = /round-trip min\/avg\/max = [\d.]+\/([\d.]+)\//.exec(out);
  if (m === null) throw new Error(`ping of ${target} failed: ${out.slice(0, 300)}`);
  return Number(m[1]);
}

function vxlanLines(n, plain) {
  const peer = n === a ? b : a;
  return plain
    ? [`link del dev pvl2vx0`, `link add name pvl2vx1 mtu 1370 type vxlan id 42 local ${n.podIp} dstport 4790 dev eth0`, `link set dev pvl2vx1 master pvl2br0 up`].join('\n')
    : [`link del dev pvl2vx1`, `link add name pvl2vx0 mtu 1370 type vxlan id 42 local ${n.tunnelIp} dstport 4789`, `link set dev pvl2vx0 master pvl2br0 up`].join('\n');
}
function swap(plain) {
  for (const n of nodes) {
    const peer = n === a ? b : a;
    sh('ip', ['-n', n.pod, '-batch', '-'], `${vxlanLines(n, plain)}\n`);
    sh('bridge', ['-n', n.pod, 'fdb', 'append', '00:00:00:00:00:00', 'dev', plain ? 'pvl2vx1' : 'pvl2vx0', 'dst', plain ? peer.podIp : peer.tunnelIp]);
  }
}

const targets = { segment: b.address.split('/')[0], plain: b.address.split('/')[0], pod: b.podIp };
const results = { segment: { tput: [], lat: [], ping: [] }, plain: { tput: [], lat: [], ping: [] }, pod: { tput: [], lat: [], ping: [] } };
// Warm-up: ARP, WireGuard handshake, NAT state.
fetchSeconds(targets.segment, '');
fetchSeconds(targets.pod, '');
for (let r = 0; r < rounds; r++) {
  for (const path_ of ['segment', 'pod', 'plain']) {
    if (path_ === 'plain') swap(true);
    if (path_ === 'plain') fetchSeconds(targets.plain, '');
    results[path_].tput.push((MIB * 8) / fetchSeconds(targets[path_], `cgi-bin/blob.cgi?${MIB}`));
    results[path_].lat.push(fetchSeconds(targets[path_], '') * 1000);
    results[path_].ping.push(pingMs(targets[path_]));
    if (path_ === 'plain') swap(false);
  }
}
const median = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
const row = (k) => ({ path: k, mbitPerS: median(results[k].tput).toFixed(1), pageMs: median(results[k].lat).toFixed(0), pingMs: median(results[k].ping).toFixed(2), tput: results[k].tput.map((x) => x.toFixed(1)), lat: results[k].lat.map((x) => x.toFixed(0)) });
const rows = ['segment', 'plain', 'pod'].map(row);
console.log(`machine: ${cpus().length} x ${cpus()[0]?.model ?? '?'}, TCG guests, wireguard-go; ${rounds} rounds of ${MIB} MiB and one page each`);
console.log('| path | throughput Mbit/s (median) | ping ms (median of the rounds\' averages) | page ms (median) | all throughputs | all page times |');
console.log('|---|---|---|---|---|---|');
for (const r of rows) console.log(`| ${r.path} | ${r.mbitPerS} | ${r.pingMs} | ${r.pageMs} | ${r.tput.join(', ')} | ${r.lat.join(', ')} |`);
const s = median(results.segment.tput);
console.log(`ratios: segment/plain throughput ${(s / median(results.plain.tput)).toFixed(2)}, segment/pod ${(s / median(results.pod.tput)).toFixed(2)}; page time segment/plain ${(median(results.segment.lat) / median(results.plain.lat)).toFixed(2)}, segment/pod ${(median(results.segment.lat) / median(results.pod.lat)).toFixed(2)}; ping segment/plain ${(median(results.segment.ping) / median(results.plain.ping)).toFixed(2)}, segment/pod ${(median(results.segment.ping) / median(results.pod.ping)).toFixed(2)}`);
for (const p of procs) p.child.kill('SIGTERM');
await Promise.all(procs.map((p) => new Promise((r) => (p.child.exitCode !== null ? r() : p.child.once('close', r)))));
