/**
 * The plugins every podvisor loads. They go through the same loader and the
 * same manifest checks as the third-party plugins named in PODVISOR_PLUGINS;
 * the only difference is that their modules are imported statically, so that
 * the bundled binary contains them (and one copy of core).
 */
export const BUILT_IN_PLUGINS: Readonly<Record<string, () => Promise<unknown>>> = {
  '@podvisor/qemu': () => import('@podvisor/qemu'),
  '@podvisor/image-store': () => import('@podvisor/image-store'),
  '@podvisor/configdrive': () => import('@podvisor/configdrive'),
  '@podvisor/net-nat-bridge': () => import('@podvisor/net-nat-bridge'),
  '@podvisor/net-macvtap': () => import('@podvisor/net-macvtap'),
  '@podvisor/net-l2-segment': () => import('@podvisor/net-l2-segment'),
};
