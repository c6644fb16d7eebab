/**
 * The FIFO event-channel ABI (Xen's common/event_fifo.c; xen/include/public/event_channel.h):
 * EVTCHNOP_init_control gives a vCPU a control block (READY bits and 16 queue heads, one per
 * priority) in a guest page, EVTCHNOP_expand_array adds a guest page of 1024 event words
 * (PENDING, MASKED, LINKED, BUSY, a 17-bit LINK), and EVTCHNOP_set_priority picks a port's
 * queue. A pending, unmasked event is linked at the tail of its vCPU's queue for its priority;
 * if the queue was empty its head is written and the priority's READY bit set, and a READY bit
 * that was clear marks the vCPU's upcall pending (the same vcpu_info.evtchn_upcall_pending and
 * callback as the 2-level ABI).
 *
 * The event words, queue heads and READY bits are guest memory: hostile, read once per decision
 * and changed one bit or one word at a time, as Xen's guest_test_and_set_bit and cmpxchg do.
 * Modelled more simply than Xen: the guest never runs while the hypervisor links an event, so
 * every cmpxchg of the link succeeds at once and the BUSY bit is never needed; and the FIFO
 * state (priorities, last queues) is created anew at each switch to FIFO rather than kept in each
 * channel across an EVTCHNOP_reset.
 */
import { PAGE_SIZE, type MachineMemory, type Mfn } from "@vtlab/arch";
import {
  EVTCHN_FIFO_LINKED,
  EVTCHN_FIFO_LINK_MASK,
  EVTCHN_FIFO_MASKED,
  EVTCHN_FIFO_MAX_QUEUES,
  EVTCHN_FIFO_NR_CHANNELS,
  EVTCHN_FIFO_PENDING,
  EVTCHN_FIFO_PRIORITY_DEFAULT,
  EVTCHN_FIFO_PRIORITY_MIN,
  XEN_EINVAL,
  XEN_ENOENT,
  XEN_ENOSPC,
  XEN_EOPNOTSUPP,
  evtchn_fifo_control_block,
} from "@vtlab/xen-public";
import type { Domain } from "../hypervisor.js";
import type { EventChannels, EvtchnPortOps } from "./event_channel.js";
import { domainRamFrame, type SharedInfo } from "./shared_info.js";
import { holdFrameForDomain } from "./p2m.js";

/** EVTCHN_FIFO_EVENT_WORDS_PER_PAGE: 4-byte event words in a page. */
export const EVTCHN_FIFO_EVENT_WORDS_PER_PAGE = PAGE_SIZE / 4;
/** EVTCHN_FIFO_MAX_EVENT_ARRAY_PAGES. */
export const EVTCHN_FIFO_MAX_EVENT_ARRAY_PAGES = EVTCHN_FIFO_NR_CHANNELS / EVTCHN_FIFO_EVENT_WORDS_PER_PAGE;
/** Control-block offsets must be 8-byte aligned. */
const CONTROL_BLOCK_ALIGN = 8;

const P = (1 << EVTCHN_FIFO_PENDING) >>> 0;
const M = 1 << EVTCHN_FIFO_MASKED;
const L = 1 << EVTCHN_FIFO_LINKED;

/** What the FIFO ports need from their domain. */
export interface FifoHost {
  readonly memory: MachineMemory;
  readonly vcpuCount: number;
  /** vcpu_mark_events_pending. */
  markEventsPending(vcpuId: number): void;
  /** The machine address of guest frame `gfn` if it is the domain's own writable RAM (map_guest_page), else undefined. */
  guestFrame(gfnLo: number, gfnHi: number): number | undefined;
  /** The hypervisor wrote into this machine frame (the vCPUs drop code decoded from it). */
  written(frame: number): void;
  /** vcpu_info.evtchn_upcall_pending (FIFO uses the same upcall as 2-level). */
  upcallPending(vcpuId: number): boolean;
}

/** The FIFO host of a guest domain: its memory, vCPUs, upcall and own RAM frames. */
export function fifoHostOf(d: Domain): FifoHost {
  return {
    memory: d.xen.sharedInfo.memory,
    get vcpuCount() {
      return d.vcpus.length;
    },
    markEventsPending: (vcpuId) => d.xen.upcall.markEventsPending(vcpuId),
    guestFrame: (lo, hi) => {
      // map_guest_page's page reference: the frame stays out of the allocator until the domain is destroyed (p2m.ts).
      const f = domainRamFrame(d, lo, hi);
      if (f !== undefined) holdFrameForDomain(d, (f / PAGE_SIZE) as Mfn);
      return f;
    },
    written: (frame) => d.host.machineFrameWritten(frame),
    upcallPending: (vcpuId) => d.xen.upcallPending(vcpuId),
  };
}

