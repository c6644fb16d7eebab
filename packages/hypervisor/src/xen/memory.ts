/**
 * HYPERVISOR_memory_op (Xen's xen/common/memory.c do_memory_op, xen/arch/x86/mm.c
 * arch_memory_op, xen/arch/x86/mm/p2m.c xenmem_add_to_physmap_one, xen/arch/x86/hvm/hypercall.c
 * hvm_memory_op) as an HVM domU sees it:
 *
 * - XENMEM_add_to_physmap: XENMAPSPACE_shared_info (idx 0), XENMAPSPACE_grant_table (idx = the
 *   table frame, growing the table up to max_grant_frames), XENMAPSPACE_gmfn (move the frame at
 *   gfn idx to gpfn; idx becomes empty), XENMAPSPACE_gmfn_range (size frames). Whatever was at
 *   gpfn goes first, as Xen's code does: a RAM frame of the domain's memory is released (freed,
 *   "to avoid leaking memory"), a hypervisor frame (shared_info, a grant-table frame) is only
 *   unhooked, a grant mapping there cannot be removed this way (-ENXIO), and emulated MMIO or
 *   unassigned space (the platform device's BAR, say) is simply replaced. A shared_info or grant
 *   frame mapped elsewhere before leaves its old gfn.
 * - XENMEM_increase_reservation, XENMEM_decrease_reservation, XENMEM_populate_physmap: the
 *   xen_memory_reservation's extent_start array (xen_pfn_t, read one at a time), nr_extents,
 *   extent_order (at most 9, Xen 4.17's domU max_order) and mem_flags (address_bits; a NUMA node
 *   is ignored for a domU, an exact-node request refused); the answer is the number of extents
 *   done. Memory comes from the host allocator within the domain's max_pages (its configured
 *   memory) and goes back to it (p2m.ts DomainPages); an extent the domain cannot have ends the
 *   call. increase_reservation of a translated guest allocates without mapping (Xen's behaviour:
 *   HVM guests use populate_physmap); populate over a RAM frame leaves the old frame allocated
 *   and unmapped (as Xen's p2m_add_page); over a grant mapping it crashes the domain (as Xen).
 * - XENMEM_maximum_ram_page (the host's frames), XENMEM_current_reservation (tot_pages),
 *   XENMEM_maximum_reservation (max_pages), XENMEM_maximum_gpfn, XENMEM_remove_from_physmap,
 *   XENMEM_memory_map (the builder's E820, builder/pvh.ts guestMemoryMap).
 * - XENMEM_machine_memory_map and XENMEM_machphys_mapping: -ENOSYS for HVM; anything else
 *   -ENOSYS (not modelled: exchange, add_to_physmap_batch, PoD targets, paging, sharing, access,
 *   acquire_resource, vNUMA).
 *
 * Domains: DOMID_SELF or the caller's own id; another existing domain (dom0 included) is refused
 * as Xen's default XSM policy refuses a domU (-EPERM, or 0 extents done for the reservation ops);
 * an unknown one is -ESRCH (0 done). 32-bit callers use the compat layouts (xen_pfn_t and guest
 * handles of 32 bits). Long reservation calls are continued like Xen's
 * (hypercall_create_continuation with the extents done in cmd's high bits) after
 * MEMOP_PAGES_PER_CALL pages.
 */
