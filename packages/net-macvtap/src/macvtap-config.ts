/**
 * The macvtap backend's settings, as its manifest declares them: the seed's
 * environment variables (BBVA docker-kvm: `AUTO_ATTACH`, `ATTACH_IFACES` or
 * its alias `ATTACH_IFS`, `SELECTED_NETWORK`) and the YAML keys under
 * `network.settings` (`autoAttach`, `attachIfaces`, `selectedNetwork`,
 * `resolvConf`), which podvisor resolves and type-checks with its own
 * settings; and the checks across them. Pure: every problem is returned at
 * once, each with its path, value and what was expected.
 */
import type { ConfigProblem, NetworkAttachSpec, PluginSetting } from '@podvisor/core';
import { parseIpv4 } from '@podvisor/net-support';
import type { MacvtapNicChoice } from './pod-network.js';

export interface MacvtapConfig extends MacvtapNicChoice {
  /** The pod's resolv.conf, whose name servers and search list the VM gets. */
  resolvConf: string;
}

/** The settings of the `macvtap` provision, as its manifest declares them. */
export const MACVTAP_SETTINGS: readonly PluginSetting[] = [
  { name: 'autoAttach', key: 'network.settings.autoAttach', env: ['AUTO_ATTACH'], type: 'boolean', doc: '`yes` attaches every pod interface, `no` only `ATTACH_IFACES` (default: yes, or no when a list is given)' },
  { name: 'attachIfaces', key: 'network.settings.attachIfaces', env: ['ATTACH_IFACES', 'ATTACH_IFS'], type: 'string-list', doc: 'the interfaces to attach (`ATTACH_IFS` is an alias)' },
  { name: 'selectedNetwork', key: 'network.settings.selectedNetwork', env: ['SELECTED_NETWORK'], type: 'string', doc: 'which address (IP/MASK) of an interface goes to the VM (default: the first)' },
  { name: 'resolvConf', key: 'network.settings.resolvConf', type: 'string', default: '/etc/resolv.conf', doc: "the pod's resolv.conf, whose servers and search list the VM gets" },
];

/**
 * Checks the resolved settings across fields. AUTO_ATTACH defaults to `yes`,
 * except when an interface list is given and AUTO_ATTACH is not: then only
 * the listed interfaces are attached. An explicit `yes` together with a list
 * is a problem, since one of the two would be ignored.
 */
export function resolveMacvtapConfig(spec: Pick<NetworkAttachSpec, 'settings'>): { config: MacvtapConfig | undefined; problems: ConfigProblem[] } {
  const problems: ConfigProblem[] = [];
  const given = (name: string): { value: unknown; origin: string } | undefined => {
    const s = spec.settings[name];
    return s === undefined || s.value === undefined ? undefined : { value: s.value, origin: s.path };
  };

  const autoRaw = given('autoAttach');
  const auto = autoRaw === undefined ? undefined : autoRaw.value === true;
  const listRaw = given('attachIfaces');
  let list: string[] | undefined;
  if (listRaw !== undefined) {
    const names = (listRaw.value as readonly string[]).map(String);
    for (const n of names) if (!isIfName(n)) problems.push({ path: listRaw.origin, value: n, expected: 'an interface name (1 to 15 characters, no spaces, slashes or colons)' });
    list = names;
  }

  let attach: MacvtapConfig['attach'] | undefined;
  if (auto === true && listRaw !== undefined) {
    problems.push({ path: listRaw.origin, value: (listRaw.value as readonly string[]).join(' '), expected: `unset while ${autoRaw?.origin ?? 'AUTO_ATTACH'} is yes (set AUTO_ATTACH=no to attach only the listed interfaces)` });
  } else if (auto === false && (list === undefined || list.length === 0)) {
    problems.push({ path: listRaw?.origin ?? 'env ATTACH_IFACES', value: listRaw?.value, expected: 'the interfaces to attach, since AUTO_ATTACH is no' });
  } else if (list !== undefined && listRaw !== undefined) attach = { mode: 'list', interfaces: list, origin: listRaw.origin };
  else attach = { mode: 'auto', origin: autoRaw?.origin ?? 'env AUTO_ATTACH' };

  let selectedNetwork: MacvtapConfig['selectedNetwork'];
  const selRaw = given('selectedNetwork');
  if (selRaw !== undefined) {
    const m = /^([0-9.]+)\/([0-9]{1,2})$/.exec(String(selRaw.value).trim());
    const prefix = m === null ? NaN : Number(m[2]);
    if (m === null || parseIpv4(m[1] as string) === undefined || prefix > 32) problems.push({ path: selRaw.origin, value: selRaw.value, expected: 'IP/MASK, e.g. 10.1.2.3/24' });
    else selectedNetwork = { ip: m[1] as string, prefix, origin: selRaw.origin };
  }

  const resolv = given('resolvConf');
  if (resolv !== undefined && (typeof resolv.value !== 'string' || !resolv.value.startsWith('/'))) {
    problems.push({ path: resolv.origin, value: resolv.value, expected: 'an absolute path' });
  }
  const resolvConf = typeof resolv?.value === 'string' ? resolv.value : '/etc/resolv.conf';

  if (problems.length > 0 || attach === undefined) return { config: undefined, problems };
  return { config: { attach, selectedNetwork, resolvConf }, problems };
}

function isIfName(name: string): boolean {
  return name.length >= 1 && name.length <= 15 && /^[^\s/:]+$/.test(name) && name !== '.' && name !== '..';
}
