import { PodvisorError } from '@podvisor/core';
import { billionLaughsYaml } from '@podvisor/core/testing';
import { describe, expect, it } from 'vitest';
import {
  CONFIG_DRIVE_MAX_SOURCE_BYTES,
  planConfigDrive,
  type ConfigDriveLayout,
  type ConfigDriveLayoutOptions,
  type ConfigDriveSources,
} from './config-drive-layout.js';

const defaults = { defaultInstanceId: 'vm-0', defaultHostname: 'vm-0' };
const configTwo: ConfigDriveLayoutOptions = { format: 'config-2', ...defaults };
const noCloud: ConfigDriveLayoutOptions = { format: 'nocloud', ...defaults };
const KEY_A = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAII+k1AYpUX7Y6+pVzkw3JPbRPNpoh7m1rZBP4Qa37Wz2 a@host';
const KEY_B = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPE/zGmNx3W52ztb/2vvTcgUN7RGbq172QXGcXKAagU1 b@host';

const meta = (content: string) => ({ path: '/metadata', content });
const user = (content: string | Uint8Array) => ({ path: '/userdata', content });
const net = (content: string) => ({ path: '/network-config', content });

function plan(sources: ConfigDriveSources, options: ConfigDriveLayoutOptions): ConfigDriveLayout {
  const layout = planConfigDrive(sources, options);
  if (layout === null) throw new Error('expected a layout');
  return layout;
}

function file(layout: ConfigDriveLayout, path: string): string {
  const found = layout.files.find((f) => f.path === path);
  if (found === undefined) throw new Error(`no ${path} in ${layout.files.map((f) => f.path).join(', ')}`);
  return typeof found.content === 'string' ? found.content : Buffer.from(found.content).toString('utf8');
}

function metaJson(layout: ConfigDriveLayout): unknown {
  return JSON.parse(file(layout, 'openstack/latest/meta_data.json'));
}

function caught(fn: () => unknown): PodvisorError {
  try {
    fn();
  } catch (err) {
    if (err instanceof PodvisorError) return err;
    throw err;
  }
  throw new Error('expected a PodvisorError');
}

describe('planConfigDrive: no sources', () => {
  it('returns null when neither user-data nor meta-data is given, whatever the format', () => {
    expect(planConfigDrive({}, configTwo)).toBeNull();
    expect(planConfigDrive({}, noCloud)).toBeNull();
    expect(planConfigDrive({ networkConfig: net('version: 2\n') }, noCloud)).toBeNull();
  });
});

