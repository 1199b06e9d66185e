/**
 * The l2-segment backend's own settings: where the peer map and the private
 * key are mounted, how often they are re-read, which WireGuard to use, and
 * which pod interface's MTU the segment's is derived from. Read from the
 * environment (`PODVISOR_L2_*`), with the YAML section of this backend
 * (`network.extra.l2-segment`) below it. Pure; every problem at once.
 */
import type { ConfigProblem, NetworkAttachSpec } from '@podvisor/core';

/** The environment variables only this backend reads (the plugin manifest names them). */
export const L2_SEGMENT_ENV = ['PODVISOR_L2_PEERS', 'PODVISOR_L2_PRIVATE_KEY', 'PODVISOR_L2_WIREGUARD', 'PODVISOR_L2_RELOAD_MS', 'PODVISOR_L2_POD_INTERFACE'] as const;

export const L2_SEGMENT_DEFAULTS = {
  peers: '/etc/podvisor/l2-segment/peers.yaml',
  privateKey: '/etc/podvisor/l2-segment/private-key',
  wireguard: 'auto',
  reloadMs: 5000,
} as const;

export type WireguardChoice = 'auto' | 'kernel' | 'userspace';

export interface L2SegmentSettings {
  /** The peer map file (a ConfigMap's key). */
  peers: string;
  /** The private key file (a Secret's key). */
  privateKey: string;
  /** `auto`: kernel WireGuard when the kernel has it, else wireguard-go. */
  wireguard: WireguardChoice;
  /** How often both files are checked for changes, and peer names resolved again. */
  reloadMs: number;
  /** The interface whose MTU the segment's is derived from; undefined: the one carrying the default route. */
  podInterface: string | undefined;
}

const FIELDS: ReadonlyArray<{ key: keyof L2SegmentSettings; env: (typeof L2_SEGMENT_ENV)[number] }> = [
  { key: 'peers', env: 'PODVISOR_L2_PEERS' },
  { key: 'privateKey', env: 'PODVISOR_L2_PRIVATE_KEY' },
  { key: 'wireguard', env: 'PODVISOR_L2_WIREGUARD' },
  { key: 'reloadMs', env: 'PODVISOR_L2_RELOAD_MS' },
  { key: 'podInterface', env: 'PODVISOR_L2_POD_INTERFACE' },
];

export function resolveL2SegmentSettings(spec: Pick<NetworkAttachSpec, 'env' | 'settings'>): { settings: L2SegmentSettings | undefined; problems: ConfigProblem[] } {
  const problems: ConfigProblem[] = [];
  const settings = spec.settings ?? {};
  const section = 'yaml network.extra.l2-segment';
  for (const k of Object.keys(settings)) {
    if (!FIELDS.some((f) => f.key === k)) problems.push({ path: `${section}.${k}`, value: settings[k], expected: `one of the l2-segment settings: ${FIELDS.map((f) => f.key).join(', ')}` });
  }
  const pick = (f: (typeof FIELDS)[number]): { raw: unknown; path: string } | undefined => {
    const env = spec.env[f.env];
    if (env !== undefined && env !== '') return { raw: env.trim(), path: `env ${f.env}` };
    if (settings[f.key] !== undefined) return { raw: settings[f.key], path: `${section}.${f.key}` };
    return undefined;
  };
  const out: L2SegmentSettings = { ...L2_SEGMENT_DEFAULTS, podInterface: undefined };
  for (const f of FIELDS) {
    const v = pick(f);
    if (v === undefined) continue;
    switch (f.key) {
      case 'peers':
      case 'privateKey':
        if (typeof v.raw === 'string' && v.raw.startsWith('/')) out[f.key] = v.raw;
        else problems.push({ path: v.path, value: v.raw, expected: `an absolute path to the mounted ${f.key === 'peers' ? 'peer map (a ConfigMap key)' : 'private key (a Secret key)'}` });
        break;
      case 'wireguard':
        if (v.raw === 'auto' || v.raw === 'kernel' || v.raw === 'userspace') out.wireguard = v.raw;
        else problems.push({ path: v.path, value: v.raw, expected: 'auto, kernel or userspace' });
        break;
      case 'reloadMs': {
        const n = typeof v.raw === 'number' ? v.raw : /^\d+$/.test(String(v.raw)) ? Number(v.raw) : Number.NaN;
        if (Number.isInteger(n) && n >= 100 && n <= 3_600_000) out.reloadMs = n;
        else problems.push({ path: v.path, value: v.raw, expected: 'milliseconds from 100 to 3600000' });
        break;
      }
      case 'podInterface':
        if (typeof v.raw === 'string' && /^[^\s/:]{1,15}$/.test(v.raw)) out.podInterface = v.raw;
        else problems.push({ path: v.path, value: v.raw, expected: 'a network interface name (1-15 characters, no "/", ":" or spaces)' });
        break;
      default: {
        const never: never = f.key;
        throw new Error(`unknown setting ${String(never)}`);
      }
    }
  }
  return problems.length > 0 ? { settings: undefined, problems } : { settings: out, problems };
}
