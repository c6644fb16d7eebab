import { describe, expect, it } from "vitest";
import { Access, MachineMemory, PFEC_P, PTE_P, PTE_RW, PTE_US, gfn, mfn, type Gfn, type Mfn } from "@vtlab/arch";
import { CR0_PE, CR0_PG, CR0_WP, CR4_PAE, Cpu, EFER_LMA, EFER_LME, EFER_NXE, ExitReason, Vmcs, VmcsField, type ExitOutcome, type VmExit } from "@vtlab/cpu-vmx";
import { CPU_BASED_ACTIVATE_SECONDARY_CONTROLS, CPU_BASED_CR3_LOAD_EXITING, CPU_BASED_INVLPG_EXITING, EPT_GLA_FAULT, EPT_GLA_VALID, EPT_READ_VIOLATION, EPT_W, EPT_WRITE_VIOLATION, EptGuestMemory, GuestPageTables, NestedPaging, NestedStatus, SECONDARY_EXEC_ENABLE_EPT, SECONDARY_EXEC_ENABLE_VPID, isP2mError, type EptFault, type NestedPagingOptions, type NestedWalker } from "@vtlab/mmu-ept";
import { P2mType, RangeP2m, SimpleFrameAllocator } from "@vtlab/p2m";
import { GiB, MiB, TABLE_FRAMES_AT, expectDefined, read64 } from "./fixture.js";

const RAM = 64 * MiB;
const RAM_MFN = (8 * GiB) / 4096;
const MMIO_GPA = 0xf000_0000;
const POD_GPA = 0x1000_0000; // 256 MiB
const POD_FRAMES_AT = (16 * GiB) / 4096;
const GVA = 0x4000_0000;

interface Domain {
  memory: MachineMemory;
  p2m: RangeP2m;
  np: NestedPaging;
  cpu: Cpu;
  vmcs: Vmcs;
  walker: NestedWalker;
  tables: GuestPageTables;
  populated: Gfn[];
}

function domain(options: Partial<NestedPagingOptions> & { podFrames?: number } = {}): Domain {
  const memory = new MachineMemory(64 * GiB);
  const p2m = new RangeP2m();
  p2m.setRange(gfn(0), RAM / 4096, P2mType.Ram, mfn(RAM_MFN));
  p2m.setRange(gfn(MMIO_GPA / 4096), 16, P2mType.Mmio);
  p2m.setRange(gfn(POD_GPA / 4096), 256, P2mType.PopulateOnDemand);
  const populated: Gfn[] = [];
  let next = POD_FRAMES_AT;
  const limit = POD_FRAMES_AT + (options.podFrames ?? 256);
  const np = NestedPaging.create({
    memory,
    p2m,
    frames: new SimpleFrameAllocator(memory, TABLE_FRAMES_AT as Mfn, 4096),
    populate: (g) => {
      populated.push(g);
      return next < limit ? (next++ as Mfn) : undefined;
    },
    ...options,
  });
  if (isP2mError(np)) throw new Error(np.message);
  let nextTable = 0x10_0000;
  const tables = new GuestPageTables(new EptGuestMemory(memory, np.ept), () => (nextTable += 4096) - 4096);
  const cpu = new Cpu({ memory });
  cpu.cr0 = CR0_PE | CR0_PG | CR0_WP;
  cpu.cr4 = CR4_PAE;
  cpu.efer = EFER_LME | EFER_LMA | EFER_NXE;
  cpu.cr3 = tables.root;
  const vmcs = new Vmcs();
  np.setupVcpu(cpu, vmcs);
  return { memory, p2m, np, cpu, vmcs, walker: expectDefined(np.walkerFor(cpu)), tables, populated };
}

/** The exit the CPU would take for the walker's EPT fault. */
function exitFor(fault: EptFault, gva: number): VmExit {
  if (fault.kind === "ept-misconfig") return { reason: ExitReason.EptMisconfig, qualification: 0, instructionLength: 0, guestPhysical: fault.gpa };
  return { reason: ExitReason.EptViolation, qualification: fault.qualification, instructionLength: 0, guestPhysical: fault.gpa, guestLinear: gva };
}

/** Retry the access the way the CPU would after each resumed exit; returns the exits' outcomes. */
function access(d: Domain, gva: number, kind: number): ExitOutcome[] {
  const outcomes: ExitOutcome[] = [];
  for (let i = 0; i < 8; i++) {
    const out = d.walker.walk(gva, kind);
    if (out.kind !== "ept-fault") return outcomes;
    const o = d.np.handleExit(d.cpu, d.vmcs, exitFor(out.fault, gva));
    outcomes.push(o);
    if (o.kind !== "resume") return outcomes;
  }
  throw new Error("the access kept faulting");
}

