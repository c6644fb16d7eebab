/**
 * Workloads for the counts and figures: a guest whose kernel is driven one operation at a time
 * from TypeScript, each operation a real instruction run by the interpreter in VMX non-root
 * mode (load, store, MOV to CR3, INVLPG, each followed by a HLT that returns control), under
 * shadow paging or EPT. On top of it: a fork-like workload (build an address space,
 * copy-on-write mark it, switch to the child, tear it down) and the ptemod microbenchmark of
 * Adams and Agesen (ASPLOS 2006: one guest PTE modification followed by a use of it).
 *
 * Machine code (GNU as, Intel syntax): `ld: mov rax, [rdi]; hlt` `st: mov [rdi], rsi; hlt`
 * `c3: mov cr3, rdi; hlt` `iv: invlpg [rdi]; hlt`. A #PF the hypervisor reflects is delivered
 * through the guest IDT to a HLT, and the operation reports what the guest handler would see.
 *
 * Guest-physical layout: 16 MiB of RAM at machine 4 GiB; kernel identity-mapped with 4 KiB
 * pages over 0..4 MiB: GDT 0x1000, IDT 0x2000, TSS 0x3000, page tables from 1 MiB, code at
 * 2 MiB, stack below 3 MiB. The harness's HLT exits are not counted as the workload's exits.
 */
import { DEFAULT_COST_MODEL, MachineMemory, PTE_P, PTE_RW, Vector, gfn, mfn, modelledCycles, type CostModel, type Mfn } from "@vtlab/arch";
import { CPU_HLT_EXITING, Cpu, ExitReason, INTR_INFO_VALID, Vmcs, VmcsField as F, setupFlat64Guest, vmEntry, type ExitOutcome, type MemoryVirtualizer } from "@vtlab/cpu-vmx";
import { P2mType, RangeP2m, SimpleFrameAllocator } from "@vtlab/p2m";
import { ShadowPaging, type ShadowPagingOptions } from "./shadow-paging.js";

const GiB = 1024 ** 3;
export const RAM_BASE = 4 * GiB;
const RAM_PAGES = 4096;
const GDT = 0x1000;
const IDT = 0x2000;
const TSS = 0x3000;
export const KCODE = 0x20_0000;
export const KSTACK = 0x2f_f000;
export const KPML4 = 0x10_0000;
const SNIPPETS = [0x48, 0x8b, 0x07, 0xf4, 0x48, 0x89, 0x37, 0xf4, 0x0f, 0x22, 0xdf, 0xf4, 0x0f, 0x01, 0x3f, 0xf4];
const OP = { load: 0, store: 4, cr3: 8, invlpg: 12 } as const;
const HANDLER = KCODE + 0x100;

export interface WorkloadDomain {
  readonly memory: MachineMemory;
  readonly p2m: RangeP2m;
  readonly frames: SimpleFrameAllocator;
  /** Machine address of a guest-physical address. */
  m(gpa: number): number;
  write64(gpa: number, value: number): void;
  read64(gpa: number): number;
}

/** A domain: 16 MiB of guest RAM at machine 4 GiB, an MMIO hole at GPA 0xF0000000, frames for shadow or EPT tables at 6 GiB. */
export function workloadDomain(): WorkloadDomain {
  const memory = new MachineMemory(8 * GiB);
  const p2m = new RangeP2m();
  p2m.setRange(gfn(0), RAM_PAGES, P2mType.Ram, mfn(RAM_BASE / 4096));
  p2m.setRange(gfn(0xf0000), 16, P2mType.Mmio);
  const frames = new SimpleFrameAllocator(memory, ((6 * GiB) / 4096) as Mfn, 65536);
  const m = (gpa: number): number => RAM_BASE + gpa;
  const scratch = { lo: 0, hi: 0 };
  return {
    memory,
    p2m,
    frames,
    m,
    write64: (gpa, v) => void memory.write64(m(gpa), v % 2 ** 32 >>> 0, Math.floor(v / 2 ** 32)),
    read64: (gpa) => {
      memory.read64(m(gpa), scratch);
      return scratch.hi * 2 ** 32 + (scratch.lo >>> 0);
    },
  };
}

export type OpResult = { kind: "ok"; value: number } | { kind: "pf"; errorCode: number; cr2: number } | { kind: "crash"; reason: string };