describe('planConfigDrive: config-2 (Berth layout)', () => {
  it('writes meta_data.json and user_data in openstack/2012-08-10 and openstack/latest, labelled config-2', () => {
    const layout = plan({ userData: user('#cloud-config\nssh_pwauth: true\n'), metaData: meta('instance-id: web-1\nlocal-hostname: web\n') }, configTwo);
    expect(layout.volumeLabel).toBe('config-2');
    expect(layout.format).toBe('config-2');
    expect(layout.files.map((f) => f.path)).toEqual([
      'openstack/2012-08-10/meta_data.json',
      'openstack/2012-08-10/user_data',
      'openstack/latest/meta_data.json',
      'openstack/latest/user_data',
    ]);
    expect(file(layout, 'openstack/2012-08-10/meta_data.json')).toBe(file(layout, 'openstack/latest/meta_data.json'));
    expect(file(layout, 'openstack/latest/user_data')).toBe('#cloud-config\nssh_pwauth: true\n');
    expect(layout.instanceId).toBe('web-1');
    expect(layout.hostname).toBe('web');
  });

  it('maps the NoCloud names to OpenStack names and keeps other keys as given', () => {
    const layout = plan(
      { metaData: meta(`instance-id: web-1\nlocal-hostname: web\navailability_zone: nova\nmeta:\n  role: db\npublic-keys:\n  - ${KEY_A}\n  - ${KEY_B}\n`) },
      configTwo,
    );
    expect(metaJson(layout)).toEqual({
      uuid: 'web-1',
      hostname: 'web',
      name: 'web',
      public_keys: { 'key-0': KEY_A, 'key-1': KEY_B },
      availability_zone: 'nova',
      meta: { role: 'db' },
    });
    expect(file(layout, 'openstack/latest/meta_data.json')).toBe(`${JSON.stringify(metaJson(layout), null, 2)}\n`);
  });

  it('keeps OpenStack names given as such, including public_keys as a map name -> key and an explicit name', () => {
    const layout = plan({ metaData: meta(`uuid: 6c559874\nhostname: db\nname: Database\npublic_keys:\n  mykey: ${KEY_A}\n`) }, configTwo);
    expect(metaJson(layout)).toEqual({ uuid: '6c559874', hostname: 'db', name: 'Database', public_keys: { mykey: KEY_A } });
  });

  it("accepts Berth's JSON meta-data (JSON is YAML)", () => {
    const layout = plan({ metaData: meta('{ "uuid": "apache-demo.example.com" }\n') }, configTwo);
    expect(metaJson(layout)).toEqual({ uuid: 'apache-demo.example.com', hostname: 'vm-0', name: 'vm-0' });
    expect(layout.instanceId).toBe('apache-demo.example.com');
  });

  it('fills uuid and hostname from the defaults when meta-data is missing, and writes no user_data without user-data', () => {
    const onlyUser = plan({ userData: user('#!/bin/sh\necho hi\n') }, configTwo);
    expect(metaJson(onlyUser)).toEqual({ uuid: 'vm-0', hostname: 'vm-0', name: 'vm-0' });
    expect(onlyUser.instanceId).toBe('vm-0');
    const onlyMeta = plan({ metaData: meta('availability_zone: nova\n') }, configTwo);
    expect(onlyMeta.files.map((f) => f.path)).toEqual(['openstack/2012-08-10/meta_data.json', 'openstack/latest/meta_data.json']);
    expect(metaJson(onlyMeta)).toEqual({ uuid: 'vm-0', hostname: 'vm-0', name: 'vm-0', availability_zone: 'nova' });
  });

  it('treats an empty meta-data file as given but empty', () => {
    const layout = plan({ metaData: meta('# nothing yet\n') }, configTwo);
    expect(metaJson(layout)).toEqual({ uuid: 'vm-0', hostname: 'vm-0', name: 'vm-0' });
  });

  it('splits a multi-line public-keys string into one key a line, dropping comments', () => {
    const layout = plan({ metaData: meta(`public-keys: |\n  # admins\n  ${KEY_A}\n\n  ${KEY_B}\n`) }, configTwo);
    expect(metaJson(layout)).toMatchObject({ public_keys: { 'key-0': KEY_A, 'key-1': KEY_B } });
  });

  it('passes user-data bytes through untouched (gzip, scripts)', () => {
    const gzip = new Uint8Array([0x1f, 0x8b, 0x08, 0x00, 0xff, 0xfe]);
    const layout = plan({ userData: user(gzip) }, configTwo);
    const found = layout.files.find((f) => f.path === 'openstack/latest/user_data');
    expect(found?.content).toBe(gzip);
  });

  it('writes OpenStack network_data as network_data.json', () => {
    const layout = plan(
      { metaData: meta('uuid: a\n'), networkConfig: net('links:\n  - id: eth0\n    type: phy\nnetworks: []\nservices: []\n') },
      configTwo,
    );
    expect(layout.files.map((f) => f.path)).toEqual([
      'openstack/2012-08-10/meta_data.json',
      'openstack/2012-08-10/network_data.json',
      'openstack/latest/meta_data.json',
      'openstack/latest/network_data.json',
    ]);
    expect(JSON.parse(file(layout, 'openstack/latest/network_data.json'))).toEqual({ links: [{ id: 'eth0', type: 'phy' }], networks: [], services: [] });
  });

  it('refuses cloud-init network config (version 2) on a config-2 drive, naming the file', () => {
    const err = caught(() => plan({ metaData: meta('uuid: a\n'), networkConfig: net('version: 2\nethernets: {}\n') }, configTwo));
    expect(err.code).toBe('ERR_CONFIGDRIVE_INVALID');
    expect(err.message).toContain('/network-config');
    expect(err.hint).toContain('nocloud');
  });
});

