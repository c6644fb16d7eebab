/**
 * Xen's per-vCPU timers from 32-bit guests on EPT and shadow: VCPUOP_set_singleshot_timer
 * (VIRQ_TIMER at the deadline, -ETIME for a past one with VCPU_SSHOTTMR_future), the periodic
 * timer, HYPERVISOR_set_timer_op, SCHEDOP_poll with and without a timeout, SCHEDOP_block woken
 * by the timer's event; and bounds: far deadlines never move the clock, a periodic timer into a
 * blocked vCPU does not spin the idle host, a guest re-arming in a loop pays for it itself.
 *
 * The host clock runs at 2 GHz with one instruction a cycle: 1 ms is 2,000,000 cycles. Each
 * VIRQ_TIMER send is recorded at the host cycle it happens (the event-channel sendVirq wrapped),
 * so the tests see exactly when a timer fired.
 */
import { describe, expect, it } from "vitest";
import { Hypervisor, type Domain } from "@vtlab/hypervisor";
import {
  EVTCHNOP_alloc_unbound,
  EVTCHNOP_bind_virq,
  SCHEDOP_block,
  SCHEDOP_poll,
  VCPUOP_set_periodic_timer,
  VCPUOP_set_singleshot_timer,
  VCPUOP_stop_periodic_timer,
  VCPUOP_stop_singleshot_timer,
  VCPU_SSHOTTMR_future,
  VIRQ_TIMER,
  XEN_EFAULT,
  XEN_EINVAL,
  XEN_ENOENT,
  XEN_ETIME,
  compat_sched_poll,
  compat_vcpu_set_singleshot_timer,
  evtchn_alloc_unbound,
  evtchn_bind_virq,
  vcpu_set_periodic_timer,
} from "@vtlab/xen-public";
import { Asm, DATA, HAPS, OUT, booted, image, mmu, page, struct, type Booted } from "./sched-guest.js";

const MS = 1_000_000; // ns
const CYCLES_PER_NS = 2;

// The data page: a VIRQ_TIMER binding, an unbound port, the polled ports, poll and timer structs.
const BIND = DATA;
const UNBOUND = DATA + 0x20;
const PORTS = DATA + 0x40; // [VIRQ port, unbound port]
const POLL = DATA + 0x100; // poll on the VIRQ port
const POLL_UNBOUND = DATA + 0x120; // poll on the unbound port
const POLL_BOTH = DATA + 0x140; // poll on both, no timeout
const SSHOT = DATA + 0x200;
const SSHOT2 = DATA + 0x220;
const PERIOD = DATA + 0x240;

const sshot = (timeout: number, flags: number) =>
  struct(compat_vcpu_set_singleshot_timer.SIZEOF, [[compat_vcpu_set_singleshot_timer.timeout_abs_ns, 8, timeout], [compat_vcpu_set_singleshot_timer.flags, 4, flags]]);
const poll = (ports: number, nr: number, timeout = 0) =>
  struct(compat_sched_poll.SIZEOF, [[compat_sched_poll.ports, 4, ports], [compat_sched_poll.nr_ports, 4, nr], [compat_sched_poll.timeout, 8, timeout]]);
const period = (ns: number) => struct(vcpu_set_periodic_timer.SIZEOF, [[vcpu_set_periodic_timer.period_ns, 8, ns]]);

interface Setup {
  /** The single-shot deadlines (ns) and flags of SSHOT and SSHOT2, the periodic period, the poll timeouts. */
  sshot?: readonly [number, number];
  sshot2?: readonly [number, number];
  period?: number;
  pollTimeout?: number;
}

