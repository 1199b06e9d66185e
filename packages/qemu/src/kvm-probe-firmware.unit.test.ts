import { describe, expect, it } from 'vitest';
import { PROBE_EXIT_STATUS, kvmProbeFirmware } from './kvm-probe-firmware.js';

describe('kvmProbeFirmware', () => {
  it('is a 64 KiB ROM whose reset vector jumps to the code at offset 0', () => {
    const rom = kvmProbeFirmware();
    expect(rom.length).toBe(0x10000);
    // jmp rel16 at 0xfff0: the target wraps to 0xfff3 + 0x000d = 0x10000 = offset 0.
    expect([...rom.subarray(0xfff0, 0xfff3)]).toEqual([0xe9, 0x0d, 0x00]);
    expect((0xfff3 + rom.readUInt16LE(0xfff1)) & 0xffff).toBe(0);
  });

  it('ends in long mode by writing 0x2a to isa-debug-exit, which qemu turns into exit status 85', () => {
    const rom = kvmProbeFirmware();
    expect(PROBE_EXIT_STATUS).toBe(85);
    // mov al,0x2a; out 0xf4,al; hlt; jmp $-1 (back to the hlt)
    expect(rom.indexOf(Buffer.from([0xb0, 0x2a, 0xe6, 0xf4, 0xf4, 0xeb, 0xfd]))).toBe(0x8d);
    // The GDT descriptor points at the GDT in the ROM's low alias (0xf0000).
    expect(rom.readUInt16LE(0xb8)).toBe(4 * 8 - 1);
    expect(rom.readUInt32LE(0xba)).toBe(0xf0000 + 0x98);
  });
});
