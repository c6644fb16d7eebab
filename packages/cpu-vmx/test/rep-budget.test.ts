/**
 * A REP string instruction retires one instruction per iteration and stops between iterations at
 * the run loop's bound (the budget, or the VMX-preemption timer), with RIP still at the
 * instruction and RCX/RSI/RDI updated (SDM Vol. 2B REP; Vol. 3C 25.5.1): a huge count cannot
 * hold the CPU past its slice. Event deliveries count against the preemption timer too, so an
 * exception loop that retires nothing still ends its slice. 64-bit string pointers are exact:
 * a non-canonical RSI gets #GP(0) (an SS-segment one #SS(0)), RSI/RDI advance exactly.
 */
import { describe, expect, it } from "vitest";
import {
  EXIT_CAPS,
  EXIT_HOST_ADDR_SPACE_SIZE,
  EXIT_SAVE_PREEMPTION_TIMER,
  ExitReason,
  PIN_CAPS,
  PIN_PREEMPTION_TIMER,
  Seg,
  VmcsField as F,
  vmEntry,
  type Cpu,
  type RunResult,
  type VmExit,
} from "@vtlab/cpu-vmx";
import { CODE, hex, machine64 } from "./machine.js";
import { HANDLERS, IDT, guestVmcs } from "./vmx-fixture.js";

const reg = (cpu: Cpu, r: number): bigint => (BigInt(cpu.hi[r]! >>> 0) << 32n) | BigInt(cpu.lo[r]! >>> 0);
const setReg = (cpu: Cpu, r: number, v: bigint): void => {
  cpu.lo[r] = Number(v & 0xffff_ffffn) | 0;
  cpu.hi[r] = Number((v >> 32n) & 0xffff_ffffn) | 0;
};
const exitOf = (r: RunResult): VmExit => {
  if (r.kind !== "vmexit") throw new Error(`expected a VM exit, got ${r.kind}`);
  return r.exit;
};

// mov rdi, 0x200000; mov rcx, 0x100000; mov al, 0x5a; rep stosb; hlt
const REP_STOSB = "48c7c700002000 48c7c100001000 b05a f3aa f4";
const REP_AT = CODE + 16;

