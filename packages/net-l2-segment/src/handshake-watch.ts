/**
 * Watches that every configured peer completes a WireGuard handshake: a peer
 * that has none `boundMs` after it was configured (at attach, or when a
 * reload added it) is reported once as `WARN_L2_PEER_NO_HANDSHAKE`, naming
 * it. The handshakes are read with `wg show <if> latest-handshakes` (one line
 * per peer: its public key and the handshake's Unix time, 0 for never),
 * through the injected runner, and only while some peer is due and
 * undecided. Every wait is the injected Clock's, so a test drives it with a
 * manual clock.
 */
import { errorMessage, type Clock, type Logger, type NetworkHooks, type ProcessRunner } from '@podvisor/core';

/** How long a configured peer may go without a handshake before the warning. */
export const L2_HANDSHAKE_WARN_MS = 120_000;

export interface HandshakeWatchOptions {
  runner: ProcessRunner;
  clock: Clock;
  log: Logger;
  hooks: Pick<NetworkHooks, 'warn'>;
  wgName: string;
  /** The peers configured now (called at every tick: reloads add and remove peers). */
  peers: () => ReadonlyArray<{ name: string; publicKey: string; endpoint?: string | undefined }>;
  boundMs: number;
  /** How often to look. */
  pollMs: number;
  signal: AbortSignal;
}

/** `wg show <if> latest-handshakes`: each public key and its latest handshake in Unix seconds (0: never). Pure. */
export function parseLatestHandshakes(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const [key, at] = line.trim().split(/\s+/);
    if (key !== undefined && key !== '' && at !== undefined && /^\d+$/.test(at)) out.set(key, Number(at));
  }
  return out;
}

/** Runs until `signal` aborts. Never throws. */
export async function watchHandshakes(o: HandshakeWatchOptions): Promise<void> {
  // Per public key: when it was first seen configured, and whether it is decided (handshake seen, or warned).
  const since = new Map<string, number>();
  const decided = new Set<string>();
  while (!o.signal.aborted) {
    const now = o.clock.now().getTime();
    const peers = o.peers();
    const keys = new Set(peers.map((p) => p.publicKey));
    for (const k of [...since.keys()]) {
      if (!keys.has(k)) {
        since.delete(k);
        decided.delete(k);
      }
    }
    for (const k of keys) if (!since.has(k)) since.set(k, now);
    const due = peers.filter((p) => !decided.has(p.publicKey) && now - (since.get(p.publicKey) as number) >= o.boundMs);
    if (due.length > 0) {
      try {
        const out = await o.runner.run('wg', ['show', o.wgName, 'latest-handshakes'], { signal: o.signal });
        const handshakes = parseLatestHandshakes(out.stdout);
        for (const p of due) {
          decided.add(p.publicKey);
          if ((handshakes.get(p.publicKey) ?? 0) > 0) continue;
          o.hooks.warn({
            code: 'WARN_L2_PEER_NO_HANDSHAKE',
            message: `l2-segment: peer ${p.name} (${p.endpoint ?? 'no endpoint yet'}) has completed no WireGuard handshake with ${o.wgName} within ${Math.round(o.boundMs / 1000)} s of being configured`,
            hint: `check that ${p.name} runs, that its UDP port is reachable from this pod (a NetworkPolicy, or a primary network that forwards it to its VM), and that the peer map holds the public keys both members use`,
          });
        }
      } catch (err) {
        if (o.signal.aborted) return;
        // The interface is being restarted (wireguard-go died): the next tick looks again.
        o.log.debug('reading the WireGuard handshakes failed', { interface: o.wgName, err: errorMessage(err) });
      }
    }
    try {
      await o.clock.sleep(o.pollMs, o.signal);
    } catch {
      return;
    }
  }
}
