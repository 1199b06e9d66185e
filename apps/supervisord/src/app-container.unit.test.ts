import { describe, expect, it } from 'vitest';
import { ConfigDriveBuilder, ImageStore, Logger, NetworkBackend, ProcessRunner, VmRuntime } from '@podvisor/core';
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
    for (const token of [Logger, ProcessRunner, VmRuntime, ImageStore, ConfigDriveBuilder]) {
      expect(container.get(token)).toBeDefined();
    }
    for (const name of registry.names('network-backend')) {
      expect(container.getNamed<NetworkBackend>(NetworkBackend, name).name).toBe(name);
    }
    expect(registry.names('network-backend')).toContain('nat-bridge');
  });

  it('refuses a plugin that cannot be imported, naming it', async () => {
    await expect(
      buildAppContainer({ logLevel: 'warn', imagesDir: '/x', maxVirtualSizeBytes: 1, plugins: ['/nonexistent/plugin.js'], logSink: { write: () => 0 } }),
    ).rejects.toMatchObject({ code: 'ERR_PLUGIN_NOT_FOUND', message: expect.stringContaining('/nonexistent/plugin.js') });
  });
});