function faultOf(w: NestedWalker, gva: number, access: number): EptFault {
  const out = w.walk(gva, access);
  if (out.kind !== "ept-fault") throw new Error(`expected an EPT fault, got ${out.kind}`);
  return out.fault;
}

describe("NestedPaging: building EPT from the p2m", () => {
  it("maps RAM with large pages where aligned; MMIO, POD and holes are not present", () => {
    const { np } = domain();
    expect(np.ept.lookup(0x12_3456)).toMatchObject({ hpa: 8 * GiB + 0x12_3456, level: 2 });
    expect(np.ept.lookup(MMIO_GPA)).toBeUndefined();
    expect(np.ept.lookup(POD_GPA)).toBeUndefined();
    expect(np.ept.lookup(RAM)).toBeUndefined();
    expect(domain({ largePages: false }).np.ept.lookup(0x12_3456)?.level).toBe(1);
  });

  it("refuses A/D or dirty-bit log-dirty on a processor without EPT A/D", () => {
    const memory = new MachineMemory(GiB);
    const base = { memory, p2m: new RangeP2m(), frames: new SimpleFrameAllocator(memory, mfn(1), 16), populate: () => undefined };
    const caps = { ...expectDefined(domain().np.caps), accessedDirty: false };
    expect(NestedPaging.create({ ...base, caps, accessedDirty: true })).toMatchObject({ kind: "p2m-error", reason: "unsupported" });
    expect(NestedPaging.create({ ...base, caps, logDirtyMethod: "dirty-bits" })).toMatchObject({ kind: "p2m-error", reason: "unsupported" });
    expect(NestedPaging.create({ ...base, caps })).toBeInstanceOf(NestedPaging);
  });
});

describe("NestedPaging.setupVcpu", () => {
  it("writes EPT_POINTER and the controls (enable EPT, enable VPID, secondary on, no CR3/INVLPG exits)", () => {
    const memory = new MachineMemory(64 * GiB);
    const p2m = new RangeP2m();
    p2m.setRange(gfn(0), 512, P2mType.Ram, mfn(0x1000));
    const np = NestedPaging.create({ memory, p2m, frames: new SimpleFrameAllocator(memory, TABLE_FRAMES_AT as Mfn, 64), populate: () => undefined }) as NestedPaging;
    const vmcs = new Vmcs();
    vmcs.vmwrite(VmcsField.CPU_BASED_VM_EXEC_CONTROL, CPU_BASED_INVLPG_EXITING | CPU_BASED_CR3_LOAD_EXITING | (1 << 7));
    vmcs.vmwrite(VmcsField.EXCEPTION_BITMAP, (1 << 14) | (1 << 6));
    const a = new Cpu({ memory });
    const b = new Cpu({ memory });
    np.setupVcpu(a, vmcs);
    const eptp = np.eptp;
    expect(vmcs.vmread(VmcsField.EPT_POINTER)).toBe(eptp.hi * 2 ** 32 + eptp.lo);
    expect(eptp.lo & 0x7f).toBe(6 | (3 << 3) | (1 << 6)); // WB, 4 levels, A/D
    expect(vmcs.read32(VmcsField.SECONDARY_VM_EXEC_CONTROL)).toBe(SECONDARY_EXEC_ENABLE_EPT | SECONDARY_EXEC_ENABLE_VPID);
    expect(vmcs.read32(VmcsField.CPU_BASED_VM_EXEC_CONTROL)).toBe((CPU_BASED_ACTIVATE_SECONDARY_CONTROLS | (1 << 7)) >>> 0);
    expect(vmcs.read32(VmcsField.EXCEPTION_BITMAP)).toBe(1 << 6);
    expect(vmcs.read32(VmcsField.VIRTUAL_PROCESSOR_ID)).toBe(1);
    const vb = new Vmcs();
    np.setupVcpu(b, vb);
    expect(vb.read32(VmcsField.VIRTUAL_PROCESSOR_ID)).toBe(2);
    np.setupVcpu(a, vmcs);
    expect(vmcs.read32(VmcsField.VIRTUAL_PROCESSOR_ID)).toBe(1);
    expect(np.walkerFor(a)).not.toBe(np.walkerFor(b));
    expect(np.walkerFor(a)?.ept.root).toBe(np.ept.root);
  });

  it("gives the vCPU's walker the guest's CR3 and mode", () => {
    const d = domain();
    d.tables.map(GVA, 0x20_0000);
    expect(d.walker.root).toBe(d.tables.root);
    expect(d.walker.mode).toMatchObject({ wp: true, nxe: true, la57: false });
    expect(d.walker.walk(GVA + 4, Access.Read)).toMatchObject({ kind: "translation", hpa: 8 * GiB + 0x20_0004 });
  });
});

