// bench/network-setup worker: runs inside the pod's network namespace
// (`ip netns exec POD node podvisor-worker.mjs ...`), like podvisor as the
// pod's PID 1, and times NatBridgeNetworkBackend.attach + detach from the built
// packages, in process. Prints one JSON line: {attachMs: [...], detachMs: [...]}.
// Usage: node podvisor-worker.mjs ITERATIONS STATE_DIR DISK_DIR RESOLV_CONF
import { ExecaProcessRunner, SilentLogger } from '@podvisor/core';
import { NatBridgeNetworkBackend } from '@podvisor/net-nat-bridge';

const [iterations, stateDir, diskDir, resolvConf] = process.argv.slice(2);
const log = new SilentLogger();
const runner = new ExecaProcessRunner(log);
const backend = new NatBridgeNetworkBackend(runner, log);
const spec = { vmName: 'pvbench', stateDir, diskDir, env: {}, settings: { resolvConf }, vnc: { enabled: true, port: 5900 }, controlPort: 5800 };
const warnings = [];
const hooks = { log, warn: (w) => warnings.push(w), notice: (w) => warnings.push(w) };
const attachMs = [];
const detachMs = [];
for (let i = 0; i < Number(iterations); i += 1) {
  const t0 = performance.now();
  await backend.attach(spec, hooks);
  const t1 = performance.now();
  await backend.detach(spec);
  const t2 = performance.now();
  attachMs.push(t1 - t0);
  detachMs.push(t2 - t1);
}
await runner.stopAll(1000);
process.stdout.write(`${JSON.stringify({ attachMs, detachMs, warnings })}\n`);
