/**
 * The demo's streaming console sink (`serial = "pty"`: console lines to stdout) with a bound on
 * what waits in memory. On Linux, writes to a terminal, a file or a pipe are synchronous and
 * nothing waits; where the stream is asynchronous (a pipe on other systems, a socket) and its
 * reader falls behind, the lines that would wait beyond CONSOLE_BACKLOG_MAX are dropped and
 * counted instead of kept in the host's memory, and `dropped` says how many bytes.
 */

/** Bytes of console output that may wait in the output stream's buffer. */
export const CONSOLE_BACKLOG_MAX = 1024 * 1024;

export class ConsoleStream {
  /** Console bytes not written because the stream's backlog was over CONSOLE_BACKLOG_MAX. */
  dropped = 0;

  constructor(
    private readonly write: (text: string) => void,
    /** Bytes waiting in the stream (Node's `writableLength`); absent: the stream never backs up. */
    private readonly backlog: (() => number) | undefined,
    private readonly limit = CONSOLE_BACKLOG_MAX,
  ) {}

  line(text: string): void {
    if (this.backlog !== undefined && this.backlog() > this.limit) {
      this.dropped += text.length;
      return;
    }
    this.write(text);
  }

  /** A line for stderr when something was dropped, else undefined. */
  summary(): string | undefined {
    return this.dropped === 0 ? undefined : `vtlab: ${this.dropped} console bytes dropped: the output stream was not read fast enough (more than ${this.limit} bytes waiting)\n`;
  }
}
