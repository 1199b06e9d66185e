/**
 * The lowest QMP layer, pure: turns the byte stream of a QMP socket into JSON
 * objects. qemu sends one JSON object per line (QMP spec, section 2.1: each
 * message ends with CRLF), but a socket read may hold half a line, several
 * lines, or a UTF-8 sequence cut in two; the decoder buffers until a line is
 * whole. Anything that is not a JSON object is a protocol error.
 */
import { StringDecoder } from 'node:string_decoder';
import { QmpProtocolError } from './qmp-error.js';

/** One decoded message with the line it came from (for the transcript). */
export interface DecodedLine {
  line: string;
  message: Record<string, unknown>;
}

/** A line longer than this is not QMP; it stops a broken peer from growing the buffer forever. */
const MAX_LINE = 16 * 1024 * 1024;

export class JsonLineDecoder {
  private readonly utf8 = new StringDecoder('utf8');
  private pending = '';

  /**
   * Adds a chunk and returns every message it completed, in order. Blank lines
   * are skipped. Throws `QmpProtocolError` for a line that is not a JSON object
   * (the messages before it in the same chunk are lost with the connection).
   */
  push(chunk: Buffer | string): DecodedLine[] {
    this.pending += typeof chunk === 'string' ? chunk : this.utf8.write(chunk);
    const out: DecodedLine[] = [];
    let newline = this.pending.indexOf('\n');
    while (newline !== -1) {
      const line = this.pending.slice(0, newline).replace(/\r$/, '');
      this.pending = this.pending.slice(newline + 1);
      if (line.trim() !== '') out.push({ line, message: parseObject(line) });
      newline = this.pending.indexOf('\n');
    }
    if (this.pending.length > MAX_LINE) {
      throw new QmpProtocolError(`QMP server sent a line longer than ${MAX_LINE} bytes without a newline`);
    }
    return out;
  }

  /** What is buffered without a newline yet (a message cut by a closing socket). */
  rest(): string {
    return this.pending + this.utf8.end();
  }
}

function parseObject(line: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (err) {
    throw new QmpProtocolError(`QMP server sent a line that is not JSON: ${truncate(line)}`, { cause: err });
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new QmpProtocolError(`QMP server sent JSON that is not an object: ${truncate(line)}`);
  }
  return value as Record<string, unknown>;
}

function truncate(line: string): string {
  return line.length > 200 ? `${line.slice(0, 200)}...` : line;
}
