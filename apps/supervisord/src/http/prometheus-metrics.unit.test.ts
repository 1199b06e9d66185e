import { describe, expect, it } from 'vitest';
import { MemoryEventStore, projectVm, type DomainEvent } from '@podvisor/core';
import { foldMetricFacts, initialMetricFacts, renderMetrics } from './prometheus-metrics.js';

function log(events: Array<[string, DomainEvent]>) {
  const store = new MemoryEventStore();
  return events.flatMap(([at, e]) => store.append('vm1', [e], { at: new Date(at) }));
}

describe('renderMetrics', () => {
  const stored = log([
    ['2026-01-01T00:00:00.000Z', { type: 'SupervisorStarted', data: { version: '0', pid: 1, hostname: 'vm1', accel: 'tcg', restartPolicy: 'always', network: 'none' } }],
    ['2026-01-01T00:00:01.000Z', { type: 'AcceleratorProbed', data: { requested: 'tcg', selected: 'tcg', kvmWorks: false, probeMs: 1, detail: '' } }],
    ['2026-01-01T00:00:02.000Z', { type: 'ImagePullProgressed', data: { source: 's', target: 't', bytes: 600, total: 1234, percent: 48, bytesPerSecond: 600 } } as DomainEvent],
    ['2026-01-01T00:00:03.000Z', { type: 'ImagePullProgressed', data: { source: 's', target: 't', bytes: 1234, total: 1234, percent: 100, bytesPerSecond: 1234 } } as DomainEvent],
    ['2026-01-01T00:00:03.500Z', { type: 'ImageImported', data: { source: 's', target: 't', path: '/p', bytes: 1234, sha256: 'x', reused: false } }],
    ['2026-01-01T00:00:04.000Z', { type: 'VmStarting', data: { attempt: 1, accel: 'tcg' } }],
    ['2026-01-01T00:00:05.000Z', { type: 'VmStarted', data: { attempt: 1, pid: 42, qmpVersion: '7.2.0', startMs: 1 } }],
  ]);
  const facts = stored.reduce(foldMetricFacts, initialMetricFacts());
  const text = renderMetrics({
    state: projectVm(stored),
    facts,
    now: new Date('2026-01-01T00:00:15.000Z'),
    qmpRoundTripMs: 0.5,
    blockstats: [{ device: '', qdev: '/machine/peripheral/pet-disk/virtio-backend', stats: { rd_bytes: 100, wr_bytes: 7, rd_operations: 2, wr_operations: 1, flush_operations: 0 } }],
    requests: new Map([['/v1/vm 200', 3]]),
  });

  it('shows the phase one-hot, uptime, QMP round trip, image import and block counters', () => {
    expect(text).toContain('podvisor_vm_status{vm="vm1",status="Running"} 1');
    expect(text).toContain('podvisor_vm_status{vm="vm1",status="Paused"} 0');
    expect(text).toContain('podvisor_vm_uptime_seconds{vm="vm1",status="Running"} 10');
    expect(text).toContain('podvisor_qmp_round_trip_seconds{vm="vm1"} 0.0005');
    expect(text).toContain('podvisor_image_import_bytes{vm="vm1",reused="false"} 1234');
    expect(text).toContain('podvisor_image_import_seconds{vm="vm1",reused="false"} 2.5');
    expect(text).toContain('podvisor_image_pull_bytes{vm="vm1",reused="false"} 1234');
    expect(text).toContain('podvisor_block_read_bytes_total{vm="vm1",device="/machine/peripheral/pet-disk/virtio-backend"} 100');
    expect(text).toContain('podvisor_events_total{vm="vm1",type="VmStarted"} 1');
    expect(text).toContain('podvisor_http_requests_total{route="/v1/vm",status="200"} 3');
  });

  it('is valid exposition text: every sample follows its HELP and TYPE, names and labels well formed', () => {
    const declared = new Set<string>();
    for (const line of text.trimEnd().split('\n')) {
      const type = /^# TYPE ([a-z_]+) (gauge|counter)$/.exec(line);
      if (type !== null) declared.add(type[1] ?? '');
      else if (!line.startsWith('# HELP ')) {
        const m = /^([a-z_]+)\{([a-z]+="[^"\\]*"(,[a-z]+="[^"\\]*")*)\} (-?[0-9.e+-]+)$/.exec(line);
        expect(m, line).not.toBeNull();
        expect(declared.has(m?.[1] ?? ''), line).toBe(true);
      }
    }
  });

  it('leaves out what it cannot read instead of reporting zero', () => {
    const t = renderMetrics({ state: projectVm(stored), facts, now: new Date(), qmpRoundTripMs: null, blockstats: null, requests: new Map() });
    expect(t).not.toContain('podvisor_qmp_round_trip_seconds');
    expect(t).not.toContain('podvisor_block_read_bytes_total');
  });
});