function data(s: Setup): Uint8Array {
  return page([
    [BIND - DATA, struct(evtchn_bind_virq.SIZEOF, [[evtchn_bind_virq.virq, 4, VIRQ_TIMER], [evtchn_bind_virq.vcpu, 4, 0]])],
    [UNBOUND - DATA, struct(evtchn_alloc_unbound.SIZEOF, [[evtchn_alloc_unbound.dom, 2, 0x7ff0], [evtchn_alloc_unbound.remote_dom, 2, 0]])],
    [POLL - DATA, poll(PORTS, 1, s.pollTimeout ?? 0)],
    [POLL_UNBOUND - DATA, poll(PORTS + 4, 1, s.pollTimeout ?? 0)],
    [POLL_BOTH - DATA, poll(PORTS, 2)],
    [SSHOT - DATA, sshot(...(s.sshot ?? [MS, 0]))],
    [SSHOT2 - DATA, sshot(...(s.sshot2 ?? [MS, 0]))],
    [PERIOD - DATA, period(s.period ?? MS)],
  ]);
}

/** The guest's prologue: bind VIRQ_TIMER on vCPU 0 and allocate an unbound port; PORTS = [virq port, unbound port]. */
function prologue(): Asm {
  return new Asm()
    .evtchnOp(EVTCHNOP_bind_virq, BIND)
    .copy32(BIND + evtchn_bind_virq.port, PORTS)
    .evtchnOp(EVTCHNOP_alloc_unbound, UNBOUND)
    .copy32(UNBOUND + evtchn_alloc_unbound.port, PORTS + 4);
}

interface Timed extends Booted {
  /** Host cycles at each VIRQ_TIMER send. */
  readonly virqs: number[];
}

/** Boot on a fresh host (with a spinning second domain when `busy`), record VIRQ_TIMER sends, run. */
function boot(code: Asm, s: Setup, options: { hap: boolean; busy?: boolean; maxInstructions?: number; slice?: number }): Timed {
  const hv = new Hypervisor({ memoryMiB: 64, sliceInstructions: options.slice ?? 20_000 });
  const d = hv.createDomain({ name: "t", memoryMiB: 8, hap: options.hap, kernel: image(code, data(s)) });
  if (options.busy === true) hv.createDomain({ name: "busy", memoryMiB: 8, hap: options.hap, kernel: image(new Asm().forever()) });
  const virqs = record(hv, d);
  hv.run({ maxInstructions: options.maxInstructions ?? 10_000_000, until: () => d.state !== "running" });
  return { ...booted(hv, d), virqs };
}

function record(hv: Hypervisor, d: Domain): number[] {
  const virqs: number[] = [];
  const evtchn = d.xen.evtchn;
  const send = evtchn.sendVirq.bind(evtchn);
  evtchn.sendVirq = (vcpu: number, virq: number) => {
    if (virq === VIRQ_TIMER) virqs.push(hv.clock.cycles);
    send(vcpu, virq);
  };
  return virqs;
}

