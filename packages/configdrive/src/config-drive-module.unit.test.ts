import { Container } from 'inversify';
import { ConfigDriveBuilder, Logger, PluginRegistry, ProcessRunner, SilentLogger, manifestProblems } from '@podvisor/core';
import { describe, expect, it } from 'vitest';
import { configDriveModule, configDrivePlugin } from './config-drive-module.js';
import { GenisoimageConfigDriveBuilder, genisoimageArgs } from './genisoimage-config-drive-builder.js';
import pluginDefault from './index.js';

describe('configDriveModule', () => {
  it('binds ConfigDriveBuilder, named after each format, to one GenisoimageConfigDriveBuilder per container', () => {
    const container = new Container();
    container.bind(Logger).toConstantValue(new SilentLogger());
    container.bind(ProcessRunner).toConstantValue({} as ProcessRunner);
    container.load(configDriveModule);
    const a = container.getNamed<ConfigDriveBuilder>(ConfigDriveBuilder, 'config-2');
    expect(a).toBeInstanceOf(GenisoimageConfigDriveBuilder);
    expect(container.getNamed<ConfigDriveBuilder>(ConfigDriveBuilder, 'nocloud')).toBe(a);
  });

  it('is the module of a valid plugin manifest, which is also the default export', () => {
    expect(manifestProblems(configDrivePlugin)).toEqual([]);
    expect(pluginDefault).toBe(configDrivePlugin);
    const registry = new PluginRegistry();
    registry.add(configDrivePlugin, '@podvisor/configdrive');
    expect(registry.names('config-drive')).toEqual(['config-2', 'nocloud']);
  });
});

describe('genisoimageArgs', () => {
  it('asks for Joliet and rationalised Rock Ridge, UTF-8 names and the volume label', () => {
    expect(genisoimageArgs('/s/.d.iso.tmp', 'config-2', '/s/stage')).toEqual([
      '-quiet',
      '-output',
      '/s/.d.iso.tmp',
      '-volid',
      'config-2',
      '-joliet',
      '-rational-rock',
      '-input-charset',
      'utf-8',
      '/s/stage',
    ]);
  });
});
