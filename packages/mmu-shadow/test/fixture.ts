/**
 * A shadow-paged domain for tests: guest RAM at machine 4 GiB (so nothing works unless the p2m
 * is applied), guest page tables written by the test through the p2m, a flat 64-bit guest VMCS,
 * and the hypervisor's exit loop (handle, inject, resume).
 */
import { MachineMemory, PTE_P, PTE_RW, gfn, mfn, type Mfn } from "@vtlab/arch";
import { Cpu, ExitReason, INTR_INFO_VALID, Vmcs, VmcsField as F, setupFlat64Guest, vmEntry, CPU_HLT_EXITING, type ExitOutcome, type VmExit } from "@vtlab/cpu-vmx";
import { P2mType, RangeP2m, SimpleFrameAllocator } from "@vtlab/p2m";
import { ShadowPaging, type ShadowPagingOptions } from "../src/index.js";

export const GiB = 1024 ** 3;
export const RAM_BASE = 4 * GiB;
export const RAM_PAGES = 4096; // 16 MiB of guest RAM
export const GDT = 0x1000;
export const IDT = 0x2000;
export const TSS = 0x3000;

export interface Domain {
  memory: MachineMemory;
  p2m: RangeP2m;
  frames: SimpleFrameAllocator;
  /** Machine address of a guest-physical address (guest RAM). */
  m(gpa: number): number;
  write64(gpa: number, value: number): void;
  read64(gpa: number): number;
}

export function domain(): Domain {
  const memory = new MachineMemory(8 * GiB);
  const p2m = new RangeP2m();
  p2m.setRange(gfn(0), RAM_PAGES, P2mType.Ram, mfn(RAM_BASE / 4096));
  p2m.setRange(gfn(0xf0000), 16, P2mType.Mmio);
  const frames = new SimpleFrameAllocator(memory, (6 * GiB / 4096) as Mfn, 65536);
  const m = (gpa: number) => RAM_BASE + gpa;
  return {
    memory,
    p2m,
    frames,
    m,
    write64: (gpa, v) => void memory.write64(m(gpa), v % 2 ** 32 >>> 0, Math.floor(v / 2 ** 32)),
    read64: (gpa) => {
      const o = { lo: 0, hi: 0 };
      memory.read64(m(gpa), o);
      return o.hi * 2 ** 32 + (o.lo >>> 0);
    },
  };
}

/** A 64-bit GDT (null, code 0x08, data 0x10) in guest memory. */
export function writeGdt(d: Domain): void {
  d.memory.write64(d.m(GDT + 8), 0x0000ffff, 0x00af9a00);
  d.memory.write64(d.m(GDT + 16), 0x0000ffff, 0x00cf9200);
}

/** Point IDT vector `v` at `handler` (interrupt gate, CS 0x08). */
export function setGate(d: Domain, v: number, handler: number): void {
  d.memory.write32(d.m(IDT + v * 16), (0x08 << 16) | (handler & 0xffff));
  d.memory.write32(d.m(IDT + v * 16 + 4), ((handler & 0xffff0000) | 0x8e00) >>> 0);
  d.memory.write32(d.m(IDT + v * 16 + 8), 0);
}

export const FLAGS = PTE_P | PTE_RW;

export interface Guest {
  cpu: Cpu;
  vmcs: Vmcs;
  sp: ShadowPaging;
  outcomes: ExitOutcome[];
}

export function guest(d: Domain, cr3: number, rip: number, rsp: number, options: Partial<ShadowPagingOptions> = {}): Guest {
  const cpu = new Cpu({ memory: d.memory });
  const vmcs = new Vmcs();
  const err = setupFlat64Guest(vmcs, { cr3, rip, rsp, gdtBase: GDT, gdtLimit: 0x37, idtBase: IDT, idtLimit: 0xfff, tssBase: TSS, proc: CPU_HLT_EXITING });
  if (err !== undefined) throw new Error(err.message);
  const sp = new ShadowPaging({ memory: d.memory, p2m: d.p2m, frames: d.frames, ...options });
  sp.setupVcpu(cpu, vmcs);
  return { cpu, vmcs, sp, outcomes: [] };
}

/**
 * Apply an outcome before the next entry (event injection, CR2), as the hypervisor's exit loop
 * does: an exit that interrupted an event delivery and was resumed re-delivers that event from
 * the IDT-vectoring information (Xen's vmx_idtv_reinject).
 */
export function applyOutcome(g: Guest, o: ExitOutcome, exit?: VmExit): void {
  const iv = exit?.idtVectoring;
  const event = o.kind === "inject" ? { vector: o.vector, type: 3, errorCode: o.errorCode } : o.kind === "resume" && iv !== undefined ? iv : undefined;
  if (event === undefined) return;
  const ev = event.errorCode !== undefined;
  g.vmcs.setField(F.VM_ENTRY_INTR_INFO_FIELD, (INTR_INFO_VALID | (event.type << 8) | (ev ? 1 << 11 : 0) | event.vector) >>> 0);
  if (ev) g.vmcs.setField(F.VM_ENTRY_EXCEPTION_ERROR_CODE, event.errorCode!);
  if (event.type === 4 || event.type === 5 || event.type === 6) g.vmcs.setField(F.VM_ENTRY_INSTRUCTION_LEN, exit!.instructionLength);
  if (o.kind === "inject" && o.cr2 !== undefined) g.cpu.cr2 = o.cr2;
}

/** Run the guest to its HLT exit (or a crash), handling every exit with ShadowPaging. */
export function runToHlt(g: Guest, maxExits = 10_000): { exits: number; crash?: string } {
  let launch = true;
  for (let n = 0; n < maxExits; n++) {
    const e = vmEntry(g.cpu, g.vmcs, launch);
    if (e !== undefined) throw new Error(`VM entry failed: ${JSON.stringify(e)}`);
    launch = false;
    const r = g.cpu.run(1_000_000);
    if (r.kind !== "vmexit") throw new Error(`expected a VM exit, got ${r.kind}`);
    if (r.exit.reason === ExitReason.Hlt) return { exits: n };
    const o = g.sp.handleExit(g.cpu, g.vmcs, r.exit);
    g.outcomes.push(o);
    if (o.kind === "crash") return { exits: n, crash: o.reason };
    if (o.kind === "mmio") throw new Error("unexpected MMIO");
    applyOutcome(g, o, r.exit);
  }
  throw new Error("too many exits");
}

export function bytes(hex: string): Uint8Array {
  return Uint8Array.from(hex.match(/../g)!.map((h) => parseInt(h, 16)));
}
