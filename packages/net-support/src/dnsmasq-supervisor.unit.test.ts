import { describe, expect, it } from 'vitest';
import { parseEffectiveCapabilities } from '@podvisor/core';
import { dnsmasqBaseArgs, dnsmasqUserArgs } from './dnsmasq-supervisor.js';

// /proc/self/status lines as seen here: full root, and podman's --cap-drop ALL
// --cap-add NET_ADMIN,NET_BIND_SERVICE (bits 12 and 10).
const ROOT = 'Name:\tnode\nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\nCapEff:\t000001ffffffffff\n';
const NAT_BRIDGE_ONLY = 'Name:\tnode\nCapEff:\t0000000000001400\nCapBnd:\t0000000000001400\n';

describe('dnsmasq privileges', () => {
  it('keeps the drop to nobody where podvisor may drop and still signal it, and keeps podvisor\'s user elsewhere', () => {
    expect(dnsmasqUserArgs(parseEffectiveCapabilities(ROOT))).toEqual([]);
    expect(dnsmasqUserArgs(parseEffectiveCapabilities(NAT_BRIDGE_ONLY))).toEqual(['--user=', '--group=']);
    // CAP_SETUID and CAP_SETGID without CAP_KILL: dnsmasq could drop, but could then not be stopped.
    expect(dnsmasqUserArgs((1n << 6n) | (1n << 7n))).toEqual(['--user=', '--group=']);
    expect(dnsmasqUserArgs(undefined)).toEqual([]);
  });

  it('never asks for CAP_NET_RAW: no ping before an offer', () => {
    expect(dnsmasqBaseArgs('/s/p', '/s/l')).toContain('--no-ping');
  });
});