describe('planConfigDrive: nocloud', () => {
  it('writes meta-data, user-data and network-config at the root, labelled cidata', () => {
    const network = 'version: 2\nethernets:\n  eth0:\n    dhcp4: true\n';
    const layout = plan({ userData: user('#cloud-config\n{}\n'), metaData: meta('instance-id: web-1\n'), networkConfig: net(network) }, noCloud);
    expect(layout.volumeLabel).toBe('cidata');
    expect(layout.files.map((f) => f.path)).toEqual(['meta-data', 'user-data', 'network-config']);
    expect(file(layout, 'network-config')).toBe(network);
    expect(file(layout, 'user-data')).toBe('#cloud-config\n{}\n');
  });

  it('fills instance-id and local-hostname from the defaults, and writes an empty user-data when none is given', () => {
    const layout = plan({ metaData: meta('foo: bar\n') }, noCloud);
    expect(file(layout, 'meta-data')).toBe('instance-id: vm-0\nlocal-hostname: vm-0\nfoo: bar\n');
    expect(file(layout, 'user-data')).toBe('');
    expect(layout.files.map((f) => f.path)).toEqual(['meta-data', 'user-data']);
  });

  it('accepts OpenStack names as input and writes NoCloud names, public keys as a list', () => {
    const layout = plan({ metaData: meta(`uuid: "0123"\nhostname: "yes"\npublic_keys:\n  mykey: ${KEY_A}\n`) }, noCloud);
    expect(file(layout, 'meta-data')).toBe(`instance-id: "0123"\nlocal-hostname: "yes"\npublic-keys:\n  - ${KEY_A}\n`);
    expect(layout.instanceId).toBe('0123');
    expect(layout.hostname).toBe('yes');
  });

  it('reads meta-data as YAML 1.1, like cloud-init: an unquoted 0123 is octal', () => {
    const layout = plan({ metaData: meta('instance-id: 0123\n') }, noCloud);
    expect(layout.instanceId).toBe('83');
  });
});

