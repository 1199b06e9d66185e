import { describe, expect, it } from 'vitest';
import { CAPABILITY_NAMES, capabilityName, decodeCapabilities, parseStatusCapabilities } from './capabilities.js';

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
