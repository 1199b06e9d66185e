import { Container } from 'inversify';
import { describe, expect, it } from 'vitest';
import { Logger, NetworkBackend, PLUGIN_API_VERSION, PluginRegistry, ProcessRunner, SilentLogger, manifestProblems, type ProcessRunner as Runner } from '@podvisor/core';
import manifest, { NatBridgeNetworkBackend } from './index.js';

describe('the @podvisor/net-nat-bridge manifest', () => {
  it('is a valid plugin manifest providing the nat-bridge network backend', () => {
    expect(manifestProblems(manifest)).toEqual([]);
    expect(manifest).toMatchObject({ name: '@podvisor/net-nat-bridge', apiRange: `^${PLUGIN_API_VERSION}`, provides: [{ kind: 'network-backend', name: 'nat-bridge' }] });
    const registry = new PluginRegistry();
    registry.add(manifest, '@podvisor/net-nat-bridge');
    expect(registry.names('network-backend')).toEqual(['nat-bridge']);
  });

  it('binds NetworkBackend named nat-bridge to one NatBridgeNetworkBackend', () => {
    const container = new Container();
    container.bind<Runner>(ProcessRunner).toConstantValue({} as Runner);
    container.bind(Logger).toConstantValue(new SilentLogger());
    container.load(manifest.module);
    const backend = container.getNamed<NetworkBackend>(NetworkBackend, 'nat-bridge');
    expect(backend).toBeInstanceOf(NatBridgeNetworkBackend);
    expect(backend.name).toBe('nat-bridge');
    expect(container.getNamed<NetworkBackend>(NetworkBackend, 'nat-bridge')).toBe(backend);
  });
});