describe("VCPUOP_set_singleshot_timer", () => {
  for (const hap of HAPS) {
    for (const busy of [false, true]) {
      it(`sends VIRQ_TIMER at the deadline; a vCPU polling the port wakes then (${mmu(hap)}, host ${busy ? "busy" : "idle"})`, () => {
        const code = prologue().vcpuOp(VCPUOP_set_singleshot_timer, 0, SSHOT).storeEax(OUT).schedOp(SCHEDOP_poll, POLL).storeEax(OUT + 4).rdtsc(OUT + 8).exit(0x51);
        const g = boot(code, { sshot: [MS, VCPU_SSHOTTMR_future] }, { hap, busy });
        expect([g.i32(OUT), g.i32(OUT + 4)]).toEqual([0, 0]);
        // Exactly at 1 ms: the idle host jumps there; a busy host's run is cut at that cycle.
        expect(g.virqs).toEqual([MS * CYCLES_PER_NS]);
        expect(g.d.vcpus[0]!.xenTimers.timerEvents).toBe(1);
        const woke = g.u64(OUT + 8);
        expect(woke).toBeGreaterThanOrEqual(MS * CYCLES_PER_NS);
        expect(woke).toBeLessThan(MS * CYCLES_PER_NS + (busy ? 20_000 + 2_000 : 100));
        expect(g.d.exitCode).toBe(0x51);
      });
    }
  }

  it("a deadline in the past: -ETIME with VCPU_SSHOTTMR_future (Xen 4.17.0), else the event comes at once", () => {
    const code = prologue()
      .spin(100)
      .vcpuOp(VCPUOP_set_singleshot_timer, 0, SSHOT)
      .storeEax(OUT)
      .vcpuOp(VCPUOP_set_singleshot_timer, 0, SSHOT2)
      .storeEax(OUT + 4)
      .rdtsc(OUT + 8)
      .schedOp(SCHEDOP_poll, POLL)
      .storeEax(OUT + 16)
      .exit(0x52);
    for (const hap of HAPS) {
      const g = boot(code, { sshot: [50, VCPU_SSHOTTMR_future], sshot2: [50, 0] }, { hap });
      expect([g.i32(OUT), g.i32(OUT + 4), g.i32(OUT + 16)]).toEqual([-XEN_ETIME, 0, 0]);
      expect(g.virqs.length).toBe(1);
      expect(g.virqs[0]).toBeLessThan(g.u64(OUT + 8) + 10); // fired right after the call
      expect(g.d.vcpus[0]!.wakeups).toBe(0); // the poll found the port pending: no blocking
    }
  });

  it("a deadline with bit 63 set is a negative s_time_t: no -ETIME (the compare is unsigned), and it fires at once", () => {
    const code = prologue().vcpuOp(VCPUOP_set_singleshot_timer, 0, SSHOT).storeEax(OUT).schedOp(SCHEDOP_poll, POLL).storeEax(OUT + 4).exit(0x53);
    const g = boot(code, { sshot: [2 ** 63, VCPU_SSHOTTMR_future] }, { hap: true });
    expect([g.i32(OUT), g.i32(OUT + 4)]).toEqual([0, 0]);
    expect(g.virqs.length).toBe(1);
    expect(g.hv.clock.nanoseconds).toBeLessThan(0.1 * MS);
  });

  it("stop_singleshot_timer cancels it; both ops are for the calling vCPU only; bad vCPU or struct: Xen's errnos", () => {
    const code = prologue()
      .vcpuOp(VCPUOP_set_singleshot_timer, 0, SSHOT)
      .vcpuOp(VCPUOP_stop_singleshot_timer, 0, 0)
      .storeEax(OUT)
      .vcpuOp(VCPUOP_set_singleshot_timer, 1, SSHOT)
      .storeEax(OUT + 4)
      .vcpuOp(VCPUOP_stop_singleshot_timer, 1, 0)
      .storeEax(OUT + 8)
      .vcpuOp(VCPUOP_set_singleshot_timer, 5, SSHOT)
      .storeEax(OUT + 12)
      .vcpuOp(VCPUOP_set_singleshot_timer, 0, 0x7ff_fffc)
      .storeEax(OUT + 16)
      .schedOp(SCHEDOP_poll, POLL)
      .storeEax(OUT + 20)
      .rdtsc(OUT + 24)
      .exit(0x54);
    for (const hap of HAPS) {
      const hv = new Hypervisor({ memoryMiB: 64 });
      const d = hv.createDomain({ name: "t", memoryMiB: 8, hap, vcpus: 2, kernel: image(code, data({ pollTimeout: 3 * MS })) });
      const virqs = record(hv, d);
      hv.run({ maxInstructions: 10_000_000 });
      const g = booted(hv, d);
      expect([0, 4, 8, 12, 16, 20].map((o) => g.i32(OUT + o))).toEqual([0, -XEN_EINVAL, -XEN_EINVAL, -XEN_ENOENT, -XEN_EFAULT, 0]);
      expect(virqs).toEqual([]);
      expect(g.u64(OUT + 24)).toBeGreaterThanOrEqual(3 * MS * CYCLES_PER_NS); // the poll timed out
    }
  });

  it("a deadline 2^62 ns ahead never fires and does not move the idle host's clock", () => {
    const code = prologue().vcpuOp(VCPUOP_set_singleshot_timer, 0, SSHOT).schedOp(SCHEDOP_poll, POLL).exit(0x55);
    const hv = new Hypervisor({ memoryMiB: 64 });
    const d = hv.createDomain({ name: "t", memoryMiB: 8, kernel: image(code, data({ sshot: [2 ** 62, 0] })) });
    const virqs = record(hv, d);
    expect(hv.run({ maxInstructions: 10_000_000 }).reason).toBe("idle");
    expect(virqs).toEqual([]);
    expect(hv.clock.nanoseconds).toBeLessThan(MS);
    expect(d.vcpus[0]!.blocked).toBe(true);
  });
});

