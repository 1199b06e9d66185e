import { describe, expect, it } from 'vitest';
import { parseProcStat } from './proc-stat.js';

const TAIL = '1 1 0 -1 4194560 110 0 0 0 0 0 0 0 20 0 1 0 123 0 0 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0';

describe('parseProcStat', () => {
  it('reads pid, comm, state and ppid of a plain line', () => {
    expect(parseProcStat(`4242 (sleep) Z 17 ${TAIL}\n`)).toEqual({ pid: 4242, comm: 'sleep', state: 'Z', ppid: 17 });
  });

  it('reads the fields after the LAST parenthesis when comm holds spaces and parentheses', () => {
    expect(parseProcStat(`99 (a) Z 5 (b) c)) S 1 ${TAIL}`)).toEqual({ pid: 99, comm: 'a) Z 5 (b) c)', state: 'S', ppid: 1 });
  });

  it('accepts an empty comm and ppid 0 (the kernel threads and namespace init)', () => {
    expect(parseProcStat(`1 () S 0 ${TAIL}`)).toEqual({ pid: 1, comm: '', state: 'S', ppid: 0 });
  });

  it.each([
    ['empty', ''],
    ['no parentheses', '12 sleep Z 1'],
    ['no closing parenthesis', '12 (sleep Z 1'],
    ['pid not a number', 'x (sleep) Z 1'],
    ['pid zero', '0 (sleep) Z 1'],
    ['no state', '12 (sleep)'],
    ['state of two letters', '12 (sleep) ZZ 1'],
    ['no ppid', '12 (sleep) Z'],
    ['negative ppid', '12 (sleep) Z -1'],
  ])('returns undefined when malformed: %s', (_name, line) => {
    expect(parseProcStat(line)).toBeUndefined();
  });
});