import { PAGE_SIZE, gfn as asGfn, type Mfn } from "@vtlab/arch";
import { P2mType, p2mHasFrame, p2mIsGrant } from "@vtlab/p2m";
import {
  DOMID_SELF,
  XENMAPIDX_grant_table_status,
  XENMAPSPACE_dev_mmio,
  XENMAPSPACE_gmfn,
  XENMAPSPACE_gmfn_foreign,
  XENMAPSPACE_gmfn_range,
  XENMAPSPACE_grant_table,
  XENMAPSPACE_shared_info,
  XENMEMF_exact_node_request,
  XENMEMF_populate_on_demand,
  XENMEM_add_to_physmap,
  XENMEM_current_reservation,
  XENMEM_decrease_reservation,
  XENMEM_increase_reservation,
  XENMEM_machine_memory_map,
  XENMEM_machphys_mapping,
  XENMEM_maximum_gpfn,
  XENMEM_maximum_ram_page,
  XENMEM_maximum_reservation,
  XENMEM_memory_map,
  XENMEM_populate_physmap,
  XENMEM_remove_from_physmap,
  XEN_EACCES,
  XEN_EDOM,
  XEN_EFAULT,
  XEN_EILSEQ,
  XEN_EINVAL,
  XEN_ENOENT,
  XEN_ENOMEM,
  XEN_ENOSYS,
  XEN_ENXIO,
  XEN_EOVERFLOW,
  XEN_EPERM,
  XEN_ESRCH,
  compat_add_to_physmap,
  compat_memory_map,
  compat_memory_reservation,
  compat_remove_from_physmap,
  xen_add_to_physmap,
  xen_memory_domain,
  xen_memory_map,
  xen_memory_reservation,
  xen_remove_from_physmap,
} from "@vtlab/xen-public";
import { guestMemoryMap } from "../builder/pvh.js";
import type { ExitContext } from "../exits.js";
import { copyFromGuest, copyToGuest } from "../guest-memory.js";
import type { Domain } from "../hypervisor.js";
import { P2M_GFN_LIMIT, frameRefs, isP2mUpdateError, setP2mEntry } from "./p2m.js";
import type { HypercallArgs } from "./table.js";

/** Xen's MEMOP_EXTENT_SHIFT / MEMOP_CMD_MASK (xen/include/xen/hypercall.h): cmd[:6] is the start extent of a continued call. */
const MEMOP_EXTENT_SHIFT = 6;
const MEMOP_CMD_MASK = (1 << MEMOP_EXTENT_SHIFT) - 1;
/** CONFIG_DOMU_MAX_ORDER on x86 (PAGETABLE_ORDER): the largest extent a domU may ask for. */
export const DOMU_MAX_ORDER = 9;
/** Pages a reservation call handles before it is continued (modelled hypercall_preempt_check). */
export const MEMOP_PAGES_PER_CALL = 4096;
/** sizeof(struct e820entry) (Xen's asm/e820.h, packed: u64 addr, u64 size, u32 type). */
const E820_ENTRY_SIZE = 20;

const scratch = new Uint8Array(32);
const view = new DataView(scratch.buffer);
const u32 = (o: number) => view.getUint32(o, true);
/** A 64-bit field as a number: exact below 2^53, Infinity at or above (no such frame or count exists). */
const u64 = (o: number) => {
  const hi = view.getUint32(o + 4, true);
  return hi >= 0x20_0000 ? Number.POSITIVE_INFINITY : hi * 2 ** 32 + view.getUint32(o, true);
};
/** A guest handle: 64-bit (sign-extended like HypercallArgs.ptr) or 32-bit. */
const handle = (o: number, long: boolean) => (long ? view.getInt32(o + 4, true) * 2 ** 32 + view.getUint32(o, true) : view.getUint32(o, true));

/** Guest-linear `at + offset` as the vCPU's mode wraps it. */
function addr(ctx: ExitContext, at: number, offset: number): number {
  const s = at + offset;
  if (!ctx.vcpu.cpu.mode64) return s >>> 0;
  return s >= 2 ** 63 ? s - 2 ** 64 : s < -(2 ** 63) ? s + 2 ** 64 : s;
}

/** The target of a memory op: the caller (DOMID_SELF or its id), "perm" for another existing domain (XSM_TARGET), undefined for none. */
function target(ctx: ExitContext, domid: number): Domain | "perm" | undefined {
  if (domid === DOMID_SELF || domid === ctx.domain.id) return ctx.domain;
  if (domid === ctx.hv.dom0.id || ctx.hv.domain(domid) !== undefined) return "perm";
  return undefined;
}

