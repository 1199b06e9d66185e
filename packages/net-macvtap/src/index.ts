/**
 * @podvisor/net-macvtap: the `macvtap` network backend, the BBVA docker-kvm /
 * KubeVirt macvtap design. The VM takes the pod's own interfaces, MACs and
 * addresses through macvtaps in bridge mode, gets those addresses (with the
 * pod's routes and DNS) from a supervised dnsmasq on sibling macvlans, and the
 * pod gets everything back on detach. The default export is the plugin
 * manifest; the backend class and its pure helpers are exported by name.
 */
import { ContainerModule } from 'inversify';
import { NetworkBackend, PLUGIN_API_VERSION, type PluginManifest } from '@podvisor/core';
import { MACVTAP_SETTINGS } from './macvtap-config.js';
import { MacvtapNetworkBackend } from './macvtap-network-backend.js';

export { MacvtapNetworkBackend, MACVTAP_PREREQUISITES, VHOST_NET_DEVICE, macvtapStatePaths, randomLocalMac } from './macvtap-network-backend.js';
export type { MacvtapRestoreRecord } from './macvtap-network-backend.js';
export { MACVTAP_SETTINGS, resolveMacvtapConfig } from './macvtap-config.js';
export type { MacvtapConfig } from './macvtap-config.js';
export {
  MACVTAP_LINK_PREFIX,
  macvtapLinkNames,
  isMacvtapBackendLink,
  MACVTAP_PROBE_PREFIX,
  isAttachable,
  parsePodInterfaces,
  parsePodRoutes,
  planMacvtapNics,
  selectAddress,
  deriveSiblingAddress,
  vmRoutesOf,
  restorableRoutes,
  routeReplaceArgs,
} from './pod-network.js';
export type { PodAddress, PodRoute, PodInterface, VmRoute, MacvtapNicChoice, MacvtapNicPlan } from './pod-network.js';
export { buildMacvtapDnsmasqArgs } from './macvtap-dnsmasq-args.js';
export type { MacvtapDhcpNic, MacvtapDnsmasqParams } from './macvtap-dnsmasq-args.js';

/** The `macvtap` network backend, bound by name. Bindings only. */
export const macvtapModule = new ContainerModule((bind) => {
  bind<NetworkBackend>(NetworkBackend).to(MacvtapNetworkBackend).inSingletonScope().whenTargetNamed('macvtap');
});

const manifest: PluginManifest = {
  name: '@podvisor/net-macvtap',
  apiRange: `^${PLUGIN_API_VERSION}`,
  provides: [{ kind: 'network-backend', name: 'macvtap', settings: MACVTAP_SETTINGS }],
  module: macvtapModule,
};

export default manifest;