describe("VCPUOP_set_periodic_timer", () => {
  for (const hap of HAPS) {
    it(`sends VIRQ_TIMER every period while the guest runs; stop_periodic_timer stops it (${mmu(hap)})`, () => {
      // 2.75 M instructions of spinning (about 2.75 ms... plus the other half), then stop, spin on.
      const code = prologue().vcpuOp(VCPUOP_set_periodic_timer, 0, PERIOD).storeEax(OUT).spin(2_750_000).vcpuOp(VCPUOP_stop_periodic_timer, 0, 0).storeEax(OUT + 4).spin(2_000_000).exit(0x61);
      const g = boot(code, { period: MS }, { hap });
      expect([g.i32(OUT), g.i32(OUT + 4)]).toEqual([0, 0]);
      expect(g.virqs).toEqual([1, 2].map((k) => k * MS * CYCLES_PER_NS));
      expect(g.hv.clock.nanoseconds).toBeGreaterThan(4.7 * MS);
    });
  }

  it("periods below 1 ms or above STIME_DELTA_MAX (a \"negative\" one too) are -EINVAL; another vCPU's timer may be set", () => {
    const bad = [999_999, 0, 2 ** 62, 2 ** 64 - 2 ** 12];
    const code = new Asm();
    bad.forEach((_, i) => code.vcpuOp(VCPUOP_set_periodic_timer, 0, DATA + 0x400 + 16 * i).storeEax(OUT + 4 * i));
    code.vcpuOp(VCPUOP_set_periodic_timer, 1, PERIOD).storeEax(OUT + 16);
    code.vcpuOp(VCPUOP_set_periodic_timer, 0, 0xfee0_0000).storeEax(OUT + 20);
    code.exit(0x62);
    const parts = bad.map((ns, i) => [0x400 + 16 * i, period(ns)] as const);
    const hv = new Hypervisor({ memoryMiB: 64 });
    const d = hv.createDomain({ name: "t", memoryMiB: 8, vcpus: 2, kernel: image(code, page([[PERIOD - DATA, period(MS)], ...parts])) });
    hv.run({ maxInstructions: 1_000_000 });
    const g = booted(hv, d);
    expect([0, 4, 8, 12, 16, 20].map((o) => g.i32(OUT + o))).toEqual([-XEN_EINVAL, -XEN_EINVAL, -XEN_EINVAL, -XEN_EINVAL, 0, -XEN_EFAULT]);
    expect(d.vcpus[1]!.xenTimers.periodicPeriod).toBe(MS);
    expect(d.vcpus[0]!.xenTimers.periodicPeriod).toBe(0);
  });

  it("into a vCPU halted in HLT: the first event wakes it; the next finds the event still pending, and the idle host stops instead of spinning", () => {
    // sti; hlt; inc [OUT]; jmp back: each wake-up counts once.
    const code = prologue().vcpuOp(VCPUOP_set_periodic_timer, 0, PERIOD);
    const top = code.here;
    code.sti().hlt().inc(OUT).jmp(top);
    for (const hap of HAPS) {
      const hv = new Hypervisor({ memoryMiB: 64 });
      const d = hv.createDomain({ name: "t", memoryMiB: 8, hap, kernel: image(code, data({ period: MS })) });
      const virqs = record(hv, d);
      expect(hv.run({ maxInstructions: 10_000_000 }).reason).toBe("idle");
      const g = booted(hv, d);
      expect(g.u32(OUT)).toBe(1);
      expect(virqs).toEqual([MS * CYCLES_PER_NS, 2 * MS * CYCLES_PER_NS]);
      expect(d.vcpus[0]!.blocked).toBe(true);
      // Once the guest has run again (here the host wakes it), the idle host goes on to the next
      // period once more, and stops there again.
      d.vcpus[0]!.blocked = false;
      expect(hv.run({ maxInstructions: 10_000_000 }).reason).toBe("idle");
      expect(virqs).toEqual([1, 2, 3].map((k) => k * MS * CYCLES_PER_NS));
      expect(g.u32(OUT)).toBe(2);
    }
  });
});