/**
 * Builds the EPT memory virtualizer for mode "ept" over the workload domain (the caller passes
 * @vtlab/mmu-ept's NestedPaging: this package does not depend on it). It sets up the vCPU's EPT
 * and second-level translator and returns the virtualizer.
 */
export type EptFactory = (d: WorkloadDomain, cpu: Cpu, vmcs: Vmcs) => MemoryVirtualizer;

export interface OpsGuestOptions {
  readonly mode?: "shadow" | "ept";
  readonly shadow?: Partial<ShadowPagingOptions>;
  /** Required for mode "ept". */
  readonly ept?: EptFactory;
}

export class OpsGuest {
  readonly d: WorkloadDomain;
  readonly cpu: Cpu;
  readonly vmcs: Vmcs;
  readonly mv: MemoryVirtualizer;
  /** Set in shadow mode. */
  readonly sp: ShadowPaging | undefined;
  /** VM exits handled by the memory virtualizer (the harness's HLT exits excluded). */
  exits = 0;
  private launched = false;
  private nextTable = 0x10_4000;

  constructor(options: OpsGuestOptions = {}, d: WorkloadDomain = workloadDomain()) {
    this.d = d;
    d.memory.write64(d.m(GDT + 8), 0x0000ffff, 0x00af9a00);
    d.memory.write64(d.m(GDT + 16), 0x0000ffff, 0x00cf9200);
    const f = PTE_P | PTE_RW;
    d.write64(KPML4, 0x10_1000 | f);
    d.write64(0x10_1000, 0x10_2000 | f);
    const l1a = 0x10_3000;
    const l1b = this.table();
    d.write64(0x10_2000, l1a | f);
    d.write64(0x10_2000 + 8, l1b | f);
    for (let i = 0; i < 512; i++) {
      d.write64(l1a + i * 8, (i * 0x1000) | f);
      d.write64(l1b + i * 8, (0x20_0000 + i * 0x1000) | f);
    }
    d.memory.writeBytes(d.m(KCODE), Uint8Array.from(SNIPPETS));
    d.memory.write8(d.m(HANDLER), 0xf4);
    d.memory.write32(d.m(IDT + Vector.PF * 16), (0x08 << 16) | (HANDLER & 0xffff));
    d.memory.write32(d.m(IDT + Vector.PF * 16 + 4), ((HANDLER & 0xffff0000) | 0x8e00) >>> 0);
    this.cpu = new Cpu({ memory: d.memory });
    this.vmcs = new Vmcs();
    const err = setupFlat64Guest(this.vmcs, { cr3: KPML4, rip: KCODE, rsp: KSTACK, gdtBase: GDT, gdtLimit: 0x37, idtBase: IDT, idtLimit: 0xfff, tssBase: TSS, proc: CPU_HLT_EXITING });
    if (err !== undefined) throw new Error(err.message);
    if (options.mode === "ept") {
      if (options.ept === undefined) throw new Error("vtlab bug: OpsGuest mode \"ept\" needs options.ept (an EptFactory)");
      this.mv = options.ept(d, this.cpu, this.vmcs);
      this.sp = undefined;
    } else {
      this.sp = new ShadowPaging({ memory: d.memory, p2m: d.p2m, frames: d.frames, ...options.shadow });
      this.sp.setupVcpu(this.cpu, this.vmcs);
      this.mv = this.sp;
    }
  }

  /** A fresh zeroed guest page-table frame in the identity-mapped kernel area (its GVA is its GPA). */
  table(): number {
    const t = this.nextTable;
    this.nextTable += 0x1000;
    if (this.nextTable > 0x1f_f000) throw new Error("out of table frames");
    this.d.memory.fill(this.d.m(t), 4096, 0);
    return t;
  }

  private inject(o: ExitOutcome): void {
    if (o.kind !== "inject") return;
    const ev = o.errorCode !== undefined;
    this.vmcs.setField(F.VM_ENTRY_INTR_INFO_FIELD, (INTR_INFO_VALID | (3 << 8) | (ev ? 1 << 11 : 0) | o.vector) >>> 0);
    if (ev) this.vmcs.setField(F.VM_ENTRY_EXCEPTION_ERROR_CODE, o.errorCode);
    if (o.cr2 !== undefined) this.cpu.cr2 = o.cr2;
  }

