/**
 * The serial console's way out: every byte qemu's serial port prints goes to
 * podvisor's stdout (so `kubectl logs` shows the guest) and to a size-bounded
 * log in the state dir (`console.log`, rotated once to `console.log.1`), so
 * that recent output survives a podvisor restart.
 */
import { createWriteStream, renameSync, statSync, type WriteStream } from 'node:fs';
import path from 'node:path';
import type { VmHandle } from '@podvisor/core';

export class ConsoleRelay {
  private file: WriteStream | null = null;
  private written = 0;
  private readonly filePath: string;

  constructor(
    stateDir: string,
    private readonly out: NodeJS.WritableStream,
    private readonly maxBytes = 1024 * 1024,
  ) {
    this.filePath = path.join(stateDir, 'console.log');
  }

  /** Relays one qemu's serial output until it ends. */
  attach(vm: VmHandle): void {
    const serial = vm.serial;
    if (serial === null) return;
    serial.on('data', (chunk: Buffer) => {
      this.out.write(chunk);
      this.append(chunk);
    });
  }

  close(): void {
    this.file?.end();
    this.file = null;
  }

  private append(chunk: Buffer): void {
    if (this.file === null) {
      try {
        this.written = statSync(this.filePath).size;
      } catch {
        this.written = 0;
      }
      this.file = createWriteStream(this.filePath, { flags: 'a' });
    }
    if (this.written + chunk.length > this.maxBytes) {
      this.file.end();
      renameSync(this.filePath, `${this.filePath}.1`);
      this.file = createWriteStream(this.filePath, { flags: 'a' });
      this.written = 0;
    }
    this.file.write(chunk);
    this.written += chunk.length;
  }
}