/** HYPERVISOR_memory_op(unsigned long cmd, XEN_GUEST_HANDLE_PARAM(void) arg). */
export function do_memory_op(ctx: ExitContext, a: HypercallArgs): number {
  const cmd = a.ulong(0);
  const op = cmd % 2 ** 32 & MEMOP_CMD_MASK;
  const startExtent = Math.floor(cmd / 2 ** MEMOP_EXTENT_SHIFT);
  const arg = a.ptr(1);
  const long = a.long;
  switch (op) {
    case XENMEM_machine_memory_map:
    case XENMEM_machphys_mapping:
      return -XEN_ENOSYS; // hvm_memory_op
    case XENMEM_increase_reservation:
    case XENMEM_decrease_reservation:
    case XENMEM_populate_physmap:
      return reservation(ctx, a, op, startExtent, arg, long);
    case XENMEM_maximum_ram_page:
      if (startExtent !== 0) return -XEN_EINVAL;
      return ctx.hv.memory.size / PAGE_SIZE; // max_page
    case XENMEM_current_reservation:
    case XENMEM_maximum_reservation:
    case XENMEM_maximum_gpfn: {
      if (startExtent !== 0) return -XEN_EINVAL;
      if (copyFromGuest(ctx, arg, scratch, xen_memory_domain.SIZEOF) !== xen_memory_domain.SIZEOF) return -XEN_EFAULT;
      const d = target(ctx, view.getUint16(xen_memory_domain.domid, true));
      if (d === undefined) return -XEN_ESRCH;
      if (d === "perm") return -XEN_EPERM;
      if (op === XENMEM_current_reservation) return d.pages.totPages;
      if (op === XENMEM_maximum_reservation) return d.pages.maxPages;
      return maximumGpfn(d);
    }
    case XENMEM_add_to_physmap:
      if (startExtent !== startExtent % 2 ** 16) return -XEN_EDOM;
      return addToPhysmap(ctx, a, startExtent, arg, long);
    case XENMEM_remove_from_physmap:
      return removeFromPhysmap(ctx, arg);
    case XENMEM_memory_map:
      return memoryMap(ctx, arg, long);
    default:
      return -XEN_ENOSYS;
  }
}

/** domain_get_maximum_gpfn: the highest guest frame the p2m maps to a frame (RAM or a grant). */
function maximumGpfn(d: Domain): number {
  let max = 0;
  for (const run of d.p2m.runs()) if (p2mHasFrame(run.type)) max = Math.max(max, run.gfn + run.count - 1);
  return max;
}

// ---- the reservation ops ----

/** get_order_from_pages. */
function orderFromPages(pages: number): number {
  let order = 0;
  while (2 ** order < pages) order++;
  return order;
}

