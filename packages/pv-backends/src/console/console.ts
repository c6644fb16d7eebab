// The console backend (xenconsoled, tools/console/daemon/io.c of Xen 4.17): for each domain it
// maps the console page (grant ref GNTTAB_RESERVED_CONSOLE), binds the console port, and on
// each event (and whenever the host polls, between scheduler slices) copies what the guest wrote
// into the `out` ring of struct xencons_interface to a sink: the domain's console, as `xl
// console` shows it. Input goes the other way into the `in` ring.
//
// The page is hostile: indices are read once per pass; a producer further ahead than the ring
// holds is ignored for that pass, as buffer_append does (nothing is consumed, the guest's console
// stays stuck until it repairs its indices). What one pass reads is bounded (`maxPerPass`, at most
// one ring), so a guest that keeps the ring full cannot starve the host; vtlab bounds passes by
// count where xenconsoled's rate limit (RATE_LIMIT_ALLOWANCE events per RATE_LIMIT_PERIOD ms)
// uses wall time. The kept history is bounded too (`historyBytes`, oldest dropped), like
// xenconsoled's buffer with discard_overflowed_data.
import { GNTTAB_RESERVED_CONSOLE, XENCONS_IN_SIZE, XENCONS_OUT_SIZE, xencons_interface as XCI } from "@vtlab/xen-public";
import type { BackendGrantMapping, BackendHost } from "../host.js";

export interface ConsoleBackendOptions {
  /** Console text as it arrives (bytes as Latin-1 characters, as the UART's console). */
  readonly sink?: (text: string) => void;
  /** Bytes read per pass at most (default: one ring, XENCONS_OUT_SIZE). */
  readonly maxPerPass?: number;
  /** Bytes of output kept for `output` (default 64 KiB). */
  readonly historyBytes?: number;
  /** Input bytes waiting for room in the `in` ring at most (default 4096); more is refused. */
  readonly maxPendingInput?: number;
  readonly log?: (line: string) => void;
}

export interface ConsoleBackendStats {
  bytesOut: number;
  bytesIn: number;
  passes: number;
  /** Passes that found the out indices corrupt. */
  bogusIndices: number;
  notifications: number;
  /** Output bytes no longer kept in `output` (the history bound, `historyBytes`); the sink saw them. */
  historyDropped: number;
}

export class ConsoleBackend {
  readonly stats: ConsoleBackendStats = { bytesOut: 0, bytesIn: 0, passes: 0, bogusIndices: 0, notifications: 0, historyDropped: 0 };
  private readonly sink: ((text: string) => void) | undefined;
  private readonly maxPerPass: number;
  private readonly historyBytes: number;
  private readonly maxPendingInput: number;
  private readonly log: (line: string) => void;
  private history: string[] = [];
  private historyLen = 0;
  private pendingInput: number[] = [];
  private closed = false;

  /**
   * Maps domain `domid`'s console page (grant ref 0) and binds dom0 to its console port
   * `remotePort` (HVM_PARAM_CONSOLE_EVTCHN): the backend, or why not.
   */
  static connect(host: BackendHost, domid: number, remotePort: number, options: ConsoleBackendOptions = {}): ConsoleBackend | string {
    const ring = host.grants.map(domid, GNTTAB_RESERVED_CONSOLE);
    if (typeof ring === "number") return `console: map of grant ${GNTTAB_RESERVED_CONSOLE} of domain ${domid} failed (GNTST ${ring})`;
    const port = host.evtchn.bindInterdomain(domid, remotePort);
    if (port < 0) {
      host.grants.unmap(ring);
      return `console: bind to port ${remotePort} of domain ${domid} failed (${port})`;
    }
    return new ConsoleBackend(domid, ring, port, host, options);
  }

  constructor(
    readonly domid: number,
    private readonly ring: BackendGrantMapping,
    readonly port: number,
    private readonly host: BackendHost,
    options: ConsoleBackendOptions = {},
  ) {
    this.sink = options.sink;
    this.maxPerPass = Math.max(1, Math.min(options.maxPerPass ?? XENCONS_OUT_SIZE, XENCONS_OUT_SIZE));
    const history = options.historyBytes ?? 64 * 1024;
    this.historyBytes = Number.isSafeInteger(history) && history >= 0 ? history : 64 * 1024;
    this.maxPendingInput = options.maxPendingInput ?? 4096;
    this.log = options.log ?? (() => undefined);
    host.evtchn.onEvent(port, () => this.poll());
  }