/** The FIFO port operations of one domain (Xen's evtchn_port_ops_fifo and struct evtchn_fifo_*). */
export class FifoPorts implements EvtchnPortOps {
  table: EventChannels | undefined = undefined;
  /** Machine addresses of the event-array pages (event_array[]). */
  private readonly arrayPages: number[] = [];
  /** Machine address of each vCPU's control block, or -1. */
  private readonly controlBlock: Float64Array;
  /** Each vCPU's queue tails: vcpu * EVTCHN_FIFO_MAX_QUEUES + priority (0 = empty). */
  private readonly tails: Int32Array;
  // Per port (struct evtchn's FIFO fields).
  private readonly priority = new Uint8Array(EVTCHN_FIFO_NR_CHANNELS).fill(EVTCHN_FIFO_PRIORITY_DEFAULT);
  private readonly lastVcpu = new Uint16Array(EVTCHN_FIFO_NR_CHANNELS);
  private readonly lastPriority = new Uint8Array(EVTCHN_FIFO_NR_CHANNELS);
  /** evtchn->pending: set while the port had no event word. */
  private readonly savedPending = new Uint8Array(EVTCHN_FIFO_NR_CHANNELS);

  constructor(private readonly host: FifoHost) {
    const n = Math.max(1, host.vcpuCount);
    this.controlBlock = new Float64Array(n).fill(-1);
    this.tails = new Int32Array(n * EVTCHN_FIFO_MAX_QUEUES);
  }

  /** d->evtchn_fifo->num_evtchns: ports that have an event word. */
  get numEvtchns(): number {
    return this.arrayPages.length * EVTCHN_FIFO_EVENT_WORDS_PER_PAGE;
  }

  /** The machine address of `port`'s event word, or undefined (evtchn_fifo_word_from_port). */
  wordAddress(port: number): number | undefined {
    if (!(port >= 0 && port < this.numEvtchns)) return undefined;
    return this.arrayPages[Math.floor(port / EVTCHN_FIFO_EVENT_WORDS_PER_PAGE)]! + (port % EVTCHN_FIFO_EVENT_WORDS_PER_PAGE) * 4;
  }

  /** The machine address of vCPU `vcpuId`'s control block, or undefined. */
  controlBlockAddress(vcpuId: number): number | undefined {
    const a = this.controlBlock[vcpuId];
    return a === undefined || a < 0 ? undefined : a;
  }

  private read(hpa: number): number {
    const w = this.host.memory.read32(hpa);
    return typeof w === "number" ? w >>> 0 : 0;
  }

  private write(hpa: number, value: number): void {
    this.host.memory.write32(hpa, value >>> 0);
    this.host.written(Math.floor(hpa / PAGE_SIZE));
  }

  /** guest_test_and_set_bit on a 32-bit word; returns the old bit. */
  private testAndSet(hpa: number, mask: number): boolean {
    const w = this.read(hpa);
    if ((w & mask) !== 0) return true;
    this.write(hpa, w | mask);
    return false;
  }

  // ---- evtchn_port_ops ----

  /** evtchn_fifo_set_pending. */
  setPending(vcpuId: number, port: number): void {
    const word = this.wordAddress(port);
    if (word === undefined) {
      this.savedPending[port] = 1; // the event array page may not exist yet
      return;
    }
    const cb = this.controlBlockAddress(vcpuId);
    // No control block: the guest must not unmask before it sets one up, so the event is dropped.
    if (cb === undefined) return;
    const prio = this.priority[port]!;
    const q = vcpuId * EVTCHN_FIFO_MAX_QUEUES + prio;
    let oldQ = this.lastVcpu[port]! * EVTCHN_FIFO_MAX_QUEUES + this.lastPriority[port]!;
    const newlyPending = !this.testAndSet(word, P);
    if (newlyPending && this.table !== undefined) this.table.counters.eventsDelivered++;
    let linked = true;
    const w = this.read(word);
    if ((w & M) === 0 && !this.testAndSet(word, L)) {
      // If this event was a tail, its old queue is empty now.
      if (this.tails[oldQ] === port) this.tails[oldQ] = 0;
      if (oldQ !== q) {
        this.lastVcpu[port] = vcpuId;
        this.lastPriority[port] = prio;
        oldQ = q;
      }
      // Link the tail to this port iff the tail is still linked; else the queue is empty.
      linked = false;
      const tail = this.tails[q]!;
      if (tail !== 0) {
        const tailWord = this.wordAddress(tail);
        if (tailWord !== undefined) linked = this.setLink(tailWord, port);
      }
      if (!linked) this.write(cb + evtchn_fifo_control_block.head + 4 * prio, port);
      this.tails[q] = port;
    }
    if (!linked && !this.testAndSet(cb + evtchn_fifo_control_block.ready, 1 << prio)) this.host.markEventsPending(vcpuId);
    if (newlyPending) this.table?.checkPollers?.(port);
  }

  /** evtchn_fifo_set_link: set LINK iff the word is still LINKED (the cmpxchg cannot race here). */
  private setLink(word: number, link: number): boolean {
    const w = this.read(word);
    if ((w & L) === 0) return false;
    this.write(word, ((w & ~EVTCHN_FIFO_LINK_MASK) | link) >>> 0);
    return true;
  }

  clearPending(port: number): void {
    const word = this.wordAddress(port);
    if (word === undefined) return;
    const w = this.read(word);
    if ((w & P) !== 0) this.write(word, w & ~P);
  }