describe("HYPERVISOR_set_timer_op", () => {
  for (const hap of HAPS) {
    it(`arms the single-shot timer at an absolute time; 0 cancels (${mmu(hap)})`, () => {
      const code = prologue()
        .setTimerOp(MS, 0)
        .storeEax(OUT)
        .schedOp(SCHEDOP_poll, POLL)
        .rdtsc(OUT + 8)
        .setTimerOp(3 * MS, 0)
        .setTimerOp(0, 0)
        .storeEax(OUT + 4)
        .schedOp(SCHEDOP_poll, POLL_UNBOUND)
        .rdtsc(OUT + 16)
        .exit(0x71);
      const g = boot(code, { pollTimeout: 5 * MS }, { hap });
      expect([g.i32(OUT), g.i32(OUT + 4)]).toEqual([0, 0]);
      expect(g.virqs).toEqual([MS * CYCLES_PER_NS]);
      expect(g.u64(OUT + 8)).toBeLessThan(MS * CYCLES_PER_NS + 100);
      // The cancelled timer never fired; the second poll ran into its 5 ms timeout.
      expect(g.u64(OUT + 16)).toBeGreaterThanOrEqual(5 * MS * CYCLES_PER_NS);
      expect(g.u64(OUT + 16)).toBeLessThan(5 * MS * CYCLES_PER_NS + 100);
    });
  }

  it("a negative timeout, or one 2^50 ns or more ahead, is taken as 100 ms from now (Xen's workaround)", () => {
    for (const [lo, hi] of [
      [0, 0x8000_0000],
      [0, 2 ** 18 + 1], // 2^50 + 2^32 ns: more than 2^50 ahead
      [0xffff_ffff, 0xffff_ffff],
    ] as const) {
      const code = prologue().setTimerOp(lo, hi).storeEax(OUT).rdtsc(OUT + 8).schedOp(SCHEDOP_poll, POLL).exit(0x72);
      const g = boot(code, {}, { hap: true });
      expect(g.i32(OUT)).toBe(0);
      expect(g.virqs.length).toBe(1);
      const setAt = g.u64(OUT + 8);
      expect(g.virqs[0]! - setAt).toBeGreaterThan(100 * MS * CYCLES_PER_NS - 100);
      expect(g.virqs[0]! - setAt).toBeLessThanOrEqual(100 * MS * CYCLES_PER_NS);
    }
    // Just below 2^50 ns ahead is taken as it is (and, far ahead, never reached in this run).
    const code = prologue().setTimerOp(0xffff_0000, 2 ** 18 - 1).storeEax(OUT).exit(0x73);
    const g = boot(code, {}, { hap: false });
    expect(g.d.vcpus[0]!.xenTimers.singleshot).toBe((2 ** 18 - 1) * 2 ** 32 + 0xffff_0000);
  });
});