describe('planConfigDrive: errors', () => {
  it('reports malformed meta-data YAML with the path, line and column', () => {
    const err = caught(() => plan({ metaData: meta('instance-id: a\nlocal-hostname: b: c\n') }, configTwo));
    expect(err.code).toBe('ERR_CONFIGDRIVE_YAML');
    expect(err.message).toMatch(/^invalid YAML in meta-data \/metadata at line 2, column 17: Nested mappings are not allowed/);
    expect(err.details).toMatchObject({ path: '/metadata', line: 2, column: 17 });
  });

  it('reports a duplicate key with its line', () => {
    const err = caught(() => plan({ metaData: meta('uuid: a\nhostname: b\nuuid: c\n') }, noCloud));
    expect(err.code).toBe('ERR_CONFIGDRIVE_YAML');
    expect(err.message).toContain('/metadata at line 3, column 1');
    expect(err.message).toContain('Map keys must be unique');
  });

  it('reports malformed #cloud-config user-data with the path and line', () => {
    const err = caught(() => plan({ userData: user('#cloud-config\nusers:\n  - name: a\n bad: [\n') }, configTwo));
    expect(err.code).toBe('ERR_CONFIGDRIVE_YAML');
    expect(err.message).toContain('user-data /userdata at line 4');
    expect(err.hint).toContain('#cloud-config');
  });

  it('refuses a billion-laughs meta-data or #cloud-config user-data with a coded error naming the file and the line', () => {
    for (const [sources, role, pathName] of [
      [{ metaData: meta(billionLaughsYaml('hostname')) }, 'meta-data', '/metadata'],
      [{ userData: user(billionLaughsYaml('write_files', '#cloud-config\n')) }, 'user-data', '/userdata'],
    ] as const) {
      const err = caught(() => plan(sources, configTwo));
      const line = role === 'user-data' ? 5 : 4;
      expect(err.code).toBe('ERR_CONFIGDRIVE_YAML');
      expect(err.message).toBe(`invalid YAML in ${role} ${pathName} at line ${line}, column 9: aliases expand to more than 100 nodes at alias *c (a "billion laughs" alias bomb is refused)`);
      expect(err.hint).toContain('expected at most 100 alias expansions in the document');
      expect(err.details).toMatchObject({ path: pathName, role, line, column: 9, yamlCode: 'ALIAS_BOMB' });
    }
  });

  it('does not parse user-data that is not #cloud-config', () => {
    expect(() => plan({ userData: user('#!/bin/sh\na: b: c\n') }, configTwo)).not.toThrow();
  });

  it('refuses #cloud-config user-data that is not a mapping', () => {
    const err = caught(() => plan({ userData: user('#cloud-config\n- a\n- b\n') }, noCloud));
    expect(err.code).toBe('ERR_CONFIGDRIVE_INVALID');
    expect(err.message).toBe('user-data /userdata must be a YAML mapping (key: value lines), but it is a list');
  });

  it('refuses meta-data that is YAML but not a mapping, naming the file', () => {
    const list = caught(() => plan({ metaData: meta('- a\n') }, configTwo));
    expect(list.code).toBe('ERR_CONFIGDRIVE_INVALID');
    expect(list.message).toContain('meta-data /metadata must be a YAML mapping');
    const scalar = caught(() => plan({ metaData: meta('just words\n') }, configTwo));
    expect(scalar.message).toContain('but it is a string');
  });

  it('refuses a hostname that YAML 1.1 reads as a boolean, with a hint to quote it', () => {
    const err = caught(() => plan({ metaData: meta('local-hostname: yes\n') }, noCloud));
    expect(err.code).toBe('ERR_CONFIGDRIVE_INVALID');
    expect(err.message).toBe('meta-data /metadata: local-hostname must be a non-empty string, got true');
    expect(err.hint).toContain('quote');
  });

  it('refuses both names of a key with different values', () => {
    const err = caught(() => plan({ metaData: meta('instance-id: a\nuuid: b\n') }, configTwo));
    expect(err.code).toBe('ERR_CONFIGDRIVE_INVALID');
    expect(err.message).toBe('meta-data /metadata gives both instance-id ("a") and uuid ("b"), which differ');
    expect(plan({ metaData: meta('instance-id: a\nuuid: a\n') }, configTwo).instanceId).toBe('a');
  });

  it('refuses public keys that are not strings', () => {
    const err = caught(() => plan({ metaData: meta('public-keys:\n  - 42\n') }, configTwo));
    expect(err.code).toBe('ERR_CONFIGDRIVE_INVALID');
    expect(err.message).toContain('public-keys must list strings');
  });

  it('refuses meta-data that is not UTF-8', () => {
    const err = caught(() => plan({ metaData: { path: '/metadata', content: new Uint8Array([0x75, 0x3a, 0xff, 0x0a]) } }, configTwo));
    expect(err.code).toBe('ERR_CONFIGDRIVE_INVALID');
    expect(err.message).toBe('meta-data /metadata is not UTF-8 text');
  });

  it('refuses a source over the size limit, naming the file, its size and the limit', () => {
    expect(CONFIG_DRIVE_MAX_SOURCE_BYTES).toBe(65536);
    expect(() => plan({ userData: user('#'.repeat(CONFIG_DRIVE_MAX_SOURCE_BYTES)) }, configTwo)).not.toThrow();
    const err = caught(() => plan({ userData: user('#'.repeat(CONFIG_DRIVE_MAX_SOURCE_BYTES + 1)) }, configTwo));
    expect(err.code).toBe('ERR_CONFIGDRIVE_TOO_LARGE');
    expect(err.message).toBe('user-data /userdata is 65537 bytes, over the config drive limit of 65536 bytes (64 KiB)');
    const multibyte = caught(() => plan({ metaData: meta(`x: "${'é'.repeat(CONFIG_DRIVE_MAX_SOURCE_BYTES / 2)}"\n`) }, noCloud));
    expect(multibyte.code).toBe('ERR_CONFIGDRIVE_TOO_LARGE');
    expect(multibyte.message).toContain('meta-data /metadata is 65542 bytes');
  });
});