  unmask(vcpuId: number, port: number): void {
    const word = this.wordAddress(port);
    if (word === undefined) return;
    const w = this.read(word);
    if ((w & M) !== 0) this.write(word, w & ~M);
    if ((this.read(word) & P) !== 0) this.setPending(vcpuId, port); // relink if pending
  }

  isPending(port: number): boolean {
    const word = this.wordAddress(port);
    return word !== undefined && (this.read(word) & P) !== 0;
  }

  isMasked(port: number): boolean {
    const word = this.wordAddress(port);
    return word === undefined || (this.read(word) & M) !== 0;
  }

  /** evtchn_fifo_is_busy: still LINKED on a queue. */
  isBusy(port: number): boolean {
    const word = this.wordAddress(port);
    return word !== undefined && (this.read(word) & L) !== 0;
  }

  upcallPending(vcpuId: number): boolean {
    return this.host.upcallPending(vcpuId);
  }

  initPort(port: number): void {
    this.priority[port] = EVTCHN_FIFO_PRIORITY_DEFAULT;
  }

  setPriority(port: number, priority: number): number {
    if (priority > EVTCHN_FIFO_PRIORITY_MIN) return -XEN_EINVAL;
    this.priority[port] = priority;
    return 0;
  }

  // ---- init_control / expand_array ----

  /** map_control_block for vCPU `vcpuId`: 0 or -errno. */
  mapControlBlock(vcpuId: number, gfnLo: number, gfnHi: number, offset: number): number {
    if (this.controlBlockAddress(vcpuId) !== undefined) return -XEN_EINVAL;
    const frame = this.host.guestFrame(gfnLo, gfnHi);
    if (frame === undefined) return -XEN_EINVAL;
    this.controlBlock[vcpuId] = frame + offset;
    return 0;
  }

  /** add_page_to_event_array: 0 or -errno; events that were pending without a word are raised now. */
  addPage(gfnLo: number, gfnHi: number): number {
    if (this.arrayPages.length >= EVTCHN_FIFO_MAX_EVENT_ARRAY_PAGES) return -XEN_ENOSPC;
    const frame = this.host.guestFrame(gfnLo, gfnHi);
    if (frame === undefined) return -XEN_EINVAL;
    const first = this.numEvtchns;
    this.arrayPages.push(frame);
    const t = this.table;
    if (t === undefined) return 0;
    for (let port = first; port < this.numEvtchns && t.portIsValid(port); port++) {
      if (this.savedPending[port] !== 0) this.setPending(t.notifyVcpuOf(port), port);
    }
    return 0;
  }

  /** setup_ports: ports bound under 2-level keep their pending state (saved until a word exists). */
  setupPorts(si: SharedInfo, prevPorts: number): void {
    const t = this.table;
    if (t === undefined) return;
    for (let port = 1; port < prevPorts && t.portIsValid(port); port++) {
      if (si.testPending(port)) this.savedPending[port] = 1;
      this.priority[port] = EVTCHN_FIFO_PRIORITY_DEFAULT;
    }
  }
}

/**
 * EVTCHNOP_init_control (evtchn_fifo_init_control) for the domain whose table is `table`:
 * checks in Xen's order (no such vCPU -ENOENT; a control block crossing the page or misaligned
 * -EINVAL), then on the first call switches the domain to FIFO (the 2-level pending bits are
 * kept as pending events) and maps the vCPU's control block (already mapped, or not the
 * domain's RAM: -EINVAL; on that failure the domain stays 2-level). 0 or -errno; the caller
 * copies link_bits = EVTCHN_FIFO_LINK_BITS back on success.
 */
export function evtchnFifoInitControl(table: EventChannels, host: FifoHost, si: SharedInfo, vcpu: number, gfnLo: number, gfnHi: number, offset: number): number {
  if (!(vcpu >= 0 && vcpu < host.vcpuCount)) return -XEN_ENOENT;
  if (offset > PAGE_SIZE - evtchn_fifo_control_block.SIZEOF) return -XEN_EINVAL;
  if (offset % CONTROL_BLOCK_ALIGN !== 0) return -XEN_EINVAL;
  if (table.fifo) return (table.ops as FifoPorts).mapControlBlock(vcpu, gfnLo, gfnHi, offset);
  const prevPorts = table.maxPorts;
  const fifo = new FifoPorts(host);
  fifo.table = table;
  const rc = fifo.mapControlBlock(vcpu, gfnLo, gfnHi, offset);
  if (rc < 0) return rc;
  table.switchToFifo(fifo, EVTCHN_FIFO_NR_CHANNELS);
  fifo.setupPorts(si, prevPorts);
  return 0;
}

/** EVTCHNOP_expand_array: -EOPNOTSUPP before init_control; else add_page_to_event_array. */
export function evtchnFifoExpandArray(table: EventChannels, gfnLo: number, gfnHi: number): number {
  if (!table.fifo) return -XEN_EOPNOTSUPP;
  return (table.ops as FifoPorts).addPage(gfnLo, gfnHi);
}
