/**
 * The serial console's way out: every byte qemu's serial port prints goes to
 * podvisor's stdout (so `kubectl logs` shows the guest) and to a size-bounded
 * log in the state dir (`console.log`, rotated once to `console.log.1`), so
 * that recent output survives a podvisor restart. It is also the console's
 * fan-out for `podvisor console`: listeners get every chunk, the last 64 KiB
 * stay in memory for a newcomer, and input goes to the running qemu's serial.
 */
import { createWriteStream, renameSync, statSync, type WriteStream } from 'node:fs';
import path from 'node:path';
import type { VmHandle } from '@podvisor/core';

export class ConsoleRelay {
  private file: WriteStream | null = null;
  private written = 0;
  private readonly filePath: string;
  private readonly listeners = new Set<(chunk: Buffer) => void>();
  private ring: Buffer = Buffer.alloc(0);
  private input: NodeJS.WritableStream | null = null;
  private static readonly RING_BYTES = 64 * 1024;

  constructor(
    stateDir: string,
    private readonly out: NodeJS.WritableStream,
    private readonly maxBytes = 1024 * 1024,
  ) {
    this.filePath = path.join(stateDir, 'console.log');
  }

  /** Relays one qemu's serial output until it ends. */
  attach(vm: VmHandle): void {
    const input = vm.serialInput;
    this.input = input;
    input?.on('error', () => undefined); // qemu gone: its end of the pipe closed
    const serial = vm.serial;
    if (serial === null) return;
    serial.on('data', (chunk: Buffer) => {
      this.out.write(chunk);
      this.append(chunk);
      const joined = Buffer.concat([this.ring, chunk]);
      this.ring = joined.subarray(Math.max(0, joined.length - ConsoleRelay.RING_BYTES));
      for (const l of this.listeners) l(chunk);
    });
    serial.on('end', () => {
      if (this.input === input) this.input = null;
    });
  }

  /** Calls `listener` with every chunk of output until the returned function is called. */
  subscribe(listener: (chunk: Buffer) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Sends bytes to the running qemu's serial console; false when none runs. */
  write(data: Buffer): boolean {
    if (this.input === null) return false;
    this.input.write(data);
    return true;
  }

  /** `null` while the guest's serial input can take more (or no qemu runs); else a promise that resolves once it can. */
  inputDrained(): Promise<void> | null {
    const input = this.input as (NodeJS.WritableStream & { writableNeedDrain?: boolean }) | null;
    if (input === null || input.writableNeedDrain !== true) return null;
    return new Promise((resolve) => {
      const done = (): void => {
        input.off('drain', done);
        input.off('close', done);
        resolve();
      };
      input.on('drain', done);
      input.on('close', done);
    });
  }

  /** The last `maxBytes` of output (at most 64 KiB). */
  recent(maxBytes: number): Buffer {
    return Buffer.from(this.ring.subarray(Math.max(0, this.ring.length - maxBytes)));
  }

  close(): void {
    this.listeners.clear();
    this.input = null;
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
