/**
 * Whether podvisor runs degraded: the VM may run and the probes pass, but
 * something the operator should know about is not working. Shown as
 * `degraded` and `degradedBy` in `GET /v1/vm` (and the VM in an action's
 * answer). Pure.
 *
 * - `EVENT_LOG_PENDING`: the event log refuses writes (a full, read-only or
 *   locked volume); decided events wait in memory (see docs/reliability.md).
 * - `EVENT_LOG_DROPPED`: the backlog outgrew its bound and events were given up.
 * - `DNSMASQ_DOWN`: the network backend's dnsmasq exited too often and is no
 *   longer restarted (`WARN_DNSMASQ_GAVE_UP`): the VM gets no DHCP answers.
 *   Cleared by the next network attach (a new run, or the next pod start).
 */
import type { EventLogBacklog, StoredEvent } from '@podvisor/core';

export type DegradedCode = 'EVENT_LOG_PENDING' | 'EVENT_LOG_DROPPED' | 'DNSMASQ_DOWN';

export interface DegradedCondition {
  code: DegradedCode;
  message: string;
  /** When it began (ISO 8601), when known. */
  since: string | null;
}

/** What the log says about helpers that are down; folded event by event (with the metrics' facts). */
export interface HelperFacts {
  /** The last `WARN_DNSMASQ_GAVE_UP` since the network was last attached, or null. */
  dnsmasqGaveUp: { at: string; message: string } | null;
}

export function initialHelperFacts(): HelperFacts {
  return { dnsmasqGaveUp: null };
}

export function foldHelperFacts(facts: HelperFacts, e: StoredEvent): HelperFacts {
  if (e.type === 'WarningRaised' && (e.data as { code?: unknown }).code === 'WARN_DNSMASQ_GAVE_UP') {
    return { dnsmasqGaveUp: { at: e.at, message: String((e.data as { message?: unknown }).message ?? '') } };
  }
  // A new attach starts a new dnsmasq; a new supervisor run starts from nothing.
  if ((e.type === 'NetworkAttached' || e.type === 'SupervisorStarted') && facts.dnsmasqGaveUp !== null) return { dnsmasqGaveUp: null };
  return facts;
}

export function degradedConditions(backlog: EventLogBacklog, helpers: HelperFacts): DegradedCondition[] {
  const out: DegradedCondition[] = [];
  if (backlog.pending > 0) {
    out.push({ code: 'EVENT_LOG_PENDING', message: `${backlog.pending} event(s) wait in memory: the event log refuses writes (${backlog.lastError ?? 'unknown error'})`, since: backlog.since });
  }
  if (backlog.dropped > 0) out.push({ code: 'EVENT_LOG_DROPPED', message: `${backlog.dropped} event(s) given up beyond the in-memory bound`, since: backlog.since });
  if (helpers.dnsmasqGaveUp !== null) out.push({ code: 'DNSMASQ_DOWN', message: helpers.dnsmasqGaveUp.message, since: helpers.dnsmasqGaveUp.at });
  return out;
}
