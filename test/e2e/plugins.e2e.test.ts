/**
 * Plugins through the shipped binary. Every port is a plugin kind chosen by
 * name: the fixtures (test/e2e/fixtures/plugins, written as a third party
 * writes them) provide a network backend, an image source for a new URL
 * scheme, a config-drive format and a VM runtime. Each is listed by
 * `podvisor plugins`, chosen by name, and its declared settings are checked
 * with podvisor's own; the loader refuses an incompatible API range (naming
 * both versions), two plugins of one name and two provisions of one name.
 */
import { randomBytes } from 'node:crypto';
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { PLUGIN_API_VERSION } from '@podvisor/core';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { GUEST, PodvisorProcess, REPO, makeVmDirs, readEvents, requireBuilt, vmEnv, waitForEvent, type VmDirs } from './support/podvisor-process.js';

const FIXTURES = path.join(REPO, 'test/e2e/fixtures/plugins');
const fixture = (name: string): string => path.join(FIXTURES, `${name}.mjs`);
const EXAMPLES = ['example-net', 'example-image-source', 'example-config-drive', 'example-runtime'].map(fixture);

let dirs: VmDirs;
let name: string;
const running: PodvisorProcess[] = [];
beforeAll(() => requireBuilt());
beforeEach(async () => {
  name = `pv-plug-${randomBytes(3).toString('hex')}`;
  dirs = await makeVmDirs(name);
});
afterEach(async () => {
  await Promise.all(running.splice(0).map((p) => p.killed()));
  await dirs.cleanup();
});

function start(args: string[], env: Record<string, string>): PodvisorProcess {
  const p = new PodvisorProcess(args, env);
  running.push(p);
  return p;
}

async function run(args: string[], env: Record<string, string>): Promise<PodvisorProcess> {
  const p = start(args, env);
  await p.exited;
  return p;
}

interface Listed {
  apiVersion: string;
  plugins: Array<{ name: string; apiRange: string; from: string; provides: Array<{ kind: string; name: string; settings?: Array<{ key: string; env?: string[] }> }> }>;
}

describe('plugins of every kind in the shipped binary', () => {
  it('each kind is listed by podvisor plugins, with the settings it owns, after the built-in ones', async () => {
    const list = await run(['plugins', '--json'], { PODVISOR_PLUGINS: EXAMPLES.join(',') });
    expect((await list.exited).code).toBe(0);
    const listed = JSON.parse(list.stdout) as Listed;
    expect(listed.apiVersion).toBe(PLUGIN_API_VERSION);
    expect(listed.plugins.map((p) => [p.name, p.provides.map((x) => `${x.kind}:${x.name}`).join(' ')])).toEqual([
      ['@podvisor/qemu', 'vm-runtime:qemu'],
      ['@podvisor/image-store', 'image-source:file image-source:http image-source:https'],
      ['@podvisor/configdrive', 'config-drive:config-2 config-drive:nocloud'],
      ['@podvisor/net-nat-bridge', 'network-backend:nat-bridge'],
      ['@podvisor/net-macvtap', 'network-backend:macvtap'],
      ['@podvisor/net-l2-segment', 'network-backend:l2-segment'],
      ['example-net', 'network-backend:example-net'],
      ['example-image-source', 'image-source:example'],
      ['example-config-drive', 'config-drive:example-drive'],
      ['example-runtime', 'vm-runtime:example-runtime'],
    ]);
    expect(listed.plugins.find((p) => p.name === 'example-net')).toMatchObject({ from: fixture('example-net'), apiRange: '^2.0.0', provides: [{ settings: [{ key: 'network.settings.mode', env: ['EXAMPLE_NET_MODE'] }] }] });
  });

  it("a plugin's settings are checked with podvisor's, every problem reported together; then its own check across them", async () => {
    const yaml = path.join(dirs.root, 'podvisor.yaml');
    await writeFile(yaml, 'network:\n  settings:\n    mode: sideways\nimage:\n  example:\n    root: 7\n');
    const bad = await run(['run', '--config', yaml], vmEnv(dirs, name, { PODVISOR_PLUGINS: EXAMPLES.join(','), PODVISOR_NETWORK: 'example-net', IMG_SOURCE: 'example://guest.qcow2', IMG_RAM_MB: '-1' }));
    expect((await bad.exited).code).toBe(2);
    expect(bad.stderr).toContain('invalid configuration (3 problems)');
    expect(bad.stderr).toContain('env IMG_RAM_MB: got "-1", expected an integer from 16 to 4194304');
    expect(bad.stderr).toContain(`yaml network.settings.mode: got "sideways", expected one of bridged, isolated`);
    expect(bad.stderr).toContain('yaml image.example.root: got 7, expected a non-empty string');

    // The types are right: the backend's own check runs, and names where the value came from.
    const cross = await run(['run'], vmEnv(dirs, name, { PODVISOR_PLUGINS: fixture('example-net'), PODVISOR_NETWORK: 'example-net', EXAMPLE_NET_MODE: 'isolated', NO_VNC: '0' }));
    expect((await cross.exited).code).toBe(2);
    expect(cross.stderr).toContain('env EXAMPLE_NET_MODE: got "isolated", expected bridged while VNC is on');
  });

  it('an image-source plugin serves a new URL scheme end to end: podvisor image pull, and podvisor run with the network and config drive chosen by name', async () => {
    const root = path.join(dirs.root, 'example-root');
    await mkdir(root);
    await copyFile(GUEST, path.join(root, 'guest.qcow2'));
    const plugins = EXAMPLES.join(',');

    // Without the plugin, the scheme is refused by the configuration check, which names the schemes there are.
    const unknown = await run(['run'], vmEnv(dirs, name, { IMG_SOURCE: 'example://guest.qcow2' }));
    expect((await unknown.exited).code).toBe(2);
    expect(unknown.stderr).toContain('env IMG_SOURCE: got "example://guest.qcow2", expected a URL of a scheme an image source serves (http://, https://, file://)');

    const pulled = await run(['image', 'pull', 'example://guest.qcow2', '--json', '--target', 'pulled.qcow2', '--images-dir', dirs.imagesDir], { PODVISOR_PLUGINS: plugins, EXAMPLE_IMAGE_ROOT: root });
    expect((await pulled.exited).code, pulled.stderr).toBe(0);
    expect(JSON.parse(pulled.stdout)).toMatchObject({ source: 'example://guest.qcow2', target: 'pulled.qcow2', format: 'qcow2', reused: false });

    const p = start(['run'], vmEnv(dirs, name, { PODVISOR_PLUGINS: plugins, EXAMPLE_IMAGE_ROOT: root, IMG_SOURCE: 'example://guest.qcow2', PODVISOR_NETWORK: 'example-net', PODVISOR_CONFIGDRIVE: 'example-drive' }));
    await waitForEvent(dirs.stateDir, 'VmStarted');
    p.signal('SIGTERM');
    expect((await p.exited).code).toBe(0);
    const events = readEvents(dirs.stateDir);
    expect(events.find((e) => e.type === 'ImageImported')?.data).toMatchObject({ source: 'example://guest.qcow2', target: 'guest.qcow2', sha256: JSON.parse(pulled.stdout).sha256 });
    expect(events.find((e) => e.type === 'ConfigDriveBuilt')?.data).toMatchObject({ format: 'example-drive' });
    expect(events.find((e) => e.type === 'NetworkAttached')?.data).toMatchObject({ backend: 'example-net', detail: { mode: 'bridged' } });
    expect(await readFile(path.join(dirs.stateDir, 'configdrive.iso'), 'utf8')).toBe('example drive\n');
  });

  it('the VM runtime is chosen by name', async () => {
    const p = await run(['run'], vmEnv(dirs, name, { PODVISOR_PLUGINS: fixture('example-runtime'), PODVISOR_VM_RUNTIME: 'example-runtime', PODVISOR_RESTART: 'never' }));
    expect((await p.exited).code).not.toBe(0);
    expect(p.stderr).toContain('example-runtime launches nothing');
    expect(readEvents(dirs.stateDir).find((e) => e.type === 'AcceleratorProbed')?.data).toMatchObject({ detail: 'example-runtime runs no accelerator' });
  });
});

