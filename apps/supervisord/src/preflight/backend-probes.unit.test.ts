import { describe, expect, it } from 'vitest';
import type { NetworkAttachSpec, NetworkBackend, ProbeFinding } from '@podvisor/core';
import { backendProbes } from './preflight.js';

const spec: NetworkAttachSpec = { vmName: 'vm', stateDir: '/nonexistent/state', diskDir: '/nonexistent/disk', settings: {}, vnc: { enabled: false, port: 5900 }, controlPort: 5800 };

function backend(name: string, probe?: (s: NetworkAttachSpec) => Promise<ProbeFinding[]>): NetworkBackend {
  return {
    name,
    validate: () => [],
    attach: () => Promise.reject(new Error('not in a preflight')),
    detach: () => Promise.resolve(),
    ...(probe === undefined ? {} : { probe }),
  };
}

describe('backendProbes (NetworkBackend.probe, plugin API 2.2)', () => {
  it("returns each backend's findings in order, with its own spec; a backend without probe adds none", async () => {
    const seen: string[] = [];
    const found = await backendProbes([
      { backend: backend('first', (s) => { seen.push(s.vmName); return Promise.resolve([{ id: 'device.x', check: 'x opens', status: 'ok', finding: 'x opens' }]); }), spec },
      { backend: backend('plain'), spec },
      { backend: backend('second', (s) => { seen.push(s.vmName); return Promise.resolve([{ id: 'device.y', check: 'y opens', status: 'fail', finding: 'EPERM', fix: 'allow y' }]); }), spec: { ...spec, vmName: 'other' } },
    ]);
    expect(found.map((f) => [f.id, f.status])).toEqual([['device.x', 'ok'], ['device.y', 'fail']]);
    expect(seen).toEqual(['vm', 'other']);
  });

  it('a probe that throws is a failing probe.<backend> finding naming the error, and the others still run', async () => {
    const found = await backendProbes([
      { backend: backend('broken', () => Promise.reject(new Error('boom'))), spec },
      { backend: backend('fine', () => Promise.resolve([{ id: 'device.z', check: 'z', status: 'ok', finding: 'z opens' }])), spec },
    ]);
    expect(found).toEqual([
      { id: 'probe.broken', check: "the broken backend's own probe", status: 'fail', finding: 'the probe threw: boom', fix: 'a bug of the broken backend: report it with this message' },
      { id: 'device.z', check: 'z', status: 'ok', finding: 'z opens' },
    ]);
  });
});
