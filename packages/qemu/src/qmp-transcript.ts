/**
 * A QMP transcript: every line sent and received, with a timestamp, kept in
 * memory (bounded) so that a failing test or an operator can read what was said
 * on the socket. Writing it out is explicit; nothing is written by default.
 */
import { writeFile } from 'node:fs/promises';

export interface QmpTranscriptEntry {
  /** ISO-8601 time the line was sent or received. */
  at: string;
  /** `->` sent to qemu, `<-` received from qemu, `--` a note from the client (connect, disconnect). */
  direction: '->' | '<-' | '--';
  line: string;
}

export class QmpTranscript {
  private readonly entries: QmpTranscriptEntry[] = [];

  /** Keeps the last `limit` lines. */
  constructor(
    private readonly limit = 10_000,
    private readonly now: () => Date = () => new Date(),
  ) {}

  record(direction: QmpTranscriptEntry['direction'], line: string): void {
    this.entries.push({ at: this.now().toISOString(), direction, line });
    if (this.entries.length > this.limit) this.entries.splice(0, this.entries.length - this.limit);
  }

  lines(): readonly QmpTranscriptEntry[] {
    return this.entries;
  }

  /** One entry per line: `TIME DIRECTION LINE`. */
  toString(): string {
    return this.entries.map((e) => `${e.at} ${e.direction} ${e.line}\n`).join('');
  }

  /** Writes (replaces) `path`. Throws the fs error when it cannot be written. */
  async writeTo(path: string): Promise<void> {
    await writeFile(path, this.toString(), 'utf8');
  }
}
