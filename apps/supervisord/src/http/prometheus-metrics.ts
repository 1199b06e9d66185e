/**
 * `GET /metrics` in the Prometheus text format (0.0.4), pure. Facts that come
 * from the event log are folded as events arrive (`foldMetricFacts`); the
 * projected state, the QMP round trip and the block counters are read at scrape
 * time by the caller and passed in. A metric whose source is unavailable (qemu
 * not running, QMP too slow) is left out rather than reported as zero.
 */
import type { EventLogBacklog, StoredEvent, VmState, VmStatus } from '@podvisor/core';

const STATUSES: readonly VmStatus[] = ['Pending', 'Preparing', 'Starting', 'Running', 'Paused', 'Stopping', 'Stopped', 'Crashed', 'BackingOff', 'Failed'];

/** What the log tells, folded event by event. */
export interface MetricFacts {
  eventsByType: Record<string, number>;
  /** Restarts scheduled over the whole log (every pod run). */
  restartsTotal: number;
  /** The last image import: the base's size, the bytes transferred for it, and how long the step took. */
  image: { bytes: number; pulledBytes: number; seconds: number | null; reused: boolean } | null;
  /** While an image step runs: when it started (the time of the event before it) and the bytes pulled so far. */
  imageStep: { startedAt: string | null; pulledBytes: number } | null;
  lastAt: string | null;
}

export function initialMetricFacts(): MetricFacts {
  return { eventsByType: {}, restartsTotal: 0, image: null, imageStep: null, lastAt: null };
}

const IMAGE_STEP_EVENTS: ReadonlySet<string> = new Set(['ImagePullProgressed', 'ImagePullRetried', 'ImageImported']);

/**
 * Folds one event. The image step starts after the event that precedes its
 * first event (the accelerator probe) and ends with `ImageImported`; its
 * duration is the event's own `durationMs` when it carries one.
 */
export function foldMetricFacts(facts: MetricFacts, e: StoredEvent): MetricFacts {
  const next: MetricFacts = { ...facts, eventsByType: { ...facts.eventsByType, [e.type]: (facts.eventsByType[e.type] ?? 0) + 1 }, lastAt: e.at };
  const data = e.data as Record<string, unknown>;
  if (e.type === 'SupervisorStarted') next.imageStep = null;
  if (e.type === 'VmRestartScheduled') next.restartsTotal += 1;
  if (!IMAGE_STEP_EVENTS.has(e.type)) return next;
  const step = facts.imageStep ?? { startedAt: facts.lastAt, pulledBytes: 0 };
  if (e.type === 'ImagePullProgressed') next.imageStep = { ...step, pulledBytes: Number(data['bytes'] ?? 0) };
  else if (e.type === 'ImagePullRetried') next.imageStep = step;
  else {
    const reused = data['reused'] === true;
    const bytes = Number(data['bytes'] ?? 0);
    const durationMs = typeof data['durationMs'] === 'number' ? data['durationMs'] : step.startedAt === null ? null : Date.parse(e.at) - Date.parse(step.startedAt);
    next.image = { bytes, pulledBytes: reused ? step.pulledBytes : Math.max(step.pulledBytes, bytes), seconds: durationMs === null ? null : durationMs / 1000, reused };
    next.imageStep = null;
  }
  return next;
}

/** One row of QMP `query-blockstats` (QMP reference, BlockStats), as far as metrics use it. */
export interface BlockStatsRow {
  device?: string;
  qdev?: string;
  'node-name'?: string;
  stats?: Record<string, unknown>;
}

export interface ScrapeInput {
  state: VmState;
  facts: MetricFacts;
  now: Date;
  /** `query-status` round trip measured during this scrape; `null` when qemu did not answer. */
  qmpRoundTripMs: number | null;
  blockstats: BlockStatsRow[] | null;
  /** Requests served by the control endpoint, by route and status. */
  requests: ReadonlyMap<string, number>;
  /** Appends the event log refused, held in memory (see docs/reliability.md). */
  eventLog?: EventLogBacklog;
}

const BLOCK_COUNTERS: ReadonlyArray<[string, string, string]> = [
  ['rd_bytes', 'podvisor_block_read_bytes_total', 'Bytes read by the guest from the block device'],
  ['wr_bytes', 'podvisor_block_written_bytes_total', 'Bytes written by the guest to the block device'],
  ['rd_operations', 'podvisor_block_read_ops_total', 'Read operations'],
  ['wr_operations', 'podvisor_block_write_ops_total', 'Write operations'],
  ['flush_operations', 'podvisor_block_flush_ops_total', 'Flush operations'],
];

