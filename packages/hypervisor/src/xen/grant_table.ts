/**
 * Grant tables (Xen's xen/common/grant_table.c, xen/arch/x86/hvm/grant_table.c,
 * xen/include/public/grant_table.h), versions 1 and 2: HYPERVISOR_grant_table_op as an HVM guest sees it
 * (hvm_grant_table_op: query_size, setup_table, set_version, get_version, copy, map_grant_ref,
 * unmap_grant_ref, swap_grant_ref; anything else -ENOSYS), and the same operations for dom0's
 * typed API (dom0.ts).
 *
 * A domain's grant table is hypervisor frames of `grant_entry_v1` {flags, domid, frame}, 512 per
 * 4 KiB frame, one frame at first (INITIAL_NR_GRANT_FRAMES) growing on demand up to
 * max_grant_frames (64, Xen 4.17's and xl's default). After GNTTABOP_set_version(2) the frames
 * hold 256 `grant_entry_v2` each (a header, then a 64-bit frame; sub-page grants with an offset
 * and length, for copies) and GTF_reading/GTF_writing move to separate status frames (one 16-bit
 * grant_status_t per entry), which the guest maps with XENMAPIDX_grant_table_status; the eight
 * reserved entries are carried across a version change, the rest cleared, and a change while any
 * other entry is pinned is -EBUSY. The guest reaches the frames by mapping them into
 * its own p2m with XENMEM_add_to_physmap(XENMAPSPACE_grant_table) (memory.ts), then writes its
 * entries there: they are guest-writable memory, so every entry is read once per decision (the
 * 32-bit flags+domid "combo", then the frame) and the hypervisor's GTF_reading/GTF_writing
 * updates are the compare-and-swap of Xen's _set_status_v1 (it always succeeds here: nothing runs
 * concurrently with a hypercall in the simulation) and the atomic AND of gnttab_clear_flags; in
 * v2, _set_status_v2's set-then-recheck of the header.
 *
 * Mapping (map_grant_ref, Xen's checks in Xen's order): flags (host_map or device_map, else
 * GNTST_bad_gntref; device_map, application_map or contains_pte from an HVM mapper:
 * GNTST_general_error), the granting domain (GNTST_bad_domain; DOMID_SELF is not accepted, a
 * domain's own numeric id is), a maptrack handle (GNTST_no_space), the reference (GNTST_bad_gntref
 * past the table), an active entry pinned for another domain or about to overflow
 * (GNTST_general_error), the entry's type, domid and GTF_readonly against a writable map
 * (GNTST_general_error, as Xen 4.17's _set_status_v1 answers), the granted frame (RAM in the
 * granter's p2m, else GNTST_bad_page), then the mapping: the guest frame host_addr >> 12 of the
 * mapper's p2m becomes p2m_grant_map_rw or _ro (p2m.ts, so the EPT or shadow entries and TLBs
 * follow). A frame already grant-mapped there crashes the mapper, as Xen's p2m_add_page does; a
 * RAM frame there leaves the p2m and stays the mapper's (allocated, unmapped: Xen's behaviour; a
 * guest balloons such pages out first). Pin counts are per (granter, ref) in the granter's active
 * entry (GNTPIN_* as Xen's), and each mapping holds a reference on the frame (p2m.ts FrameRefs):
 * a granter destroyed while mapped keeps those frames out of the host allocator until the last
 * mapping goes. The maptrack handle returned indexes the mapper's maptrack; unmap checks it
 * (GNTST_bad_handle), removes the p2m entry only if host_addr still maps that frame by grant
 * (GNTST_general_error otherwise), and clears GTF_reading/GTF_writing with the last pin.
 *
 * Copy (gnttab_copy): each side a grant reference of the given domain (GNTCOPY_source_gref /
 * GNTCOPY_dest_gref) or a frame of the caller's own p2m (DOMID_SELF only, else
 * GNTST_permission_denied); an offset + length past the page is GNTST_bad_copy_arg. The grants
 * are pinned for the copy and released after it.
 *
 * Batches (map, unmap, copy): the guest array is read and written one op at a time, the status
 * of each op written back; a fault on the array ends the call with -EFAULT. Xen's preemption of a
 * long batch is modelled by a fixed cap: after GNTTAB_OPS_PER_CALL ops the hypercall is
 * continued (the guest re-executes the VMCALL with the handle and count advanced), as Xen's
 * hypercall_create_continuation does.
 *
 * Modelled more simply than Xen: transitive grants (v2, copies only) are refused with
 * GNTST_general_error, as Xen booted with gnttab=no-transitive answers; one maptrack free list
 * per domain (Xen keeps one per vCPU and steals between them); a copy pins and releases its grants
 * per op (Xen keeps a source or destination pinned across consecutive ops that reuse it); no
 * device (IOMMU) mappings. `maxVersion` is 2 (Xen 4.17's default); set it to 1 (xl.cfg
 * max_grant_version = 1) and GNTTABOP_set_version(2) answers -ENOSYS, as Xen does then.
 */
import { PAGE_SIZE, gfn as asGfn, type Mfn } from "@vtlab/arch";
import { P2mType, p2mIsGrant } from "@vtlab/p2m";
import {
  DOMID_SELF,
  GNTCOPY_dest_gref,
  GNTCOPY_source_gref,
  GNTMAP_application_map,
  GNTMAP_contains_pte,
  GNTMAP_device_map,
  GNTMAP_host_map,
  GNTMAP_readonly,
  GNTST_bad_copy_arg,
  GNTST_bad_domain,
  GNTST_bad_gntref,
  GNTST_bad_handle,
  GNTST_bad_page,
  GNTST_bad_virt_addr,
  GNTST_eagain,
  GNTST_general_error,
  GNTST_no_space,
  GNTST_okay,
  GNTST_permission_denied,
  GNTTABOP_copy,
  GNTTABOP_get_version,
  GNTTABOP_map_grant_ref,
  GNTTABOP_query_size,
  GNTTABOP_set_version,
  GNTTABOP_setup_table,
  GNTTABOP_swap_grant_ref,
  GNTTABOP_unmap_grant_ref,
  GNTTAB_NR_RESERVED_ENTRIES,
  GTF_permit_access,
  GTF_readonly,
  GTF_reading,
  GTF_sub_page,
  GTF_transitive,
  GTF_type_mask,
  GTF_writing,
  XEN_EBUSY,
  XEN_EFAULT,
  XEN_EINVAL,
  XEN_ENOMEM,
  XEN_ENOSYS,
  XEN_EPERM,
  XEN_ERANGE,
  XEN_ESRCH,
  compat_gnttab_copy,
  compat_gnttab_copy_ptr,
  compat_gnttab_setup_table,
  gnttab_copy,
  gnttab_copy_ptr,
  gnttab_get_version,
  gnttab_map_grant_ref,
  gnttab_query_size,
  gnttab_set_version,
  gnttab_setup_table,
  gnttab_swap_grant_ref,
  gnttab_unmap_grant_ref,
  grant_entry_header,
  grant_entry_v1,
  grant_entry_v2,
} from "@vtlab/xen-public";
import type { ExitContext } from "../exits.js";
import { copyFromGuest, copyToGuest } from "../guest-memory.js";
import type { Domain, Hypervisor } from "../hypervisor.js";
import { P2M_GFN_LIMIT, frameRefs, isP2mUpdateError, setP2mEntry } from "./p2m.js";
import type { HypercallArgs } from "./table.js";