  /** The output kept so far (the last `historyBytes`). */
  get output(): string {
    return this.history.join("");
  }

  /** One pass: output from the `out` ring to the sink, pending input into the `in` ring. Returns bytes read. */
  poll(): number {
    if (this.closed) return 0;
    this.stats.passes++;
    let notify = false;
    const n = this.readOut();
    if (n > 0) notify = true;
    if (this.writeIn()) notify = true;
    if (notify) {
      this.stats.notifications++;
      this.host.evtchn.send(this.port);
    }
    return n;
  }

  /** Input for the guest (as `xl console` types it): queued and written as the `in` ring has room. Returns the bytes accepted. */
  write(input: string | Uint8Array): number {
    if (this.closed) return 0;
    const bytes = typeof input === "string" ? Array.from(input, (c) => c.charCodeAt(0) & 0xff) : Array.from(input);
    const room = Math.max(0, this.maxPendingInput - this.pendingInput.length);
    const take = bytes.slice(0, room);
    this.pendingInput.push(...take);
    if (this.writeIn()) {
      this.stats.notifications++;
      this.host.evtchn.send(this.port);
    }
    return take.length;
  }

  /** Stops: the port closed, the page unmapped. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.host.evtchn.onEvent(this.port, undefined);
    this.host.evtchn.close(this.port);
    if (this.ring.mapped) this.host.grants.unmap(this.ring);
  }

  private indexes(consOff: number): { cons: number; prod: number } | undefined {
    const b = this.ring.read(consOff, 8);
    if (!b) return undefined;
    const v = new DataView(b.buffer, b.byteOffset, 8);
    return { cons: v.getUint32(0, true), prod: v.getUint32(4, true) };
  }

  private readOut(): number {
    const idx = this.indexes(XCI.out_cons);
    if (!idx) return 0;
    const avail = (idx.prod - idx.cons) >>> 0;
    if (avail === 0) return 0;
    if (avail > XENCONS_OUT_SIZE) {
      if (this.stats.bogusIndices++ === 0) this.log(`console: domain ${this.domid}: bogus out indices (cons ${idx.cons}, prod ${idx.prod}), ignored`);
      return 0;
    }
    const n = Math.min(avail, this.maxPerPass);
    const off = idx.cons & (XENCONS_OUT_SIZE - 1);
    const first = Math.min(n, XENCONS_OUT_SIZE - off);
    const a = this.ring.read(XCI.out + off, first);
    const b = first < n ? this.ring.read(XCI.out, n - first) : new Uint8Array(0);
    if (!a || !b) return 0;
    const c = new Uint8Array(4);
    new DataView(c.buffer).setUint32(0, (idx.cons + n) >>> 0, true);
    if (!this.ring.write(XCI.out_cons, c)) return 0;
    let text = "";
    for (const x of a) text += String.fromCharCode(x);
    for (const x of b) text += String.fromCharCode(x);
    this.stats.bytesOut += n;
    this.keep(text);
    this.sink?.(text);
    return n;
  }

  private keep(text: string): void {
    this.history.push(text);
    this.historyLen += text.length;
    while (this.historyLen > this.historyBytes && this.history.length > 0) {
      const first = this.history[0] as string;
      const over = this.historyLen - this.historyBytes;
      if (first.length <= over) {
        this.history.shift();
        this.historyLen -= first.length;
        this.stats.historyDropped += first.length;
      } else {
        this.history[0] = first.slice(over);
        this.historyLen -= over;
        this.stats.historyDropped += over;
      }
    }
  }

  /** True if anything went into the `in` ring. */
  private writeIn(): boolean {
    if (this.pendingInput.length === 0) return false;
    const idx = this.indexes(XCI.in_cons);
    if (!idx) return false;
    const used = (idx.prod - idx.cons) >>> 0;
    if (used > XENCONS_IN_SIZE) return false;
    const n = Math.min(XENCONS_IN_SIZE - used, this.pendingInput.length);
    if (n === 0) return false;
    for (let i = 0; i < n; i++) {
      const at = XCI.in + ((idx.prod + i) & (XENCONS_IN_SIZE - 1));
      if (!this.ring.write(at, new Uint8Array([this.pendingInput[i] ?? 0]))) return false;
    }
    const p = new Uint8Array(4);
    new DataView(p.buffer).setUint32(0, (idx.prod + n) >>> 0, true);
    if (!this.ring.write(XCI.in_prod, p)) return false;
    this.pendingInput = this.pendingInput.slice(n);
    this.stats.bytesIn += n;
    return true;
  }
}