function reservation(ctx: ExitContext, a: HypercallArgs, op: number, start: number, arg: number, long: boolean): number {
  const L = long ? xen_memory_reservation : compat_memory_reservation;
  // Errors here are "start_extent extents done" (Xen returns start_extent, not an errno).
  if (copyFromGuest(ctx, arg, scratch, L.SIZEOF) !== L.SIZEOF) return start;
  const list = handle(L.extent_start, long);
  const nrExtents = long ? u64(L.nr_extents) : u32(L.nr_extents);
  const order = u32(L.extent_order);
  const memFlags = u32(L.mem_flags);
  if (nrExtents > 0xffff_ffff >>> MEMOP_EXTENT_SHIFT) return start; // too large to encode a continuation
  if (start >= nrExtents) return start;
  const d = target(ctx, view.getUint16(L.domid, true));
  if (d === undefined || d === "perm") return start;
  // construct_memop_from_reservation: address_bits below the host's width restrict the frames.
  const bits = memFlags & 0xff;
  let mfnLimit = Number.POSITIVE_INFINITY;
  if (bits !== 0 && bits < orderFromPages(ctx.hv.memory.size / PAGE_SIZE) + 12) {
    if (bits <= 12) return start;
    mfnLimit = 2 ** (bits - 12);
  }
  if (((memFlags >>> 8) & 0xff) !== 0 && (memFlags & XENMEMF_exact_node_request) !== 0) return start; // propagate_node for a domU
  const pfnSize = long ? 8 : 4;
  const readPfn = (i: number): number | undefined => {
    if (copyFromGuest(ctx, addr(ctx, list, i * pfnSize), scratch, pfnSize) !== pfnSize) return undefined;
    return long ? u64(0) : u32(0);
  };
  if (order > DOMU_MAX_ORDER) return start;
  let done = start;
  let pages = 0;
  const extentPages = 2 ** order;
  if (op === XENMEM_populate_physmap && (memFlags & XENMEMF_populate_on_demand) !== 0) return start; // no PoD on oneself
  for (; done < nrExtents; done++) {
    if (done !== start && pages >= MEMOP_PAGES_PER_CALL) {
      a.setArg(0, op + done * 2 ** MEMOP_EXTENT_SHIFT);
      a.preempted = true;
      return 0;
    }
    pages += extentPages;
    if (op === XENMEM_increase_reservation) {
      if (!allocateExtent(d, order, mfnLimit)) break;
    } else if (op === XENMEM_populate_physmap) {
      const gpfn = readPfn(done);
      if (gpfn === undefined || !populateExtent(d, gpfn, order, mfnLimit)) break;
    } else {
      const gmfn = readPfn(done);
      if (gmfn === undefined || !decreaseExtent(d, gmfn, order)) break;
    }
  }
  return done;
}

/** alloc_domheap_pages(d, order): 2^order contiguous frames charged to the domain, below `mfnLimit`; undefined if it cannot have them. */
function allocateFrames(d: Domain, order: number, mfnLimit: number): Mfn[] | undefined {
  const n = 2 ** order;
  const pages = d.pages;
  if (pages.totPages + n > pages.maxPages) return undefined;
  const got = pages.allocateExtent(n);
  if (got === undefined) return undefined;
  if (got + n > mfnLimit) {
    for (let i = 0; i < n; i++) pages.release((got + i) as Mfn, frameRefs(d.host));
    return undefined;
  }
  return Array.from({ length: n }, (_, i) => (got + i) as Mfn);
}

function allocateExtent(d: Domain, order: number, mfnLimit: number): boolean {
  return allocateFrames(d, order, mfnLimit) !== undefined;
}

/** populate_physmap for one extent: frames, then guest_physmap_add_page at gpfn (aligned to the order, inside the p2m). */
function populateExtent(d: Domain, gpfn: number, order: number, mfnLimit: number): boolean {
  const frames = allocateFrames(d, order, mfnLimit);
  if (frames === undefined) return false;
  const n = frames.length;
  // ept_set_entry refuses a misaligned or out-of-range extent (-EINVAL); the frames stay the domain's, unmapped, as in Xen.
  if (gpfn % n !== 0 || !(gpfn + n <= P2M_GFN_LIMIT)) return false;
  for (let i = 0; i < n; i++) {
    if (p2mIsGrant(d.p2m.lookup(asGfn(gpfn + i)).type)) {
      d.crash(`XENMEM_populate_physmap over the grant mapping at guest frame 0x${(gpfn + i).toString(16)} (Xen's p2m_add_page refuses and crashes the domain)`);
      return false;
    }
  }
  for (let i = 0; i < n; i++) {
    const g = gpfn + i;
    unhookSpecial(d, g);
    if (isP2mUpdateError(setP2mEntry(d, asGfn(g), { kind: "ram", mfn: frames[i]! }))) return false;
  }
  return true;
}

/** decrease_reservation for one extent: guest_remove_page of each of its 2^order frames; the extent counts only when all went. */
function decreaseExtent(d: Domain, gmfn: number, order: number): boolean {
  const n = 2 ** order;
  for (let j = 0; j < n; j++) if (guestRemovePage(d, gmfn + j) !== 0) return false;
  return true;
}