/** Xen 4.17's opt_max_grant_frames (and xl's max_grant_frames default): the most frames a grant table grows to. */
export const DEFAULT_MAX_GRANT_FRAMES = 64;
/** Xen 4.17's opt_max_maptrack_frames (and xl's max_maptrack_frames default). */
export const DEFAULT_MAX_MAPTRACK_FRAMES = 1024;
/** INITIAL_NR_GRANT_FRAMES (xen/arch/x86/include/asm/grant_table.h): frames a new table has. */
export const INITIAL_NR_GRANT_FRAMES = 1;
/** v1 entries per frame (PAGE_SIZE / sizeof(grant_entry_v1_t), Xen's SHGNT_PER_PAGE_V1). */
export const GRANT_ENTRIES_PER_FRAME = PAGE_SIZE / grant_entry_v1.SIZEOF;
/** v2 entries per frame (Xen's SHGNT_PER_PAGE_V2). */
export const GRANT_ENTRIES_PER_FRAME_V2 = PAGE_SIZE / grant_entry_v2.SIZEOF;
/** v2 status entries (grant_status_t, 16 bits) per status frame (Xen's STGNT_PER_PAGE). */
export const GRANT_STATUS_PER_FRAME = PAGE_SIZE / 2;
/** grant_to_status_frames: status frames a v2 table of `frames` shared frames has. */
export const grantToStatusFrames = (frames: number): number => Math.ceil((frames * GRANT_ENTRIES_PER_FRAME_V2) / GRANT_STATUS_PER_FRAME);
/** status_to_grant_frames. */
const statusToGrantFrames = (status: number): number => Math.ceil((status * GRANT_STATUS_PER_FRAME) / GRANT_ENTRIES_PER_FRAME_V2);
/** Maptrack entries per frame: PAGE_SIZE / sizeof(struct grant_mapping) (16 bytes), Xen's MAPTRACK_PER_PAGE. */
export const MAPTRACK_PER_PAGE = PAGE_SIZE / 16;
/** Ops of a map, unmap or copy batch done per VMCALL before the hypercall is continued (modelled preemption). */
export const GNTTAB_OPS_PER_CALL = 256;

/** Xen's GNTTABOP_CONTINUATION_ARG_SHIFT / GNTTABOP_CMD_MASK (common/grant_table.c: part of the ABI, not of the public header). */
const GNTTABOP_CONTINUATION_ARG_SHIFT = 12;
const GNTTABOP_CMD_MASK = (1 << GNTTABOP_CONTINUATION_ARG_SHIFT) - 1;

// Active-entry pin counts (common/grant_table.c struct active_grant_entry): four byte-wide counters.
const GNTPIN_cntr_width = 8;
const GNTPIN_hstw_inc = 1 << 0;
const GNTPIN_hstw_mask = 0xff << 0;
const GNTPIN_hstr_inc = 1 << GNTPIN_cntr_width;
const GNTPIN_devw_mask = 0xff << (2 * GNTPIN_cntr_width);
/** GNTPIN_incr2oflow_mask: the top bit of each counter being incremented. */
const incr2oflowMask = (inc: number) => inc << (GNTPIN_cntr_width - 1);

/** INVALID_GFN as a 64-bit xen_pfn_t (setup_table's answer for a frame the guest has not mapped), as halves. */
const INVALID_GFN_LO = 0xffff_ffff;

/** The active entry of a granted reference while it is pinned (Xen's struct active_grant_entry). */
interface ActiveEntry {
  /** GNTPIN_* counters. */
  pin: number;
  /** The domain it is pinned for. */
  domid: number;
  /** The frame, latched at the first pin. */
  mfn: Mfn;
  /** The granter's frame number it came from. */
  gfn: number;
  /** A v2 sub-page grant (copies only): the bytes of the page it covers. */
  isSubPage: boolean;
  start: number;
  length: number;
}

/** An active entry with no pins (what reduce_status_for_pin sees for an entry that was never pinned). */
const idle = (domid: number): ActiveEntry => ({ pin: 0, domid, mfn: 0 as Mfn, gfn: 0, isSubPage: false, start: 0, length: PAGE_SIZE });

/** One maptrack entry (Xen's struct grant_mapping): a mapping this domain made of another's grant. */
interface Mapping {
  /** GNTMAP_host_map | GNTMAP_readonly; 0 = free. */
  flags: number;
  /** The granting domain's id and table (kept: a destroyed granter's table still answers unmaps). */
  domid: number;
  granter: GrantTable;
  ref: number;
  mfn: Mfn;
  /** The mapper's guest frame it is mapped at (-1 for dom0, which has no p2m). */
  gfn: number;
}

/** Result of one map operation. */
export interface MapResult {
  readonly status: number;
  readonly handle: number;
  /** dev_bus_addr: the frame's machine address (Xen writes it back for every successful map). */
  readonly devBusAddr: number;
}

/** The part of a domain the grant code needs (a guest `Domain`, or dom0 which has no p2m). */
interface Owner {
  readonly hv: Hypervisor;
  readonly domid: number;
  /** The guest domain; undefined for dom0. */
  readonly domain: Domain | undefined;
}

/**
 * A domain's grant table (Xen's struct grant_table): its shared frames and active entries as a
 * granter, and its maptrack as a mapper.
 */
export class GrantTable {
  /** gt_version: 1, or 2 after GNTTABOP_set_version(2). */
  version: 1 | 2 = 1;
  /**
   * Xen's max_version (xl.cfg max_grant_version; Xen 4.17's default is 2). With 1,
   * GNTTABOP_set_version(2) answers -ENOSYS ("behave as before set_version was introduced").
   */
  maxVersion: 1 | 2 = 2;
  /** max_grant_frames (xl.cfg): set before the table is first used. */
  maxGrantFrames = DEFAULT_MAX_GRANT_FRAMES;
  /** max_maptrack_frames (xl.cfg): set before the first mapping. */
  maxMaptrackFrames = DEFAULT_MAX_MAPTRACK_FRAMES;
  /** The domain was destroyed: its frames are gone; mappings of its grants can still be unmapped. */
  dead = false;
  private readonly shared: Mfn[] = [];
  /** The guest frame each shared frame is mapped at in the owner's p2m (undefined: not mapped). */
  private readonly sharedGfn: (number | undefined)[] = [];
  /** v2 status frames (grant_status_t per entry: GTF_reading / GTF_writing) and where the guest mapped them. */
  private readonly status: Mfn[] = [];
  private readonly statusGfn: (number | undefined)[] = [];
  private readonly active = new Map<number, ActiveEntry>();
  private readonly maptrack: (Mapping | undefined)[] = [];
  private maptrackLimit = 0;
  private readonly freeHandles: number[] = [];
  private freeHead = 0;

  constructor(private readonly owner: Owner) {}

  get domid(): number {
    return this.owner.domid;
  }

  get hv(): Hypervisor {
    return this.owner.hv;
  }

  // ---- the granter side ----

  /**
   * Frames in the table (nr_grant_frames), after making sure the initial one exists (allocated
   * on first use here; Xen allocates it at domain creation). Dom0 grants nothing in vtlab (its
   * backends are host code): its table is one frame's worth of GTF_invalid entries, with no frame.
   */
  nrFrames(): number {
    if (this.owner.domain === undefined) return INITIAL_NR_GRANT_FRAMES;
    if (this.shared.length === 0 && !this.dead) this.grow(INITIAL_NR_GRANT_FRAMES);
    return this.shared.length;
  }

