import { describe, expect, it } from 'vitest';
import { CAPABILITY_NAMES, capabilityBit, capabilityName, decodeCapabilities, hasCapabilities, parseEffectiveCapabilities, parseStatusCapabilities } from './capabilities.js';

// /proc/self/status lines as seen here: full root, and podman's --cap-drop ALL
// --cap-add NET_ADMIN,NET_BIND_SERVICE (bits 12 and 10).
const ROOT = 'Name:\tnode\nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\nCapEff:\t000001ffffffffff\n';
const NAT_BRIDGE_ONLY = 'Name:\tnode\nCapEff:\t0000000000001400\nCapBnd:\t0000000000001400\n';

describe('capabilities', () => {
  it('reads the effective mask of /proc/PID/status', () => {
    expect(parseEffectiveCapabilities(ROOT)).toBe(0x1ffffffffffn);
    expect(parseEffectiveCapabilities(NAT_BRIDGE_ONLY)).toBe(0x1400n);
    expect(parseEffectiveCapabilities('Name:\tx\n')).toBeUndefined();
  });

  it('tells whether a mask holds every named capability', () => {
    expect(hasCapabilities(0x1400n, ['CAP_NET_ADMIN', 'CAP_NET_BIND_SERVICE'])).toBe(true);
    expect(hasCapabilities(0x1400n, ['CAP_NET_ADMIN', 'CAP_NET_RAW'])).toBe(false);
    expect(hasCapabilities(0x1400n, [])).toBe(true);
    expect(hasCapabilities(0x1400n, ['NET_ADMIN', 'net_bind_service'])).toBe(true);
    expect(hasCapabilities(0x1ffffffffffn, ['CAP_NO_SUCH_THING'])).toBe(false);
    expect(capabilityBit('CAP_NET_ADMIN')).toBe(12);
    expect(capabilityBit('KILL')).toBe(5);
  });
});

describe('decodeCapabilities', () => {
  it('decodes the bits of a mask by name, in bit order', () => {
    // NET_BIND_SERVICE (10), NET_ADMIN (12), NET_RAW (13)
    expect(decodeCapabilities('0000000000003400')).toEqual(['NET_BIND_SERVICE', 'NET_ADMIN', 'NET_RAW']);
    expect(decodeCapabilities('0000000000000000')).toEqual([]);
  });

  it("decodes Docker's default set", () => {
    expect(decodeCapabilities('00000000a80425fb')).toEqual(['CHOWN', 'DAC_OVERRIDE', 'FOWNER', 'FSETID', 'KILL', 'SETGID', 'SETUID', 'SETPCAP', 'NET_BIND_SERVICE', 'NET_RAW', 'SYS_CHROOT', 'MKNOD', 'AUDIT_WRITE', 'SETFCAP']);
  });

  it('knows every capability up to CHECKPOINT_RESTORE (40) and names later bits by number', () => {
    expect(decodeCapabilities('000001ffffffffff')).toEqual(CAPABILITY_NAMES);
    expect(decodeCapabilities('0000020000000000')).toEqual(['CAP_41']);
  });

  it('refuses what is not a hex mask, naming it', () => {
    expect(() => decodeCapabilities('xyz')).toThrow('not a capability mask: "xyz"');
    expect(() => decodeCapabilities('00000000000000000')).toThrow('not a capability mask');
  });
});

describe('parseStatusCapabilities', () => {
  const status = 'Name:\tnode\nUid:\t0\t0\t0\t0\nCapInh:\t0000000000000000\nCapPrm:\t00000000a80435fb\nCapEff:\t00000000a80435fb\nCapBnd:\t00000000a80425fb\nCapAmb:\t0000000000000000\n';

  it('reads the effective and bounding sets of /proc/<pid>/status', () => {
    const caps = parseStatusCapabilities(status);
    expect(caps.effective.has('NET_ADMIN')).toBe(true);
    expect(caps.bounding.has('NET_ADMIN')).toBe(false);
    expect(caps.bounding.has('KILL')).toBe(true);
  });

  it('says which line is missing', () => {
    expect(() => parseStatusCapabilities('Name:\tnode\nCapEff:\t0\n')).toThrow('no CapBnd line in the process status');
  });
});

describe('capabilityName', () => {
  it('accepts the spellings operators use', () => {
    expect(['cap_net_admin', 'CAP_NET_ADMIN', 'NET_ADMIN', ' net_admin '].map(capabilityName)).toEqual(['NET_ADMIN', 'NET_ADMIN', 'NET_ADMIN', 'NET_ADMIN']);
  });
});
