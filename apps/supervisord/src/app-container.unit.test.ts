import { describe, expect, it } from 'vitest';
import { ImageSourceCatalog, ImageStore, Logger, PLUGIN_KINDS, ProcessRunner, type PluginKind } from '@podvisor/core';
import { buildAppContainer } from './app-container.js';
import { BUILT_IN_PLUGINS } from './built-in-plugins.js';

describe('the composition root', () => {
  it('resolves the whole graph of the real app, with every built-in plugin loaded through the plugin loader', async () => {
    const sink: string[] = [];
    const { container, registry } = await buildAppContainer({
      logLevel: 'warn',
      imagesDir: '/nonexistent/images',
      maxVirtualSizeBytes: 1,
      plugins: [],
      logSink: { write: (l: string) => sink.push(l) },
    });
    expect(registry.list().map((p) => p.from)).toEqual(Object.keys(BUILT_IN_PLUGINS));
    for (const token of [Logger, ProcessRunner, ImageStore]) {
      expect(container.get(token)).toBeDefined();
    }
    // Every port is a plugin kind: each provision resolves by its name.
    for (const kind of Object.keys(PLUGIN_KINDS) as PluginKind[]) {
      for (const name of registry.names(kind)) expect(container.getNamed(PLUGIN_KINDS[kind], name)).toBeDefined();
    }
    expect(Object.fromEntries((Object.keys(PLUGIN_KINDS) as PluginKind[]).map((k) => [k, registry.names(k)]))).toEqual({
      'network-backend': ['l2-segment', 'macvtap', 'nat-bridge'],
      'image-source': ['file', 'http', 'https'],
      'config-drive': ['config-2', 'nocloud'],
      'vm-runtime': ['qemu'],
    });
    expect(container.get<ImageSourceCatalog>(ImageSourceCatalog).schemes).toEqual(['file', 'http', 'https']);
  });

  it('refuses a plugin that cannot be imported, naming it', async () => {
    await expect(
      buildAppContainer({ logLevel: 'warn', imagesDir: '/x', maxVirtualSizeBytes: 1, plugins: ['/nonexistent/plugin.js'], logSink: { write: () => 0 } }),
    ).rejects.toMatchObject({ code: 'ERR_PLUGIN_NOT_FOUND', message: expect.stringContaining('/nonexistent/plugin.js') });
  });
});