  /** Entries in the table (nr_grant_entries): 512 per frame in v1, 256 in v2. */
  nrEntries(): number {
    return this.nrFrames() * (this.version === 1 ? GRANT_ENTRIES_PER_FRAME : GRANT_ENTRIES_PER_FRAME_V2);
  }

  /** Status frames (nr_status_frames; v2 only). */
  nrStatusFrames(): number {
    return this.status.length;
  }

  /** Grow to `frames` frames (gnttab_grow_table): false when over max_grant_frames or out of host frames (the frames added so far stay). */
  grow(frames: number): boolean {
    const d = this.owner.domain;
    if (this.dead || frames > this.maxGrantFrames || d === undefined) return false;
    while (this.shared.length < frames) {
      const f = d.frameAllocator.allocate();
      if (f === undefined) return false;
      this.shared.push(f);
      this.sharedGfn.push(undefined);
    }
    return this.version === 1 || this.populateStatus(grantToStatusFrames(this.shared.length));
  }

  /** gnttab_populate_status_frames: status frames up to `n`. */
  private populateStatus(n: number): boolean {
    const d = this.owner.domain;
    if (d === undefined) return false;
    while (this.status.length < n) {
      const f = d.frameAllocator.allocate();
      if (f === undefined) return false;
      this.status.push(f);
      this.statusGfn.push(undefined);
    }
    return true;
  }

  /**
   * gnttab_unpopulate_status_frames (v2 -> v1): the status frames leave the guest's p2m and go
   * back; -EBUSY (and nothing changed) while another domain maps one.
   */
  private unpopulateStatus(): number {
    const d = this.owner.domain;
    if (d === undefined) return 0;
    const refs = frameRefs(this.owner.hv);
    if (this.status.some((f) => refs.count(f) !== 0)) return -XEN_EBUSY;
    this.status.forEach((f, i) => {
      const g = this.statusGfn[i];
      if (g !== undefined && g < P2M_GFN_LIMIT) {
        const e = d.p2m.lookup(asGfn(g));
        if (e.type === P2mType.Ram && e.mfn === f) setP2mEntry(d, asGfn(g), { kind: "removed" });
      }
      d.frameAllocator.free(f);
    });
    this.status.length = 0;
    this.statusGfn.length = 0;
    return 0;
  }

  /** The machine frame of shared frame `idx`, growing the table to hold it as Xen's gnttab_get_shared_frame_mfn does; undefined past max_grant_frames. */
  sharedFrameMfn(idx: number): Mfn | undefined {
    if (!Number.isSafeInteger(idx) || idx < 0) return undefined;
    if (idx >= this.nrFrames()) {
      if (idx + 1 <= this.maxGrantFrames) this.grow(idx + 1);
      if (idx >= this.shared.length) return undefined;
    }
    return this.shared[idx];
  }

  /** The guest frame shared frame `idx` is mapped at (memory.ts keeps it, Xen's M2P of the frame). */
  sharedFrameGfn(idx: number): number | undefined {
    return this.sharedGfn[idx];
  }

  setSharedFrameGfn(idx: number, gfn: number | undefined): void {
    if (idx >= 0 && idx < this.shared.length) this.sharedGfn[idx] = gfn;
  }

  /** Index of the shared frame `mfn`, or -1. */
  sharedFrameIndex(mfn: number): number {
    return this.shared.indexOf(mfn as Mfn);
  }

  /**
   * The machine frame of status frame `idx` (v2; gnttab_get_status_frame_mfn): the table grows to
   * have it when max_grant_frames allows; undefined otherwise, and always in v1.
   */
  statusFrameMfn(idx: number): Mfn | undefined {
    if (this.version !== 2 || !Number.isSafeInteger(idx) || idx < 0) return undefined;
    if (idx >= this.status.length) {
      const nrGrant = statusToGrantFrames(idx + 1);
      if (nrGrant <= this.maxGrantFrames) this.grow(nrGrant);
      if (idx >= this.status.length) return undefined;
    }
    return this.status[idx];
  }

  statusFrameGfn(idx: number): number | undefined {
    return this.statusGfn[idx];
  }

  setStatusFrameGfn(idx: number, gfn: number | undefined): void {
    if (idx >= 0 && idx < this.status.length) this.statusGfn[idx] = gfn;
  }

  statusFrameIndex(mfn: number): number {
    return this.status.indexOf(mfn as Mfn);
  }

  /**
   * The toolstack seeds a v1 entry before the guest runs (xc_dom_gnttab_seed: the console and
   * xenstore pages granted to their backends' domain at GNTTAB_RESERVED_CONSOLE and
   * GNTTAB_RESERVED_XENSTORE): frame and domid first, then flags = GTF_permit_access. 0, or
   * -EINVAL for a ref past the table, a table in v2, or dom0's own table.
   */
  seedEntry(ref: number, domid: number, gfn: number): number {
    if (this.owner.domain === undefined || this.version !== 1 || !Number.isInteger(ref) || ref < 0 || ref >= this.nrEntries()) return -XEN_EINVAL;
    if (!Number.isInteger(gfn) || gfn < 0 || gfn > 0xffff_ffff || !Number.isInteger(domid) || domid < 0 || domid > 0xffff) return -XEN_EINVAL;
    const mem = this.owner.hv.memory;
    const at = this.entryHpa(ref);
    mem.write32(at + grant_entry_v1.frame, gfn >>> 0);
    mem.write16(at + grant_entry_v1.domid, domid);
    mem.write16(at + grant_entry_v1.flags, GTF_permit_access);
    return 0;
  }

  /** Machine address of entry `ref` (which must be below nrEntries) in the current version's layout. */
  private entryHpa(ref: number): number {
    const per = this.version === 1 ? GRANT_ENTRIES_PER_FRAME : GRANT_ENTRIES_PER_FRAME_V2;
    const size = this.version === 1 ? grant_entry_v1.SIZEOF : grant_entry_v2.SIZEOF;
    return this.shared[Math.floor(ref / per)]! * PAGE_SIZE + (ref % per) * size;
  }

  /** Machine address of v2 status entry `ref`. */
  private statusHpa(ref: number): number {
    return this.status[Math.floor(ref / GRANT_STATUS_PER_FRAME)]! * PAGE_SIZE + (ref % GRANT_STATUS_PER_FRAME) * 2;
  }

  /** The entry's flags and domid as one 32-bit read (Xen's union grant_combo: flags in bits 15:0; the v1 entry and the v2 header start alike). */
  private readCombo(ref: number): number {
    if (this.owner.domain === undefined) return 0; // dom0's entries: all GTF_invalid
    const v = this.owner.hv.memory.read32(this.entryHpa(ref) + grant_entry_header.flags);
    return typeof v === "number" ? v >>> 0 : 0;
  }

  /** The granted frame: v1's 32-bit frame, v2's 64-bit full_page.frame / sub_page.frame (exact below 2^53, else past any p2m). */
  private readFrame(ref: number): number {
    const mem = this.owner.hv.memory;
    if (this.version === 1) {
      const v = mem.read32(this.entryHpa(ref) + grant_entry_v1.frame);
      return typeof v === "number" ? v >>> 0 : 0;
    }
    const at = this.entryHpa(ref) + grant_entry_v2["full_page.frame"];
    const lo = mem.read32(at);
    const hi = mem.read32(at + 4);
    if (typeof lo !== "number" || typeof hi !== "number") return Number.POSITIVE_INFINITY;
    return (hi >>> 0) >= 0x20_0000 ? Number.POSITIVE_INFINITY : (hi >>> 0) * 2 ** 32 + (lo >>> 0);
  }

