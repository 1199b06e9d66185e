/**
 * The macvtap backend's settings, from the seed's environment variables
 * (BBVA docker-kvm: `AUTO_ATTACH`, `ATTACH_IFACES` or its alias `ATTACH_IFS`,
 * `SELECTED_NETWORK`) and the YAML section `network.settings` (`autoAttach`,
 * `attachIfaces`, `selectedNetwork`, `resolvConf`); the environment wins.
 * Pure: every problem is returned at once, each with its path, value and what
 * was expected.
 */
import type { ConfigProblem, NetworkAttachSpec } from '@podvisor/core';
import { parseIpv4, type PodAddress } from './pod-network.js';

export interface MacvtapConfig {
  /** `auto`: every ethernet interface of the pod; `list`: only the named ones. */
  attach: { mode: 'auto'; origin: string } | { mode: 'list'; interfaces: string[]; origin: string };
  /** SELECTED_NETWORK: which address of an interface the VM takes (the first when unset). */
  selectedNetwork: (PodAddress & { origin: string }) | undefined;
  /** The pod's resolv.conf, whose name servers and search list the VM gets. */
  resolvConf: string;
}

/** The keys `network.settings` may hold for this backend. */
export const MACVTAP_SETTINGS = ['autoAttach', 'attachIfaces', 'selectedNetwork', 'resolvConf'] as const;

/** The environment variables only this backend reads (the plugin manifest names them). */
export const MACVTAP_ENV = ['AUTO_ATTACH', 'ATTACH_IFACES', 'ATTACH_IFS', 'SELECTED_NETWORK'] as const;

const YES = ['yes', 'y', 'true', '1', 'on'];
const NO = ['no', 'n', 'false', '0', 'off'];

/**
 * Resolves the settings. AUTO_ATTACH defaults to `yes`, except when an
 * interface list is given and AUTO_ATTACH is not: then only the listed
 * interfaces are attached. An explicit `yes` together with a list is a
 * problem, since one of the two would be ignored.
 */
export function resolveMacvtapConfig(spec: Pick<NetworkAttachSpec, 'env' | 'settings'>): { config: MacvtapConfig | undefined; problems: ConfigProblem[] } {
  const problems: ConfigProblem[] = [];
  const { env, settings } = spec;
  for (const key of Object.keys(settings)) {
    if (!(MACVTAP_SETTINGS as readonly string[]).includes(key)) {
      problems.push({ path: `yaml network.settings.${key}`, value: settings[key], expected: `one of the macvtap settings: ${MACVTAP_SETTINGS.join(', ')}` });
    }
  }

  const pick = (envNames: readonly string[], key: string): { value: unknown; origin: string } | undefined => {
    for (const name of envNames) {
      const v = env[name];
      if (v !== undefined && v.trim() !== '') return { value: v, origin: `env ${name}` };
    }
    return settings[key] === undefined ? undefined : { value: settings[key], origin: `yaml network.settings.${key}` };
  };

  let auto: boolean | undefined;
  const autoRaw = pick(['AUTO_ATTACH'], 'autoAttach');
  if (autoRaw !== undefined) {
    const v = typeof autoRaw.value === 'boolean' ? (autoRaw.value ? 'yes' : 'no') : String(autoRaw.value).trim().toLowerCase();
    if (YES.includes(v)) auto = true;
    else if (NO.includes(v)) auto = false;
    else problems.push({ path: autoRaw.origin, value: autoRaw.value, expected: 'yes or no' });
  }

  const ifs = env['ATTACH_IFACES'];
  const alias = env['ATTACH_IFS'];
  if (ifs !== undefined && alias !== undefined && ifs.trim() !== '' && alias.trim() !== '' && splitNames(ifs).join(' ') !== splitNames(alias).join(' ')) {
    problems.push({ path: 'env ATTACH_IFS', value: alias, expected: `the same list as ATTACH_IFACES (${JSON.stringify(ifs)}), or unset: it is an alias` });
  }
  const listRaw = pick(['ATTACH_IFACES', 'ATTACH_IFS'], 'attachIfaces');
  let list: string[] | undefined;
  if (listRaw !== undefined) {
    const names = Array.isArray(listRaw.value) ? listRaw.value.map(String) : typeof listRaw.value === 'string' ? splitNames(listRaw.value) : undefined;
    if (names === undefined) problems.push({ path: listRaw.origin, value: listRaw.value, expected: 'interface names separated by spaces or commas' });
    else {
      for (const n of names) if (!isIfName(n)) problems.push({ path: listRaw.origin, value: n, expected: 'an interface name (1 to 15 characters, no spaces, slashes or colons)' });
      list = names;
    }
  }

  let attach: MacvtapConfig['attach'] | undefined;
  if (auto === true && listRaw !== undefined) {
    problems.push({ path: listRaw.origin, value: listRaw.value, expected: `unset while ${autoRaw?.origin ?? 'AUTO_ATTACH'} is yes (set AUTO_ATTACH=no to attach only the listed interfaces)` });
  } else if (auto === false && (list === undefined || list.length === 0)) {
    problems.push({ path: listRaw?.origin ?? 'env ATTACH_IFACES', value: listRaw?.value, expected: 'the interfaces to attach, since AUTO_ATTACH is no' });
  } else if (list !== undefined && listRaw !== undefined) attach = { mode: 'list', interfaces: list, origin: listRaw.origin };
  else attach = { mode: 'auto', origin: autoRaw?.origin ?? 'env AUTO_ATTACH' };

  let selectedNetwork: MacvtapConfig['selectedNetwork'];
  const selRaw = pick(['SELECTED_NETWORK'], 'selectedNetwork');
  if (selRaw !== undefined) {
    const m = /^([0-9.]+)\/([0-9]{1,2})$/.exec(String(selRaw.value).trim());
    const prefix = m === null ? NaN : Number(m[2]);
    if (m === null || parseIpv4(m[1] as string) === undefined || prefix > 32) problems.push({ path: selRaw.origin, value: selRaw.value, expected: 'IP/MASK, e.g. 10.1.2.3/24' });
    else selectedNetwork = { ip: m[1] as string, prefix, origin: selRaw.origin };
  }

  const resolvRaw = settings['resolvConf'];
  if (resolvRaw !== undefined && (typeof resolvRaw !== 'string' || !resolvRaw.startsWith('/'))) {
    problems.push({ path: 'yaml network.settings.resolvConf', value: resolvRaw, expected: 'an absolute path' });
  }
  const resolvConf = typeof resolvRaw === 'string' ? resolvRaw : '/etc/resolv.conf';

  if (problems.length > 0 || attach === undefined) return { config: undefined, problems };
  return { config: { attach, selectedNetwork, resolvConf }, problems };
}

function splitNames(text: string): string[] {
  return text.split(/[\s,]+/).filter((s) => s !== '');
}

function isIfName(name: string): boolean {
  return name.length >= 1 && name.length <= 15 && /^[^\s/:]+$/.test(name) && name !== '.' && name !== '..';
}
