/**
 * The macvtap backend passes the NetworkBackend contract suite that plugin
 * authors run (from @podvisor/core/testing), in a Calico-style pod made by
 * test/support/pod.sh (a dual-stack eth0 and a plain eth1 with two
 * addresses), every command run inside it, with real macvtap and macvlan
 * links, tap devices the test process opens, and a real dnsmasq. Needs root.
 */
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { ExecaProcessRunner, SilentLogger } from '@podvisor/core';
import { describeNetworkBackendContract } from '@podvisor/core/testing';
import { NetnsProcessRunner } from '@podvisor/net-support';
import { MACVTAP_NODE_PARENT, MacvtapNetworkBackend, macvtapStatePaths } from './macvtap-network-backend.js';
import { MACVTAP_TEST_PODS, createMacvtapTestPod, macvtapTestSpec, nsPids, podView, podView6, uniquePodName } from './macvtap-test-pod.test.js';

/** What differs between two JSON-able views, one string per differing top-level entry. */
function changed(what: string, before: Record<string, unknown>, now: Record<string, unknown>): string[] {
  return [...new Set([...Object.keys(before), ...Object.keys(now)])].flatMap((k) =>
    JSON.stringify(before[k]) === JSON.stringify(now[k]) ? [] : [`${what} ${k}: ${JSON.stringify(before[k])} -> ${JSON.stringify(now[k])}`],
  );
}

describeNetworkBackendContract('macvtap', async () => {
  const pod = await createMacvtapTestPod(uniquePodName('pvmvkc'), MACVTAP_TEST_PODS.dualStackTwoInterfaces);
  const runner = new ExecaProcessRunner(new SilentLogger());
  const spec = macvtapTestSpec(pod.stateDir, {}, 'vm-mvkc');
  const paths = macvtapStatePaths(pod.stateDir);
  // The pod as pod.sh made it: MACs, addresses, routes (IPv4 and IPv6), IPv6 forwarding.
  const view = () => {
    const v4 = podView(pod.name);
    const v6 = podView6(pod.name);
    return { ...Object.fromEntries(v4.links.map((l) => [`link ${l.name}`, l])), routes: v4.routes, ...Object.fromEntries(Object.entries(v6).map(([k, v]) => [`ipv6 ${k}`, v])) };
  };
  let original: ReturnType<typeof view>;
  try {
    original = view();
  } catch (err) {
    await pod.destroy();
    throw err;
  }
  return {
    create: () => new MacvtapNetworkBackend(new NetnsProcessRunner(runner, pod.name), new SilentLogger()),
    createWithRunner: (wrap) => new MacvtapNetworkBackend(wrap(new NetnsProcessRunner(runner, pod.name)), new SilentLogger()),
    spec,
    // The pod changed from how it was made (links pvmvt*/pvmvl* among them), processes in it (dnsmasq),
    // the restore record, the kept forwarding value, dnsmasq's pid and owner files, private tap nodes under /dev.
    leftovers: async () => {
      const state = [paths.record, paths.ipv6ForwardFile].filter((f) => existsSync(f)).map((f) => `file ${f}`);
      const files = (await readdir(pod.stateDir)).filter((f) => /\.(pid|owner|tmp)$/.test(f)).map((f) => `file ${f}`);
      const nodes = (await readdir(MACVTAP_NODE_PARENT)).filter((f) => f.startsWith('podvisor-tap-')).map((f) => `tap node dir ${MACVTAP_NODE_PARENT}/${f}`);
      return [...changed('pod', original, view()), ...nsPids(pod.name).map((p) => `pid ${p}`), ...state, ...files, ...nodes];
    },
    invalid: { spec: { settings: macvtapTestSpec(pod.stateDir, { SELECTED_NETWORK: '10.57.1.2' }).settings }, path: 'env SELECTED_NETWORK' },
    cleanup: async () => {
      await runner.stopAll(1000);
      await pod.destroy();
    },
  };
});