  /** Where GTF_reading / GTF_writing live: the entry's flags in v1, the status entry in v2. */
  private statusAt(ref: number): number {
    return this.version === 1 ? this.entryHpa(ref) + grant_entry_v1.flags : this.statusHpa(ref);
  }

  /** gnttab_clear_flags: an atomic AND on the 16-bit status (skipped once the table is gone). */
  private clearFlags(ref: number, mask: number): void {
    if (this.dead || this.owner.domain === undefined) return;
    const at = this.statusAt(ref);
    const mem = this.owner.hv.memory;
    const f = mem.read16(at);
    if (typeof f === "number") mem.write16(at, f & ~mask & 0xffff);
  }

  /** An atomic OR on the 16-bit status. */
  private setFlags(ref: number, bits: number): void {
    const at = this.statusAt(ref);
    const mem = this.owner.hv.memory;
    const f = mem.read16(at);
    if (typeof f === "number") mem.write16(at, (f | bits) & 0xffff);
  }

  /**
   * _set_status_v1: with the combo read once, check the type (and no GTF_sub_page for a map), the
   * domid (unless already pinned) and GTF_readonly against a writable pin, then set GTF_reading
   * (and GTF_writing) in one write of the combo (the cmpxchg succeeds).
   */
  private setStatus(ref: number, act: ActiveEntry | undefined, readonly: boolean, mapflag: boolean, ldomid: number): number {
    if (this.version === 2) return this.setStatusV2(ref, act, readonly, mapflag, ldomid);
    const combo = this.readCombo(ref);
    const flags = combo & 0xffff;
    const domid = combo >>> 16;
    const mask = GTF_type_mask | (mapflag ? GTF_sub_page : 0);
    if ((act === undefined || act.pin === 0) && ((flags & mask) !== GTF_permit_access || domid !== ldomid)) return GNTST_general_error;
    let next = flags | GTF_reading;
    if (!readonly) {
      next |= GTF_writing;
      if ((flags & GTF_readonly) !== 0) return GNTST_general_error;
    }
    const wrote = this.owner.hv.memory.write32(this.entryHpa(ref) + grant_entry_v1.flags, ((domid << 16) | next) >>> 0);
    return wrote === undefined ? GNTST_okay : GNTST_general_error;
  }

  /**
   * _set_status_v2: the header read once and checked (GTF_permit_access, or GTF_transitive for a
   * copy; the domid; GTF_readonly against a writable pin), GTF_reading (and GTF_writing) set in
   * the separate status entry, then the header read again: a grant changed in between is backed
   * out (the status cleared) and refused, as Xen does for a guest racing the hypervisor.
   */
  private setStatusV2(ref: number, act: ActiveEntry | undefined, readonly: boolean, mapflag: boolean, ldomid: number): number {
    const mask = GTF_type_mask | (mapflag ? GTF_sub_page : 0);
    const pinned = act !== undefined && act.pin !== 0;
    const typeOk = (flags: number) => (flags & mask) === GTF_permit_access || (!mapflag && (flags & mask) === GTF_transitive);
    let combo = this.readCombo(ref);
    if (!pinned && (!typeOk(combo & 0xffff) || combo >>> 16 !== ldomid)) return GNTST_general_error;
    if (readonly) this.setFlags(ref, GTF_reading);
    else {
      if ((combo & GTF_readonly) !== 0) return GNTST_general_error;
      this.setFlags(ref, GTF_reading | GTF_writing);
    }
    combo = this.readCombo(ref);
    if (!pinned) {
      if (!typeOk(combo & 0xffff) || combo >>> 16 !== ldomid || (!readonly && (combo & GTF_readonly) !== 0)) {
        this.clearFlags(ref, GTF_writing | GTF_reading);
        return GNTST_general_error;
      }
    } else if ((combo & GTF_readonly) !== 0) {
      this.clearFlags(ref, GTF_writing);
      return GNTST_general_error;
    }
    return GNTST_okay;
  }

  /** reduce_status_for_pin: the flags as the remaining pins need them. */
  private reduceStatusForPin(ref: number, act: ActiveEntry, readonly: boolean): void {
    let clear = act.pin !== 0 ? 0 : GTF_reading;
    if (!readonly && (act.pin & (GNTPIN_hstw_mask | GNTPIN_devw_mask)) === 0) clear |= GTF_writing;
    if (clear !== 0) this.clearFlags(ref, clear);
  }

  /**
   * Pin `ref` for domain `ldomid` (map_grant_ref's and acquire_grant_for_copy's common part, for
   * a host mapping or a copy): the frame and the pin increment, or a GNTST_ error with nothing
   * changed. `mapflag`: a mapping (sub-page grants refused).
   */
  pin(ref: number, ldomid: number, readonly: boolean, mapflag: boolean): { readonly mfn: Mfn; readonly start: number; readonly length: number } | number {
    if (this.dead) return GNTST_bad_domain;
    if (!(ref >= 0 && ref < this.nrEntries())) return GNTST_bad_gntref;
    const inc = readonly ? GNTPIN_hstr_inc : GNTPIN_hstw_inc;
    let act = this.active.get(ref);
    // A pinned entry: for the same domain, no overflow, and (for a map) not a sub-page grant.
    if (act !== undefined && act.pin !== 0 && (act.domid !== ldomid || (act.pin & incr2oflowMask(inc)) !== 0 || (mapflag && act.isSubPage))) return GNTST_general_error;
    if (act === undefined || act.pin === 0 || (!readonly && (act.pin & (GNTPIN_hstw_mask | GNTPIN_devw_mask)) === 0)) {
      const rc = this.setStatus(ref, act, readonly, mapflag, ldomid);
      if (rc !== GNTST_okay) return rc;
      const unpinned = act === undefined || act.pin === 0;
      const flags = this.readCombo(ref) & 0xffff;
      if (this.version === 2 && unpinned && (flags & GTF_type_mask) === GTF_transitive) {
        // Transitive grants (v2, copies only) are not modelled: as Xen booted with gnttab=no-transitive.
        this.reduceStatusForPin(ref, act ?? idle(ldomid), readonly);
        return GNTST_general_error;
      }
      if (unpinned) {
        const gfn = this.readFrame(ref);
        const mfn = this.paged(gfn);
        if (mfn === undefined) {
          // unlock_out_clear: the flags back as the (absent) pins need them.
          this.reduceStatusForPin(ref, act ?? idle(ldomid), readonly);
          return GNTST_bad_page;
        }
        const sub = this.version === 2 && (flags & GTF_sub_page) !== 0;
        const mem = this.owner.hv.memory;
        const start = sub ? ((mem.read16(this.entryHpa(ref) + grant_entry_v2["sub_page.page_off"]) as number) & 0xffff) : 0;
        const length = sub ? ((mem.read16(this.entryHpa(ref) + grant_entry_v2["sub_page.length"]) as number) & 0xffff) : PAGE_SIZE;
        act = { pin: 0, domid: ldomid, mfn, gfn, isSubPage: sub, start, length };
        this.active.set(ref, act);
      }
    }
    act!.pin += inc;
    return { mfn: act!.mfn, start: act!.start, length: act!.length };
  }

