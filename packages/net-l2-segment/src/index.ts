/**
 * @podvisor/net-l2-segment: the `l2-segment` network backend, an additional
 * NIC on an L2 segment that spans pods on several nodes (kvm-crate's "one big
 * VLAN"), carried as VXLAN inside WireGuard between the pods. It stacks on the
 * primary backend: `PODVISOR_NETWORK_EXTRA=l2-segment`. The default export is
 * the plugin manifest; the backend and its pure helpers are exported by name.
 */
import { ContainerModule } from 'inversify';
import { NetworkBackend, PLUGIN_API_VERSION, type PluginManifest } from '@podvisor/core';
import { L2SegmentNetworkBackend } from './l2-segment-network-backend.js';
import { L2_SEGMENT_SETTINGS } from './l2-segment-settings.js';

export { L2SegmentNetworkBackend, L2_SEGMENT_PREREQUISITES, l2SegmentStatePaths } from './l2-segment-network-backend.js';
export { L2_SEGMENT_SETTINGS, L2_SEGMENT_DEFAULTS, resolveL2SegmentSettings } from './l2-segment-settings.js';
export type { L2SegmentSettings, WireguardChoice } from './l2-segment-settings.js';
export {
  L2_DEFAULT_PORT,
  L2_DEFAULT_TUNNEL_NETWORK,
  L2_VXLAN_PORT,
  VXLAN_OVERHEAD,
  WIREGUARD_OVERHEAD,
  parsePeerMap,
  segmentMtus,
  wireguardPublicKey,
  isWireguardKey,
} from './peer-map.js';
export type { PeerMap, PeerMember, ParsedPeerMap } from './peer-map.js';
export {
  L2_NFT_TABLE,
  L2_SEGMENT_LINKS,
  WIREGUARD_KEEPALIVE_SECONDS,
  buildSegmentDnsmasqArgs,
  buildSegmentRuleset,
  buildSegmentTeardown,
  segmentLinkScript,
  segmentMac,
  wireguardConfig,
  wireguardInterfaceName,
} from './segment-plan.js';
export type { WireguardPeerConfig, SegmentRulesetParams, SegmentDnsmasqParams, SegmentLinkParams } from './segment-plan.js';
export { L2_HANDSHAKE_WARN_MS, parseLatestHandshakes, watchHandshakes } from './handshake-watch.js';
export type { HandshakeWatchOptions } from './handshake-watch.js';
export { WireguardDevice, wireguardOrder } from './wireguard-device.js';
export type { WireguardImplementation } from './wireguard-device.js';

/** The `l2-segment` network backend, bound by name. Bindings only. */
export const l2SegmentModule = new ContainerModule((bind) => {
  bind<NetworkBackend>(NetworkBackend).to(L2SegmentNetworkBackend).inSingletonScope().whenTargetNamed('l2-segment');
});

const manifest: PluginManifest = {
  name: '@podvisor/net-l2-segment',
  apiRange: `^${PLUGIN_API_VERSION}`,
  provides: [{ kind: 'network-backend', name: 'l2-segment', settings: L2_SEGMENT_SETTINGS }],
  module: l2SegmentModule,
};

export default manifest;
