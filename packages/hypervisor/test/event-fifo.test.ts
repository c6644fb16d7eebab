/**
 * The FIFO event-channel ABI (xen/event_fifo.ts): EVTCHNOP_init_control, expand_array,
 * set_priority; events linked on per-vCPU priority queues in guest memory, masking, busy ports,
 * the switch from and back to 2-level; on EPT and on shadow, with hostile guest-written words.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { EVTCHN_FIFO_EVENT_WORDS_PER_PAGE, type Domain, type Hypervisor } from "@vtlab/hypervisor";
import {
  DOMID_SELF,
  EVTCHNOP_bind_ipi,
  EVTCHNOP_close,
  EVTCHNOP_expand_array,
  EVTCHNOP_init_control,
  EVTCHNOP_reset,
  EVTCHNOP_send,
  EVTCHNOP_set_priority,
  EVTCHNOP_unmask,
  EVTCHN_FIFO_LINKED,
  EVTCHN_FIFO_LINK_BITS,
  EVTCHN_FIFO_MASKED,
  EVTCHN_FIFO_PENDING,
  HYPERVISOR_event_channel_op,
  XEN_EACCES,
  XEN_EINVAL,
  XEN_ENOENT,
  XEN_EOPNOTSUPP,
  evtchn_bind_ipi,
  evtchn_close,
  evtchn_expand_array,
  evtchn_fifo_control_block,
  evtchn_init_control,
  evtchn_reset,
  evtchn_send,
  evtchn_set_priority,
  evtchn_unmask,
  vcpu_info,
} from "@vtlab/xen-public";
import { ARG, MMIO, call, get, machine, page, put, sameBytes, struct, u32 } from "./xen-harness.js";

const EC = HYPERVISOR_event_channel_op;
const CB_GFN = 0x300; // the control block's page (offset CB_OFF)
const CB_OFF = 0x40;
const ARRAY_GFN = 0x301; // the first event-array page
const P = 2 ** EVTCHN_FIFO_PENDING;
const M = 1 << EVTCHN_FIFO_MASKED;
const L = 1 << EVTCHN_FIFO_LINKED;

function fifo(hv: Hypervisor, d: Domain) {
  const op = (cmd: number, bytes: Uint8Array) => {
    put(hv, d, ARG, bytes);
    return call(hv, d, EC, [cmd, ARG]);
  };
  return {
    init: (vcpu = 0, gfn: number | bigint = CB_GFN, offset = CB_OFF) =>
      op(EVTCHNOP_init_control, struct(evtchn_init_control.SIZEOF, [[evtchn_init_control.control_gfn, 8, gfn], [evtchn_init_control.offset, 4, offset], [evtchn_init_control.vcpu, 4, vcpu]])),
    expand: (gfn: number | bigint) => op(EVTCHNOP_expand_array, struct(evtchn_expand_array.SIZEOF, [[evtchn_expand_array.array_gfn, 8, gfn]])),
    priority: (port: number, prio: number) => op(EVTCHNOP_set_priority, struct(evtchn_set_priority.SIZEOF, [[evtchn_set_priority.port, 4, port], [evtchn_set_priority.priority, 4, prio]])),
    bindIpi: (vcpu = 0) => {
      const rc = op(EVTCHNOP_bind_ipi, struct(evtchn_bind_ipi.SIZEOF, [[evtchn_bind_ipi.vcpu, 4, vcpu]]));
      return rc === 0 ? u32(get(hv, d, ARG, 8), evtchn_bind_ipi.port) : rc;
    },
    send: (port: number) => op(EVTCHNOP_send, struct(evtchn_send.SIZEOF, [[evtchn_send.port, 4, port]])),
    unmask: (port: number) => op(EVTCHNOP_unmask, struct(evtchn_unmask.SIZEOF, [[evtchn_unmask.port, 4, port]])),
    close: (port: number) => op(EVTCHNOP_close, struct(evtchn_close.SIZEOF, [[evtchn_close.port, 4, port]])),
    reset: () => op(EVTCHNOP_reset, struct(evtchn_reset.SIZEOF, [[evtchn_reset.dom, 2, DOMID_SELF]])),
    /** The event word of `port` (in the first array page). */
    word: (port: number) => u32(get(hv, d, ARRAY_GFN * 4096 + 4 * port, 4), 0),
    setWord: (port: number, w: number) => put(hv, d, ARRAY_GFN * 4096 + 4 * port, struct(4, [[0, 4, w]])),
    head: (prio: number) => u32(get(hv, d, CB_GFN * 4096 + CB_OFF + evtchn_fifo_control_block.head + 4 * prio, 4), 0),
    ready: () => u32(get(hv, d, CB_GFN * 4096 + CB_OFF + evtchn_fifo_control_block.ready, 4), 0),
    upcall: (vcpu = 0) => hv.memory.read8(d.xen.sharedInfo.vcpuInfoHpa(vcpu)! + vcpu_info.evtchn_upcall_pending),
    clearUpcall: (vcpu = 0) => hv.memory.write8(d.xen.sharedInfo.vcpuInfoHpa(vcpu)! + vcpu_info.evtchn_upcall_pending, 0),
  };
}