describe('the loader refuses, naming what and where', () => {
  it('an incompatible API range, naming both versions', async () => {
    const p = await run(['plugins'], { PODVISOR_PLUGINS: fixture('incompatible') });
    expect((await p.exited).code).toBe(2);
    expect(p.stderr).toContain('"code":"ERR_PLUGIN_INCOMPATIBLE"');
    expect(p.stderr).toContain(`plugin incompatible (from ${fixture('incompatible')}) supports plugin API ^1.0.0, but this podvisor implements plugin API ${PLUGIN_API_VERSION}`);
  });

  it('two plugins claiming one name, and a provision that another plugin provides', async () => {
    const twice = await run(['plugins'], { PODVISOR_PLUGINS: `${fixture('example-net')},${fixture('example-net')}` });
    expect((await twice.exited).code).toBe(2);
    expect(twice.stderr).toContain(`plugin example-net is loaded twice: from ${fixture('example-net')} and from ${fixture('example-net')}`);

    const renamed = path.join(dirs.root, 'renamed.mjs');
    await writeFile(renamed, `import m from ${JSON.stringify(fixture('example-net'))};\nexport default { ...m, name: 'renamed-net' };\n`);
    const duplicate = await run(['plugins'], { PODVISOR_PLUGINS: `${fixture('example-net')},${renamed}` });
    expect((await duplicate.exited).code).toBe(2);
    expect(duplicate.stderr).toContain(`network-backend "example-net" is provided by both example-net (from ${fixture('example-net')}) and renamed-net (from ${renamed})`);
  });

  it('an unknown backend names the ones available; a missing plugin is named', async () => {
    const unknown = await run(['run'], vmEnv(dirs, name, { PODVISOR_NETWORK: 'example' }));
    expect((await unknown.exited).code).toBe(2);
    expect(unknown.stderr).toContain('env PODVISOR_NETWORK: got "example", expected one of none, l2-segment, macvtap, nat-bridge');

    const missing = path.join(dirs.root, 'nope.mjs');
    const notFound = await run(['plugins'], { PODVISOR_PLUGINS: missing });
    expect((await notFound.exited).code).toBe(2);
    expect(notFound.stderr).toContain(`"code":"ERR_PLUGIN_NOT_FOUND"`);
    expect(notFound.stderr).toContain(missing);
  });
});
