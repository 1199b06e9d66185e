import { describe, expect, it } from 'vitest';
import { resolvePluginSettings } from '@podvisor/core';
import { MACVTAP_SETTINGS, resolveMacvtapConfig } from './macvtap-config.js';

/** As podvisor does it: the declared settings resolved and type-checked, then (when their types are right) the backend's checks across them. */
const resolve = (env: Record<string, string>, settings: Record<string, unknown> = {}) => {
  const typed = resolvePluginSettings(MACVTAP_SETTINGS, { env, yaml: { network: { settings } } });
  if (typed.problems.length > 0) return { config: undefined, problems: typed.problems };
  return resolveMacvtapConfig({ settings: typed.settings });
};

describe('resolveMacvtapConfig', () => {
  it('defaults to attaching every interface, the first address, and /etc/resolv.conf', () => {
    expect(resolve({})).toEqual({ config: { attach: { mode: 'auto', origin: 'env AUTO_ATTACH' }, selectedNetwork: undefined, resolvConf: '/etc/resolv.conf' }, problems: [] });
  });

  it('AUTO_ATTACH=no takes ATTACH_IFACES, or its alias ATTACH_IFS, split on spaces or commas', () => {
    expect(resolve({ AUTO_ATTACH: 'no', ATTACH_IFACES: 'eth1 eth2' }).config?.attach).toEqual({ mode: 'list', interfaces: ['eth1', 'eth2'], origin: 'env ATTACH_IFACES' });
    expect(resolve({ AUTO_ATTACH: 'N', ATTACH_IFS: 'eth1,eth2' }).config?.attach).toEqual({ mode: 'list', interfaces: ['eth1', 'eth2'], origin: 'env ATTACH_IFS' });
  });

  it('a list without AUTO_ATTACH attaches only the list', () => {
    expect(resolve({ ATTACH_IFACES: 'nope0' }).config?.attach).toEqual({ mode: 'list', interfaces: ['nope0'], origin: 'env ATTACH_IFACES' });
  });

  it('reports every problem of a kind at once, each with its path, value and expectation: the types, then the checks across settings', () => {
    const typed = resolve({ AUTO_ATTACH: 'maybe', ATTACH_IFACES: 'eth0 eth1', ATTACH_IFS: 'eth9' });
    expect(typed.config).toBeUndefined();
    expect(typed.problems.map((p) => [p.path, p.value, p.expected])).toEqual([
      ['env AUTO_ATTACH', 'maybe', 'yes or no (also true/false, on/off, 1/0)'],
      ['env ATTACH_IFS', 'eth9', 'the same value as ATTACH_IFACES ("eth0 eth1"), or unset: it is an alias'],
    ]);
    const checked = resolve({ AUTO_ATTACH: 'no', ATTACH_IFACES: 'eth0 a/b', SELECTED_NETWORK: '10.0.0.300/24' });
    expect(checked.config).toBeUndefined();
    expect(checked.problems.map((p) => [p.path, p.value])).toEqual([
      ['env ATTACH_IFACES', 'a/b'],
      ['env SELECTED_NETWORK', '10.0.0.300/24'],
    ]);
  });

  it('refuses AUTO_ATTACH=yes with a list, and AUTO_ATTACH=no without one', () => {
    expect(resolve({ AUTO_ATTACH: 'yes', ATTACH_IFACES: 'eth1' }).problems[0]).toMatchObject({ path: 'env ATTACH_IFACES', value: 'eth1' });
    expect(resolve({ AUTO_ATTACH: 'no' }).problems[0]).toMatchObject({ path: 'env ATTACH_IFACES', expected: 'the interfaces to attach, since AUTO_ATTACH is no' });
  });

  it('reads SELECTED_NETWORK, and YAML settings that the environment overrides', () => {
    expect(resolve({ SELECTED_NETWORK: '10.1.2.3/24' }).config?.selectedNetwork).toEqual({ ip: '10.1.2.3', prefix: 24, origin: 'env SELECTED_NETWORK' });
    const yaml = resolve({ AUTO_ATTACH: 'no' }, { attachIfaces: ['eth3'], selectedNetwork: '10.9.9.9/32', resolvConf: '/run/resolv.conf' }).config;
    expect(yaml).toEqual({
      attach: { mode: 'list', interfaces: ['eth3'], origin: 'yaml network.settings.attachIfaces' },
      selectedNetwork: { ip: '10.9.9.9', prefix: 32, origin: 'yaml network.settings.selectedNetwork' },
      resolvConf: '/run/resolv.conf',
    });
  });
});
