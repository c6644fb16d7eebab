/**
 * The guest's own page tables, read the way the hypervisor reads them (Xen's guest_walk_tables):
 * every guest-physical reference goes through the domain's p2m to a machine frame. The walk is
 * arch's one walker, so access rights, reserved bits and accessed/dirty updates are the SDM's.
 */
import {
  CR4_LA57,
  CR4_PGE,
  CR4_SMAP,
  CR4_SMEP,
  EFER_NXE,
  CR0_WP,
  RFLAGS_AC,
  type Cpu,
} from "@vtlab/cpu-vmx";
import { gfn as asGfn, type MachineMemory, type PagingLevel, type PagingMode, type PagingStructureAccess, type U64 } from "@vtlab/arch";
import { P2mType, type DomainP2m } from "@vtlab/p2m";

/** A guest paging-structure entry whose guest-physical address is not RAM in the p2m. */
export interface GuestTableFault {
  readonly kind: "guest-table-not-ram";
  readonly gpa: number;
  readonly type: P2mType;
}

/** The machine frame behind a RAM gfn, or -1. */
export function ramMfn(p2m: DomainP2m, gfn: number): number {
  const e = p2m.lookup(asGfn(gfn));
  return e.type === P2mType.Ram ? e.mfn : -1;
}

/** Guest paging structures reached through the p2m (gpa -> mfn for each entry). */
export class P2mPagingStructures implements PagingStructureAccess<GuestTableFault> {
  constructor(
    private readonly memory: MachineMemory,
    private readonly p2m: DomainP2m,
  ) {}

  private machine(gpa: number): number {
    const mfn = ramMfn(this.p2m, Math.floor(gpa / 4096));
    return mfn < 0 ? -1 : mfn * 4096 + (gpa & 0xfff);
  }

  private fault(gpa: number): GuestTableFault {
    return { kind: "guest-table-not-ram", gpa, type: this.p2m.lookup(asGfn(Math.floor(gpa / 4096))).type };
  }

  readEntry(address: number, _level: PagingLevel, out: U64): GuestTableFault | undefined {
    const m = this.machine(address);
    if (m < 0) return this.fault(address);
    const r = this.memory.read64(m, out);
    return r === undefined ? undefined : this.fault(address);
  }

  setEntryBits(address: number, _level: PagingLevel, lowBits: number): GuestTableFault | undefined {
    const m = this.machine(address);
    if (m < 0) return this.fault(address);
    const lo = this.memory.read32(m);
    if (typeof lo !== "number") return this.fault(address);
    const w = this.memory.write32(m, (lo | lowBits) >>> 0);
    return w === undefined ? undefined : this.fault(address);
  }
}

/** The guest's paging mode from the state the CPU saved at the exit. */
export function guestPagingMode(cpu: Cpu, out: PagingMode): PagingMode {
  out.la57 = (cpu.cr4 & CR4_LA57) !== 0;
  out.wp = (cpu.cr0 & CR0_WP) !== 0;
  out.nxe = (cpu.efer & EFER_NXE) !== 0;
  out.smep = (cpu.cr4 & CR4_SMEP) !== 0;
  out.smap = (cpu.cr4 & CR4_SMAP) !== 0;
  out.pge = (cpu.cr4 & CR4_PGE) !== 0;
  out.ac = (cpu.getFlags() & RFLAGS_AC) !== 0;
  return out;
}