/**
 * guest_remove_page: nothing there (or emulated MMIO, unassigned space) is -ENOENT (-EINVAL to
 * the caller); a grant mapping cannot be given up this way (-ENXIO: the frame is not the
 * domain's); a RAM frame of the domain's memory is removed and freed; a hypervisor frame
 * (shared_info, a grant-table frame) is only unhooked.
 */
function guestRemovePage(d: Domain, g: number): number {
  if (!(g >= 0 && g < P2M_GFN_LIMIT)) return -XEN_EINVAL;
  const e = d.p2m.lookup(asGfn(g));
  if (e.type === P2mType.Absent || e.type === P2mType.Mmio) return -XEN_EINVAL;
  if (p2mIsGrant(e.type)) return -XEN_ENXIO;
  const r = setP2mEntry(d, asGfn(g), { kind: "removed" });
  if (isP2mUpdateError(r)) return -XEN_ENOMEM;
  if (e.type === P2mType.Ram) {
    if (d.pages.owns(e.mfn)) d.pages.release(e.mfn, frameRefs(d.host));
    else forgetSpecialGfn(d, e.mfn, g);
  }
  return 0;
}

// ---- the hypervisor frames a guest maps (shared_info, grant-table frames) ----

/** Where the special frame `mfn` is recorded as mapped (Xen's M2P for a xenheap page shared with the guest). */
function specialGfn(d: Domain, mfn: number): number | undefined {
  const si = d.xen.sharedInfo;
  if (si.mfn === mfn) return si.gfn;
  const gt = d.xen.grants;
  const idx = gt.sharedFrameIndex(mfn);
  if (idx >= 0) return gt.sharedFrameGfn(idx);
  const st = gt.statusFrameIndex(mfn);
  return st >= 0 ? gt.statusFrameGfn(st) : undefined;
}

function setSpecialGfn(d: Domain, mfn: number, gfn: number | undefined): void {
  const si = d.xen.sharedInfo;
  if (si.mfn === mfn) {
    si.gfn = gfn;
    return;
  }
  const gt = d.xen.grants;
  const idx = gt.sharedFrameIndex(mfn);
  if (idx >= 0) gt.setSharedFrameGfn(idx, gfn);
  const st = gt.statusFrameIndex(mfn);
  if (st >= 0) gt.setStatusFrameGfn(st, gfn);
}

/** The special frame `mfn` left guest frame `g`: forget that it was there. */
function forgetSpecialGfn(d: Domain, mfn: number, g: number): void {
  if (specialGfn(d, mfn) === g) setSpecialGfn(d, mfn, undefined);
}

/** Before a new frame goes to guest frame `g`: a special frame there is unhooked (its record forgotten). */
function unhookSpecial(d: Domain, g: number): void {
  const e = d.p2m.lookup(asGfn(g));
  if (e.type === P2mType.Ram && !d.pages.owns(e.mfn)) forgetSpecialGfn(d, e.mfn, g);
}

// ---- XENMEM_add_to_physmap ----