describe.each([true, false])("the FIFO ABI (hap=%s)", (hap) => {
  it("init_control: Xen's checks, link_bits back, the switch to FIFO; expand_array and a second control block", () => {
    const { hv, domains: [d] } = machine({ hap, vcpus: 2 });
    const f = fifo(hv, d!);
    expect(f.expand(ARRAY_GFN)).toBe(-XEN_EOPNOTSUPP);
    expect(f.init(2)).toBe(-XEN_ENOENT);
    expect(f.init(0, CB_GFN, 4096 - evtchn_fifo_control_block.SIZEOF + 8)).toBe(-XEN_EINVAL); // crosses the page
    expect(f.init(0, CB_GFN, 4)).toBe(-XEN_EINVAL); // not 8-byte aligned
    expect(f.init(0, MMIO / 4096)).toBe(-XEN_EINVAL); // not RAM
    expect(f.init(0, 1n << 52n)).toBe(-XEN_EINVAL);
    expect(d!.xen.evtchn.fifo).toBe(false); // still 2-level after a failure
    expect(f.init(0)).toBe(0);
    expect(get(hv, d!, ARG, evtchn_init_control.SIZEOF)[evtchn_init_control.link_bits]).toBe(EVTCHN_FIFO_LINK_BITS);
    expect(d!.xen.evtchn.fifo).toBe(true);
    expect(f.init(0)).toBe(-XEN_EINVAL); // this vCPU has one
    expect(f.init(1, CB_GFN, CB_OFF + 0x100)).toBe(0);
    expect(f.expand(MMIO / 4096)).toBe(-XEN_EINVAL);
    expect(f.expand(ARRAY_GFN)).toBe(0);
    expect(f.priority(1, 3)).toBe(-XEN_EACCES); // valid (bucket 0) but not bound: evtchn_usable
    const p = f.bindIpi();
    expect(f.priority(p, 3)).toBe(0);
    expect(f.priority(p, 16)).toBe(-XEN_EINVAL); // past EVTCHN_FIFO_PRIORITY_MIN
    expect(f.priority(4096, 1)).toBe(-XEN_EINVAL);
  });

  it("events are linked on the vCPU's queue: head, LINK, READY and one upcall", () => {
    const { hv, domains: [d] } = machine({ hap });
    const f = fifo(hv, d!);
    expect(f.init()).toBe(0);
    expect(f.expand(ARRAY_GFN)).toBe(0);
    const p1 = f.bindIpi();
    const p2 = f.bindIpi();
    expect([p1, p2]).toEqual([1, 2]);
    expect(f.send(p1)).toBe(0);
    expect(f.word(p1) >>> 0).toBe((P | L) >>> 0);
    expect(f.head(7)).toBe(p1); // EVTCHN_FIFO_PRIORITY_DEFAULT
    expect(f.ready()).toBe(1 << 7);
    expect(f.upcall()).toBe(1);
    expect(d!.xen.evtchn.isPending(p1)).toBe(true);
    expect(d!.xen.evtchn.upcallPending(0)).toBe(true);
    f.clearUpcall();
    expect(f.send(p2)).toBe(0);
    expect(f.word(p1) >>> 0).toBe((P | L | p2) >>> 0); // p1 links to p2
    expect(f.word(p2) >>> 0).toBe((P | L) >>> 0);
    expect(f.head(7)).toBe(p1);
    expect(f.upcall()).toBe(0); // READY was already set: no new upcall
    expect(f.send(p1)).toBe(0); // pending and linked: nothing changes
    expect(f.word(p1) >>> 0).toBe((P | L | p2) >>> 0);
    expect(d!.xen.stats.eventsDelivered).toBe(2);
    // The guest consumes the queue (clears READY, head, the words); a new event starts a new queue.
    put(hv, d!, CB_GFN * 4096 + CB_OFF, new Uint8Array(evtchn_fifo_control_block.SIZEOF));
    f.setWord(p1, 0);
    f.setWord(p2, 0);
    expect(f.priority(p2, 2)).toBe(0);
    expect(f.send(p2)).toBe(0);
    expect(f.head(2)).toBe(p2);
    expect(f.ready()).toBe(1 << 2);
    expect(f.upcall()).toBe(1);
  });

  it("masking, unmask relinks, events before their array page, busy ports, the callback vector", () => {
    const { hv, domains: [d] } = machine({ hap });
    const f = fifo(hv, d!);
    expect(d!.xen.setHvmParam(0, (2n << 56n) | 0xf3n)).toBe(0); // HVM_PARAM_CALLBACK_IRQ: vector 0xf3
    expect(f.init()).toBe(0);
    const p = f.bindIpi();
    expect(f.send(p)).toBe(0); // no event array yet: kept as pending
    expect(f.ready()).toBe(0);
    expect(d!.xen.evtchn.isPending(p)).toBe(false);
    expect(f.expand(ARRAY_GFN)).toBe(0); // raised now
    expect(f.word(p) >>> 0).toBe((P | L) >>> 0);
    expect(f.head(7)).toBe(p);
    expect(d!.xen.intrAssist(d!.vcpus[0]!)).toBe(0xf3);
    // A masked event is pending but not linked; unmask links it.
    const q = f.bindIpi();
    f.setWord(q, M);
    expect(f.send(q)).toBe(0);
    expect(f.word(q) >>> 0).toBe((P | M) >>> 0);
    expect(f.unmask(q)).toBe(0);
    expect(f.word(q) >>> 0).toBe((P | L) >>> 0);
    expect(f.word(p) >>> 0).toBe((P | L | q) >>> 0);
    // A closed port still LINKED on a queue is busy: the next bind skips it until the guest unlinks it.
    expect(f.close(p)).toBe(0);
    expect(f.word(p) & P).toBe(0); // closing clears PENDING
    expect(f.bindIpi()).toBe(3);
    f.setWord(p, 0);
    expect(f.bindIpi()).toBe(p);
  });

  it("2-level pending bits carry over to FIFO; EVTCHNOP_reset goes back to 2-level", () => {
    const { hv, domains: [d] } = machine({ hap });
    const f = fifo(hv, d!);
    const p = f.bindIpi();
    f.send(p); // 2-level: shared_info's pending bit
    expect(f.init()).toBe(0);
    expect(f.expand(ARRAY_GFN)).toBe(0);
    expect(f.word(p) >>> 0).toBe((P | L) >>> 0);
    expect(f.reset()).toBe(0);
    expect(d!.xen.evtchn.fifo).toBe(false);
    expect(d!.xen.evtchn.maxPorts).toBe(4096);
    expect(f.init()).toBe(0); // a new control block mapping after the reset
    expect(d!.xen.evtchn.fifo).toBe(true);
  });

  it("hostile words in the event array and control block: never throws, writes only there and in vcpu_info", () => {
    const { hv, domains: [d] } = machine({ hap, vcpus: 2 });
    const f = fifo(hv, d!);
    expect(f.init(0)).toBe(0);
    expect(f.init(1, CB_GFN, CB_OFF + 0x100)).toBe(0);
    expect(f.expand(ARRAY_GFN)).toBe(0);
    const ports = [f.bindIpi(0), f.bindIpi(1), f.bindIpi(0), f.bindIpi(1)];
    const before = page(hv, d!.ramHpa(0x302 * 4096)!);
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 64, maxLength: 64 }),
        fc.uint8Array({ minLength: 0x200, maxLength: 0x200 }),
        fc.array(fc.tuple(fc.nat(3), fc.constantFrom("send", "unmask", "close", "bind", "prio")), { maxLength: 30 }),
        (words, cb, actions) => {
          put(hv, d!, ARRAY_GFN * 4096, words);
          put(hv, d!, CB_GFN * 4096, cb);
          const cbPage = page(hv, d!.ramHpa(CB_GFN * 4096)!);
          const arrayPage = page(hv, d!.ramHpa(ARRAY_GFN * 4096)!);
          for (const [i, what] of actions) {
            const p = ports[i]!;
            const rc = what === "send" ? f.send(p) : what === "unmask" ? f.unmask(p) : what === "close" ? f.close(p) : what === "bind" ? f.bindIpi(i & 1) : f.priority(p, i * 5);
            expect(rc === 0 || rc === -XEN_EINVAL || rc === -XEN_EACCES || rc > 0, `${what} ${p} -> ${rc}`).toBe(true);
          }
          // Only the two control blocks changed in their page, and only the words of ports in use in the array.
          const cbAfter = page(hv, d!.ramHpa(CB_GFN * 4096)!);
          const inBlock = (k: number) => [CB_OFF, CB_OFF + 0x100].some((o) => k >= o && k < o + evtchn_fifo_control_block.SIZEOF);
          const changed: number[] = [];
          for (let k = 0; k < 4096; k++) if (!inBlock(k) && cbAfter[k] !== cbPage[k]) changed.push(k);
          expect(changed).toEqual([]);
          const arrayAfter = page(hv, d!.ramHpa(ARRAY_GFN * 4096)!);
          const used = 4 * d!.xen.evtchn.validPorts;
          expect(used).toBeLessThanOrEqual(EVTCHN_FIFO_EVENT_WORDS_PER_PAGE * 4);
          expect(sameBytes(arrayAfter.subarray(used), arrayPage.subarray(used))).toBe(true);
        },
      ),
      { numRuns: 60, seed: 5 },
    );
    expect(page(hv, d!.ramHpa(0x302 * 4096)!)).toEqual(before); // the page after the array is untouched
  });
});
