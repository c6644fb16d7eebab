/**
 * A software Ethernet bridge (the role of Linux's bridge, `xenbr0`, that libxl's vif-bridge
 * script adds each vif to): frames in from one port go out to the port their destination MAC
 * was learned on, or to every other port (broadcast, multicast, unknown unicast).
 *
 * MAC learning: a frame's source MAC is learned on the port it came in on, with the modelled
 * time it was last seen; an entry not seen for `ageingNs` (Linux's default ageing time, 300 s)
 * is forgotten. The table holds at most `maxEntries`: when it is full and no entry has aged out,
 * a new source is not learned (its frames still flood) and `learnFull` counts it, so a guest
 * sending from random MACs cannot grow the host's memory.
 *
 * Dropped: frames shorter than an Ethernet header, frames whose source MAC is multicast or zero
 * (not a valid station address, as br_handle_frame drops them), and frames whose learned
 * destination is the port they came in on (no hairpin mode).
 *
 * Simpler than Linux: no STP, no VLANs, no hairpin or isolation flags, no multicast snooping
 * (multicast floods), no per-port MTU.
 */

export const ETH_ALEN = 6;
/** Linux bridge default ageing time (BR_DEFAULT_AGEING_TIME, 300 s). */
export const BRIDGE_AGEING_NS = 300_000_000_000;
/** vtlab's bound on learned MACs per bridge. */
export const BRIDGE_MAX_ENTRIES = 1024;

/** Where a port's frames go: true if the port took the frame. */
export type PortSink = (frame: Uint8Array) => boolean;

export interface PortCounters {
  /** Frames the port put into the bridge. */
  inFrames: number;
  inBytes: number;
  /** Frames the bridge delivered to the port (the sink took them). */
  outFrames: number;
  outBytes: number;
  /** Frames for the port that its sink refused (its queue full, not connected). */
  outDropped: number;
  /** Frames from the port the bridge dropped (too short, bad source MAC, hairpin). */
  inDropped: number;
}

export interface BridgeCounters {
  forwarded: number;
  flooded: number;
  dropped: number;
  learnFull: number;
}

export class BridgePort {
  readonly counters: PortCounters = { inFrames: 0, inBytes: 0, outFrames: 0, outBytes: 0, outDropped: 0, inDropped: 0 };
  attached = true;
  constructor(
    private readonly bridge: Bridge,
    readonly name: string,
    readonly sink: PortSink,
  ) {}

  /** A frame from this port's device into the bridge. */
  input(frame: Uint8Array): void {
    this.bridge.forward(this, frame);
  }

  /** Leave the bridge (its learned MACs are forgotten). */
  detach(): void {
    this.bridge.detach(this);
  }
}

interface Entry {
  port: BridgePort;
  seen: number;
}

function macKey(frame: Uint8Array, at: number): number {
  // 48 bits fit a double exactly.
  return (frame[at] ?? 0) * 2 ** 40 + (frame[at + 1] ?? 0) * 2 ** 32 + (((frame[at + 2] ?? 0) << 24) >>> 0) + ((frame[at + 3] ?? 0) << 16) + ((frame[at + 4] ?? 0) << 8) + (frame[at + 5] ?? 0);
}

export interface BridgeOptions {
  /** Modelled time in ns (ageing). */
  readonly now: () => number;
  readonly ageingNs?: number;
  readonly maxEntries?: number;
}

export class Bridge {
  readonly counters: BridgeCounters = { forwarded: 0, flooded: 0, dropped: 0, learnFull: 0 };
  private readonly portList: BridgePort[] = [];
  private readonly fdb = new Map<number, Entry>();
  private readonly now: () => number;
  private readonly ageingNs: number;
  private readonly maxEntries: number;

  constructor(
    readonly name: string,
    options: BridgeOptions,
  ) {
    this.now = options.now;
    this.ageingNs = options.ageingNs ?? BRIDGE_AGEING_NS;
    this.maxEntries = options.maxEntries ?? BRIDGE_MAX_ENTRIES;
  }

  get ports(): readonly BridgePort[] {
    return this.portList;
  }

  /** Learned MACs (aged entries not yet swept may be included). */
  get entries(): number {
    return this.fdb.size;
  }

  /** The port a MAC was learned on (and not aged out), as `bridge fdb show` would list it. */
  lookup(mac: Uint8Array): BridgePort | undefined {
    const e = this.fdb.get(macKey(mac, 0));
    return e !== undefined && this.now() - e.seen < this.ageingNs ? e.port : undefined;
  }

  attach(name: string, sink: PortSink): BridgePort {
    const port = new BridgePort(this, name, sink);
    this.portList.push(port);
    return port;
  }

  detach(port: BridgePort): void {
    const i = this.portList.indexOf(port);
    if (i < 0) return;
    this.portList.splice(i, 1);
    port.attached = false;
    for (const [k, e] of this.fdb) if (e.port === port) this.fdb.delete(k);
  }

  /** Forget entries older than the ageing time. */
  age(): void {
    const now = this.now();
    for (const [k, e] of this.fdb) if (now - e.seen >= this.ageingNs) this.fdb.delete(k);
  }

  forward(from: BridgePort, frame: Uint8Array): void {
    if (!from.attached) return;
    from.counters.inFrames++;
    from.counters.inBytes += frame.length;
    if (frame.length < 2 * ETH_ALEN + 2) return this.drop(from);
    const src0 = frame[ETH_ALEN] ?? 0;
    const src = macKey(frame, ETH_ALEN);
    if (src0 & 1 || src === 0) return this.drop(from);
    const now = this.now();
    this.learn(src, from, now);
    const dst0 = frame[0] ?? 0;
    if (!(dst0 & 1)) {
      const e = this.fdb.get(macKey(frame, 0));
      if (e !== undefined && now - e.seen < this.ageingNs) {
        if (e.port === from) return this.drop(from);
        this.counters.forwarded++;
        this.deliver(e.port, frame);
        return;
      }
    }
    this.counters.flooded++;
    for (const p of this.portList) if (p !== from) this.deliver(p, frame);
  }

  private learn(src: number, port: BridgePort, now: number): void {
    const e = this.fdb.get(src);
    if (e !== undefined) {
      e.port = port;
      e.seen = now;
      return;
    }
    if (this.fdb.size >= this.maxEntries) {
      this.age();
      if (this.fdb.size >= this.maxEntries) {
        this.counters.learnFull++;
        return;
      }
    }
    this.fdb.set(src, { port, seen: now });
  }

  private deliver(port: BridgePort, frame: Uint8Array): void {
    if (port.sink(frame)) {
      port.counters.outFrames++;
      port.counters.outBytes += frame.length;
    } else port.counters.outDropped++;
  }

  private drop(from: BridgePort): void {
    from.counters.inDropped++;
    this.counters.dropped++;
  }
}