  /** Drop a pin taken by `pin` (release_grant_for_copy / unmap_common_complete): the flags follow; the entry goes with its last pin. */
  unpin(ref: number, readonly: boolean): void {
    const act = this.active.get(ref);
    if (act === undefined) return;
    act.pin -= readonly ? GNTPIN_hstr_inc : GNTPIN_hstw_inc;
    this.reduceStatusForPin(ref, act, readonly);
    if (act.pin === 0) this.active.delete(ref);
  }

  /** get_paged_frame: the granter's frame at `gfn` if its p2m has RAM there (dom0 grants nothing: no p2m). */
  private paged(gfn: number): Mfn | undefined {
    const d = this.owner.domain;
    if (d === undefined || gfn >= P2M_GFN_LIMIT) return undefined;
    const e = d.p2m.lookup(asGfn(gfn));
    return e.type === P2mType.Ram ? e.mfn : undefined;
  }

  /** GNTTABOP_swap_grant_ref on this (the caller's) table. */
  swap(refA: number, refB: number): number {
    const n = this.nrEntries();
    if (this.owner.domain === undefined) return GNTST_general_error;
    if (!(refA >= 0 && refA < n)) return GNTST_bad_gntref;
    if (!(refB >= 0 && refB < n)) return GNTST_bad_gntref;
    if (refA === refB) return GNTST_okay;
    if ((this.active.get(refA)?.pin ?? 0) !== 0 || (this.active.get(refB)?.pin ?? 0) !== 0) return GNTST_eagain;
    const mem = this.owner.hv.memory;
    const swapBytes = (a: number, b: number, size: number) => {
      const ea = new Uint8Array(size);
      const eb = new Uint8Array(size);
      mem.readBytes(a, ea);
      mem.readBytes(b, eb);
      mem.writeBytes(a, eb);
      mem.writeBytes(b, ea);
    };
    swapBytes(this.entryHpa(refA), this.entryHpa(refB), this.version === 1 ? grant_entry_v1.SIZEOF : grant_entry_v2.SIZEOF);
    if (this.version === 2) swapBytes(this.statusHpa(refA), this.statusHpa(refB), 2);
    return GNTST_okay;
  }

  /**
   * GNTTABOP_set_version (gnttab_set_version): 1 or 2 (else -EINVAL; 2 with max_version 1 is
   * -ENOSYS); -EBUSY while any entry past the eight reserved ones is pinned. The reserved entries
   * (console, xenstore) are carried over into the new layout (-ERANGE for a v2 one v1 cannot
   * hold); everything else is cleared. Status frames come (v1 -> v2, -ENOMEM without frames) or
   * go (v2 -> v1). Returns 0 or -errno; `version` is the version afterwards.
   */
  setVersion(want: number): number {
    if (want !== 1 && want !== 2) return -XEN_EINVAL;
    if (want === 2 && this.maxVersion === 1) return -XEN_ENOSYS;
    const d = this.owner.domain;
    if (want === this.version || d === undefined) return 0;
    const nr = this.nrEntries();
    for (const [ref, act] of this.active) if (ref >= GNTTAB_NR_RESERVED_ENTRIES && ref < nr && act.pin !== 0) return -XEN_EBUSY;
    const mem = this.owner.hv.memory;
    const reserved: { flags: number; domid: number; frame: number }[] = [];
    for (let i = 0; i < GNTTAB_NR_RESERVED_ENTRIES; i++) {
      const at = this.entryHpa(i);
      const combo = this.readCombo(i);
      if (this.version === 1) {
        reserved.push({ flags: combo & 0xffff, domid: combo >>> 16, frame: (mem.read32(at + grant_entry_v1.frame) as number) >>> 0 });
        continue;
      }
      const type = combo & GTF_type_mask;
      const hi = (mem.read32(at + grant_entry_v2["full_page.frame"] + 4) as number) >>> 0;
      if ((type === GTF_permit_access && hi !== 0) || type === GTF_transitive) return -XEN_ERANGE;
      if (type === GTF_permit_access) {
        const status = (mem.read16(this.statusHpa(i)) as number) & 0xffff;
        reserved.push({ flags: (combo & 0xffff) | status, domid: combo >>> 16, frame: (mem.read32(at + grant_entry_v2["full_page.frame"]) as number) >>> 0 });
      } else reserved.push({ flags: 0, domid: 0, frame: 0 });
    }
    if (this.version === 1) {
      if (!this.populateStatus(grantToStatusFrames(this.shared.length))) return -XEN_ENOMEM;
    } else {
      const rc = this.unpopulateStatus();
      if (rc !== 0) return rc;
    }
    const zero = new Uint8Array(PAGE_SIZE);
    for (const f of this.shared) mem.writeBytes(f * PAGE_SIZE, zero);
    this.version = want;
    reserved.forEach((e, i) => {
      const at = this.entryHpa(i);
      if (want === 1) {
        mem.write32(at + grant_entry_v1.flags, ((e.domid << 16) | e.flags) >>> 0);
        mem.write32(at + grant_entry_v1.frame, e.frame);
      } else {
        mem.write16(this.statusHpa(i), e.flags & (GTF_reading | GTF_writing));
        mem.write32(at + grant_entry_header.flags, ((e.domid << 16) | (e.flags & ~(GTF_reading | GTF_writing) & 0xffff)) >>> 0);
        mem.write32(at + grant_entry_v2["full_page.frame"], e.frame);
        mem.write32(at + grant_entry_v2["full_page.frame"] + 4, 0);
      }
    });
    return 0;
  }

  /** Pinned references (active entries), for tests and reports. */
  get activeEntries(): number {
    return this.active.size;
  }

  /** The pin counters of `ref` (0 when not pinned). */
  pinOf(ref: number): number {
    return this.active.get(ref)?.pin ?? 0;
  }

  // ---- the mapper side (maptrack) ----

  /** get_maptrack_handle: a free handle, a new maptrack frame's worth when none is free, or -1 past max_maptrack_frames. */
  private getHandle(): number {
    if (this.freeHead === this.freeHandles.length) {
      if (this.maptrackLimit / MAPTRACK_PER_PAGE >= this.maxMaptrackFrames) return -1;
      for (let i = 0; i < MAPTRACK_PER_PAGE; i++) this.freeHandles.push(this.maptrackLimit + i);
      this.maptrackLimit += MAPTRACK_PER_PAGE;
    }
    const h = this.freeHandles[this.freeHead++]!;
    if (this.freeHead > 4096 && this.freeHead * 2 > this.freeHandles.length) {
      this.freeHandles.splice(0, this.freeHead);
      this.freeHead = 0;
    }
    return h;
  }

  /** put_maptrack_handle: to the tail of the free list. */
  private putHandle(h: number): void {
    this.maptrack[h] = undefined;
    this.freeHandles.push(h);
  }

  /** Mappings this domain holds now. */
  get mappings(): number {
    let n = 0;
    for (const m of this.maptrack) if (m !== undefined && m.flags !== 0) n++;
    return n;
  }

  /** The live mapping behind `handle`, if any (dom0.ts reads through it). */
  mappingOf(handle: number): { readonly mfn: Mfn; readonly readonly: boolean; readonly domid: number; readonly ref: number } | undefined {
    const m = Number.isInteger(handle) && handle >= 0 && handle < this.maptrackLimit ? this.maptrack[handle] : undefined;
    if (m === undefined || m.flags === 0) return undefined;
    return { mfn: m.mfn, readonly: (m.flags & GNTMAP_readonly) !== 0, domid: m.domid, ref: m.ref };
  }

