/**
 * A domain's console capture: the bytes its UART and debug console transmit (and its
 * HYPERVISOR_console_io writes), as text, with a bound. A guest prints as much as it likes; the
 * host keeps at most `limit` bytes (the last ones: the end of a console is what a user reads) and
 * counts what it dropped, as xenconsoled's log and Xen's console ring do with a fixed size
 * (CONSOLE_CAPTURE_DEFAULT: 1 MiB per domain). `limit = 0` keeps nothing (xl.cfg `serial =
 * "none"`): bytes are only counted. Each completed chunk (a line, or 256 bytes without a newline)
 * still goes to the streaming sink, which must not buffer it without bound either.
 */

/** Console bytes kept per domain unless the domain asks otherwise (DomainOptions.consoleCapture). */
export const CONSOLE_CAPTURE_DEFAULT = 1024 * 1024;
/** A chunk ends at a newline or at this many bytes. */
export const CONSOLE_CHUNK_MAX = 256;

export interface ConsoleCaptureStats {
  /** Console bytes the domain wrote. */
  readonly bytes: number;
  /** Bytes no longer (or never) kept in `Domain.console` because of the capture bound. */
  readonly dropped: number;
  /** The bound (bytes kept at most). */
  readonly limit: number;
}

export class ConsoleCapture {
  private readonly chunks: string[] = [];
  /** Index of the oldest kept chunk in `chunks` (dropped ones before it are compacted away now and then). */
  private head = 0;
  private kept = 0;
  private readonly line = new Uint8Array(CONSOLE_CHUNK_MAX);
  private lineLength = 0;
  private total = 0;
  private droppedBytes = 0;
  readonly limit: number;

  constructor(
    limit: number,
    private readonly sink: ((text: string) => void) | undefined,
  ) {
    this.limit = Number.isSafeInteger(limit) && limit >= 0 ? limit : CONSOLE_CAPTURE_DEFAULT;
  }

  byte(b: number): void {
    this.total++;
    this.line[this.lineLength++] = b & 0xff;
    if (b === 0x0a || this.lineLength >= CONSOLE_CHUNK_MAX) this.flushLine();
  }

  private flushLine(): void {
    const n = this.lineLength;
    this.lineLength = 0;
    if (this.limit === 0 && this.sink === undefined) {
      this.droppedBytes += n; // nothing wants the text: do not even build it
      return;
    }
    const text = String.fromCharCode(...this.line.subarray(0, n));
    this.keep(text);
    this.sink?.(text);
  }

  private keep(text: string): void {
    if (this.limit === 0) {
      this.droppedBytes += text.length;
      return;
    }
    this.chunks.push(text);
    this.kept += text.length;
    // Drop the oldest whole chunks while the rest is still at least the limit, then trim the oldest.
    while (this.kept > this.limit) {
      const first = this.chunks[this.head]!;
      const over = this.kept - this.limit;
      if (first.length <= over) {
        this.chunks[this.head] = "";
        this.head++;
        this.kept -= first.length;
        this.droppedBytes += first.length;
      } else {
        this.chunks[this.head] = first.slice(over);
        this.kept -= over;
        this.droppedBytes += over;
      }
    }
    if (this.head > 1024 && this.head * 2 > this.chunks.length) {
      this.chunks.splice(0, this.head);
      this.head = 0;
    }
  }

  /** The kept text, with the unfinished line at its end (the bound counts completed chunks only). */
  get text(): string {
    const kept = this.head === 0 ? this.chunks.join("") : this.chunks.slice(this.head).join("");
    return this.lineLength > 0 && this.limit > 0 ? kept + String.fromCharCode(...this.line.subarray(0, this.lineLength)) : kept;
  }

  stats(): ConsoleCaptureStats {
    return { bytes: this.total, dropped: this.droppedBytes, limit: this.limit };
  }
}
