/**
 * Bounds on the control endpoint's long-lived answers (SSE streams, the
 * serial and web consoles): how many one remote address may hold, how many
 * anonymous clients may hold in all, and how many there are at most, so that
 * idle streams can never use up the connections the kubelet's probes need.
 * Unix-socket clients (the admin's own socket, mode 0600) are not counted.
 * Pure bookkeeping: the handler answers 429 when `acquire` refuses.
 */
import { httpError } from './http-errors.js';

export interface StreamLimitSettings {
  /** Streams in all (anonymous and authenticated TCP clients). */
  total: number;
  /** Streams of anonymous TCP clients, in all. */
  anonymousTotal: number;
  /** Streams one remote address may hold without a token. */
  anonymousPerAddress: number;
  /** Streams one remote address may hold with a token. */
  perAddress: number;
}

export const DEFAULT_STREAM_LIMITS: StreamLimitSettings = { total: 128, anonymousTotal: 32, anonymousPerAddress: 4, perAddress: 16 };

/** Who holds a stream: a TCP client by its address, with or without a token, or the unix socket. */
export type StreamHolder = { kind: 'unix' } | { kind: 'tcp'; address: string; anonymous: boolean };

export class StreamLimits {
  private total = 0;
  private anonymous = 0;
  private readonly perAddress = new Map<string, number>();

  constructor(private readonly limits: StreamLimitSettings = DEFAULT_STREAM_LIMITS) {}

  /**
   * Takes a slot for `holder`; returns the function that gives it back (safe to
   * call twice). Throws `ERR_HTTP_TOO_MANY_STREAMS` (429) when a bound is reached.
   */
  acquire(holder: StreamHolder, what: string): () => void {
    if (holder.kind === 'unix') return () => undefined;
    const l = this.limits;
    const mine = this.perAddress.get(holder.address) ?? 0;
    const refuse = (why: string): never => {
      throw httpError('ERR_HTTP_TOO_MANY_STREAMS', `${what} refused: ${why}`, {
        hint: holder.anonymous ? 'close other streams, or send a bearer token (authenticated clients may hold more)' : 'close other streams of this client',
        details: { retryAfterSeconds: 5 },
      });
    };
    if (this.total >= l.total) refuse(`the endpoint already serves ${l.total} streams`);
    if (holder.anonymous && this.anonymous >= l.anonymousTotal) refuse(`anonymous clients already hold ${l.anonymousTotal} streams`);
    const perAddress = holder.anonymous ? l.anonymousPerAddress : l.perAddress;
    if (mine >= perAddress) refuse(`${holder.address} already holds ${perAddress} streams${holder.anonymous ? ' without a token' : ''}`);
    this.total += 1;
    if (holder.anonymous) this.anonymous += 1;
    this.perAddress.set(holder.address, mine + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.total -= 1;
      if (holder.anonymous) this.anonymous -= 1;
      const left = (this.perAddress.get(holder.address) ?? 1) - 1;
      if (left === 0) this.perAddress.delete(holder.address);
      else this.perAddress.set(holder.address, left);
    };
  }

  /** Streams held now, for metrics and tests. */
  get held(): { total: number; anonymous: number } {
    return { total: this.total, anonymous: this.anonymous };
  }
}