describe("REP string instructions and the run budget", () => {
  it("REP STOSB with a huge count stops at the budget between iterations, RIP on the instruction, RCX/RDI updated; the next run resumes it", () => {
    const m = machine64(hex(REP_STOSB));
    const r = m.cpu.run(1000);
    expect(r).toEqual({ kind: "budget", retired: 1000 });
    expect(m.cpu.rip).toBe(REP_AT);
    // Three MOVs, then 997 iterations.
    expect(reg(m.cpu, 1)).toBe(0x100000n - 997n);
    expect(reg(m.cpu, 7)).toBe(0x200000n + 997n);
    expect(m.memory.read8(0x200000 + 996)).toBe(0x5a);
    expect(m.memory.read8(0x200000 + 997)).toBe(0);
    // The rest, in slices: every iteration is one retired instruction.
    let retired = 1000;
    let last: RunResult = r;
    for (let k = 0; k < 100 && last.kind === "budget"; k++) {
      last = m.cpu.run(50_000);
      retired += last.retired;
    }
    // Then HLT (one more instruction).
    expect(last.kind).toBe("hlt");
    expect(m.cpu.rip).toBe(REP_AT + 3);
    expect(retired).toBe(3 + 0x100000 + 1);
    expect(reg(m.cpu, 1)).toBe(0n);
    expect(reg(m.cpu, 7)).toBe(0x300000n);
    expect(m.memory.read8(0x2fffff)).toBe(0x5a);
    expect(m.memory.read8(0x300000)).toBe(0);
  });

  it("REP MOVSB with RCX = 2^64 - 1 ends every run at exactly its budget", () => {
    // mov rsi, 0x200000; mov rdi, 0x300000; mov rcx, -1; rep movsb
    const m = machine64(hex("48c7c600002000 48c7c700003000 48c7c1ffffffff f3a4"));
    const first = m.cpu.run(10);
    expect(first).toEqual({ kind: "budget", retired: 10 });
    for (const budget of [1, 2, 777, 100_000]) expect(m.cpu.run(budget)).toEqual({ kind: "budget", retired: budget });
    const iterations = 10 - 3 + 1 + 2 + 777 + 100_000;
    expect(m.cpu.rip).toBe(CODE + 21);
    expect(reg(m.cpu, 1)).toBe(0xffff_ffff_ffff_ffffn - BigInt(iterations));
    expect(reg(m.cpu, 6)).toBe(0x200000n + BigInt(iterations));
    expect(reg(m.cpu, 7)).toBe(0x300000n + BigInt(iterations));
  });

  it("a hot loop around a REP (compiled blocks) still stops at exactly the budget", () => {
    // l: mov rdi, 0x200000; mov rcx, 100; rep stosb; jmp l
    const m = machine64(hex("48c7c700002000 48c7c164000000 f3aa ebf0"));
    let total = 0;
    for (const budget of [5000, 12_345, 1, 99, 100, 101, 102, 250_000]) {
      const r = m.cpu.run(budget);
      expect(r, `budget ${budget}`).toEqual({ kind: "budget", retired: budget });
      total += budget;
    }
    expect(m.cpu.counters.compiledBlocks).toBeGreaterThan(0);
    expect(m.cpu.counters.instructions).toBe(total);
  });

  it("the VMX-preemption timer ends a REP MOVSB part-way with an exit at exactly its count; GUEST_RIP is the REP", () => {
    // mov rsi, 0x200000; mov rdi, 0x300000; mov rcx, 0x10000000; rep movsb; hlt
    const m = machine64(hex("48c7c600002000 48c7c700003000 48c7c100000010 f3a4 f4"));
    const v = guestVmcs(m);
    v.vmwrite(F.PIN_BASED_VM_EXEC_CONTROL, PIN_CAPS.mustBe1 | PIN_PREEMPTION_TIMER);
    v.vmwrite(F.VM_EXIT_CONTROLS, EXIT_CAPS.mustBe1 | EXIT_HOST_ADDR_SPACE_SIZE | EXIT_SAVE_PREEMPTION_TIMER);
    v.vmwrite(F.VMX_PREEMPTION_TIMER_VALUE, 5000);
    expect(vmEntry(m.cpu, v, true)).toBeUndefined();
    const r = m.cpu.run(1_000_000_000);
    expect(exitOf(r).reason).toBe(ExitReason.PreemptionTimer);
    expect(r.retired).toBe(5000);
    expect(v.readNatural(F.GUEST_RIP)).toBe(CODE + 21);
    expect(reg(m.cpu, 1)).toBe(0x10000000n - 4997n);
  });
});

