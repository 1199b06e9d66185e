/**
 * The plugins every podvisor loads. They go through the same loader as
 * third-party plugins named in PODVISOR_PLUGINS: no back door.
 */
export const BUILT_IN_PLUGINS: readonly string[] = ['@podvisor/configdrive', '@podvisor/net-nat-bridge', '@podvisor/net-macvtap'];
