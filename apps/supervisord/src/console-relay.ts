/**
 * The serial console's way out: every byte qemu's serial port prints goes to
 * podvisor's stdout (so `kubectl logs` shows the guest) and to a size-bounded
 * log in the state dir (`console.log`, rotated once to `console.log.1`), so
 * that recent output survives a podvisor restart. It is also the console's
 * fan-out for `podvisor console`: listeners get every chunk, the last 64 KiB
 * stay in memory for a newcomer, and input goes to the running qemu's serial.
 * The file is a copy: when it cannot be written (a full or read-only volume),
 * the copy pauses and is retried a while later; the relay to stdout and to the
 * listeners goes on, and nothing here throws into qemu's output stream.
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
  /** After a failed write, the file copy pauses this long (ms) before it is tried again. */
  private static readonly FILE_RETRY_MS = 30_000;
  private filePausedUntil = 0;

  constructor(
    stateDir: string,
    private readonly out: NodeJS.WritableStream,
    private readonly maxBytes = 1024 * 1024,
    /** Told once per pause of the file copy (e.g. ENOSPC); the daemon logs it to stderr. */
    private readonly onFileError: (err: Error) => void = () => undefined,
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
    if (Date.now() < this.filePausedUntil) return;
    try {
      if (this.file === null) {
        try {
          this.written = statSync(this.filePath).size;
        } catch {
          this.written = 0;
        }
        this.file = this.open();
      }
      if (this.written + chunk.length > this.maxBytes) {
        this.file.end();
        this.file = null;
        renameSync(this.filePath, `${this.filePath}.1`);
        this.written = 0;
        this.file = this.open();
      }
      this.file.write(chunk);
      this.written += chunk.length;
    } catch (err) {
      this.fileFailed(this.file, err as Error);
    }
  }

  private open(): WriteStream {
    const file = createWriteStream(this.filePath, { flags: 'a' });
    // An asynchronous failure (ENOSPC, EROFS, EIO) pauses the copy; without a listener it would kill PID 1.
    file.on('error', (err) => this.fileFailed(file, err));
    return file;
  }

  private fileFailed(file: WriteStream | null, err: Error): void {
    if (file !== null && file !== this.file) return; // an old stream's late error
    this.file?.destroy();
    this.file = null;
    this.filePausedUntil = Date.now() + ConsoleRelay.FILE_RETRY_MS;
    try {
      this.onFileError(err);
    } catch {
      // Reporting must not take PID 1 down.
    }
  }
}
