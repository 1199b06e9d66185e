/**
 * The accelerator probe's guest, pure: a 64 KiB raw BIOS image that walks a
 * CPU from reset through real mode, protected mode and long mode (what any
 * 64-bit kernel does first), writes a marker to the debug console (port 0xe9)
 * at each stage, and finally writes 0x2a to an `isa-debug-exit` device at port
 * 0xf4, which makes qemu exit with status (0x2a << 1) | 1 = 85. Only a CPU that
 * really executes guest code gets there. On hosts with broken nested KVM the
 * guest hangs on the way (FACTS: a real-mode-only probe passes there, so the
 * probe must switch modes), and the markers say how far it got.
 *
 * The bytes were assembled with GNU as (`.code16`/`.code32`/`.code64`, the
 * ROM linked at 0) and are listed with their source, one instruction a line.
 */

/** The exit status qemu reports when the probe guest ran to the end. */
export const PROBE_EXIT_STATUS = (0x2a << 1) | 1;

/** The debug-console markers and the stage each one proves. */
export const PROBE_STAGES: Readonly<Record<string, string>> = {
  R: 'real mode',
  P: 'protected mode',
  L: 'long mode',
};

/** The ROM is mapped at 0xf0000; the code starts at its offset 0, the reset vector is at 0xfff0. */
const CODE: readonly number[] = [
  // start16 (16-bit real mode): zero 12 KiB of RAM for the page tables, identity-map 2 MiB, load the GDT, set CR0.PE
  0xb0, 0x52, // 0000  mov $0x52, %al ; 'R': real mode
  0xe6, 0xe9, // 0002  out %al, $0xe9
  0x31, 0xc0, // 0004  xor %ax, %ax
  0x8e, 0xc0, // 0006  mov %ax, %es
  0xbf, 0x00, 0x10, // 0008  mov $0x1000, %di ; page tables at 0x1000..0x3fff
  0xb9, 0x00, 0x0c, // 000b  mov $0x0c00, %cx
  0x66, 0x31, 0xc0, // 000e  xor %eax, %eax
  0xfc, // 0011  cld
  0x66, 0xf3, 0xab, // 0012  rep stosl
  0x26, 0x66, 0xc7, 0x06, 0x00, 0x10, 0x03, 0x20, 0x00, 0x00, // 0015  movl $0x2003, %es:0x1000 ; PML4[0] -> PDPT
  0x26, 0x66, 0xc7, 0x06, 0x00, 0x20, 0x03, 0x30, 0x00, 0x00, // 001f  movl $0x3003, %es:0x2000 ; PDPT[0] -> PD
  0x26, 0x66, 0xc7, 0x06, 0x00, 0x30, 0x83, 0x00, 0x00, 0x00, // 0029  movl $0x0083, %es:0x3000 ; PD[0]: 2 MiB page at 0, present+rw+ps
  0xb8, 0x00, 0xf0, // 0033  mov $0xf000, %ax
  0x8e, 0xd8, // 0036  mov %ax, %ds
  0x66, 0x0f, 0x01, 0x16, 0xb8, 0x00, // 0038  lgdtl %ds:(gdtr - start16)
  0x0f, 0x20, 0xc0, // 003e  mov %cr0, %eax
  0x0c, 0x01, // 0041  or $1, %al
  0x0f, 0x22, 0xc0, // 0043  mov %eax, %cr0
  0x66, 0xea, 0x4e, 0x00, 0x0f, 0x00, 0x08, 0x00, // 0046  ljmpl $0x08, $(0xf0000 + pm32 - start16)
  // pm32 (32-bit protected mode): CR4.PAE, CR3, EFER.LME, CR0.PG, then a far jump into the 64-bit segment
  0x66, 0xb8, 0x10, 0x00, // 004e  mov $0x10, %ax
  0x8e, 0xd8, // 0052  mov %ax, %ds
  0xb0, 0x50, // 0054  mov $0x50, %al ; 'P': protected mode
  0xe6, 0xe9, // 0056  out %al, $0xe9
  0x0f, 0x20, 0xe0, // 0058  mov %cr4, %eax
  0x83, 0xc8, 0x20, // 005b  or $0x20, %eax ; PAE
  0x0f, 0x22, 0xe0, // 005e  mov %eax, %cr4
  0xb8, 0x00, 0x10, 0x00, 0x00, // 0061  mov $0x1000, %eax
  0x0f, 0x22, 0xd8, // 0066  mov %eax, %cr3
  0xb9, 0x80, 0x00, 0x00, 0xc0, // 0069  mov $0xc0000080, %ecx ; EFER
  0x0f, 0x32, // 006e  rdmsr
  0x0d, 0x00, 0x01, 0x00, 0x00, // 0070  or $0x100, %eax ; LME
  0x0f, 0x30, // 0075  wrmsr
  0x0f, 0x20, 0xc0, // 0077  mov %cr0, %eax
  0x0d, 0x00, 0x00, 0x00, 0x80, // 007a  or $0x80000000, %eax ; PG
  0x0f, 0x22, 0xc0, // 007f  mov %eax, %cr0
  0xea, 0x89, 0x00, 0x0f, 0x00, 0x18, 0x00, // 0082  ljmp $0x18, $(0xf0000 + lm64 - start16)
  // lm64 (64-bit long mode)
  0xb0, 0x4c, // 0089  mov $0x4c, %al ; 'L': long mode
  0xe6, 0xe9, // 008b  out %al, $0xe9
  0xb0, 0x2a, // 008d  mov $0x2a, %al
  0xe6, 0xf4, // 008f  out %al, $0xf4 ; isa-debug-exit: exit status (0x2a << 1) | 1 = 85
  0xf4, // 0091  1: hlt
  0xeb, 0xfd, // 0092  jmp 1b
  0x8d, 0xb4, 0x00, 0x00, // 0094  (padding to align the GDT on 8 bytes)
  // gdt: null, flat 32-bit code, flat data, 64-bit code
  0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // 0098  .quad 0
  0xff, 0xff, 0x00, 0x00, 0x00, 0x9a, 0xcf, 0x00, // 00a0  .quad 0x00cf9a000000ffff ; 0x08: 32-bit code
  0xff, 0xff, 0x00, 0x00, 0x00, 0x92, 0xcf, 0x00, // 00a8  .quad 0x00cf92000000ffff ; 0x10: data
  0xff, 0xff, 0x00, 0x00, 0x00, 0x9a, 0xaf, 0x00, // 00b0  .quad 0x00af9a000000ffff ; 0x18: 64-bit code
  // gdtr: limit, linear base
  0x1f, 0x00, // 00b8  .word gdtr - gdt - 1
  0x98, 0x00, 0x0f, 0x00, // 00ba  .long 0xf0000 + gdt - start16
];

/** At the reset vector (CS base 0xffff0000, IP 0xfff0): a near jump that wraps to offset 0. */
const RESET: readonly number[] = [0xe9, 0x0d, 0x00]; // fff0  jmp start16

const ROM_SIZE = 0x10000;
const RESET_OFFSET = 0xfff0;

/** The 64 KiB firmware image, for `qemu -bios`. */
export function kvmProbeFirmware(): Buffer {
  const rom = Buffer.alloc(ROM_SIZE, 0);
  Buffer.from(CODE).copy(rom, 0);
  Buffer.from(RESET).copy(rom, RESET_OFFSET);
  return rom;
}