describe("NestedPaging.handleExit", () => {
  it("MMIO goes to the device model, with the GPA and whether it was a write", () => {
    const d = domain();
    d.tables.map(GVA, MMIO_GPA);
    const f = faultOf(d.walker, GVA + 0x10, Access.Write);
    expect(d.np.handleExit(d.cpu, d.vmcs, exitFor(f, GVA + 0x10))).toEqual({ kind: "mmio", gpa: MMIO_GPA + 0x10, write: true });
    // The GPA may come from the VMCS instead of the exit value.
    d.vmcs.setNatural(VmcsField.GUEST_PHYSICAL_ADDRESS, MMIO_GPA + 0x20);
    const read = faultOf(d.walker, GVA + 0x20, Access.Read);
    expect(d.np.handleExit(d.cpu, d.vmcs, { reason: ExitReason.EptViolation, qualification: read.kind === "ept-violation" ? read.qualification : 0, instructionLength: 0 })).toEqual({
      kind: "mmio",
      gpa: MMIO_GPA + 0x20,
      write: false,
    });
    expect(d.np.stats).toMatchObject({ eptViolations: 2, mmio: 2, crashes: 0 });
  });

  it("populate on demand: a zeroed frame from the allocator, mapped, and the access retried", () => {
    const d = domain();
    d.memory.fill(POD_FRAMES_AT * 4096, 4096, 0xaa); // stale contents in the frame about to be given
    d.tables.map(GVA, POD_GPA + 0x5000);
    const f = faultOf(d.walker, GVA + 8, Access.Write);
    expect(f).toMatchObject({ gpa: POD_GPA + 0x5008, qualification: EPT_WRITE_VIOLATION | EPT_GLA_VALID | EPT_GLA_FAULT });
    expect(d.np.handleExit(d.cpu, d.vmcs, exitFor(f, GVA + 8))).toEqual({ kind: "resume" });
    expect(d.populated).toEqual([POD_GPA / 4096 + 5]);
    expect(d.p2m.lookup(gfn(POD_GPA / 4096 + 5))).toEqual({ type: "ram", mfn: POD_FRAMES_AT });
    expect(d.walker.walk(GVA + 8, Access.Write)).toMatchObject({ kind: "translation", hpa: POD_FRAMES_AT * 4096 + 8 });
    expect(d.memory.read32(POD_FRAMES_AT * 4096 + 100)).toBe(0);
    expect(d.np.stats.populated).toBe(1);
  });

  it("populate on demand with no frame left crashes the domain", () => {
    const d = domain({ podFrames: 0 });
    d.tables.map(GVA, POD_GPA);
    const f = faultOf(d.walker, GVA, Access.Read);
    const out = d.np.handleExit(d.cpu, d.vmcs, exitFor(f, GVA));
    expect(out).toMatchObject({ kind: "crash" });
    expect(out.kind === "crash" && out.reason).toContain("populate-on-demand");
  });

  it("real violations are reported and crash the domain, not the host", () => {
    const d = domain();
    d.tables.map(GVA, 0x8000_0000); // nothing there
    const f = faultOf(d.walker, GVA, Access.Read);
    const out = d.np.handleExit(d.cpu, d.vmcs, exitFor(f, GVA));
    expect(out.kind).toBe("crash");
    expect(d.np.reports).toEqual([
      {
        gpa: 0x8000_0000,
        guestLinear: GVA,
        qualification: EPT_READ_VIOLATION | EPT_GLA_VALID | EPT_GLA_FAULT,
        p2mType: "absent",
        message: "EPT violation at gpa 0x80000000 (linear 0x40000000): read; entry ---; linear valid; final; nothing is mapped at this guest frame",
      },
    ]);
    // A guest page table placed in emulated MMIO cannot be walked.
    const e = domain();
    e.tables.map(GVA, 0x20_0000);
    const pt = e.tables.entryFor(GVA, 1) as number;
    e.np.setGfns(gfn(Math.floor(pt / 4096)), 1, P2mType.Mmio);
    const walkFault = faultOf(e.walker, GVA, Access.Read);
    expect(walkFault.kind === "ept-violation" && walkFault.qualification & EPT_GLA_FAULT).toBe(0);
    const out2 = e.np.handleExit(e.cpu, e.vmcs, exitFor(walkFault, GVA));
    expect(out2.kind === "crash" && out2.reason).toContain("guest paging structure in emulated MMIO");
  });

  it("an EPT misconfiguration crashes the domain with the entry at fault", () => {
    const d = domain({ largePages: false });
    d.tables.map(GVA, 0x30_0000);
    const leaf = expectDefined(d.np.ept.lookup(0x30_0000));
    const e = read64(d.memory, leaf.entryAddress);
    d.memory.write64(leaf.entryAddress, (e.lo & ~7) | EPT_W, e.hi);
    const f = faultOf(d.walker, GVA, Access.Read);
    expect(f).toMatchObject({ kind: "ept-misconfig", gpa: 0x30_0000 });
    const out = d.np.handleExit(d.cpu, d.vmcs, exitFor(f, GVA));
    expect(out.kind === "crash" && out.reason).toMatch(/^EPT misconfiguration at gpa 0x300000: EPT PTE at 0x[0-9a-f]+ = .*write without read$/);
    expect(d.np.stats.eptMisconfigs).toBe(1);
  });

  it("a #PF exception exit goes back to the guest; exits EPT mode never asks for are vtlab bugs", () => {
    const d = domain();
    expect(d.np.handleExit(d.cpu, d.vmcs, { reason: ExitReason.ExceptionOrNmi, qualification: 0xdead_b000, instructionLength: 0, interruption: { vector: 14, type: 3, errorCode: 6 } })).toEqual({
      kind: "inject",
      vector: 14,
      errorCode: 6,
      cr2: 0xdead_b000,
    });
    expect(() => d.np.handleExit(d.cpu, d.vmcs, { reason: ExitReason.Cpuid, qualification: 0, instructionLength: 2 })).toThrow(/vtlab bug/);
  });
});

