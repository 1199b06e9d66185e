/**
 * The l2-segment backend's own settings: where the peer map and the private
 * key are mounted, how often they are re-read, which WireGuard to use, and
 * which pod interface's MTU the segment's is derived from. Declared in the
 * manifest (`PODVISOR_L2_*`, YAML `network.extra.l2-segment.*`) and resolved
 * and type-checked by podvisor with its own settings; the checks across
 * values are here. Pure; every problem at once.
 */
import type { ConfigProblem, NetworkAttachSpec, PluginSetting } from '@podvisor/core';

export const L2_SEGMENT_DEFAULTS = {
  peers: '/etc/podvisor/l2-segment/peers.yaml',
  privateKey: '/etc/podvisor/l2-segment/private-key',
  wireguard: 'auto',
  reloadMs: 5000,
} as const;

export type WireguardChoice = 'auto' | 'kernel' | 'userspace';

const SECTION = 'network.extra.l2-segment';

/** The settings the manifest declares (the YAML keys are under the backend's own `network.extra` section). */
export const L2_SEGMENT_SETTINGS: readonly PluginSetting[] = [
  { name: 'peers', key: `${SECTION}.peers`, env: ['PODVISOR_L2_PEERS'], type: 'string', default: L2_SEGMENT_DEFAULTS.peers, doc: 'the peer map file (a ConfigMap key)' },
  { name: 'privateKey', key: `${SECTION}.privateKey`, env: ['PODVISOR_L2_PRIVATE_KEY'], type: 'string', default: L2_SEGMENT_DEFAULTS.privateKey, doc: "this member's WireGuard private key file (a Secret key)" },
  {
    name: 'wireguard',
    key: `${SECTION}.wireguard`,
    env: ['PODVISOR_L2_WIREGUARD'],
    type: 'string',
    values: ['auto', 'kernel', 'userspace'],
    default: L2_SEGMENT_DEFAULTS.wireguard,
    doc: '`auto`: kernel WireGuard when the kernel has it, else wireguard-go',
  },
  {
    name: 'reloadMs',
    key: `${SECTION}.reloadMs`,
    env: ['PODVISOR_L2_RELOAD_MS'],
    type: 'integer',
    min: 100,
    max: 3_600_000,
    default: L2_SEGMENT_DEFAULTS.reloadMs,
    doc: 'how often both files are checked for changes, and peer names resolved again (ms)',
  },
  { name: 'podInterface', key: `${SECTION}.podInterface`, env: ['PODVISOR_L2_POD_INTERFACE'], type: 'string', doc: "the pod interface whose MTU the segment's is derived from (default: the one with the default route)" },
];

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

/** The typed settings of the spec (their types were checked by podvisor), with the checks across values. */
export function resolveL2SegmentSettings(spec: Pick<NetworkAttachSpec, 'settings'>): { settings: L2SegmentSettings | undefined; problems: ConfigProblem[] } {
  const problems: ConfigProblem[] = [];
  const at = (name: string): { value: unknown; path: string } => {
    const s = spec.settings[name];
    const declared = L2_SEGMENT_SETTINGS.find((d) => d.name === name);
    return { value: s?.value ?? declared?.default, path: s?.path ?? `env ${declared?.env?.[0] ?? name}` };
  };
  const out: L2SegmentSettings = { ...L2_SEGMENT_DEFAULTS, podInterface: undefined };
  for (const key of ['peers', 'privateKey'] as const) {
    const v = at(key);
    if (typeof v.value === 'string' && v.value.startsWith('/')) out[key] = v.value;
    else problems.push({ path: v.path, value: v.value, expected: `an absolute path to the mounted ${key === 'peers' ? 'peer map (a ConfigMap key)' : 'private key (a Secret key)'}` });
  }
  const wg = at('wireguard');
  if (wg.value === 'auto' || wg.value === 'kernel' || wg.value === 'userspace') out.wireguard = wg.value;
  else problems.push({ path: wg.path, value: wg.value, expected: 'auto, kernel or userspace' });
  const reload = at('reloadMs');
  if (typeof reload.value === 'number' && Number.isInteger(reload.value) && reload.value >= 100 && reload.value <= 3_600_000) out.reloadMs = reload.value;
  else problems.push({ path: reload.path, value: reload.value, expected: 'milliseconds from 100 to 3600000' });
  const ifname = at('podInterface');
  if (ifname.value !== undefined) {
    if (typeof ifname.value === 'string' && /^[^\s/:]{1,15}$/.test(ifname.value)) out.podInterface = ifname.value;
    else problems.push({ path: ifname.path, value: ifname.value, expected: 'a network interface name (1-15 characters, no "/", ":" or spaces)' });
  }
  return problems.length > 0 ? { settings: undefined, problems } : { settings: out, problems };
}
