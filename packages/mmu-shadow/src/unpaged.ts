/**
 * The identity page table a shadow vCPU runs on while its guest has paging off (Xen's
 * `unpaged_pagetable`, which shadow_enable takes from the shadow pool and which the guest's p2m
 * never maps). Its entries link tables by machine address; its leaves are guest-physical
 * addresses, translated through the p2m like any guest leaf. Keeping it out of the p2m is what
 * keeps a guest from reading or writing it: a guest PTE pointing just above RAM gets what the
 * p2m has there (nothing, or emulated MMIO), the same on shadow as on EPT.
 */
import { P2mType } from "@vtlab/p2m";
import type { MachineMemory, PagingLevel, PagingStructureAccess, U64 } from "@vtlab/arch";
import type { GuestTableFault } from "./guest-walk.js";

/** Paging structures read at machine addresses (the hypervisor's own identity table). */
export class MachinePagingStructures implements PagingStructureAccess<GuestTableFault> {
  constructor(private readonly memory: MachineMemory) {}

  private fault(address: number): GuestTableFault {
    return { kind: "guest-table-not-ram", gpa: address, type: P2mType.Absent };
  }

  readEntry(address: number, _level: PagingLevel, out: U64): GuestTableFault | undefined {
    return this.memory.read64(address, out) === undefined ? undefined : this.fault(address);
  }

  setEntryBits(address: number, _level: PagingLevel, lowBits: number): GuestTableFault | undefined {
    const lo = this.memory.read32(address);
    if (typeof lo !== "number") return this.fault(address);
    return this.memory.write32(address, (lo | lowBits) >>> 0) === undefined ? undefined : this.fault(address);
  }
}
