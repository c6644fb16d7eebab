/**
 * Building a guest's own page tables in guest-physical memory, as a guest kernel would: for
 * tests, the example and the walk-cost workload. Guest-physical memory is reached through the
 * EPT tables the hypervisor built (`EptGuestMemory`), so what is written lands in the machine
 * frames EPT maps, and a nested walk finds it there.
 */
import { PTE_P, PTE_PS, PTE_RW, PTE_US, entryAddress, makeEntry, type MemoryError, type PhysicalMemory, type U64 } from "@vtlab/arch";
import type { EptP2m } from "./p2m.js";

/** The part of the memory interface a page-table builder needs, addressed by GPA. */
export interface GuestPhysicalMemory {
  read64(gpa: number, out: U64): MemoryError | undefined;
  write64(gpa: number, lo: number, hi: number): MemoryError | undefined;
}

/** Guest-physical memory seen through EPT tables (permissions ignored: this is the hypervisor's view). */
export class EptGuestMemory implements GuestPhysicalMemory {
  constructor(
    private readonly memory: PhysicalMemory,
    private readonly ept: EptP2m,
  ) {}

  /** The host-physical address of `gpa`, or a MemoryError when EPT does not map it. */
  hpaOf(gpa: number): number | MemoryError {
    const m = this.ept.lookup(gpa);
    if (m === undefined) return { kind: "memory-error", reason: "out-of-range", address: gpa, length: 8, limit: this.ept.limit };
    return m.hpa;
  }

  read64(gpa: number, out: U64): MemoryError | undefined {
    const hpa = this.hpaOf(gpa);
    return typeof hpa === "number" ? this.memory.read64(hpa, out) : hpa;
  }

  write64(gpa: number, lo: number, hi: number): MemoryError | undefined {
    const hpa = this.hpaOf(gpa);
    return typeof hpa === "number" ? this.memory.write64(hpa, lo, hi) : hpa;
  }
}

/** Flags of the entries that reference tables: present, writable, user (rights are set at the leaves). */
const TABLE_FLAGS = PTE_P | PTE_RW | PTE_US;

/** 4- or 5-level guest page tables rooted at a guest-physical page. */
export class GuestPageTables {
  /** Guest-physical address of the top-level table (what the guest loads into CR3). */
  readonly root: number;
  private readonly e: U64 = { lo: 0, hi: 0 };

  /** `allocate` returns the guest-physical address of a zeroed 4 KiB page for a table. */
  constructor(
    private readonly memory: GuestPhysicalMemory,
    private readonly allocate: () => number,
    readonly levels: 4 | 5 = 4,
  ) {
    this.root = allocate();
  }

  /** Map the page at `gva` (4 KiB, 2 MiB or 1 GiB by `pageShift`) to `gpa` with the leaf's flags. */
  map(gva: number, gpa: number, pageShift: 12 | 21 | 30 = 12, flagsLo = PTE_P | PTE_RW | PTE_US, flagsHi = 0): MemoryError | undefined {
    const leafLevel = pageShift === 12 ? 1 : pageShift === 21 ? 2 : 3;
    const at = this.entryFor(gva, leafLevel);
    if (typeof at !== "number") return at;
    const leaf = makeEntry(gpa, flagsLo | (leafLevel > 1 ? PTE_PS : 0), flagsHi);
    return this.memory.write64(at, leaf.lo, leaf.hi);
  }

  /** Guest-physical address of the entry at `level` for `gva`, creating the tables above it. */
  entryFor(gva: number, level: number): number | MemoryError {
    let table = this.root;
    for (let l = this.levels; ; l--) {
      const at = table + indexOf(gva, l) * 8;
      if (l === level) return at;
      const r = this.memory.read64(at, this.e);
      if (r !== undefined) return r;
      if ((this.e.lo & PTE_P) === 0) {
        const next = this.allocate();
        const t = makeEntry(next, TABLE_FLAGS);
        const w = this.memory.write64(at, t.lo, t.hi);
        if (w !== undefined) return w;
        table = next;
      } else {
        table = entryAddress(this.e.lo, this.e.hi);
      }
    }
  }
}

function indexOf(gva: number, level: number): number {
  return Math.floor(gva / 2 ** (12 + 9 * (level - 1))) % 512;
}