describe("NestedPaging.gvaToGpa", () => {
  it("walks the guest's tables through EPT; guest #PF as a value; paging off is the identity", () => {
    const d = domain();
    d.tables.map(GVA, 0x20_0000, 12, PTE_P | PTE_US);
    expect(d.np.gvaToGpa(d.cpu, GVA + 0x123, Access.Read)).toBe(0x20_0123);
    expect(d.np.gvaToGpa(d.cpu, GVA + 0x123, Access.Write)).toMatchObject({ kind: "page-fault", errorCode: PFEC_P | 2, level: 0 });
    expect(d.np.gvaToGpa(d.cpu, GVA + 0x1000, Access.Read)).toMatchObject({ kind: "page-fault", errorCode: 0, level: 1 });
    d.cpu.cr0 &= ~CR0_PG;
    expect(d.np.gvaToGpa(d.cpu, 0x1234, Access.Read)).toBe(0x1234);
  });

  it("populates a guest table in a populate-on-demand frame and retries; a table in MMIO reads as not present", () => {
    const d = domain();
    d.tables.map(GVA, 0x20_0000, 12, PTE_P | PTE_RW);
    const pde = d.tables.entryFor(GVA, 2) as number;
    // Point the guest PDE at a page table in a POD frame (which reads as zeros once populated).
    const e = { lo: 0, hi: 0 };
    const gm = new EptGuestMemory(d.memory, d.np.ept);
    gm.read64(pde, e);
    gm.write64(pde, ((e.lo & 0xfff) | (POD_GPA + 0x3000)) >>> 0, e.hi);
    expect(d.np.gvaToGpa(d.cpu, GVA, Access.Read)).toMatchObject({ kind: "page-fault", errorCode: 0, level: 1 });
    expect(d.populated).toEqual([POD_GPA / 4096 + 3]);
    gm.write64(pde, ((e.lo & 0xfff) | (MMIO_GPA + 0x1000)) >>> 0, e.hi);
    expect(d.np.gvaToGpa(d.cpu, GVA, Access.Write)).toMatchObject({ kind: "page-fault", errorCode: 2, level: 1 });
    expect(d.np.stats.crashes).toBe(0);
  });
});