  /**
   * map_grant_ref for this domain as the mapper (see the module comment for the checks and their
   * order). `hostAddrHi`/`hostAddrLo`: host_addr's halves (guests: the guest-physical address the
   * mapping goes to; ignored for dom0).
   */
  map(flags: number, granterDomid: number, ref: number, hostAddrHi: number, hostAddrLo: number): MapResult {
    const fail = (status: number): MapResult => ({ status, handle: 0, devBusAddr: 0 });
    const hv = this.owner.hv;
    const ld = this.owner.domain;
    if ((flags & (GNTMAP_host_map | GNTMAP_device_map)) === 0) return fail(GNTST_bad_gntref);
    // An HVM mapper (paging_mode_external) has no device or PTE mappings. Dom0's typed API maps for the host only.
    if ((flags & (GNTMAP_device_map | GNTMAP_application_map | GNTMAP_contains_pte)) !== 0) return fail(GNTST_general_error);
    const rgt = grantTableOf(hv, granterDomid);
    if (rgt === undefined) return fail(GNTST_bad_domain);
    const handle = this.getHandle();
    if (handle < 0) return fail(GNTST_no_space);
    const readonly = (flags & GNTMAP_readonly) !== 0;
    const pinned = rgt.pin(ref, this.domid, readonly, true);
    if (typeof pinned === "number") {
      this.putHandle(handle);
      return fail(pinned);
    }
    const mfn = pinned.mfn;
    let gfn = -1;
    if (ld !== undefined) {
      // create_grant_p2m_mapping: the guest frame host_addr >> 12 becomes a grant mapping.
      gfn = (hostAddrHi >>> 0) * 2 ** 20 + ((hostAddrLo >>> 0) >>> 12);
      const rc = gfn < P2M_GFN_LIMIT ? this.addP2mGrant(ld, gfn, mfn, readonly) : GNTST_general_error;
      if (rc !== GNTST_okay) {
        rgt.unpin(ref, readonly);
        this.putHandle(handle);
        return fail(rc);
      }
    }
    frameRefs(hv).get(mfn);
    this.maptrack[handle] = { flags: flags & (GNTMAP_host_map | GNTMAP_readonly), domid: granterDomid, granter: rgt, ref, mfn, gfn };
    return { status: GNTST_okay, handle, devBusAddr: mfn * PAGE_SIZE };
  }

  /** p2m_add_page of a grant type (Xen's rules for what may be replaced). */
  private addP2mGrant(ld: Domain, gfn: number, mfn: Mfn, readonly: boolean): number {
    const old = ld.p2m.lookup(asGfn(gfn));
    if (p2mIsGrant(old.type)) {
      // "Don't permit unmapping grant/foreign/direct-MMIO this way": Xen crashes the domain.
      ld.crash(`GNTTABOP_map_grant_ref: guest frame 0x${gfn.toString(16)} already holds a grant mapping (Xen's p2m_add_page refuses and crashes the domain)`);
      return GNTST_general_error;
    }
    const r = setP2mEntry(ld, asGfn(gfn), { kind: "grant", mfn, readonly });
    return isP2mUpdateError(r) ? GNTST_general_error : GNTST_okay;
  }

  /**
   * unmap_grant_ref (unmap_common + unmap_common_complete) for this domain as the mapper: the
   * handle, then, when host_addr is nonzero, the host mapping (which must still be the grant of
   * that frame at host_addr >> 12); host_addr 0 unmaps nothing and answers GNTST_okay, as Xen.
   * Dom0 passes `hostAddrLo` 1 to mean "its host mapping".
   */
  unmap(handle: number, hostAddrHi: number, hostAddrLo: number): number {
    if (!(handle >= 0 && handle < this.maptrackLimit)) return GNTST_bad_handle;
    const m = this.maptrack[handle];
    if (m === undefined || m.flags === 0) return GNTST_bad_handle;
    const rgt = m.granter;
    if ((hostAddrHi | hostAddrLo) === 0 || (m.flags & GNTMAP_host_map) === 0) return GNTST_okay;
    const ld = this.owner.domain;
    if (ld !== undefined) {
      // replace_grant_p2m_mapping: host_addr must still map this frame by grant.
      const gfn = (hostAddrHi >>> 0) * 2 ** 20 + ((hostAddrLo >>> 0) >>> 12);
      if (gfn >= P2M_GFN_LIMIT) return GNTST_general_error;
      const e = ld.p2m.lookup(asGfn(gfn));
      if (!p2mIsGrant(e.type) || e.mfn !== m.mfn) return GNTST_general_error;
      const r = setP2mEntry(ld, asGfn(gfn), { kind: "removed" });
      if (isP2mUpdateError(r)) return GNTST_general_error;
    }
    const readonly = (m.flags & GNTMAP_readonly) !== 0;
    m.flags = 0;
    this.putHandle(handle);
    rgt.unpin(m.ref, readonly);
    frameRefs(this.owner.hv).put(m.mfn);
    return GNTST_okay;
  }

  /**
   * This domain is being destroyed (Xen's gnttab_release_mappings, then grant_table_destroy):
   * its mappings of others' grants drop their pins and frame references (the p2m goes with the
   * domain); its own table is marked dead (the frames go back with its other hypervisor frames;
   * mappings others hold keep the granted frames alive, p2m.ts).
   */
  release(): void {
    const refs = frameRefs(this.owner.hv);
    for (let h = 0; h < this.maptrack.length; h++) {
      const m = this.maptrack[h];
      if (m === undefined || m.flags === 0) continue;
      m.granter.unpin(m.ref, (m.flags & GNTMAP_readonly) !== 0);
      refs.put(m.mfn);
      m.flags = 0;
      this.maptrack[h] = undefined;
    }
    this.dead = true;
  }
}

/** The grant table of the existing domain `domid` (0: dom0's), or undefined (Xen's rcu_lock_domain_by_id: no DOMID_SELF). */
export function grantTableOf(hv: Hypervisor, domid: number): GrantTable | undefined {
  if (domid === hv.dom0.id) return hv.dom0.grants.table;
  return hv.domain(domid)?.xen.grants;
}

/** A grant table for `domain` (XenDomain's), or for dom0 (`domain` undefined). */
export function newGrantTable(hv: Hypervisor | (() => Hypervisor), domid: number | (() => number), domain: Domain | undefined): GrantTable {
  return new GrantTable({
    get hv() {
      return typeof hv === "function" ? hv() : hv;
    },
    get domid() {
      return typeof domid === "function" ? domid() : domid;
    },
    domain,
  });
}

// ---- gnttab_copy ----

/** One side of a copy, decoded (struct gnttab_copy_ptr plus the GNTCOPY_*_gref flag). */
export interface CopySide {
  /** A grant reference of `domid` (GNTCOPY_*_gref), else a frame of the caller's own p2m. */
  readonly isGref: boolean;
  readonly ref: number;
  /** The frame number when not a grant (an xen_pfn_t, exact below 2^53). */
  readonly gmfn: number;
  readonly domid: number;
  readonly offset: number;
}

/** Where a copy side lands: a machine address, the bytes of the page it may touch (a v2 sub-page grant: fewer), and how to let the grant go afterwards. */
interface Claimed {
  readonly hpa: number;
  readonly start: number;
  readonly length: number;
  release(): void;
}

const NOTHING_TO_RELEASE = (): void => undefined;

/**
 * gnttab_copy_one for the caller `ld` (a guest's table with its Domain, or dom0's): domains
 * (GNTST_permission_denied for a frame of another domain, GNTST_bad_domain), the source, the
 * destination, then the offsets and length (GNTST_bad_copy_arg past the page), then the copy.
 * `local`: dom0's side that is neither a grant nor a frame (a host buffer), if any.
 */
