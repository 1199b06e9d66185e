/**
 * What a reader of the control endpoint may see of the log and the state.
 * Everyone gets every URL with its credentials, query values and fragment
 * hidden (`redactUrlsIn`), wherever it sits in an event or the state (old
 * events were written before URLs were redacted at the source). Below the
 * admin role (anonymous TCP clients and `read` tokens), fields that can carry
 * secrets are hidden too: qemu's command line (`VmStarted.argv`, where the
 * container's CMD arguments go). Pure.
 */
import { redactUrlsIn, type StoredEvent } from '@podvisor/core';

/** What a hidden field holds instead. */
export const HIDDEN_FOR_NON_ADMIN = '(hidden: admin only)';

/** `value` with every string passed through `redactUrlsIn`. */
export function redactUrlsDeep<T>(value: T): T {
  if (typeof value === 'string') return redactUrlsIn(value) as T;
  if (Array.isArray(value)) return value.map((v: unknown) => redactUrlsDeep(v)) as T;
  if (typeof value === 'object' && value !== null) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = redactUrlsDeep(v);
    return out as T;
  }
  return value;
}

/** An event as `role` may read it. */
export function eventForReader(e: StoredEvent, admin: boolean): StoredEvent {
  const shown = redactUrlsDeep(e);
  if (!admin && shown.type === 'VmStarted') return { ...shown, data: { ...shown.data, argv: [HIDDEN_FOR_NON_ADMIN] } };
  return shown;
}