describe("event deliveries count against the preemption timer", () => {
  it("a #UD handler that executes UD2 again forever: the timer still expires (no instruction ever retires)", () => {
    for (const ticks of [1, 10, 3000]) {
      const m = machine64(hex("0f0b")); // ud2
      const v = guestVmcs(m);
      m.memory.writeBytes(HANDLERS + 6 * 16, hex("0f0b")); // the #UD handler: ud2
      v.vmwrite(F.PIN_BASED_VM_EXEC_CONTROL, PIN_CAPS.mustBe1 | PIN_PREEMPTION_TIMER);
      v.vmwrite(F.VM_EXIT_CONTROLS, EXIT_CAPS.mustBe1 | EXIT_HOST_ADDR_SPACE_SIZE | EXIT_SAVE_PREEMPTION_TIMER);
      v.vmwrite(F.VMX_PREEMPTION_TIMER_VALUE, ticks);
      expect(vmEntry(m.cpu, v, true)).toBeUndefined();
      const before = m.cpu.eventsDelivered;
      // The budget is far beyond the timer: the timer, not the budget, must end the run.
      const r = m.cpu.run(Number.MAX_SAFE_INTEGER);
      expect(exitOf(r).reason, `timer ${ticks}`).toBe(ExitReason.PreemptionTimer);
      expect(r.retired).toBe(0);
      expect(m.cpu.eventsDelivered - before).toBe(ticks);
      expect(v.vmread(F.VMX_PREEMPTION_TIMER_VALUE)).toBe(0);
      expect(IDT).toBeGreaterThan(0);
    }
  });

  it("with an event weight (the host's cost model), each delivery uses up that many ticks of the timer and of the budget", () => {
    const m = machine64(hex("0f0b"));
    const v = guestVmcs(m);
    m.memory.writeBytes(HANDLERS + 6 * 16, hex("0f0b"));
    m.cpu.eventWeight = 200;
    v.vmwrite(F.PIN_BASED_VM_EXEC_CONTROL, PIN_CAPS.mustBe1 | PIN_PREEMPTION_TIMER);
    v.vmwrite(F.VM_EXIT_CONTROLS, EXIT_CAPS.mustBe1 | EXIT_HOST_ADDR_SPACE_SIZE | EXIT_SAVE_PREEMPTION_TIMER);
    v.vmwrite(F.VMX_PREEMPTION_TIMER_VALUE, 1000);
    expect(vmEntry(m.cpu, v, true)).toBeUndefined();
    expect(exitOf(m.cpu.run(Number.MAX_SAFE_INTEGER)).reason).toBe(ExitReason.PreemptionTimer);
    expect(m.cpu.eventsDelivered).toBe(5);
    // Outside VMX: the budget alone, 1000 instruction-times, is 5 deliveries.
    const n = machine64(hex("0f0b"));
    const w = guestVmcs(n);
    n.memory.writeBytes(HANDLERS + 6 * 16, hex("0f0b"));
    n.cpu.eventWeight = 200;
    expect(vmEntry(n.cpu, w, true)).toBeUndefined();
    expect(n.cpu.run(1000)).toEqual({ kind: "budget", retired: 0 });
    expect(n.cpu.eventsDelivered).toBe(5);
  });
});

describe("64-bit string pointers are exact", () => {
  it("a non-canonical RSI gets #GP(0) and is left exactly as written (2^63 + 1 is not rounded)", () => {
    // lodsb; hlt
    const m = machine64(hex("ac f4"));
    setReg(m.cpu, 6, 0x8000_0000_0000_0001n);
    const r = m.cpu.run(10);
    expect(r.kind).toBe("triple-fault"); // no IDT in this machine: #GP, #GP, #DF... ends it
    expect(reg(m.cpu, 6)).toBe(0x8000_0000_0000_0001n);
  });

  it("RSI + an FS base that wraps to a canonical address reads the right bytes and advances RSI exactly", () => {
    // fs lodsb; fs lodsb; hlt
    const m = machine64(hex("64ac 64ac f4"));
    m.memory.write8(0x201000, 0x41);
    m.memory.write8(0x201001, 0x42);
    // RSI = 2^63 + 0x201000, FS base = 2^63 (as the signed linear base -2^63): the sum wraps to 0x201000.
    setReg(m.cpu, 6, 0x8000_0000_0020_1000n);
    m.cpu.seg[Seg.FS]!.base = -(2 ** 63);
    m.cpu.run(1);
    expect(m.cpu.lo[0]! & 0xff).toBe(0x41);
    m.cpu.run(1);
    expect(m.cpu.lo[0]! & 0xff).toBe(0x42);
    expect(reg(m.cpu, 6)).toBe(0x8000_0000_0020_1002n);
  });

  it("an SS-segment string reference at a non-canonical address is #SS(0), not #GP", () => {
    // ss lodsb
    const m = machine64(hex("36ac f4"));
    const vectors: number[] = [];
    const deliver = m.cpu.deliverEvent.bind(m.cpu);
    m.cpu.deliverEvent = (vector: number, errorCode: number, software: boolean, external: boolean): boolean => {
      vectors.push(vector);
      return deliver(vector, errorCode, software, external);
    };
    setReg(m.cpu, 6, 0x0000_8000_0000_0000n);
    m.cpu.run(1);
    expect(vectors[0]).toBe(12);
  });
});