function addToPhysmap(ctx: ExitContext, a: HypercallArgs, start: number, arg: number, long: boolean): number {
  const L = long ? xen_add_to_physmap : compat_add_to_physmap;
  if (copyFromGuest(ctx, arg, scratch, L.SIZEOF) !== L.SIZEOF) return -XEN_EFAULT;
  const space = u32(L.space);
  if (space === XENMAPSPACE_gmfn_foreign) return -XEN_ENOSYS; // only through add_to_physmap_batch
  const d = target(ctx, view.getUint16(L.domid, true));
  if (d === undefined) return -XEN_ESRCH;
  if (space === XENMAPSPACE_dev_mmio) return -XEN_EACCES; // hardware domain only
  if (d === "perm") return -XEN_EPERM;
  const idx = long ? u64(L.idx) : u32(L.idx);
  const gpfn = long ? u64(L.gpfn) : u32(L.gpfn);
  const size = view.getUint16(L.size, true);
  if (gpfn === Number.POSITIVE_INFINITY && long && view.getUint32(L.gpfn, true) === 0xffff_ffff && view.getUint32(L.gpfn + 4, true) === 0xffff_ffff) return -XEN_EINVAL; // INVALID_GFN
  if (space !== XENMAPSPACE_gmfn_range) return addToPhysmapOne(d, space, idx, gpfn);
  // XENMAPSPACE_gmfn_range: size frames from idx to gpfn, continued after MEMOP_PAGES_PER_CALL.
  if (size < start) return -XEN_EILSEQ;
  if (!(gpfn + size < 2 ** 64) || !(idx + size < 2 ** 64)) return -XEN_EOVERFLOW;
  for (let done = start; done < size; done++) {
    if (done !== start && (done - start) % MEMOP_PAGES_PER_CALL === 0) {
      a.setArg(0, XENMEM_add_to_physmap + done * 2 ** MEMOP_EXTENT_SHIFT);
      a.preempted = true;
      return 0;
    }
    const rc = addToPhysmapOne(d, XENMAPSPACE_gmfn, idx + done, gpfn + done);
    if (rc < 0) return rc;
  }
  return 0;
}

/** xenmem_add_to_physmap_one for an HVM domain (see the module comment). */
export function addToPhysmapOne(d: Domain, space: number, idx: number, gpfn: number): number {
  let mfn: Mfn | undefined;
  let special = false;
  switch (space) {
    case XENMAPSPACE_shared_info:
      if (idx === 0) {
        mfn = d.xen.sharedInfo.mfn;
        special = true;
      }
      break;
    case XENMAPSPACE_grant_table: {
      // gnttab_map_frame: in v2, XENMAPIDX_grant_table_status asks for a status frame; in v1 it is just a large index.
      const gt = d.xen.grants;
      const statusBit = gt.version === 2 && Number.isFinite(idx) && Math.floor(idx / XENMAPIDX_grant_table_status) % 2 === 1;
      const f = statusBit ? gt.statusFrameMfn(idx - XENMAPIDX_grant_table_status) : gt.sharedFrameMfn(idx);
      if (f === undefined) return -XEN_EINVAL;
      mfn = f;
      special = true;
      break;
    }
    case XENMAPSPACE_gmfn: {
      // get_page_from_mfn(mfn, d): a frame of the domain's at gfn idx (not another domain's grant).
      if (idx < P2M_GFN_LIMIT) {
        const e = d.p2m.lookup(asGfn(idx));
        if (e.type === P2mType.Ram) {
          mfn = e.mfn;
          special = !d.pages.owns(e.mfn);
        }
      }
      break;
    }
  }
  if (mfn === undefined) return -XEN_EINVAL;
  // Xen's M2P of the frame: where it is now (a RAM frame only ever sits at one gfn here).
  const oldGpfn = space === XENMAPSPACE_gmfn ? idx : specialGfn(d, mfn);
  let rc = 0;
  if (gpfn < P2M_GFN_LIMIT) {
    // Remove what was mapped at gpfn.
    const prev = d.p2m.lookup(asGfn(gpfn));
    if (p2mHasFrame(prev.type)) {
      if (prev.type === P2mType.Ram && !d.pages.owns(prev.mfn)) {
        if (prev.mfn !== mfn) {
          forgetSpecialGfn(d, prev.mfn, gpfn);
          rc = isP2mUpdateError(setP2mEntry(d, asGfn(gpfn), { kind: "removed" })) ? -XEN_ENOMEM : 0; // special pages are simply unhooked
        }
      } else if (prev.mfn !== mfn) rc = guestRemovePage(d, gpfn); // normal domain memory is freed (a grant there: -ENXIO)
    }
  }
  // Unmap from the old location.
  if (rc === 0 && oldGpfn !== undefined && oldGpfn !== gpfn && oldGpfn < P2M_GFN_LIMIT) {
    const at = d.p2m.lookup(asGfn(oldGpfn));
    if (p2mHasFrame(at.type) && at.mfn === mfn) rc = isP2mUpdateError(setP2mEntry(d, asGfn(oldGpfn), { kind: "removed" })) ? -XEN_ENOMEM : 0;
    if (special) setSpecialGfn(d, mfn, undefined);
  }
  if (rc !== 0) return rc;
  // Map at the new location (p2m_add_page, p2m_ram_rw).
  if (!(gpfn < P2M_GFN_LIMIT)) return -XEN_EINVAL;
  if (isP2mUpdateError(setP2mEntry(d, asGfn(gpfn), { kind: "ram", mfn }))) return -XEN_ENOMEM;
  if (special) setSpecialGfn(d, mfn, gpfn);
  return 0;
}

