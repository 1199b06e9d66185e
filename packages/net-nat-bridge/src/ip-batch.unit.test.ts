import { describe, expect, it } from 'vitest';
import { batchFailures, ipBatchScript, type IpBatchLine } from './ip-batch.js';

const lines: IpBatchLine[] = [
  { command: 'link del dev pvtap0', absentIsDone: true, code: 'ERR_NAT_DETACH', what: 'delete pvtap0' },
  { command: 'link add name pvbr0 type bridge', code: 'ERR_NAT_BRIDGE', what: 'create bridge pvbr0' },
  { command: 'tuntap add dev pvtap0 mode tap', code: 'ERR_NAT_TAP', what: 'create tap pvtap0' },
];

describe('ip -batch scripts', () => {
  it('one command a line', () => {
    expect(ipBatchScript(lines)).toBe('link del dev pvtap0\nlink add name pvbr0 type bridge\ntuntap add dev pvtap0 mode tap\n');
  });

  it('a delete of a link that is not there is done; any other failure is named by its line', () => {
    const stderr = 'Cannot find device "pvtap0"\nCommand failed -:1\nRTNETLINK answers: File exists\nCommand failed -:2\n';
    expect(batchFailures(lines, stderr, 1)).toEqual([{ line: lines[1], message: 'RTNETLINK answers: File exists' }]);
    expect(batchFailures(lines, 'Cannot find device "pvtap0"\nCommand failed -:1\n', 1)).toEqual([]);
    expect(batchFailures(lines, '', 0)).toEqual([]);
  });

  it('a failing ip that names no line fails the first line with its stderr', () => {
    expect(batchFailures(lines, 'Object "tuntap" is unknown', 255)).toEqual([{ line: lines[0], message: 'Object "tuntap" is unknown' }]);
  });
});
