/**
 * The grant-table client (Linux's grant-table.c, v1 entries): the domain's grant frames mapped
 * with XENMEM_add_to_physmap(XENMAPSPACE_grant_table) at free guest frames, entries handed out
 * from a free list above the reserved ones (GNTTAB_NR_RESERVED_ENTRIES), written domid and frame
 * first and the flags (GTF_permit_access) last, so the hypervisor never sees a half-written
 * entry; end_foreign_access refuses while GTF_reading or GTF_writing says the grantee still
 * uses the page.
 *
 * Modelled more simply: Linux swaps the flags word with a compare-and-exchange; here the check
 * and the clear are two GuestOps, which is atomic in this model because the hypervisor and the
 * backends only touch the entry while this vCPU is in a VM exit or descheduled, never between
 * two of its operations.
 */
import { GNTTAB_NR_RESERVED_ENTRIES, GTF_permit_access, GTF_reading, GTF_readonly, GTF_writing, XENMAPSPACE_grant_table, grant_entry_v1 } from "@vtlab/xen-public";
import { frontendError, type FrontendError, type Xen } from "./hypercall.js";
import { PAGE_SIZE } from "./mem.js";

const ENTRIES_PER_FRAME = PAGE_SIZE / grant_entry_v1.SIZEOF;

export class GrantTable {
  private readonly freeRefs: number[] = [];
  private readonly inUse = new Set<number>();
  /** Grants made and ended. */
  granted = 0;
  ended = 0;

  private constructor(
    private readonly xen: Xen,
    /** Guest-physical address of each grant frame. */
    readonly frames: readonly number[],
  ) {
    for (let ref = frames.length * ENTRIES_PER_FRAME - 1; ref >= GNTTAB_NR_RESERVED_ENTRIES; ref--) this.freeRefs.push(ref);
  }

  /** Map grant frames 0..n-1 at the guest frames `gpfns` (free guest-physical space, e.g. the platform device's BAR1). */
  static setup(xen: Xen, gpfns: readonly number[]): GrantTable | FrontendError {
    for (let i = 0; i < gpfns.length; i++) {
      const r = xen.addToPhysmap(XENMAPSPACE_grant_table, i, gpfns[i]!);
      if (r < 0) return frontendError(`XENMEM_add_to_physmap(grant_table ${i}) = ${r}`);
    }
    return new GrantTable(xen, gpfns.map((g) => g * PAGE_SIZE));
  }

  get freeCount(): number {
    return this.freeRefs.length;
  }

  private entry(ref: number): number {
    return this.frames[Math.floor(ref / ENTRIES_PER_FRAME)]! + (ref % ENTRIES_PER_FRAME) * grant_entry_v1.SIZEOF;
  }

  /** gnttab_grant_foreign_access: a ref granting `gfn` to `domid`, or undefined when no ref is free. */
  grantAccess(domid: number, gfn: number, readonly = false): number | undefined {
    const ref = this.freeRefs.pop();
    if (ref === undefined) return undefined;
    this.inUse.add(ref);
    const e = this.entry(ref);
    const mem = this.xen.mem;
    mem.write16(e + grant_entry_v1.domid, domid);
    mem.write32(e + grant_entry_v1.frame, gfn);
    // wmb(): the flags go last.
    mem.write16(e + grant_entry_v1.flags, GTF_permit_access | (readonly ? GTF_readonly : 0));
    this.granted++;
    return ref;
  }

  /** The entry's flags (GTF_*), as the hypervisor left them. */
  flags(ref: number): number {
    return this.xen.mem.read16(this.entry(ref) + grant_entry_v1.flags);
  }

  /**
   * gnttab_end_foreign_access_ref: false (the grant stays) while the grantee has it mapped or is
   * copying (GTF_reading / GTF_writing); otherwise the entry is cleared and the ref freed.
   */
  endAccess(ref: number): boolean {
    if (!this.inUse.has(ref)) return false;
    const e = this.entry(ref);
    const mem = this.xen.mem;
    const flags = mem.read16(e + grant_entry_v1.flags);
    if ((flags & (GTF_reading | GTF_writing)) !== 0) return false;
    mem.write16(e + grant_entry_v1.flags, 0);
    this.inUse.delete(ref);
    this.freeRefs.push(ref);
    this.ended++;
    return true;
  }
}