  private op(at: number, rdi: number, rsi = 0): OpResult {
    const { cpu, vmcs } = this;
    cpu.setRegFromNumber(7, rdi);
    cpu.setRegFromNumber(6, rsi);
    vmcs.setNatural(F.GUEST_RIP, KCODE + at);
    vmcs.setNatural(F.GUEST_RSP, KSTACK);
    for (let n = 0; n < 64; n++) {
      const e = vmEntry(cpu, vmcs, !this.launched);
      if (e !== undefined) throw new Error(`VM entry failed: ${e.kind}`);
      this.launched = true;
      const r = cpu.run(100);
      if (r.kind !== "vmexit") throw new Error(`expected a VM exit, got ${r.kind}`);
      if (r.exit.reason === ExitReason.Hlt) {
        if (vmcs.readNatural(F.GUEST_RIP) === HANDLER) return { kind: "pf", errorCode: this.d.read64(vmcs.readNatural(F.GUEST_RSP)), cr2: cpu.cr2 };
        return { kind: "ok", value: cpu.regAddr(0) };
      }
      this.exits++;
      const o = this.mv.handleExit(cpu, vmcs, r.exit);
      if (o.kind === "crash") return { kind: "crash", reason: o.reason };
      if (o.kind === "mmio") return { kind: "crash", reason: `MMIO at GPA 0x${o.gpa.toString(16)}` };
      this.inject(o);
    }
    throw new Error("operation did not finish");
  }

  /** 8-byte load (exact for values below 2^53). */
  load(gva: number): OpResult {
    return this.op(OP.load, gva);
  }

  store(gva: number, value: number): OpResult {
    return this.op(OP.store, gva, value);
  }

  loadCr3(value: number): OpResult {
    return this.op(OP.cr3, value);
  }

  invlpg(gva: number): OpResult {
    return this.op(OP.invlpg, gva);
  }

  /** Modelled cycles so far (DEFAULT_COST_MODEL): instructions, paging-structure references (guest and EPT), exits. */
  modelledCycles(model: CostModel = DEFAULT_COST_MODEL): number {
    const c = this.cpu.counters;
    return modelledCycles({ instructions: c.instructions, memoryReferences: c.walkReferences + c.eptReferences, vmExits: this.exits }, model);
  }
}

function must(r: OpResult, what: string): number {
  if (r.kind !== "ok") throw new Error(`${what}: ${JSON.stringify(r)}`);
  return r.value;
}

/** Exits and PTE operations of one phase of the fork workload. */
export interface ForkPhase {
  readonly phase: "build" | "cow-mark" | "child-run" | "teardown";
  readonly pteOps: number;
  readonly exits: number;
  readonly exitsPerOp: number;
}

export interface ForkReport {
  readonly outOfSync: boolean;
  readonly pages: number;
  readonly phases: readonly ForkPhase[];
  readonly emulatedWrites: number;
  readonly unsyncs: number;
  readonly resyncs: number;
  readonly unshadows: number;
  readonly shadowPagesInUse: number;
}

const USER_BASE = 2 ** 39; // PML4 index 1
const DATA_GPA = 0x40_0000;

/**
 * A fork-like workload under shadow paging: build a parent address space of `pages` 4 KiB pages
 * (one PTE write and one touch each), copy-on-write mark it (the child gets read-only copies of
 * the PTEs, the parent's PTEs lose R/W: two PTE writes per page) and reload CR3, run the child
 * (switch to it and read every page), then tear the child down (zero its PTEs, switch back,
 * and reuse its page-table frames as data). Counts the exits of each phase.
 */
