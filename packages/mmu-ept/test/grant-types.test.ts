import { describe, expect, it } from "vitest";
import { Access, MachineMemory, gfn, mfn, type Mfn } from "@vtlab/arch";
import { CR0_PE, CR0_PG, CR0_WP, CR4_PAE, Cpu, EFER_LMA, EFER_LME, EFER_NXE, ExitReason, Vmcs } from "@vtlab/cpu-vmx";
import { EPT_R, EPT_RWX, EPT_W, EptGuestMemory, GuestPageTables, NestedPaging, isP2mError } from "@vtlab/mmu-ept";
import { P2mType, RangeP2m, SimpleFrameAllocator, p2mHasFrame, p2mIsGrant } from "@vtlab/p2m";
import { GiB, MiB, TABLE_FRAMES_AT } from "./fixture.js";

const RAM_MFN = (8 * GiB) / 4096;
const GRANTED_MFN = (12 * GiB) / 4096;
const GVA = 0x4000_0000;
const RW_GFN = 0x8000; // 128 MiB
const RO_GFN = 0x8001;

function domain() {
  const memory = new MachineMemory(64 * GiB);
  const p2m = new RangeP2m();
  p2m.setRange(gfn(0), (16 * MiB) / 4096, P2mType.Ram, mfn(RAM_MFN));
  p2m.setRange(gfn(RW_GFN), 1, P2mType.GrantMapRw, mfn(GRANTED_MFN));
  p2m.setRange(gfn(RO_GFN), 1, P2mType.GrantMapRo, mfn(GRANTED_MFN + 1));
  const np = NestedPaging.create({ memory, p2m, frames: new SimpleFrameAllocator(memory, TABLE_FRAMES_AT as Mfn, 4096), populate: () => undefined });
  if (isP2mError(np)) throw new Error(np.message);
  let next = 0x10_0000;
  const tables = new GuestPageTables(new EptGuestMemory(memory, np.ept), () => (next += 4096) - 4096);
  const cpu = new Cpu({ memory });
  cpu.cr0 = CR0_PE | CR0_PG | CR0_WP;
  cpu.cr4 = CR4_PAE;
  cpu.efer = EFER_LME | EFER_LMA | EFER_NXE;
  cpu.cr3 = tables.root;
  const vmcs = new Vmcs();
  np.setupVcpu(cpu, vmcs);
  return { memory, p2m, np, cpu, vmcs, tables, walker: np.walkerFor(cpu)! };
}

describe("grant-mapping p2m types (p2m_grant_map_rw / p2m_grant_map_ro)", () => {
  it("carry their machine frame in the p2m and do not merge with RAM", () => {
    const d = domain();
    expect(d.p2m.lookup(gfn(RW_GFN))).toEqual({ type: P2mType.GrantMapRw, mfn: GRANTED_MFN });
    expect(d.p2m.lookup(gfn(RO_GFN))).toEqual({ type: P2mType.GrantMapRo, mfn: GRANTED_MFN + 1 });
    expect([...d.p2m.runs()].map((r) => r.type)).toEqual([P2mType.Ram, P2mType.GrantMapRw, P2mType.GrantMapRo]);
    expect([P2mType.Ram, P2mType.GrantMapRw, P2mType.GrantMapRo].every(p2mHasFrame)).toBe(true);
    expect([P2mType.Mmio, P2mType.Absent, P2mType.PopulateOnDemand].some(p2mHasFrame)).toBe(false);
    expect(p2mIsGrant(P2mType.Ram)).toBe(false);
  });

  it("are mapped R/W and R in the EPT, never executable (ept_p2m_type_to_flags)", () => {
    const d = domain();
    expect(d.np.ept.lookup(RW_GFN * 4096)).toMatchObject({ hpa: GRANTED_MFN * 4096, perms: EPT_R | EPT_W });
    expect(d.np.ept.lookup(RO_GFN * 4096)).toMatchObject({ hpa: (GRANTED_MFN + 1) * 4096, perms: EPT_R });
    expect(d.np.ept.lookup(0)?.perms).toBe(EPT_RWX);
  });

  it("a write through a read-only grant mapping is an EPT violation handed to the emulator (a discard-write type)", () => {
    const d = domain();
    d.tables.map(GVA, RO_GFN * 4096);
    expect(d.walker.walk(GVA, Access.Read)).toMatchObject({ kind: "translation", hpa: (GRANTED_MFN + 1) * 4096 });
    const out = d.walker.walk(GVA + 8, Access.Write);
    expect(out.kind).toBe("ept-fault");
    if (out.kind !== "ept-fault" || out.fault.kind !== "ept-violation") return;
    const o = d.np.handleExit(d.cpu, d.vmcs, { reason: ExitReason.EptViolation, qualification: out.fault.qualification, instructionLength: 0, guestPhysical: out.fault.gpa, guestLinear: GVA + 8 });
    expect(o).toEqual({ kind: "mmio", gpa: RO_GFN * 4096 + 8, write: true });
  });

  it("setGfns maps and unmaps a grant under a running walker (INVEPT when it goes)", () => {
    const d = domain();
    const g = gfn(0x9000);
    d.tables.map(GVA, 0x9000 * 4096);
    expect(d.walker.walk(GVA, Access.Read).kind).toBe("ept-fault");
    expect(d.np.setGfns(g, 1, P2mType.GrantMapRw, mfn(GRANTED_MFN + 7))).toBeUndefined();
    expect(d.walker.walk(GVA, Access.Write)).toMatchObject({ kind: "translation", hpa: (GRANTED_MFN + 7) * 4096 });
    const invepts = d.np.stats.invepts;
    expect(d.np.setGfns(g, 1, P2mType.Absent)).toBeUndefined();
    expect(d.np.stats.invepts).toBe(invepts + 1);
    expect(d.walker.walk(GVA, Access.Read).kind).toBe("ept-fault");
  });
});
