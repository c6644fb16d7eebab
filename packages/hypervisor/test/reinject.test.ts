/**
 * An exit that interrupts the delivery of an event leaves IDT-vectoring information; the
 * hypervisor delivers that event again with its own type (Xen's vmx_idtv_reinject). On shadow
 * paging the first timer interrupt pushes onto a stack page that has no shadow yet: the #PF exit
 * interrupts the delivery of external interrupt 0x40, which must be re-injected as an external
 * interrupt (type 0), not as a hardware exception (vector 0x40 > 31 would fail VM entry).
 */
import { describe, expect, it } from "vitest";
import { Vector } from "@vtlab/arch";
import { Hypervisor, combineExceptions } from "@vtlab/hypervisor";
import { MMIO_GUESTS } from "./mmio-guests.js";
import { tinyKernel } from "./tiny-kernel.js";

/** The APIC-timer guest with its "touch the stack first" (push rax; pop rax after mov rsp, 0x180000) made two NOPs. */
const STACK_TOUCH = "48c7c4000018005058";
const untouched = MMIO_GUESTS.timer.replace(STACK_TOUCH, "48c7c4000018009090");

describe("re-injection of an interrupted event delivery", () => {
  it("the patch removes exactly the stack touch", () => {
    expect(MMIO_GUESTS.timer.split(STACK_TOUCH)).toHaveLength(2);
    expect(untouched).not.toBe(MMIO_GUESTS.timer);
  });

  for (const hap of [false, true]) {
    it(`${hap ? "EPT" : "shadow"}: the timer interrupt is taken once, even when its delivery faults on the stack`, () => {
      const hv = new Hypervisor({ memoryMiB: 64 });
      const d = hv.createDomain({ name: "t", memoryMiB: 8, hap, kernel: tinyKernel(untouched) });
      hv.run({ maxInstructions: 5_000_000 });
      expect(d.crashReason).toBeUndefined();
      expect(d.state).toBe("shutdown");
      const ticks = hv.memory.read32(d.machineAddress(0x130000)!);
      expect(ticks).toBe(1);
      expect(d.vcpus[0]!.interruptsInjected).toBe(1);
      // Shadow: the delivery faulted (a #PF exit carrying IDT-vectoring information for vector
      // 0x40), and the interrupt was delivered again, once. EPT: the stack was mapped all along.
      expect(d.exitStats.reinjected).toBe(hap ? 0 : 1);
    });
  }

  it("a second exception during the delivery of a first combines by SDM Table 6-5", () => {
    const { DE, DB, NMI, BP, UD, DF, TS, NP, SS, GP, PF } = Vector;
    // contributory then contributory, or page fault then contributory / page fault: #DF
    for (const [a, b] of [[DE, GP], [GP, NP], [TS, SS], [PF, PF], [PF, GP], [PF, DE]]) expect(combineExceptions(a!, b!), `${a} then ${b}`).toBe(DF);
    // contributory then page fault, and anything involving a benign one: the second, serially
    for (const [a, b] of [[GP, PF], [DE, PF], [DB, GP], [NMI, PF], [BP, UD], [UD, GP], [PF, UD]]) expect(combineExceptions(a!, b!), `${a} then ${b}`).toBe(b);
    // during #DF delivery: contributory or page fault is a triple fault; benign is delivered
    for (const b of [DE, GP, PF]) expect(combineExceptions(DF, b)).toBe("triple-fault");
    expect(combineExceptions(DF, UD)).toBe(UD);
  });
});