describe("SCHEDOP_poll and SCHEDOP_block with timers", () => {
  for (const hap of HAPS) {
    it(`poll returns early when its port becomes pending, well before its timeout (${mmu(hap)})`, () => {
      const code = prologue().vcpuOp(VCPUOP_set_singleshot_timer, 0, SSHOT).schedOp(SCHEDOP_poll, POLL).storeEax(OUT).rdtsc(OUT + 8).exit(0x81);
      const g = boot(code, { sshot: [MS, 0], pollTimeout: 10 * MS }, { hap });
      expect(g.i32(OUT)).toBe(0);
      expect(g.u64(OUT + 8)).toBeLessThan(MS * CYCLES_PER_NS + 100);
      expect(g.d.vcpus[0]!.xenTimers.polling).toBe(false);
    });

    it(`poll with nothing pending returns after its timeout; with several ports any event wakes it (${mmu(hap)})`, () => {
      const code = prologue()
        .schedOp(SCHEDOP_poll, POLL_UNBOUND)
        .storeEax(OUT)
        .rdtsc(OUT + 8)
        .vcpuOp(VCPUOP_set_singleshot_timer, 0, SSHOT)
        .schedOp(SCHEDOP_poll, POLL_BOTH)
        .storeEax(OUT + 4)
        .rdtsc(OUT + 16)
        .exit(0x82);
      const g = boot(code, { sshot: [3 * MS, 0], pollTimeout: 2 * MS }, { hap });
      expect([g.i32(OUT), g.i32(OUT + 4)]).toEqual([0, 0]);
      // First poll: timed out at its absolute 2 ms.
      expect(g.u64(OUT + 8)).toBeGreaterThanOrEqual(2 * MS * CYCLES_PER_NS);
      expect(g.u64(OUT + 8)).toBeLessThan(2 * MS * CYCLES_PER_NS + 100);
      // Second poll, on the unbound port and the VIRQ port, no timeout: the timer's event at 3 ms wakes it.
      expect(g.virqs).toEqual([3 * MS * CYCLES_PER_NS]);
      expect(g.u64(OUT + 16)).toBeGreaterThanOrEqual(3 * MS * CYCLES_PER_NS);
      expect(g.u64(OUT + 16)).toBeLessThan(3 * MS * CYCLES_PER_NS + 100);
    });

    it(`block wakes on the timer's event (${mmu(hap)})`, () => {
      const code = prologue().vcpuOp(VCPUOP_set_singleshot_timer, 0, SSHOT).schedOp(SCHEDOP_block, 0).storeEax(OUT).rdtsc(OUT + 8).exit(0x83);
      const g = boot(code, { sshot: [MS, 0] }, { hap });
      expect(g.i32(OUT)).toBe(0);
      expect(g.virqs).toEqual([MS * CYCLES_PER_NS]);
      expect(g.u64(OUT + 8)).toBeGreaterThanOrEqual(MS * CYCLES_PER_NS);
      expect(g.u64(OUT + 8)).toBeLessThan(MS * CYCLES_PER_NS + 100);
      expect(g.d.vcpus[0]!.wakeups).toBe(1);
    });
  }

  it("the poll timeout alone (no event) on a busy host wakes the vCPU at the cycle it falls on", () => {
    const code = prologue().schedOp(SCHEDOP_poll, POLL_UNBOUND).rdtsc(OUT + 8).exit(0x84);
    const g = boot(code, { pollTimeout: MS }, { hap: true, busy: true });
    expect(g.d.vcpus[0]!.wakeups).toBe(1);
    expect(g.u64(OUT + 8)).toBeGreaterThanOrEqual(MS * CYCLES_PER_NS);
    expect(g.u64(OUT + 8)).toBeLessThan(MS * CYCLES_PER_NS + 20_000 + 2_000); // the busy domain's slice ends first
  });
});

describe("bounds", () => {
  it("a guest re-arming a past timer in a loop floods only itself: the other domain keeps its share of the CPU", () => {
    const code = prologue();
    const top = code.here;
    code.vcpuOp(VCPUOP_set_singleshot_timer, 0, SSHOT).jmp(top);
    const hv = new Hypervisor({ memoryMiB: 64, sliceInstructions: 20_000 });
    const a = hv.createDomain({ name: "a", memoryMiB: 8, kernel: image(code, data({ sshot: [0, 0] })) });
    const b = hv.createDomain({ name: "b", memoryMiB: 8, kernel: image(new Asm().forever()) });
    const virqs = record(hv, a);
    hv.run({ maxInstructions: 2_000_000 });
    expect(virqs.length).toBeGreaterThan(100);
    // Each re-arm is an exit charged to a's slices; b still gets about half of the time.
    expect(b.instructions).toBeGreaterThan(900_000);
    expect(a.stats().exitsByReason.Vmcall).toBeGreaterThan(100);
  });
});