export function forkWorkload(outOfSync: boolean, pages = 512): ForkReport {
  const g = new OpsGuest({ shadow: { outOfSync } });
  const sp = g.sp as ShadowPaging;
  const f = PTE_P | PTE_RW;
  const l1Count = Math.ceil(pages / 512);
  const space = () => {
    const root = g.table();
    g.d.write64(root, g.d.read64(KPML4)); // the kernel half, shared
    const pdpt = g.table();
    const pd = g.table();
    const l1s = Array.from({ length: l1Count }, () => g.table());
    return { root, pdpt, pd, l1s };
  };
  const phases: ForkPhase[] = [];
  const phase = (name: ForkPhase["phase"], pteOps: number, body: () => void) => {
    const before = g.exits;
    body();
    const exits = g.exits - before;
    phases.push({ phase: name, pteOps, exits, exitsPerOp: exits / pteOps });
  };
  const parent = space();
  const child = space();
  const pte = (s: typeof parent, i: number) => s.l1s[i >> 9]! + (i & 511) * 8;
  const va = (i: number) => USER_BASE + i * 0x1000;
  phase("build", pages, () => {
    must(g.store(parent.root + 8, parent.pdpt | f), "link");
    must(g.store(parent.pdpt, parent.pd | f), "link");
    parent.l1s.forEach((l1, k) => must(g.store(parent.pd + k * 8, l1 | f), "link"));
    must(g.loadCr3(parent.root), "cr3");
    for (let i = 0; i < pages; i++) {
      must(g.store(pte(parent, i), (DATA_GPA + (i % 2048) * 0x1000) | f), "pte");
      must(g.store(va(i), i), "touch");
    }
  });
  phase("cow-mark", 2 * pages, () => {
    must(g.store(child.root + 8, child.pdpt | f), "link");
    must(g.store(child.pdpt, child.pd | f), "link");
    child.l1s.forEach((l1, k) => must(g.store(child.pd + k * 8, l1 | f), "link"));
    for (let i = 0; i < pages; i++) {
      const e = must(g.load(pte(parent, i)), "read pte");
      must(g.store(pte(child, i), e - (e & PTE_RW)), "child pte");
      must(g.store(pte(parent, i), e - (e & PTE_RW)), "parent pte");
    }
    must(g.loadCr3(parent.root), "flush");
  });
  phase("child-run", pages, () => {
    must(g.loadCr3(child.root), "cr3");
    for (let i = 0; i < pages; i++) must(g.load(va(i)), "child read");
  });
  phase("teardown", pages, () => {
    for (let i = 0; i < pages; i++) must(g.store(pte(child, i), 0), "zero pte");
    must(g.loadCr3(parent.root), "cr3");
    // The child's L1 frames are freed and reused as data.
    for (const l1 of child.l1s) for (let k = 0; k < 64; k++) must(g.store(l1 + k * 8, 0xdead_0000 + k), "reuse");
  });
  const s = sp.stats;
  return { outOfSync, pages, phases, emulatedWrites: s.emulatedWrites, unsyncs: s.unsyncs, resyncs: s.resyncs, unshadows: s.unshadows, shadowPagesInUse: sp.shadowPagesInUse };
}

export interface PtemodResult {
  readonly mode: "shadow" | "ept";
  readonly modifications: number;
  readonly exitsPerModification: number;
  /** Modelled with DEFAULT_COST_MODEL (instructions, paging-structure references, exits); the harness's HLTs excluded. */
  readonly cyclesPerModification: number;
}

/**
 * ptemod (Adams and Agesen, ASPLOS 2006, "A Comparison of Software and Hardware Techniques for
 * x86 Virtualization"): a guest repeatedly modifies one PTE of its own (alternating between two
 * frames), INVLPGs it as a kernel must, and reads through it. Under shadow paging each
 * modification is a write-protection fault with an emulated store, plus an INVLPG exit and a
 * fill; under EPT nothing exits, and the price is the longer two-dimensional walk.
 */
export function ptemod(mode: "shadow" | "ept", modifications = 1000, shadow: Partial<ShadowPagingOptions> = {}, ept?: EptFactory): PtemodResult {
  const g = new OpsGuest(ept === undefined ? { mode, shadow } : { mode, shadow, ept });
  const f = PTE_P | PTE_RW;
  const pdpt = g.table();
  const pd = g.table();
  const l1 = g.table();
  must(g.store(KPML4 + 8, pdpt | f), "link");
  must(g.store(pdpt, pd | f), "link");
  must(g.store(pd, l1 | f), "link");
  must(g.store(l1, DATA_GPA | f), "pte");
  must(g.load(USER_BASE), "warm");
  must(g.load(USER_BASE), "warm");
  const exits0 = g.exits;
  const cycles0 = g.modelledCycles();
  const instr0 = g.cpu.counters.instructions;
  for (let k = 0; k < modifications; k++) {
    must(g.store(l1, (DATA_GPA + (k & 1 ? 0 : 0x1000)) | f), "modify");
    must(g.invlpg(USER_BASE), "invlpg");
    must(g.load(USER_BASE), "use");
  }
  // The harness's HLTs (one per operation) are not the workload's instructions.
  const hlts = 3 * modifications;
  void instr0;
  return {
    mode,
    modifications,
    exitsPerModification: (g.exits - exits0) / modifications,
    cyclesPerModification: (g.modelledCycles() - cycles0 - hlts * DEFAULT_COST_MODEL.instruction) / modifications,
  };
}
