import { describe, expect, it } from 'vitest';
import { EVENT_SCHEMA_VERSIONS } from './events.js';
import { UPCASTERS, UpcasterRegistry, type Upcaster } from './upcasters.js';

const versions = { ...EVENT_SCHEMA_VERSIONS, TestRenamed: 3 };
/** v1 {name} -> v2 {title} -> v3 {title, tags} */
const steps: Upcaster[] = [
  { type: 'TestRenamed', fromVersion: 2, up: (d) => ({ ...(d as object), tags: [] }) },
  { type: 'TestRenamed', fromVersion: 1, up: (d) => ({ title: (d as { name: string }).name }) },
];
const envelope = (type: string, schemaVersion: number, data: unknown) => ({ position: 7, at: 't', type, schemaVersion, vm: 'vm-a', data, correlationId: null });

describe('UpcasterRegistry', () => {
  const registry = new UpcasterRegistry({ upcasters: steps, currentVersions: versions });

  it('lifts old data step by step to the current version, keeping the envelope', () => {
    expect(registry.upcast(envelope('TestRenamed', 1, { name: 'a' }))).toEqual(envelope('TestRenamed', 3, { title: 'a', tags: [] }));
    expect(registry.upcast(envelope('TestRenamed', 2, { title: 'b' }))).toEqual(envelope('TestRenamed', 3, { title: 'b', tags: [] }));
  });

  it('does not mutate the stored event', () => {
    const stored = envelope('TestRenamed', 1, { name: 'a' });
    registry.upcast(stored);
    expect(stored).toEqual(envelope('TestRenamed', 1, { name: 'a' }));
  });

  it('returns an event at its current version as is', () => {
    const current = envelope('TestRenamed', 3, { title: 'c', tags: ['x'] });
    expect(registry.upcast(current)).toBe(current);
  });

  it('passes through an unknown type and a version newer than known, with their stored version', () => {
    const unknown = envelope('VmTeleported', 4, { to: 'mars' });
    const newer = envelope('TestRenamed', 9, { whatever: true });
    expect(registry.upcast(unknown)).toBe(unknown);
    expect(registry.upcast(newer)).toBe(newer);
  });

  it('says which step is missing when a stored version has no way up', () => {
    const partial = new UpcasterRegistry({ upcasters: [steps[0] as Upcaster], currentVersions: versions });
    expect(() => partial.upcast(envelope('TestRenamed', 1, { name: 'a' }))).toThrow(
      expect.objectContaining({ code: 'ERR_EVENTSTORE_UPCASTER_MISSING', message: expect.stringContaining('TestRenamed v1') }),
    );
  });

  it('refuses duplicate steps, holes in a chain, and steps that lead nowhere', () => {
    const make = (upcasters: Upcaster[]) => () => new UpcasterRegistry({ upcasters, currentVersions: { ...versions, TestFour: 4 } });
    const up = (d: unknown) => d;
    expect(make([...steps, { type: 'TestRenamed', fromVersion: 1, up }])).toThrow(expect.objectContaining({ code: 'ERR_EVENTSTORE_UPCASTER_DUPLICATE' }));
    expect(make([{ type: 'TestFour', fromVersion: 1, up }, { type: 'TestFour', fromVersion: 3, up }])).toThrow(
      expect.objectContaining({ code: 'ERR_EVENTSTORE_UPCASTER_INVALID', message: expect.stringContaining('v2') }),
    );
    expect(make([{ type: 'TestRenamed', fromVersion: 3, up }])).toThrow(expect.objectContaining({ code: 'ERR_EVENTSTORE_UPCASTER_INVALID' }));
    expect(make([{ type: 'Nope', fromVersion: 1, up }])).toThrow(expect.objectContaining({ code: 'ERR_EVENTSTORE_UPCASTER_INVALID' }));
    expect(make([{ type: 'TestRenamed', fromVersion: 0, up }])).toThrow(expect.objectContaining({ code: 'ERR_EVENTSTORE_UPCASTER_INVALID' }));
  });

  it('knows current versions, and nothing about unknown types', () => {
    expect(registry.currentVersion('TestRenamed')).toBe(3);
    expect(registry.currentVersion('VmStarted')).toBe(EVENT_SCHEMA_VERSIONS.VmStarted);
    expect(registry.currentVersion('toString')).toBeUndefined();
  });
});

describe('the shipped upcasters', () => {
  it('lift every event type from version 1 to its current version', () => {
    const shipped = new UpcasterRegistry();
    const missing = Object.entries(EVENT_SCHEMA_VERSIONS)
      .filter(([type, current]) => current > 1 && !UPCASTERS.some((u) => u.type === type && u.fromVersion === 1))
      .map(([type, current]) => `${type} v1 -> v${current}`);
    expect(missing).toEqual([]);
    expect(shipped.currentVersion('VmStarted')).toBe(EVENT_SCHEMA_VERSIONS.VmStarted);
  });
});