export function renderMetrics(input: ScrapeInput): string {
  const out: string[] = [];
  const metric = (name: string, type: 'gauge' | 'counter', help: string, samples: Array<[Record<string, string>, number]>): void => {
    if (samples.length === 0) return;
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, value] of samples) out.push(`${name}${formatLabels(labels)} ${formatNumber(value)}`);
  };
  const s = input.state;
  const vm = s.vm;
  metric('podvisor_vm_status', 'gauge', 'The VM status (1 for the current one)', STATUSES.map((st) => [{ vm, status: st }, s.status === st ? 1 : 0]));
  metric('podvisor_vm_restarts', 'gauge', 'qemu restarts in the current supervisor run', [[{ vm }, s.restarts]]);
  metric('podvisor_vm_restarts_total', 'counter', 'qemu restarts scheduled over the whole event log', [[{ vm }, input.facts.restartsTotal]]);
  metric('podvisor_supervisor_runs_total', 'counter', 'Supervisor runs (pod starts) in the event log', [[{ vm }, s.runs]]);
  if (s.status === 'Running' || s.status === 'Paused') {
    const since = Date.parse(s.since);
    metric('podvisor_vm_uptime_seconds', 'gauge', `Seconds since the VM entered its current status (${s.status})`, [[{ vm, status: s.status }, Math.max(0, (input.now.getTime() - since) / 1000)]]);
  }
  if (input.qmpRoundTripMs !== null) metric('podvisor_qmp_round_trip_seconds', 'gauge', 'QMP query-status round trip measured at this scrape', [[{ vm }, input.qmpRoundTripMs / 1000]]);
  const img = input.facts.image;
  if (img !== null) {
    metric('podvisor_image_import_bytes', 'gauge', 'Size of the base image at the last import', [[{ vm, reused: String(img.reused) }, img.bytes]]);
    metric('podvisor_image_pull_bytes', 'gauge', 'Bytes transferred or copied by the last import (0 when the cache had it)', [[{ vm, reused: String(img.reused) }, img.pulledBytes]]);
    if (img.seconds !== null) metric('podvisor_image_import_seconds', 'gauge', 'Duration of the last image step (pull, copy or reuse)', [[{ vm, reused: String(img.reused) }, img.seconds]]);
  }
  for (const [key, name, help] of BLOCK_COUNTERS) {
    const samples: Array<[Record<string, string>, number]> = [];
    for (const row of input.blockstats ?? []) {
      const v = row.stats?.[key];
      const device = row.qdev || row.device || row['node-name'] || 'unknown';
      if (typeof v === 'number') samples.push([{ vm, device }, v]);
    }
    metric(name, 'counter', help, samples);
  }
  metric('podvisor_events_total', 'counter', 'Events in the log, by type', Object.entries(input.facts.eventsByType).map(([type, n]) => [{ vm, type }, n]));
  if (input.eventLog !== undefined) {
    metric('podvisor_event_log_pending', 'gauge', 'Events decided but not yet written: the event log refuses writes (full, read-only or locked volume); written in order when it takes them again', [[{ vm }, input.eventLog.pending]]);
    metric('podvisor_event_log_dropped', 'gauge', 'Events given up in the current backlog, beyond the in-memory bound', [[{ vm }, input.eventLog.dropped]]);
  }
  metric(
    'podvisor_http_requests_total',
    'counter',
    'Requests answered by the control endpoint, by route and status',
    [...input.requests].map(([key, n]) => {
      const [route = '', status = ''] = key.split(' ');
      return [{ route, status }, n];
    }),
  );
  return `${out.join('\n')}\n`;
}

function formatLabels(labels: Record<string, string>): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${v.replaceAll('\\', '\\\\').replaceAll('\n', '\\n').replaceAll('"', '\\"')}"`);
  return parts.length === 0 ? '' : `{${parts.join(',')}}`;
}

function formatNumber(n: number): string {
  if (Number.isNaN(n)) return 'NaN';
  if (!Number.isFinite(n)) return n > 0 ? '+Inf' : '-Inf';
  return String(n);
}
