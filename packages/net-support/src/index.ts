/**
 * @podvisor/net-support: code that network plugins share and that is not
 * podvisor's domain: a supervised dnsmasq, what the pod's resolv.conf tells a
 * DHCP server, a host-changing step with its own error code, and a process
 * runner that runs everything inside a network namespace (for a backend's
 * int tests). It depends on `@podvisor/core` only; the built-in network
 * plugins use it, and so can a third party's.
 */
export {
  DNSMASQ_PREREQUISITES,
  DNSMASQ_PRIVILEGE_DROP_CAPABILITIES,
  DnsmasqSupervisor,
  dnsmasqBaseArgs,
  dnsmasqOwnerFile,
  dnsmasqUserArgs,
  stopStrayDnsmasq,
} from './dnsmasq-supervisor.js';
export type { DnsmasqSupervisorOptions } from './dnsmasq-supervisor.js';
export { networkStep } from './network-step.js';
export type { NetworkStep } from './network-step.js';
export { parseResolvConf, isDhcpHostname } from './resolv-conf.js';
export type { PodResolvConf } from './resolv-conf.js';
export { NetnsProcessRunner } from './netns-process-runner.js';
export { stopStrayProcess, readPid } from './stray-process.js';
export type { StrayProcess } from './stray-process.js';
export { VM_MAC_PREFIX, deriveVmMac, isUnicastMac, vmMacPath, ensureVmMac } from './vm-mac.js';
export type { VmMacErrorCodes } from './vm-mac.js';
export { parseIpv4, formatIpv4, ipv4PrefixMask, ipv4Netmask, parseIpv4Cidr, ipv4CidrsOverlap } from './ipv4.js';
export { parseIpv6, formatIpv6 } from './ipv6.js';
export { enableSysctlsKeepingPrevious, restoreKeptSysctls, sysctlValues } from './kept-sysctl.js';
export type { KeptSysctl, SysctlOutcome } from './kept-sysctl.js';
