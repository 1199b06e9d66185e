import { Container, ContainerModule } from 'inversify';
import { describe, expect, it } from 'vitest';
import { PLUGIN_API_VERSION, PluginRegistry, manifestProblems, type PluginManifest } from './plugin.js';
import { resolvePluginSettings, type PluginSetting } from './plugin-settings.js';
import { NetworkBackend } from './ports.js';

const backend = (name: string) => ({ name, validate: () => [], attach: async () => ({ nics: [], detail: {} }), detach: async () => undefined });

function manifest(over: Partial<PluginManifest> & Record<string, unknown> = {}): PluginManifest {
  const name = (over.provides?.[0]?.name as string | undefined) ?? 'example';
  return {
    name: 'example-net',
    apiRange: `^${PLUGIN_API_VERSION}`,
    provides: [{ kind: 'network-backend', name }],
    module: new ContainerModule((bind) => {
      bind(NetworkBackend).toConstantValue(backend(name)).whenTargetNamed(name);
    }),
    ...over,
  } as PluginManifest;
}

describe('PluginRegistry', () => {
  it('accepts a plugin whose apiRange includes this API version', () => {
    for (const apiRange of [`^${PLUGIN_API_VERSION}`, '2.x', '>=1.0.0 <3.0.0', '^1.0.0 || ^2.0.0']) {
      expect(new PluginRegistry().add(manifest({ apiRange }), 'x').manifest.apiRange).toBe(apiRange);
    }
  });

  it('refuses an incompatible range, naming both versions; an API-1 manifest (apiVersion: 1) is read as 1.x', () => {
    expect(() => new PluginRegistry().add(manifest({ apiRange: '^3.0.0' }), '/p/x.mjs')).toThrow(
      `plugin example-net (from /p/x.mjs) supports plugin API ^3.0.0, but this podvisor implements plugin API ${PLUGIN_API_VERSION}`,
    );
    const old = { ...manifest(), apiRange: undefined, apiVersion: 1 };
    expect(() => new PluginRegistry().add(old, '/p/old.mjs')).toThrow(expect.objectContaining({ code: 'ERR_PLUGIN_INCOMPATIBLE', message: expect.stringContaining('supports plugin API 1.x') }));
  });

  it('refuses a range outside the documented subset as an invalid manifest', () => {
    expect(manifestProblems(manifest({ apiRange: 'latest' }))).toEqual([`apiRange: got "latest", expected a semver range of plugin API versions such as "^${PLUGIN_API_VERSION}"`]);
  });

  it('refuses two plugins of one name, and two provisions of one kind and name', () => {
    const r = new PluginRegistry();
    r.add(manifest(), '/a.mjs');
    expect(() => r.add(manifest(), '/b.mjs')).toThrow('plugin example-net is loaded twice: from /a.mjs and from /b.mjs');
    expect(() => r.add(manifest({ name: 'other' }), '/c.mjs')).toThrow('network-backend "example" is provided by both example-net (from /a.mjs) and other (from /c.mjs)');
  });

  it('refuses a setting that podvisor or another kind owns; provisions of one kind may share one (only one is selected)', () => {
    const setting = (over: Partial<PluginSetting> = {}): PluginSetting => ({ name: 'mode', key: 'network.settings.mode', env: ['EXAMPLE_MODE'], type: 'string', doc: 'a mode', ...over });
    const reserved = new PluginRegistry({ keys: ['vm.name'], env: ['NO_VNC'] });
    expect(() => reserved.add(manifest({ provides: [{ kind: 'network-backend', name: 'a', settings: [setting({ env: ['NO_VNC'] })] }] }), '/a.mjs')).toThrow(
      'plugin example-net (from /a.mjs) declares the setting variable NO_VNC, which podvisor owns',
    );
    const r = new PluginRegistry();
    r.add(manifest({ provides: [{ kind: 'network-backend', name: 'a', settings: [setting()] }] }), '/a.mjs');
    r.add(manifest({ name: 'b', provides: [{ kind: 'network-backend', name: 'b', settings: [setting()] }] }), '/b.mjs');
    expect(() => r.add(manifest({ name: 'c', provides: [{ kind: 'image-source', name: 's3', settings: [setting({ key: 'image.settings.mode' })] }] }), '/c.mjs')).toThrow(
      'declares the setting variable EXAMPLE_MODE, which network-backend "a" of example-net owns',
    );
  });

  it('reports every problem of a bad settings declaration', () => {
    const bad = manifest({ provides: [{ kind: 'network-backend', name: 'a', settings: [{ name: 'Mode', key: 'mode', type: 'float', doc: '' } as unknown as PluginSetting] }] });
    expect(manifestProblems(bad)).toEqual([
      'provides[0].settings[0].name: got "Mode", expected a camelCase name',
      'provides[0].settings[0].key: got "mode", expected a dotted YAML path such as network.settings.vmIp',
      'provides[0].settings[0].type: got "float", expected string | boolean | integer | string-list',
      'provides[0].settings[0].doc: expected a non-empty description',
    ]);
  });

  it('refuses, once loaded, a provision its module does not bind under its name', () => {
    const r = new PluginRegistry();
    r.add(manifest({ provides: [{ kind: 'network-backend', name: 'example' }, { kind: 'vm-runtime', name: 'ghost' }] }), '/a.mjs');
    expect(() => r.loadInto(new Container())).toThrow('plugin example-net (from /a.mjs) provides vm-runtime "ghost" but its module binds no podvisor.VmRuntime named "ghost"');
  });

  it('names the set variables of the other provisions of a kind', () => {
    const r = new PluginRegistry();
    r.add(manifest({ provides: [{ kind: 'network-backend', name: 'a', settings: [{ name: 'x', key: 'network.settings.x', env: ['A_X'], type: 'string', doc: 'x' }] }] }), '/a.mjs');
    r.add(manifest({ name: 'b', provides: [{ kind: 'network-backend', name: 'b', settings: [{ name: 'y', key: 'network.settings.y', env: ['B_Y'], type: 'string', doc: 'y' }] }] }), '/b.mjs');
    expect(r.settingsOfOthers('network-backend', 'a', { A_X: '1', B_Y: '2' })).toEqual([{ usedBy: 'b', settings: ['B_Y'] }]);
  });
});

