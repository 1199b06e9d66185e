import { describe, expect, it } from 'vitest';
import { PluginRegistry } from '@podvisor/core';
import { BUILT_IN_PLUGINS } from './built-in-plugins.js';

/** The registry of the real app's built-in plugins, loaded from their manifests. */
async function builtIns(): Promise<PluginRegistry> {
  const registry = new PluginRegistry();
  for (const [name, load] of Object.entries(BUILT_IN_PLUGINS)) registry.add(((await load()) as { default: unknown }).default, name);
  return registry;
}

describe('settings that belong to another network backend', () => {
  it('AUTO_ATTACH, ATTACH_IFACES and SELECTED_NETWORK under nat-bridge are named, with macvtap as their user', async () => {
    const env = { AUTO_ATTACH: 'yes', ATTACH_IFS: 'eth0', SELECTED_NETWORK: '10.0.0.2/24', VM_IP: '192.168.254.2', PATH: '/bin' };
    expect((await builtIns()).settingsOfOthers('network-backend', 'nat-bridge', env)).toEqual([{ usedBy: 'macvtap', settings: ['AUTO_ATTACH', 'ATTACH_IFS', 'SELECTED_NETWORK'] }]);
  });

  it('VM_IP, VM_GW and PODVISOR_NAT_EXCLUDE under macvtap are named, with nat-bridge as their user', async () => {
    const env = { VM_IP: '192.168.254.2', VM_GW: '192.168.254.1', PODVISOR_NAT_EXCLUDE: 'tcp/22', AUTO_ATTACH: 'no' };
    expect((await builtIns()).settingsOfOthers('network-backend', 'macvtap', env)).toEqual([{ usedBy: 'nat-bridge', settings: ['VM_IP', 'VM_GW', 'PODVISOR_NAT_EXCLUDE'] }]);
  });

  it('nothing when only the selected backend settings are set', async () => {
    expect((await builtIns()).settingsOfOthers('network-backend', 'nat-bridge', { VM_IP: '192.168.254.2', NO_VNC: '1' })).toEqual([]);
  });

  it('the settings of a stacked backend are its own: l2-segment stacked on nat-bridge ignores neither, and names them under nat-bridge alone', async () => {
    const env = { VM_IP: '192.168.254.2', PODVISOR_L2_PEERS: '/cm/peers.yaml' };
    expect((await builtIns()).settingsOfOthers('network-backend', ['nat-bridge', 'l2-segment'], env)).toEqual([]);
    expect((await builtIns()).settingsOfOthers('network-backend', 'nat-bridge', env)).toEqual([{ usedBy: 'l2-segment', settings: ['PODVISOR_L2_PEERS'] }]);
  });
});
