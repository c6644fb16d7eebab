/**
 * The PV console (Linux's hvc_xen) over the xencons ring page (HVM_PARAM_CONSOLE_PFN, port
 * HVM_PARAM_CONSOLE_EVTCHN): output bytes go into `out` (2048 bytes) with out_prod moved after
 * them and the backend notified; input is read from `in`. Corrupt indices (further apart than
 * the ring holds) stop the console instead of being trusted.
 */
import { xencons_interface as XC } from "@vtlab/xen-public";
import type { EventChannels } from "./evtchn.js";
import type { GuestMemory } from "./mem.js";
import { utf8Encode } from "@vtlab/xen-public";

const OUT_SIZE = 2048;
const IN_SIZE = 1024;

export class PvConsole {
  broken = false;
  /** Bytes written to the ring. */
  written = 0;

  constructor(
    private readonly mem: GuestMemory,
    private readonly evtchn: EventChannels,
    readonly ring: number,
    readonly port: number,
  ) {}

  /** Write `text` (waiting while the ring is full): false when the ring is corrupt. */
  *write(text: string | Uint8Array): Generator<void, boolean, void> {
    const bytes = typeof text === "string" ? utf8Encode(text) : text;
    const mem = this.mem;
    let done = 0;
    while (done < bytes.length) {
      if (this.broken) return false;
      const cons = mem.read32(this.ring + XC.out_cons);
      const prod = mem.read32(this.ring + XC.out_prod);
      const used = (prod - cons) >>> 0;
      if (used > OUT_SIZE) {
        this.broken = true;
        return false;
      }
      const n = Math.min(OUT_SIZE - used, bytes.length - done);
      if (n === 0) {
        this.evtchn.clear(this.port);
        yield* this.evtchn.poll([this.port]);
        continue;
      }
      for (let i = 0; i < n; i++) mem.write8(this.ring + XC.out + ((prod + i) & (OUT_SIZE - 1)), bytes[done + i]!);
      mem.write32(this.ring + XC.out_prod, (prod + n) >>> 0);
      done += n;
      this.written += n;
      this.evtchn.send(this.port);
    }
    return true;
  }

  /** What the backend has put into `in` (empty when nothing). */
  read(): Uint8Array {
    const mem = this.mem;
    const cons = mem.read32(this.ring + XC.in_cons);
    const prod = mem.read32(this.ring + XC.in_prod);
    const avail = (prod - cons) >>> 0;
    if (avail > IN_SIZE) {
      this.broken = true;
      return new Uint8Array(0);
    }
    const out = new Uint8Array(avail);
    for (let i = 0; i < avail; i++) out[i] = mem.read8(this.ring + XC.in + ((cons + i) & (IN_SIZE - 1)));
    if (avail > 0) {
      mem.write32(this.ring + XC.in_cons, (cons + avail) >>> 0);
      this.evtchn.send(this.port);
    }
    return out;
  }
}
