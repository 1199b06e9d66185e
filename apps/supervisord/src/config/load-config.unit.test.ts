import { beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, type PluginRegistry } from '@podvisor/core';
import { billionLaughsYaml } from '@podvisor/core/testing';
import { buildAppContainer } from '../app-container.js';
import { resolveConfig as resolveWith, type ConfigInputs } from './load-config.js';

/** The registry of the real app's built-in plugins. */
let registry: PluginRegistry;
beforeAll(async () => {
  ({ registry } = await buildAppContainer({ logLevel: 'error', imagesDir: '/nonexistent', maxVirtualSizeBytes: 1, plugins: [], logSink: { write: () => true } }));
});
const resolveConfig = (inputs: ConfigInputs) => resolveWith(inputs, registry);

const base: ConfigInputs = {
  yaml: null,
  env: { IMG_SOURCE: '/images/base.qcow2' },
  flags: {},
  extraArgs: [],
  hostname: 'vm-7',
  exists: (p) => p === '/images/base.qcow2',
};

function problems(inputs: Partial<ConfigInputs>): string[] {
  try {
    resolveConfig({ ...base, ...inputs });
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems.map((p) => `${p.path} = ${JSON.stringify(p.value)} (${p.expected})`);
  }
  return [];
}

describe('resolveConfig', () => {
  it('applies the documented defaults, with the VM named after the hostname', () => {
    const c = resolveConfig(base);
    expect(c).toMatchObject({
      name: 'vm-7',
      vcpus: 1,
      memoryMb: 512,
      accel: 'auto',
      network: 'nat-bridge',
      restartPolicy: 'on-failure',
      stopGrace: 30,
      diskDir: '/var/lib/podvisor/disk',
      stateDir: '/var/lib/podvisor/disk/.podvisor',
      imagesDir: '/var/lib/podvisor/images',
      listen: '0.0.0.0:5800',
      configDriveFormat: 'config-2',
      userData: '/userdata',
      metaData: '/metadata',
      noVnc: false,
    });
    expect(c.origins.name).toBe('hostname');
    expect(c.origins.imageSource).toBe('env IMG_SOURCE');
  });

  it('applies defaults < YAML < environment < flags', () => {
    const c = resolveConfig({
      ...base,
      yaml: { path: '/etc/p.yaml', text: 'vm:\n  vcpus: 2\n  memoryMb: 1024\nrestart:\n  policy: never\n' },
      env: { ...base.env, IMG_RAM_MB: '2048', PODVISOR_RESTART: 'always' },
      flags: { restart: 'on-failure' },
    });
    expect(c.vcpus).toBe(2);
    expect(c.memoryMb).toBe(2048);
    expect(c.restartPolicy).toBe('on-failure');
    expect(c.origins).toMatchObject({ vcpus: 'yaml vm.vcpus', memoryMb: 'env IMG_RAM_MB', restartPolicy: 'flag --restart' });
  });

  it('reports every problem at once, each with its path, value and expectation', () => {
    const found = problems({
      yaml: { path: '/etc/p.yaml', text: 'vm:\n  colour: blue\nnetwork:\n  backend: nat-bridge\n  settings:\n    anything: goes\n    vmIp: 7\n' },
      env: { IMG_SOURCE: '/nope.qcow2', IMG_RAM_MB: '-1', IMG_VCPU: 'two', PODVISOR_ACCEL: 'fast', VM_GW: '' },
    });
    expect([...found].sort()).toEqual([
      'yaml network.settings.anything = "goes" (a known key (unknown key; see docs/configuration.md))',
      'yaml network.settings.vmIp = 7 (a non-empty string)',
      'env IMG_VCPU = "two" (an integer from 1 to 255)',
      'env IMG_RAM_MB = "-1" (an integer from 16 to 4194304)',
      'env PODVISOR_ACCEL = "fast" (one of auto, kvm, tcg)',
      'yaml vm.colour = "blue" (a known key (unknown key; see docs/configuration.md))',
      'env IMG_SOURCE = "/nope.qcow2" (an existing image file (no such file))',
    ].sort());
  });

  it('requires IMG_SOURCE only when no pet disk exists', () => {
    expect(problems({ env: {} })[0]).toContain('there is no pet disk at /var/lib/podvisor/disk/vm-7.qcow2');
    expect(problems({ env: {}, exists: (p) => p === '/var/lib/podvisor/disk/vm-7.qcow2' })).toEqual([]);
  });

  it('accepts the URL schemes the registry has an image source for and refuses others, naming those and hiding credentials', () => {
    expect(problems({ env: { IMG_SOURCE: 'https://user:pw@example.invalid/x.qcow2' } })).toEqual([]);
    expect(problems({ env: { IMG_SOURCE: 'file:///images/base.qcow2' } })).toEqual([]);
    const found = problems({ env: { IMG_SOURCE: 'ftp://user:pw@example.invalid/x.qcow2' } });
    expect(found).toEqual([
      'env IMG_SOURCE = "ftp://***:***@example.invalid/x.qcow2" (a URL of a scheme an image source serves (http://, https://, file://), or an absolute path; an image-source plugin named in PODVISOR_PLUGINS adds a scheme)',
    ]);
  });

  it('asks the registry which network backends, config-drive formats and VM runtimes exist', () => {
    expect(problems({ env: { ...base.env, PODVISOR_NETWORK: 'passt', PODVISOR_CONFIGDRIVE: 'iso9660', PODVISOR_VM_RUNTIME: 'firecracker' } })).toEqual([
      'env PODVISOR_NETWORK = "passt" (one of none, l2-segment, macvtap, nat-bridge (or a plugin that provides network-backend "passt", named in PODVISOR_PLUGINS))',
      'env PODVISOR_CONFIGDRIVE = "iso9660" (one of config-2, nocloud (or a plugin that provides config-drive "iso9660", named in PODVISOR_PLUGINS))',
      'env PODVISOR_VM_RUNTIME = "firecracker" (one of qemu (or a plugin that provides vm-runtime "firecracker", named in PODVISOR_PLUGINS))',
    ]);
  });

  it('resolves the settings of the selected provisions only, with their origins', () => {
    const c = resolveConfig({ ...base, env: { ...base.env, VM_IP: '10.9.8.6', AUTO_ATTACH: 'maybe' }, yaml: { path: '/p.yaml', text: 'network:\n  settings:\n    vmGateway: 10.9.8.5\n' } });
    expect(c.selected['network-backend']).toEqual({
      name: 'nat-bridge',
      settings: {
        vmIp: { value: '10.9.8.6', path: 'env VM_IP', given: true },
        vmGateway: { value: '10.9.8.5', path: 'yaml network.settings.vmGateway', given: true },
        natExclude: { value: [], path: 'env PODVISOR_NAT_EXCLUDE', given: false },
        resolvConf: { value: '/etc/resolv.conf', path: 'yaml network.settings.resolvConf', given: false },
        podInterface: { value: undefined, path: 'yaml network.settings.podInterface', given: false },
      },
    });
    expect(Object.keys(c.selected).sort()).toEqual(['config-drive', 'image-source', 'network-backend', 'vm-runtime']);
    expect(c.selected['image-source']).toEqual({ name: 'file', settings: {} });
  });

  it('NO_VNC is set by any non-empty value but 0/false/no/off', () => {
    expect(resolveConfig({ ...base, env: { ...base.env, NO_VNC: '1' } }).noVnc).toBe(true);
    expect(resolveConfig({ ...base, env: { ...base.env, NO_VNC: 'false' } }).noVnc).toBe(false);
    expect(resolveConfig({ ...base, env: { ...base.env, NO_VNC: '' } }).noVnc).toBe(false);
  });

  it('reports YAML syntax errors with file, line and column', () => {
    const found = problems({ yaml: { path: '/etc/p.yaml', text: 'vm:\n  vcpus: [1\n' } });
    expect(found[0]).toMatch(/^yaml \/etc\/p\.yaml:\d+:\d+/);
  });

  it('refuses a billion-laughs config file with a configuration error naming the file, the line and the bound', () => {
    expect(problems({ yaml: { path: '/etc/p.yaml', text: billionLaughsYaml('vm') } })).toEqual([
      'yaml /etc/p.yaml:4:9 = "(ALIAS_BOMB)" (at most 100 alias expansions in the document (aliases expand to more than 100 nodes at alias *c (a "billion laughs" alias bomb is refused)))',
    ]);
    expect(problems({ yaml: { path: '/etc/p.yaml', text: 'vm:\n  vcpus: *n\n' } })).toEqual([
      'yaml /etc/p.yaml:2:10 = "(UNRESOLVED_ALIAS)" (every alias *NAME after its anchor &NAME (alias *n has no anchor &n before it))',
    ]);
  });

  it('parses disk sizes and takes positional arguments as extra qemu arguments', () => {
    const c = resolveConfig({ ...base, env: { ...base.env, PODVISOR_DISK_SIZE: '20G' }, extraArgs: ['-device', 'virtio-rng-pci'] });
    expect(c.diskSize).toBe(20 * 1024 ** 3);
    expect(c.extraArgs).toEqual(['-device', 'virtio-rng-pci']);
  });

  it('the removed shutdown settings are errors that name PODVISOR_STOP_GRACE, wherever they are given', () => {
    const found = problems({
      env: { ...base.env, PODVISOR_SHUTDOWN_GRACE: '25' },
      flags: { 'shutdown-grace': '25' },
      yaml: { path: '/etc/podvisor/podvisor.yaml', text: 'shutdown:\n  graceSeconds: 25\n  quitTimeoutMs: 5000\n' },
    });
    expect(found.map((f) => f.split(' = ')[0])).toEqual(['yaml shutdown.graceSeconds', 'env PODVISOR_SHUTDOWN_GRACE', 'flag --shutdown-grace', 'yaml shutdown.quitTimeoutMs']);
    for (const f of found) expect(f).toContain('removed; use PODVISOR_STOP_GRACE');
  });

  it('PODVISOR_STOP_GRACE sets the whole stop budget', () => {
    const c = resolveConfig({ ...base, env: { ...base.env, PODVISOR_STOP_GRACE: '45' } });
    expect([c.stopGrace, c.origins.stopGrace]).toEqual([45, 'env PODVISOR_STOP_GRACE']);
  });

  it('reads stacked network backends as a list (environment) or a mapping of each to its settings (YAML), in order', () => {
    expect(resolveConfig({ ...base, env: { ...base.env, PODVISOR_NETWORK_EXTRA: 'l2-segment' } }).networkExtra).toEqual({ 'l2-segment': {} });
    const yaml = { text: 'network:\n  extra:\n    l2-segment:\n      reloadMs: 500\n', path: '/etc/podvisor/podvisor.yaml' };
    expect(resolveConfig({ ...base, yaml }).networkExtra).toEqual({ 'l2-segment': { reloadMs: 500 } });
    expect(problems({ yaml: { text: 'network:\n  extra: 3\n', path: 'p.yaml' } })).toEqual(['yaml network.extra = 3 (a list of network backend names, or a mapping of each name to its settings)']);
  });

  it("resolves a stacked backend's declared settings with podvisor's (environment over its YAML section), and refuses a key it does not declare", () => {
    const yaml = { text: 'network:\n  extra:\n    l2-segment:\n      reloadMs: 500\n      wireguard: userspace\n', path: 'p.yaml' };
    const c = resolveConfig({ ...base, yaml, env: { ...base.env, PODVISOR_L2_RELOAD_MS: '800' } });
    expect(c.selectedExtra.map((x) => [x.name, x.settings['reloadMs'], x.settings['wireguard']?.value])).toEqual([['l2-segment', { value: 800, path: 'env PODVISOR_L2_RELOAD_MS', given: true }, 'userspace']]);
    const bad = { text: 'network:\n  extra:\n    l2-segment:\n      colour: blue\n      reloadMs: fast\n', path: 'p.yaml' };
    expect(problems({ yaml: bad, env: { ...base.env, PODVISOR_L2_WIREGUARD: 'ipsec' } })).toEqual([
      'yaml network.extra.l2-segment.colour = "blue" (one of the l2-segment settings: peers, privateKey, wireguard, reloadMs, podInterface)',
      'env PODVISOR_L2_WIREGUARD = "ipsec" (one of auto, kernel, userspace)',
      'yaml network.extra.l2-segment.reloadMs = "fast" (an integer from 100 to 3600000)',
    ]);
  });
});