/** XENMEM_remove_from_physmap: the frame leaves the p2m (a RAM frame stays allocated to the domain, as Xen's guest_physmap_remove_page leaves it). */
function removeFromPhysmap(ctx: ExitContext, arg: number): number {
  const long = ctx.vcpu.cpu.mode64;
  const L = long ? xen_remove_from_physmap : compat_remove_from_physmap;
  if (copyFromGuest(ctx, arg, scratch, L.SIZEOF) !== L.SIZEOF) return -XEN_EFAULT;
  const d = target(ctx, view.getUint16(L.domid, true));
  if (d === undefined) return -XEN_ESRCH;
  if (d === "perm") return -XEN_EPERM;
  const gpfn = long ? u64(L.gpfn) : u32(L.gpfn);
  if (!(gpfn < P2M_GFN_LIMIT)) return -XEN_ENOENT;
  const e = d.p2m.lookup(asGfn(gpfn));
  if (e.type !== P2mType.Ram) return -XEN_ENOENT; // get_page_from_gfn finds no page of the domain's
  if (isP2mUpdateError(setP2mEntry(d, asGfn(gpfn), { kind: "removed" }))) return -XEN_ENOMEM;
  if (!d.pages.owns(e.mfn)) forgetSpecialGfn(d, e.mfn, gpfn);
  return 0;
}

/** XENMEM_memory_map: up to nr_entries E820 entries of the builder's map; nr_entries comes back as the number written. */
function memoryMap(ctx: ExitContext, arg: number, long: boolean): number {
  const L = long ? xen_memory_map : compat_memory_map;
  if (copyFromGuest(ctx, arg, scratch, L.SIZEOF) !== L.SIZEOF) return -XEN_EFAULT;
  const map = ctx.domain.boot?.memoryMap ?? guestMemoryMap(ctx.domain.ramFrames * PAGE_SIZE);
  const buffer = handle(L.buffer, long);
  const n = Math.min(u32(L.nr_entries), map.length);
  const out = new Uint8Array(E820_ENTRY_SIZE * n);
  const ov = new DataView(out.buffer);
  map.slice(0, n).forEach((e, i) => {
    ov.setUint32(i * E820_ENTRY_SIZE, e.addr >>> 0, true);
    ov.setUint32(i * E820_ENTRY_SIZE + 4, Math.floor(e.addr / 2 ** 32), true);
    ov.setUint32(i * E820_ENTRY_SIZE + 8, e.size >>> 0, true);
    ov.setUint32(i * E820_ENTRY_SIZE + 12, Math.floor(e.size / 2 ** 32), true);
    ov.setUint32(i * E820_ENTRY_SIZE + 16, e.type, true);
  });
  if (copyToGuest(ctx, buffer, out, out.length) !== out.length) return -XEN_EFAULT;
  view.setUint32(L.nr_entries, n, true);
  if (copyToGuest(ctx, arg, scratch, L.SIZEOF) !== L.SIZEOF) return -XEN_EFAULT;
  return 0;
}