describe('resolvePluginSettings', () => {
  const declared: PluginSetting[] = [
    { name: 'on', key: 'x.settings.on', env: ['X_ON'], type: 'boolean', default: false, doc: 'on' },
    { name: 'count', key: 'x.settings.count', env: ['X_COUNT'], type: 'integer', min: 1, max: 9, doc: 'count' },
    { name: 'mode', key: 'x.settings.mode', env: ['X_MODE', 'X_MODE_ALIAS'], type: 'string', values: ['fast', 'slow'], default: 'slow', doc: 'mode' },
    { name: 'names', key: 'x.settings.names', type: 'string-list', doc: 'names' },
    { name: 'token', key: 'x.settings.token', env: ['X_TOKEN'], type: 'string', secret: true, doc: 'token' },
  ];

  it('applies default < YAML < environment, an empty variable being unset', () => {
    const { settings, problems } = resolvePluginSettings(declared, {
      env: { X_ON: 'yes', X_COUNT: '', X_MODE_ALIAS: 'fast' },
      yaml: { x: { settings: { on: false, count: 3, names: ['a', 'b'] } } },
    });
    expect(problems).toEqual([]);
    expect(settings).toEqual({
      on: { value: true, path: 'env X_ON', given: true },
      count: { value: 3, path: 'yaml x.settings.count', given: true },
      mode: { value: 'fast', path: 'env X_MODE_ALIAS', given: true },
      names: { value: ['a', 'b'], path: 'yaml x.settings.names', given: true },
      token: { value: undefined, path: 'env X_TOKEN', given: false },
    });
  });

  it('reports every bad value wherever it is given, aliases that disagree, and hides secrets', () => {
    const { problems } = resolvePluginSettings(declared, {
      env: { X_ON: 'maybe', X_COUNT: '10', X_MODE: 'fast', X_MODE_ALIAS: 'slow', X_TOKEN: ' ' },
      yaml: { x: { settings: { on: 'perhaps', names: 7, token: 5 } } },
    });
    expect(problems.map((p) => [p.path, p.value, p.expected])).toEqual([
      ['yaml x.settings.on', 'perhaps', 'true or false'],
      ['env X_ON', 'maybe', 'yes or no (also true/false, on/off, 1/0)'],
      ['env X_COUNT', '10', 'an integer from 1 to 9'],
      ['env X_MODE_ALIAS', 'slow', 'the same value as X_MODE ("fast"), or unset: it is an alias'],
      ['yaml x.settings.names', 7, 'a list of strings (or one string separated by commas or spaces)'],
      ['yaml x.settings.token', '(redacted)', 'a non-empty string'],
    ]);
  });
});
