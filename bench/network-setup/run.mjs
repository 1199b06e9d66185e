#!/usr/bin/env node
// bench/network-setup: the time for attach + detach of the NAT bridge, done by
// podvisor's real backend (the built @podvisor/net-nat-bridge, in process,
// inside a pod's network namespace, as podvisor runs it) against the same
// steps written as a shell script (baseline.sh: ip, sysctl, nft, dnsmasq), in
// the same run, in alternating rounds, in a Calico-style pod made by
// test/support/pod.sh with a node namespace of its own. After every round the
// pod namespace must be back as pod.sh made it. Prints a Markdown table.
// Usage: node bench/network-setup/run.mjs [rounds=5] [iterations per round=10]
// (needs root and `make build`).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { NAT_BRIDGE_LINKS, buildDnsmasqArgs, buildNatRuleset, buildNatTeardown, deriveVmMac, natExclusions, natBridgeStatePaths } from '@podvisor/net-nat-bridge';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const podSh = path.join(repo, 'test/support/pod.sh');
const rounds = Number(process.argv[2] ?? 5);
const iterations = Number(process.argv[3] ?? 10);
const pod = `pvbnet-${process.pid.toString(36)}`;
const work = mkdtempSync(path.join(tmpdir(), `${pod}-`));
const vmIp = '192.168.254.2';
const gateway = '192.168.254.1';
const resolv = 'nameserver 10.96.0.10\nsearch bench.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n';

const sh = (file, args) => execFileSync(file, args, { encoding: 'utf8' });
const inPod = (...cmd) => sh('ip', ['netns', 'exec', pod, ...cmd]);

/** The pod namespace must be exactly as pod.sh made it between rounds. */
function checkPristine(after) {
  const links = JSON.parse(sh('ip', ['-n', pod, '-j', 'link', 'show'])).map((l) => l.ifname);
  const tables = inPod('nft', 'list', 'tables').trim();
  const pids = sh('ip', ['netns', 'pids', pod]).trim();
  if (links.join(',') !== 'lo,eth0' || tables !== '' || pids !== '') {
    throw new Error(`leftovers after ${after}: links ${links.join(',')}; tables ${tables || '-'}; pids ${pids || '-'}`);
  }
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];

try {
  writeFileSync(path.join(work, 'resolv.conf'), resolv);
  const facts = Object.fromEntries(
    sh(podSh, ['create', pod, '--resolv', path.join(work, 'resolv.conf')])
      .trim()
      .split('\n')
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
  const mtu = JSON.parse(sh('ip', ['-n', pod, '-j', 'link', 'show', 'dev', 'eth0']))[0].mtu;

  // The shell side gets the very ruleset and dnsmasq argv podvisor builds.
  const shellDir = path.join(work, 'shell');
  execFileSync('mkdir', ['-p', shellDir]);
  const shellPaths = natBridgeStatePaths(shellDir);
  // What dnsmasq hands out from the pod's resolv.conf above.
  const dns = { nameservers: ['10.96.0.10'], search: ['bench.svc.cluster.local', 'svc.cluster.local', 'cluster.local'] };
  const exclusions = natExclusions({ vncPort: 5900, controlPort: 5800, extra: [] });
  writeFileSync(path.join(shellDir, 'ruleset.nft'), buildNatRuleset({ podInterface: 'eth0', podIp: facts.POD_IP, vmIp, bridge: NAT_BRIDGE_LINKS.bridge, gateway, exclusions }));
  writeFileSync(path.join(shellDir, 'teardown.nft'), buildNatTeardown());
  const args = buildDnsmasqArgs({
    bridge: NAT_BRIDGE_LINKS.bridge,
    vmIp,
    gateway,
    mac: deriveVmMac('pvbench'),
    hostname: 'pvbench',
    pidFile: shellPaths.pidFile,
    leaseFile: shellPaths.leaseFile,
    dnsServers: dns.nameservers,
    searchDomains: dns.search,
    mtu,
  });
  writeFileSync(path.join(shellDir, 'dnsmasq.args'), `${args.join('\n')}\n`);
  writeFileSync(
    path.join(shellDir, 'env'),
    `BRIDGE=${NAT_BRIDGE_LINKS.bridge}\nTAP=${NAT_BRIDGE_LINKS.tap}\nBRIDGE_MAC=${deriveVmMac('pvbench/gateway')}\nGATEWAY=${gateway}\nMTU=${mtu}\nPID_FILE=${shellPaths.pidFile}\n`,
  );

  const results = { podvisor: { attach: [], detach: [], total: [] }, shell: { attach: [], detach: [], total: [] } };
  const record = (side, out) => {
    const r = JSON.parse(out.trim().split('\n').at(-1));
    if (r.warnings !== undefined && r.warnings.length > 0) throw new Error(`warnings: ${JSON.stringify(r.warnings)}`);
    r.attachMs.forEach((a, i) => {
      results[side].attach.push(a);
      results[side].detach.push(r.detachMs[i]);
      results[side].total.push(a + r.detachMs[i]);
    });
  };
  for (let round = 0; round < rounds; round += 1) {
    // Alternate which side goes first, so that neither always runs on a warmer machine.
    const order = round % 2 === 0 ? ['podvisor', 'shell'] : ['shell', 'podvisor'];
    for (const side of order) {
      if (side === 'podvisor') {
        record(side, inPod(process.execPath, path.join(here, 'podvisor-worker.mjs'), String(iterations), path.join(work, 'state'), path.join(work, 'disk'), `/etc/netns/${pod}/resolv.conf`));
      } else {
        record(side, inPod('bash', path.join(here, 'baseline.sh'), String(iterations), shellDir));
      }
      checkPristine(`${side}, round ${round + 1}`);
    }
  }

  const row = (label, r) =>
    `| ${label} | ${median(r.attach).toFixed(1)} | ${median(r.detach).toFixed(1)} | **${median(r.total).toFixed(1)}** | ${pct(r.total, 10).toFixed(1)} / ${pct(r.total, 90).toFixed(1)} |`;
  const ratio = median(results.shell.total) / median(results.podvisor.total);
  console.log(`network-setup: ${rounds} rounds x ${iterations} attach+detach per side, alternating; ${cpus().length} x ${cpus()[0]?.model ?? '?'}; node ${process.version}`);
  console.log('');
  console.log('| | attach median (ms) | detach median (ms) | attach + detach median (ms) | p10 / p90 (ms) |');
  console.log('|---|---|---|---|---|');
  console.log(row('podvisor (NatBridgeNetworkBackend, in process)', results.podvisor));
  console.log(row('shell script (ip, sysctl, nft, dnsmasq)', results.shell));
  console.log(`| **ratio** (shell / podvisor) | | | **${ratio.toFixed(2)}** | |`);
} finally {
  try {
    sh(podSh, ['destroy', pod]);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