export function copyOne(
  ld: GrantTable,
  caller: Domain | undefined,
  source: CopySide,
  dest: CopySide,
  len: number,
  local?: { readonly side: "source" | "dest"; readonly bytes: Uint8Array },
): number {
  const hv = ld.hv;
  for (const s of [source, dest]) {
    if (local?.side === (s === source ? "source" : "dest")) continue;
    if (s.domid !== DOMID_SELF && !s.isGref) return GNTST_permission_denied;
    const exists = s.domid === DOMID_SELF ? true : grantTableOf(hv, s.domid) !== undefined;
    if (!exists) return GNTST_bad_domain;
  }
  const src = local?.side === "source" ? undefined : claim(ld, caller, source, true);
  if (typeof src === "number") return src;
  const dst = local?.side === "dest" ? undefined : claim(ld, caller, dest, false);
  if (typeof dst === "number") {
    src?.release();
    return dst;
  }
  try {
    if (source.offset + len > PAGE_SIZE || dest.offset + len > PAGE_SIZE) return GNTST_bad_copy_arg;
    // Inside what the grant covers (all of the page, or a v2 sub-page grant's bytes).
    if (src !== undefined && (source.offset < src.start || source.offset + len > src.start + src.length)) return GNTST_general_error;
    if (dst !== undefined && (dest.offset < dst.start || dest.offset + len > dst.start + dst.length)) return GNTST_general_error;
    const mem = hv.memory;
    if (local !== undefined) {
      if (local.bytes.length < len) return GNTST_bad_copy_arg;
      if (local.side === "source") mem.writeBytes(dst!.hpa + dest.offset, local.bytes.subarray(0, len));
      else mem.readBytes(src!.hpa + source.offset, local.bytes.subarray(0, len));
    } else if (len > 0) {
      const buf = new Uint8Array(len);
      mem.readBytes(src!.hpa + source.offset, buf);
      mem.writeBytes(dst!.hpa + dest.offset, buf);
    }
    return GNTST_okay;
  } finally {
    src?.release();
    dst?.release();
  }
}

/** gnttab_copy_claim_buf: a grant pinned for the copy (acquire_grant_for_copy), or a RAM frame of the caller (get_paged_frame). */
function claim(ld: GrantTable, caller: Domain | undefined, s: CopySide, readonly: boolean): Claimed | number {
  const hv = ld.hv;
  if (s.isGref) {
    const rgt = s.domid === DOMID_SELF ? ld : grantTableOf(hv, s.domid);
    if (rgt === undefined) return GNTST_bad_domain;
    const p = rgt.pin(s.ref, ld.domid, readonly, false);
    if (typeof p === "number") return p;
    return { hpa: p.mfn * PAGE_SIZE, start: p.start, length: p.length, release: () => rgt.unpin(s.ref, readonly) };
  }
  if (caller === undefined || !(s.gmfn >= 0 && s.gmfn < P2M_GFN_LIMIT)) return GNTST_bad_page;
  const e = caller.p2m.lookup(asGfn(s.gmfn));
  if (e.type !== P2mType.Ram) return GNTST_bad_page;
  return { hpa: e.mfn * PAGE_SIZE, start: 0, length: PAGE_SIZE, release: NOTHING_TO_RELEASE };
}

// ---- HYPERVISOR_grant_table_op ----

const scratch = new Uint8Array(64);
const view = new DataView(scratch.buffer);
const u16 = (o: number) => view.getUint16(o, true);
const u32 = (o: number) => view.getUint32(o, true);

/** Copy `size` bytes of the guest's op at `at` into `scratch` (copy_from_guest): false on a fault. */
function readOp(ctx: ExitContext, at: number, size: number): boolean {
  return copyFromGuest(ctx, at, scratch, size) === size;
}

/** Write `size` bytes of `scratch` from `offset` back to the guest at `at + offset` (copy_to_guest / __copy_field_to_guest). */
function writeBack(ctx: ExitContext, at: number, offset: number, size: number): boolean {
  return copyToGuest(ctx, addr(ctx, at, offset), scratch.subarray(offset, offset + size), size) === size;
}

/** Guest-linear `at + offset` as the vCPU's mode wraps it. */
function addr(ctx: ExitContext, at: number, offset: number): number {
  const s = at + offset;
  if (!ctx.vcpu.cpu.mode64) return s >>> 0;
  return s >= 2 ** 63 ? s - 2 ** 64 : s < -(2 ** 63) ? s + 2 ** 64 : s;
}

/** The GPA-range check of an HVM guest-handle (guest_handle_okay is always true for HVM: faults show at the copy). */
function domOf(ctx: ExitContext, domid: number): { table: GrantTable; self: boolean } | undefined {
  if (domid === DOMID_SELF || domid === ctx.domain.id) return { table: ctx.domain.xen.grants, self: true };
  const t = grantTableOf(ctx.hv, domid);
  return t === undefined ? undefined : { table: t, self: false };
}

/**
 * HYPERVISOR_grant_table_op(unsigned int cmd, XEN_GUEST_HANDLE_PARAM(void) uop, unsigned int count)
 * as hvm_grant_table_op and do_grant_table_op answer an HVM domU.
 */
export function do_grant_table_op(ctx: ExitContext, a: HypercallArgs): number {
  const rawCmd = a.uint(0);
  const uop = a.ptr(1);
  const count = a.uint(2);
  const cmd = rawCmd & GNTTABOP_CMD_MASK;
  switch (cmd) {
    case GNTTABOP_query_size:
    case GNTTABOP_setup_table:
    case GNTTABOP_set_version:
    case GNTTABOP_get_version:
    case GNTTABOP_copy:
    case GNTTABOP_map_grant_ref:
    case GNTTABOP_unmap_grant_ref:
    case GNTTABOP_swap_grant_ref:
      break;
    default:
      return -XEN_ENOSYS; // hvm_grant_table_op: "All other commands need auditing."
  }
  if ((count | 0) < 0) return -XEN_EINVAL;
  if ((rawCmd & ~GNTTABOP_CMD_MASK) !== 0) return -XEN_EINVAL; // the opaque continuation bits are for GNTTABOP_cache_flush only
  const long = a.long;
  switch (cmd) {
    case GNTTABOP_map_grant_ref:
      return batch(ctx, a, uop, count, gnttab_map_grant_ref.SIZEOF, (at) => mapOne(ctx, at));
    case GNTTABOP_unmap_grant_ref:
      return batch(ctx, a, uop, count, gnttab_unmap_grant_ref.SIZEOF, (at) => unmapOne(ctx, at));
    case GNTTABOP_copy:
      return batch(ctx, a, uop, count, long ? gnttab_copy.SIZEOF : compat_gnttab_copy.SIZEOF, (at) => copyOp(ctx, at, long));
    case GNTTABOP_swap_grant_ref:
      return batch(ctx, a, uop, count, gnttab_swap_grant_ref.SIZEOF, (at) => swapOne(ctx, at));
    case GNTTABOP_setup_table:
      return setupTable(ctx, uop, count, long);
    case GNTTABOP_query_size:
      return querySize(ctx, uop, count);
    case GNTTABOP_set_version:
      return setVersion(ctx, uop);
    default:
      return getVersion(ctx, uop);
  }
}

/**
 * A batch of `count` ops of `size` bytes at `uop`, one at a time; `one` returns false on a guest
 * fault (-EFAULT). After GNTTAB_OPS_PER_CALL ops with more to do the hypercall is continued.
 */
