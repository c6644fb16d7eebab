/**
 * The two-dimensional page walk drawn reference by reference: one cold walk (no TLB, no
 * paging-structure caches: @vtlab/mmu-ept's NO_CACHES) of a 4-level guest over 4-level EPT, both
 * with 4 KiB pages, on mmu-ept's walk-cost machine (`buildWalkCostMachine`: guest tables and data
 * pages scattered over guest-physical memory). Each guest paging-structure entry sits at a
 * guest-physical address that EPT translates first (4 references), then the entry itself is read
 * (1); the final guest-physical address takes 4 more: (4 + 1)(4 + 1) - 1 = 24 (Bhargava et al.,
 * "Accelerating two-dimensional page walks for virtualized systems", ASPLOS 2008, figure 2;
 * `coldWalkReferences()`).
 *
 * The references are recorded by reading machine memory through a recording view (every
 * paging-structure entry either dimension reads is one 64-bit read, `read64`). Which dimension a
 * reference belongs to is told by its place in the walk, the order the SDM's nested walk has
 * (29.3.2: the guest-physical address of each guest entry is translated before the entry is read).
 */
import { Access, pagingMode, type PhysicalMemory } from "@vtlab/arch";
import { NO_CACHES, NestedWalker, buildWalkCostMachine, type WalkCostMachine } from "@vtlab/mmu-ept";

/** The walk machine's working set: 4 MiB of 4 KiB pages from its base (0x7f80_0000_0000). */
export const WALK_WORKING_SET = 4 * 1024 * 1024;
/** Guest paging levels (PML4, PDPT, PD, PT) and EPT levels: both 4 here. */
export const WALK_LEVELS = 4;

export interface WalkReference {
  /** 1-based order in the walk. */
  readonly n: number;
  /** "ept": an EPT paging-structure entry; "guest": the guest paging-structure entry itself. */
  readonly dimension: "ept" | "guest";
  /** The guest level whose entry's address is being resolved (4 = PML4E ... 1 = PTE; 0 = the final data address). */
  readonly guestLevel: number;
  /** The EPT level read (4 = EPT PML4E ... 1 = EPT PTE); 0 for the guest entry. */
  readonly eptLevel: number;
  /** The machine (host-physical) address read. */
  readonly hpa: number;
}

export type WalkTrace =
  | { readonly kind: "translation"; readonly gva: number; readonly gpa: number; readonly hpa: number; readonly references: readonly WalkReference[] }
  | { readonly kind: "fault"; readonly gva: number; readonly detail: string; readonly references: readonly WalkReference[] };

/** A machine memory view that records the address of every 64-bit read (and otherwise is the memory). */
function recording(memory: PhysicalMemory, log: number[]): PhysicalMemory {
  return new Proxy(memory, {
    get(target, prop) {
      if (prop === "read64") return (address: number, out: unknown) => (log.push(address), (target.read64 as (a: number, o: unknown) => unknown)(address, out));
      const v: unknown = Reflect.get(target, prop, target);
      return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

let machine: WalkCostMachine | undefined;

/** The walk machine, built once (its tables are the same every time: the builder is seeded). */
export function walkMachine(): WalkCostMachine {
  machine ??= buildWalkCostMachine({ workingSet: WALK_WORKING_SET });
  return machine;
}

/** Parse a guest-virtual address the user typed (hex, optional 0x; canonical 48-bit); a message if it is not one. */
export function parseGva(text: string): number | string {
  const t = text.trim().replace(/_/g, "");
  if (!/^(0x)?[0-9a-f]{1,12}$/i.test(t)) return `"${text.slice(0, 40)}" is not a hexadecimal address of at most 48 bits`;
  const gva = Number.parseInt(t.replace(/^0x/i, ""), 16);
  // Canonical with bit 47 clear (the walk machine maps only the lower half).
  if (gva >= 2 ** 47) return `0x${gva.toString(16)} is not in the lower canonical half (below 0x800000000000)`;
  return gva;
}

/** One cold two-dimensional walk of `gva` on the walk machine, reference by reference. */
export function traceColdWalk(gva: number): WalkTrace {
  const m = walkMachine();
  const log: number[] = [];
  const walker = new NestedWalker(recording(m.memory, log), { switches: NO_CACHES });
  const eptp = m.ept.eptp(true);
  const bad = walker.setEptp(eptp.lo, eptp.hi);
  if (bad !== undefined) throw new Error(`vtlab bug: ${bad.message}`);
  walker.setGuestContext(m.tables.root, pagingMode());
  const out = walker.walk(gva, Access.Read);
  // Label the references in walk order: for guest level 4..1, EPT levels 4..1 then the guest
  // entry; then EPT levels 4..1 for the final guest-physical address. A walk that faults stops
  // part-way, and its labels stop with it.
  const references: WalkReference[] = log.map((hpa, i) => {
    const group = Math.floor(i / (WALK_LEVELS + 1));
    const inGroup = i % (WALK_LEVELS + 1);
    const guestLevel = WALK_LEVELS - group;
    return inGroup === WALK_LEVELS
      ? { n: i + 1, dimension: "guest", guestLevel, eptLevel: 0, hpa }
      : { n: i + 1, dimension: "ept", guestLevel, eptLevel: WALK_LEVELS - inGroup, hpa };
  });
  if (out.kind === "translation") return { kind: "translation", gva, gpa: out.gpa, hpa: out.hpa, references };
  const detail = out.kind === "page-fault" ? `guest #PF (error code 0x${out.errorCode.toString(16)}, at guest level ${out.level}): the address is not mapped by the guest's tables` : `EPT violation or misconfiguration at EPT level ${out.fault.level}`;
  return { kind: "fault", gva, detail, references };
}
