/**
 * Server-Sent Events on the wire (WHATWG HTML, "9.2 Server-sent events"):
 * `formatSseMessage` writes one message, and `SseParser` reads a byte stream
 * back into messages, across chunk boundaries, for the CLI and the tests.
 * Only the fields podvisor uses are kept: `id`, `event`, `data`; comment lines
 * (keep-alives) are skipped.
 */

export interface SseMessage {
  id: string | null;
  event: string;
  data: string;
}

/** One message; `data` must not contain a newline (JSON text never does). */
export function formatSseMessage(id: number | string, event: string, data: string): string {
  return `id: ${id}\nevent: ${event}\ndata: ${data}\n\n`;
}

export class SseParser {
  private buffer = '';
  private readonly decoder = new TextDecoder();
  private id: string | null = null;
  private event = '';
  private data: string[] = [];

  /** Feeds bytes; returns the messages completed by them. */
  push(chunk: Uint8Array | string): SseMessage[] {
    this.buffer += typeof chunk === 'string' ? chunk : this.decoder.decode(chunk, { stream: true });
    const out: SseMessage[] = [];
    for (let nl = this.buffer.indexOf('\n'); nl !== -1; nl = this.buffer.indexOf('\n')) {
      const line = this.buffer.slice(0, nl).replace(/\r$/, '');
      this.buffer = this.buffer.slice(nl + 1);
      if (line === '') {
        if (this.data.length > 0) out.push({ id: this.id, event: this.event || 'message', data: this.data.join('\n') });
        this.event = '';
        this.data = [];
        continue;
      }
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon === -1 ? line : line.slice(0, colon);
      const value = colon === -1 ? '' : line.slice(colon + 1).replace(/^ /, '');
      if (field === 'id') this.id = value;
      else if (field === 'event') this.event = value;
      else if (field === 'data') this.data.push(value);
    }
    return out;
  }
}