function batch(ctx: ExitContext, a: HypercallArgs, uop: number, count: number, size: number, one: (at: number) => boolean): number {
  for (let i = 0; i < count; i++) {
    if (i === GNTTAB_OPS_PER_CALL) {
      a.setArg(1, addr(ctx, uop, i * size));
      a.setArg(2, count - i);
      a.preempted = true;
      return 0;
    }
    if (!one(addr(ctx, uop, i * size))) return -XEN_EFAULT;
  }
  return 0;
}

function mapOne(ctx: ExitContext, at: number): boolean {
  const L = gnttab_map_grant_ref;
  if (!readOp(ctx, at, L.SIZEOF)) return false;
  const d = ctx.domain;
  const r = d.xen.grants.map(u32(L.flags), u16(L.dom), u32(L.ref), u32(L.host_addr + 4), u32(L.host_addr));
  view.setInt16(L.status, r.status, true);
  if (r.status === GNTST_okay) {
    view.setUint32(L.handle, r.handle, true);
    view.setUint32(L.dev_bus_addr, r.devBusAddr >>> 0, true);
    view.setUint32(L.dev_bus_addr + 4, Math.floor(r.devBusAddr / 2 ** 32), true);
    d.xen.stats.grantMaps++;
  }
  // Xen copies the whole op back (__copy_to_guest_offset(uop, i, &op, 1)).
  return writeBack(ctx, at, 0, L.SIZEOF);
}

function unmapOne(ctx: ExitContext, at: number): boolean {
  const L = gnttab_unmap_grant_ref;
  if (!readOp(ctx, at, L.SIZEOF)) return false;
  const d = ctx.domain;
  const status = d.xen.grants.unmap(u32(L.handle), u32(L.host_addr + 4), u32(L.host_addr));
  if (status === GNTST_okay) d.xen.stats.grantUnmaps++;
  view.setInt16(L.status, status, true);
  return writeBack(ctx, at, L.status, 2);
}

function copyOp(ctx: ExitContext, at: number, long: boolean): boolean {
  const L = long ? gnttab_copy : compat_gnttab_copy;
  const P = long ? gnttab_copy_ptr : compat_gnttab_copy_ptr;
  if (!readOp(ctx, at, L.SIZEOF)) return false;
  const flags = u16(L.flags);
  const side = (base: number, gref: boolean): CopySide => ({
    isGref: gref,
    ref: u32(base + P["u.ref"]),
    gmfn: long ? u32(base + P["u.gmfn"]) + u32(base + P["u.gmfn"] + 4) * 2 ** 32 : u32(base + P["u.gmfn"]),
    domid: u16(base + P.domid),
    offset: u16(base + P.offset),
  });
  const d = ctx.domain;
  const status = copyOne(d.xen.grants, d, side(L.source, (flags & GNTCOPY_source_gref) !== 0), side(L.dest, (flags & GNTCOPY_dest_gref) !== 0), u16(L.len));
  if (status === GNTST_okay) d.xen.stats.grantCopies++;
  view.setInt16(L.status, status, true);
  return writeBack(ctx, at, L.status, 2);
}

function swapOne(ctx: ExitContext, at: number): boolean {
  const L = gnttab_swap_grant_ref;
  if (!readOp(ctx, at, L.SIZEOF)) return false;
  view.setInt16(L.status, ctx.domain.xen.grants.swap(u32(L.ref_a), u32(L.ref_b)), true);
  return writeBack(ctx, at, L.status, 2);
}

/**
 * gnttab_setup_table for a translated guest: the table grows to nr_frames, and frame_list gets
 * the guest frame each table frame is mapped at (XENMAPSPACE_grant_table), or INVALID_GFN for one
 * the guest has not mapped (Xen's mfn_to_gfn of an unmapped frame).
 */
function setupTable(ctx: ExitContext, uop: number, count: number, long: boolean): number {
  const L = long ? gnttab_setup_table : compat_gnttab_setup_table;
  if (count !== 1) return -XEN_EINVAL;
  if (!readOp(ctx, uop, L.SIZEOF)) return -XEN_EFAULT;
  const nrFrames = u32(L.nr_frames);
  const list = long ? view.getUint32(L.frame_list, true) + view.getInt32(L.frame_list + 4, true) * 2 ** 32 : u32(L.frame_list);
  const target = domOf(ctx, u16(L.dom));
  let status: number;
  if (target === undefined) status = GNTST_bad_domain;
  else if (!target.self) status = GNTST_permission_denied; // XSM_TARGET: a domU only for itself
  else {
    const gt = target.table;
    if (nrFrames > gt.maxGrantFrames) status = GNTST_general_error;
    else if (nrFrames > gt.nrFrames() && !gt.grow(nrFrames)) status = GNTST_general_error;
    else {
      status = GNTST_okay;
      const pfnSize = long ? 8 : 4;
      const one = new Uint8Array(8);
      const ov = new DataView(one.buffer);
      for (let i = 0; i < nrFrames; i++) {
        const g = gt.sharedFrameGfn(i);
        ov.setUint32(0, g === undefined ? INVALID_GFN_LO : g >>> 0, true);
        ov.setUint32(4, g === undefined ? INVALID_GFN_LO : Math.floor(g / 2 ** 32), true);
        if (copyToGuest(ctx, addr(ctx, list, i * pfnSize), one, pfnSize) !== pfnSize) status = GNTST_bad_virt_addr;
      }
    }
  }
  view.setInt16(L.status, status, true);
  return writeBack(ctx, uop, L.status, 2) ? 0 : -XEN_EFAULT;
}

function querySize(ctx: ExitContext, uop: number, count: number): number {
  const L = gnttab_query_size;
  if (count !== 1) return -XEN_EINVAL;
  if (!readOp(ctx, uop, L.SIZEOF)) return -XEN_EFAULT;
  const target = domOf(ctx, u16(L.dom));
  if (target === undefined) view.setInt16(L.status, GNTST_bad_domain, true);
  else if (!target.self) view.setInt16(L.status, GNTST_permission_denied, true);
  else {
    view.setUint32(L.nr_frames, target.table.nrFrames(), true);
    view.setUint32(L.max_nr_frames, target.table.maxGrantFrames, true);
    view.setInt16(L.status, GNTST_okay, true);
  }
  return writeBack(ctx, uop, 0, L.SIZEOF) ? 0 : -XEN_EFAULT;
}

/** gnttab_set_version (GrantTable.setVersion); the version afterwards is written back. */
function setVersion(ctx: ExitContext, uop: number): number {
  const L = gnttab_set_version;
  if (!readOp(ctx, uop, L.SIZEOF)) return -XEN_EFAULT;
  const gt = ctx.domain.xen.grants;
  const res = gt.setVersion(u32(L.version));
  view.setUint32(L.version, gt.version, true);
  return writeBack(ctx, uop, 0, L.SIZEOF) ? res : -XEN_EFAULT;
}

function getVersion(ctx: ExitContext, uop: number): number {
  const L = gnttab_get_version;
  if (!readOp(ctx, uop, L.SIZEOF)) return -XEN_EFAULT;
  const target = domOf(ctx, u16(L.dom));
  if (target === undefined) return -XEN_ESRCH;
  if (!target.self) return -XEN_EPERM;
  view.setUint32(L.version, target.table.version, true);
  return writeBack(ctx, uop, L.version, 4) ? 0 : -XEN_EFAULT;
}