describe("log-dirty mode", () => {
  it("by write-protection: a write faults once, is recorded, gets W back; cleaning re-protects", () => {
    const d = domain({ accessedDirty: false });
    expect(d.np.logDirtyMethod).toBe("write-protect");
    d.tables.map(GVA, 0x20_0000);
    d.walker.walk(GVA, Access.Write); // the guest's A/D flags in its tables are set before tracking starts
    expect(d.np.enableLogDirty()).toBeUndefined();
    expect(d.np.ept.lookup(0x20_0000)).toMatchObject({ level: 1, perms: 5 });
    expect(d.walker.walk(GVA, Access.Read).kind).toBe("translation");
    const f = faultOf(d.walker, GVA, Access.Write);
    expect(f).toMatchObject({ gpa: 0x20_0000, qualification: EPT_WRITE_VIOLATION | (5 << 3) | EPT_GLA_VALID | EPT_GLA_FAULT });
    expect(d.np.handleExit(d.cpu, d.vmcs, exitFor(f, GVA))).toEqual({ kind: "resume" });
    expect(d.walker.walk(GVA, Access.Write).kind).toBe("translation");
    expect(d.np.peekDirty()).toEqual([0x200]);
    expect(d.np.cleanDirty()).toEqual([0x200]);
    expect(d.np.peekDirty()).toEqual([]);
    expect(faultOf(d.walker, GVA, Access.Write).kind).toBe("ept-violation"); // re-protected, and flushed
    d.np.disableLogDirty();
    expect(d.walker.walk(GVA, Access.Write).kind).toBe("translation");
    expect(d.np.stats.logDirtyFaults).toBe(1);
  });

  it("by EPT dirty flags: no exits; the processor marks written frames (and the guest's table frames it walks)", () => {
    const d = domain();
    expect(d.np.logDirtyMethod).toBe("dirty-bits");
    d.tables.map(GVA, 0x20_0000);
    d.tables.map(GVA + 0x1000, 0x20_1000);
    d.walker.walk(GVA, Access.Write);
    d.np.enableLogDirty();
    expect(d.np.peekDirty()).toEqual([]);
    expect(d.walker.walk(GVA + 0x1000, Access.Read).kind).toBe("translation");
    expect(d.walker.walk(GVA, Access.Write).kind).toBe("translation");
    const tableGfns = [4, 3, 2, 1].map((l) => Math.floor((d.tables.entryFor(GVA, l) as number) / 4096));
    expect(d.np.peekDirty()).toEqual([...tableGfns, 0x200].sort((a, b) => a - b));
    expect(d.np.cleanDirty()).toContain(0x200);
    expect(d.np.peekDirty()).toEqual([]);
    expect(d.walker.walk(GVA, Access.Write).kind).toBe("translation"); // cleaning flushed: the write walks and sets D
    expect(d.np.peekDirty()).toContain(0x200);
    expect(d.np.stats.eptViolations).toBe(0);
  });

  it("frames populated while tracking count as dirty", () => {
    const d = domain({ accessedDirty: false });
    d.np.enableLogDirty();
    d.tables.map(GVA, POD_GPA);
    // The guest's own A/D updates of its (write-protected) tables fault first, then the POD frame.
    expect(access(d, GVA, Access.Read)).toEqual([{ kind: "resume" }, { kind: "resume" }, { kind: "resume" }, { kind: "resume" }, { kind: "resume" }]);
    expect(d.np.stats.populated).toBe(1);
    expect(d.np.peekDirty()).toContain(POD_GPA / 4096);
    expect(d.np.ept.lookup(POD_GPA)?.perms).toBe(5); // mapped without W: the first write is seen
  });
});

describe("p2m changes at run time", () => {
  it("setGfns updates the EPT and flushes every vCPU when a mapping goes away", () => {
    const d = domain();
    d.tables.map(GVA, 0x20_0000);
    expect(d.walker.walk(GVA, Access.Read).kind).toBe("translation");
    const invepts = d.np.stats.invepts;
    expect(d.np.setGfns(gfn(0x200), 1, P2mType.Absent)).toBeUndefined();
    expect(d.np.stats.invepts).toBe(invepts + 1);
    expect(d.walker.translateLinear(0, GVA, Access.Read)).toBe(NestedStatus.EptViolation);
    expect(d.np.setGfns(gfn(0x200), 1, P2mType.Ram, mfn(0x12_3456))).toBeUndefined();
    expect(d.walker.walk(GVA + 1, Access.Read)).toMatchObject({ kind: "translation", hpa: 0x12_3456 * 4096 + 1 });
    expect(d.np.mode).toBe("ept");
  });
});
