/**
 * @vtlab/cpu-vmx and @vtlab/mmu-ept together: a guest in VMX non-root operation whose every
 * guest-physical reference (each guest paging-structure entry and each final address) goes
 * through the real EPT that NestedPaging built from the domain's p2m. Guest RAM lives at machine
 * 8 GiB, so nothing works unless the translation happens; an MMIO store becomes an EPT violation
 * that NestedPaging hands to device emulation.
 */
import { describe, expect, it } from "vitest";
import { MachineMemory, PTE_P, PTE_RW, gfn, mfn, type Mfn } from "@vtlab/arch";
import { Cpu, ExitReason, Vmcs, setupFlat64Guest, vmEntry } from "@vtlab/cpu-vmx";
import { EptGuestMemory, GuestPageTables, NestedPaging } from "@vtlab/mmu-ept";
import { P2mType, RangeP2m, SimpleFrameAllocator } from "@vtlab/p2m";

const GiB = 1024 ** 3;
const RAM_BASE = 8 * GiB;

function domain() {
  const memory = new MachineMemory(64 * GiB);
  const p2m = new RangeP2m();
  p2m.setRange(gfn(0), 65536, P2mType.Ram, mfn(RAM_BASE / 4096)); // 256 MiB of guest RAM at machine 8 GiB
  p2m.setRange(gfn(0xf0000), 16, P2mType.Mmio); // an emulated device at GPA 0xF0000000
  const np = NestedPaging.create({
    memory,
    p2m,
    largePages: false,
    frames: new SimpleFrameAllocator(memory, (32 * GiB / 4096) as Mfn, 4096),
    populate: () => undefined,
  });
  if (!(np instanceof NestedPaging)) throw new Error(np.message);
  const gmem = new EptGuestMemory(memory, np.ept);
  let next = 0x10_0000;
  const tables = new GuestPageTables(gmem, () => (next += 4096) - 4096);
  tables.map(0x40_0000, 0x40_0000, 12, PTE_P | PTE_RW); // code
  tables.map(0x60_0000, 0x60_0000, 12, PTE_P | PTE_RW); // data
  tables.map(0x70_0000, 0xf000_0000, 12, PTE_P | PTE_RW); // the device's registers
  return { memory, np, gmem, tables };
}

describe("a guest on EPT (cpu-vmx + mmu-ept)", () => {
  it("runs through the two-dimensional walk, and its MMIO store exits to device emulation", () => {
    const { memory, np, gmem, tables } = domain();
    // mov rax, [0x600000]; add rax, 1; mov [0x600008], rax; mov dword [0x700000], 0x41; hlt
    const code = "488b0425000060004883c0014889042508006000c704250000700041000000f4";
    const codeHpa = gmem.hpaOf(0x40_0000) as number;
    expect(codeHpa).toBe(RAM_BASE + 0x40_0000);
    memory.writeBytes(codeHpa, Uint8Array.from(code.match(/../g)!.map((h) => parseInt(h, 16))));
    memory.write32(RAM_BASE + 0x60_0000, 41);

    const cpu = new Cpu({ memory });
    const vmcs = new Vmcs();
    const err = setupFlat64Guest(vmcs, { cr3: tables.root, rip: 0x40_0000, rsp: 0x60_0800, gdtBase: 0x1000, gdtLimit: 0x37, idtBase: 0x2000, idtLimit: 0xfff, tssBase: 0x3000 });
    expect(err).toBeUndefined();
    np.setupVcpu(cpu, vmcs);
    cpu.secondLevel = np.walkerFor(cpu);
    expect(vmEntry(cpu, vmcs, true)).toBeUndefined();
    const r = cpu.run(1000);
    if (r.kind !== "vmexit") throw new Error(`expected an exit, got ${r.kind}`);
    expect(r.exit.reason).toBe(ExitReason.EptViolation);
    expect(r.exit.guestPhysical).toBe(0xf000_0000);
    expect(r.exit.guestLinear).toBe(0x70_0000);
    expect(np.handleExit(cpu, vmcs, r.exit)).toEqual({ kind: "mmio", gpa: 0xf000_0000, write: true });
    // The data store before it landed in the machine frame EPT maps GPA 0x600008 to.
    expect(memory.read32(RAM_BASE + 0x60_0008)).toBe(42);
    expect(memory.read32(0x60_0008)).toBe(0); // not at the guest-physical address itself
    // Every guest paging-structure reference and final address went through EPT.
    expect(cpu.counters.eptReferences).toBeGreaterThan(0);
    // Walks: the code page, the data read, the data store again (the read's TLB entry had the
    // guest PTE's D clear, so the write walks to set it, as hardware does), the MMIO page.
    expect(cpu.counters.pageWalks).toBe(4);
  });
});
