/**
 * @podvisor/net-nat-bridge: the `nat-bridge` network backend, the
 * kvm-manager / Berth design. Inside the pod's network namespace the VM sits
 * behind a linux bridge on a private /30, gets its address from a supervised
 * dnsmasq, and takes over the pod's IP through a 1:1 nftables DNAT/SNAT (VNC,
 * the control port and listed ports excepted). The default export is the
 * plugin manifest; the backend class and its pure helpers are exported by name.
 */
import { ContainerModule } from 'inversify';
import { NetworkBackend, PLUGIN_API_VERSION, type PluginManifest } from '@podvisor/core';
import { NatBridgeNetworkBackend } from './nat-bridge-network-backend.js';
import { NAT_BRIDGE_SETTINGS } from './nat-config.js';

export { NatBridgeNetworkBackend, NAT_BRIDGE_LINKS, NAT_BRIDGE_PREREQUISITES, natBridgeStatePaths } from './nat-bridge-network-backend.js';
export type { NatPodInterface } from './nat-bridge-network-backend.js';
export {
  NAT_BRIDGE_DEFAULTS,
  NAT_BRIDGE_SETTINGS,
  resolveNatBridgeConfig,
  natVncPort,
  natVncListen,
  parseNatExclude,
  formatNatExclusion,
} from './nat-config.js';
export type { NatBridgeConfig, NatPortExclusion, ResolvedNatBridgeConfig } from './nat-config.js';
export { NAT_TABLE, buildNatRuleset, buildNatTeardown, natExclusions } from './nat-ruleset.js';
export type { NatRulesetParams } from './nat-ruleset.js';
export { DNSMASQ_LEASE_TIME, buildDnsmasqArgs } from './dnsmasq-args.js';
export type { DnsmasqParams } from './dnsmasq-args.js';

/** The `nat-bridge` network backend, bound by name. Bindings only. */
export const natBridgeModule = new ContainerModule((bind) => {
  bind<NetworkBackend>(NetworkBackend).to(NatBridgeNetworkBackend).inSingletonScope().whenTargetNamed('nat-bridge');
});

const manifest: PluginManifest = {
  name: '@podvisor/net-nat-bridge',
  apiRange: `^${PLUGIN_API_VERSION}`,
  provides: [{ kind: 'network-backend', name: 'nat-bridge', settings: NAT_BRIDGE_SETTINGS }],
  module: natBridgeModule,
};

export default manifest;
