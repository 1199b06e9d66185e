import { describe, expect, it } from 'vitest';
import { abortCutPoints } from './network-backend-contract.js';

describe('abortCutPoints', () => {
  it('cuts after the first, the middle and the second-to-last command, each once, never after the last', () => {
    expect(abortCutPoints(0)).toEqual([]);
    expect(abortCutPoints(1)).toEqual([]);
    expect(abortCutPoints(2)).toEqual([1]);
    expect(abortCutPoints(3)).toEqual([1, 2]);
    expect(abortCutPoints(5)).toEqual([1, 3, 4]);
    expect(abortCutPoints(20)).toEqual([1, 10, 19]);
  });
});
