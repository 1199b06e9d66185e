/**
 * Third-party plugins through the shipped binary: a plugin named in
 * PODVISOR_PLUGINS loads through the same loader as the built-in ones, its
 * network backend is selectable and takes part in the configuration check,
 * and the loader's refusals are clear errors with exit code 2.
 */
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { PodvisorProcess, REPO, makeVmDirs, requireBuilt, vmEnv, type VmDirs } from './support/podvisor-process.js';

let dirs: VmDirs;
let name: string;
beforeAll(() => requireBuilt());
beforeEach(async () => {
  name = `pv-plug-${randomBytes(3).toString('hex')}`;
  dirs = await makeVmDirs(name);
});
afterEach(async () => {
  await dirs.cleanup();
});

/** A plugin as its author would write it: a manifest whose module binds a NetworkBackend by name. */
async function writePlugin(file: string, pluginName: string, backend: string): Promise<string> {
  const inversify = JSON.stringify(path.join(REPO, 'apps/supervisord/package.json'));
  await writeFile(
    file,
    `import { createRequire } from 'node:module';
const { ContainerModule } = createRequire(${inversify})('inversify');
const NetworkBackend = Symbol.for('podvisor.NetworkBackend');
const backend = {
  name: ${JSON.stringify(backend)},
  validate: (spec) => (spec.env.EXAMPLE_NET_MODE === 'good' ? [] : [{ path: 'env EXAMPLE_NET_MODE', value: spec.env.EXAMPLE_NET_MODE, expected: 'good' }]),
  attach: async () => ({ nics: [], detail: {} }),
  detach: async () => undefined,
};
export default {
  name: ${JSON.stringify(pluginName)},
  apiVersion: 1,
  provides: [{ kind: 'network-backend', name: ${JSON.stringify(backend)} }],
  module: new ContainerModule((bind) => { bind(NetworkBackend).toConstantValue(backend).whenTargetNamed(${JSON.stringify(backend)}); }),
};
`,
  );
  return file;
}

async function run(args: string[], env: Record<string, string>): Promise<PodvisorProcess> {
  const p = new PodvisorProcess(args, env);
  await p.exited;
  return p;
}

describe('third-party plugins in the shipped binary', () => {
  it('a plugin is listed, its backend is selectable, and its own validation joins the configuration check', async () => {
    const plugin = await writePlugin(path.join(dirs.root, 'example-net.mjs'), 'example-net', 'example');
    const list = await run(['plugins', '--json'], { PODVISOR_PLUGINS: plugin });
    expect((await list.exited).code).toBe(0);
    const plugins = JSON.parse(list.stdout) as Array<{ name: string; from: string; provides: Array<{ kind: string; name: string }> }>;
    expect(plugins.map((p) => p.name)).toEqual(['configdrive', '@podvisor/net-nat-bridge', '@podvisor/net-macvtap', '@podvisor/net-l2-segment', 'example-net']);
    expect(plugins.at(-1)).toMatchObject({ from: plugin, provides: [{ kind: 'network-backend', name: 'example' }] });

    const p = await run(['run'], vmEnv(dirs, name, { PODVISOR_PLUGINS: plugin, PODVISOR_NETWORK: 'example', EXAMPLE_NET_MODE: 'bad' }));
    expect((await p.exited).code).toBe(2);
    expect(p.stderr).toContain('env EXAMPLE_NET_MODE: got "bad", expected good');
  });

  it('an unknown backend names the ones available; a missing or duplicate plugin is refused, naming it', async () => {
    const unknown = await run(['run'], vmEnv(dirs, name, { PODVISOR_NETWORK: 'example' }));
    expect((await unknown.exited).code).toBe(2);
    expect(unknown.stderr).toContain('env PODVISOR_NETWORK: got "example", expected one of none, l2-segment, macvtap, nat-bridge');

    const missing = path.join(dirs.root, 'nope.mjs');
    const notFound = await run(['plugins'], { PODVISOR_PLUGINS: missing });
    expect((await notFound.exited).code).toBe(2);
    expect(notFound.stderr).toContain(`"code":"ERR_PLUGIN_NOT_FOUND"`);
    expect(notFound.stderr).toContain(missing);

    const clash = await writePlugin(path.join(dirs.root, 'clash.mjs'), 'clash', 'nat-bridge');
    const duplicate = await run(['plugins'], { PODVISOR_PLUGINS: clash });
    expect((await duplicate.exited).code).toBe(2);
    expect(duplicate.stderr).toContain('network-backend "nat-bridge" is provided by both @podvisor/net-nat-bridge');
  });
});
