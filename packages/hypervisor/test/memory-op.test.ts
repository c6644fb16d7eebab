/**
 * HYPERVISOR_memory_op (xen/memory.ts) on EPT and on shadow paging: add_to_physmap of
 * shared_info, grant-table frames and guest frames, seen by the guest at the new gpfn; balloon
 * down and up again against the domain's reservation; the memory map the builder gave; hostile
 * arguments (fast-check) with the host's frame accounting kept exact.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { DOMU_MAX_ORDER, Hypervisor, MEMOP_PAGES_PER_CALL, frameRefs, guestMemoryMap, hypercall, type Domain } from "@vtlab/hypervisor";
import {
  DOMID_SELF,
  HYPERVISOR_memory_op,
  HYPERVISOR_vcpu_op,
  HYPERVISOR_event_channel_op,
  EVTCHNOP_init_control,
  VCPUOP_register_vcpu_info,
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
  XENMEM_exchange,
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
  XEN_ENOSYS,
  XEN_ENXIO,
  XEN_EPERM,
  XEN_ESRCH,
  compat_memory_map,
  compat_memory_reservation,
  xen_add_to_physmap,
  xen_memory_domain,
  xen_memory_map,
  xen_memory_reservation,
  xen_remove_from_physmap,
  vcpu_register_vcpu_info,
  evtchn_init_control,
} from "@vtlab/xen-public";
import { ARG, MMIO, call, get, machine, put, ramOf, sameBytes, struct } from "./xen-harness.js";
import { DataBuilder, createGuest, guestImage, readGuest, results, type Step } from "./xen-guest64.js";

const BAR = 0xf000_0000; // the platform device's MMIO BAR: unassigned space the guest maps frames into
const R = xen_memory_reservation;
const X = xen_add_to_physmap;
const EXTENTS = ARG + 0x1000; // the extent list

function vcpuSet(d: Domain, r: number, v: number): void {
  const cpu = d.vcpus[0]!.cpu;
  cpu.lo[r] = v | 0;
  cpu.hi[r] = Math.floor(v / 2 ** 32) | 0;
}

/** A hypercall re-executed while it asks for a continuation (as the guest's VMCALL would be). */
function callAll(hv: Hypervisor, d: Domain, nr: number, args: readonly number[]): { rc: number; continuations: number } {
  [7, 6, 2, 10, 8].forEach((r, i) => vcpuSet(d, r, args[i] ?? 0));
  let continuations = 0;
  for (;;) {
    vcpuSet(d, 0, nr);
    const rc = hypercall({ hv, domain: d, vcpu: d.vcpus[0]! });
    if (typeof rc === "number") return { rc, continuations };
    continuations++;
  }
}

function atp(hv: Hypervisor, d: Domain, space: number, idx: number | bigint, gpfn: number | bigint, domid = DOMID_SELF, size = 0): number {
  put(hv, d, ARG, struct(X.SIZEOF, [[X.domid, 2, domid], [X.size, 2, size], [X.space, 4, space], [X.idx, 8, idx], [X.gpfn, 8, gpfn]]));
  return call(hv, d, HYPERVISOR_memory_op, [XENMEM_add_to_physmap, ARG]);
}

function reservation(hv: Hypervisor, d: Domain, op: number, gfns: readonly number[], order = 0, memFlags = 0, domid = DOMID_SELF, nr = gfns.length): number {
  put(hv, d, EXTENTS, struct(8 * Math.max(1, gfns.length), gfns.map((g, i) => [8 * i, 8, g] as const)));
  put(hv, d, ARG, struct(R.SIZEOF, [[R.extent_start, 8, EXTENTS], [R.nr_extents, 8, nr], [R.extent_order, 4, order], [R.mem_flags, 4, memFlags], [R.domid, 2, domid]]));
  return callAll(hv, d, HYPERVISOR_memory_op, [op, ARG]).rc;
}

function query(hv: Hypervisor, d: Domain, op: number, domid = DOMID_SELF): number {
  put(hv, d, ARG, struct(xen_memory_domain.SIZEOF, [[xen_memory_domain.domid, 2, domid]]));
  return call(hv, d, HYPERVISOR_memory_op, [op, ARG]);
}

/** free host frames + every domain's frames + frames kept for foreign mappings: constant. */
function hostFrames(hv: Hypervisor): number {
  return hv.frames.freeFrames + hv.domains.reduce((n, d) => n + d.framesHeld, 0) + frameRefs(hv).deferredFrames;
}

/** XENMEMF_address_bits(x) (memory.h, a function-like macro): the low byte of mem_flags. */
const XENMEMF_address_bits = (bits: number) => bits & 0xff;

const word = (hv: Hypervisor, d: Domain, gpa: number) => new DataView(get(hv, d, gpa, 4).buffer).getUint32(0, true);

for (const hap of [true, false]) {
  const mode = hap ? "EPT" : "shadow";

  describe(`memory_op, a guest on ${mode}`, () => {
    it("maps shared_info and grant frames into the platform BAR and uses them; moves a frame with XENMAPSPACE_gmfn; balloons a page out and in", () => {
      const hv = new Hypervisor({ memoryMiB: 128 });
      const db = new DataBuilder();
      const atpAt = (off: number, space: number, idx: number, gpfn: number) => db.u16(off + X.domid, DOMID_SELF).u32(off + X.space, space).u64(off + X.idx, idx).u64(off + X.gpfn, gpfn);
      atpAt(0x000, XENMAPSPACE_shared_info, 0, BAR / 4096);
      atpAt(0x020, XENMAPSPACE_grant_table, 0, BAR / 4096 + 1);
      atpAt(0x040, XENMAPSPACE_grant_table, 1, BAR / 4096 + 2);
      atpAt(0x060, XENMAPSPACE_gmfn, 0x300, BAR / 4096 + 3); // the frame at 3 MiB moves into the BAR
      const bal = 0x200;
      db.u64(bal + R.extent_start, db.gpa(0x300)).u64(bal + R.nr_extents, 1).u16(bal + R.domid, DOMID_SELF);
      db.u64(0x300, 0x380); // the extent: the frame at 3.5 MiB
      const steps: Step[] = [
        { op: "store32", at: 0x30_0010, value: 0x1234_5678 },
        { op: "hypercall", nr: HYPERVISOR_memory_op, args: [XENMEM_add_to_physmap, db.gpa(0x000)] },
        { op: "hypercall", nr: HYPERVISOR_memory_op, args: [XENMEM_add_to_physmap, db.gpa(0x020)] },
        { op: "hypercall", nr: HYPERVISOR_memory_op, args: [XENMEM_add_to_physmap, db.gpa(0x040)] },
        { op: "hypercall", nr: HYPERVISOR_memory_op, args: [XENMEM_add_to_physmap, db.gpa(0x060)] },
        { op: "store32", at: BAR + 0xff0, value: 0x5ace_0001 }, // in shared_info's page, past the struct
        { op: "store32", at: BAR + 0x1000 + 8 * 8, value: 0x0002_0001 }, // grant entry 8 in frame 0
        { op: "store32", at: BAR + 0x2000, value: 0x0003_0001 }, // grant entry 512 in frame 1
        { op: "load32", at: BAR + 0x3010 }, // the moved frame
        { op: "load32", at: 0x30_0010 }, // where it was: unassigned now
        { op: "store32", at: 0x38_0000, value: 0xdead_d00d },
        { op: "hypercall", nr: HYPERVISOR_memory_op, args: [XENMEM_decrease_reservation, db.gpa(bal)] },
        { op: "load32", at: 0x38_0000 },
        { op: "hypercall", nr: HYPERVISOR_memory_op, args: [XENMEM_populate_physmap, db.gpa(bal)] },
        { op: "load32", at: 0x38_0000 },
        { op: "store32", at: 0x38_0004, value: 0x0dd_ba11 },
        { op: "load32", at: 0x38_0004 },
      ];
      const d = createGuest(hv, "d", hap, steps, db.bytes);
      const total = hostFrames(hv);
      hv.run({ maxInstructions: 2_000_000 });
      expect(d.crashReason).toBeUndefined();
      expect(results(hv, d, steps)).toEqual([0, 0, 0, 0, 0x1234_5678, 0xffff_ffff, 1, 0xffff_ffff, 1, 0, 0x0dd_ba11]);
      const si = d.xen.sharedInfo;
      expect(si.gfn).toBe(BAR / 4096);
      expect(hv.memory.read32(si.hpa + 0xff0)).toBe(0x5ace_0001);
      expect(d.xen.grants.sharedFrameGfn(0)).toBe(BAR / 4096 + 1);
      expect(d.xen.grants.sharedFrameGfn(1)).toBe(BAR / 4096 + 2);
      expect(d.xen.grants.nrFrames()).toBe(2);
      expect(d.pages.totPages).toBe(d.ramFrames);
      expect(hostFrames(hv)).toBe(total);
    });
  });

  describe(`memory_op answers (${mode})`, () => {
    it("shared_info and grant frames: idx checks, remapping moves them (the old gfn empties), up to max_grant_frames", () => {
      const { hv, domains } = machine({ hap });
      const d = domains[0]!;
      const total = hostFrames(hv);
      expect(atp(hv, d, XENMAPSPACE_shared_info, 1, BAR / 4096)).toBe(-XEN_EINVAL);
      expect(atp(hv, d, XENMAPSPACE_shared_info, 0, BAR / 4096)).toBe(0);
      put(hv, d, BAR + 0xf00, Uint8Array.of(0x42));
      expect(atp(hv, d, XENMAPSPACE_shared_info, 0, BAR / 4096 + 7)).toBe(0);
      expect(d.xen.sharedInfo.gfn).toBe(BAR / 4096 + 7);
      expect(d.ramHpa(BAR)).toBeUndefined();
      expect(get(hv, d, BAR + 0x7f00, 1)).toEqual(Uint8Array.of(0x42));
      const held = d.framesHeld;
      expect(atp(hv, d, XENMAPSPACE_grant_table, 63, BAR / 4096 + 0x100)).toBe(0);
      expect(d.xen.grants.nrFrames()).toBe(64);
      expect(d.framesHeld).toBe(held + 64);
      expect(atp(hv, d, XENMAPSPACE_grant_table, 64, BAR / 4096 + 0x101)).toBe(-XEN_EINVAL);
      expect(atp(hv, d, XENMAPSPACE_grant_table, XENMAPIDX_grant_table_status, BAR / 4096 + 0x101)).toBe(-XEN_EINVAL); // v1: no status frames
      expect(atp(hv, d, XENMAPSPACE_grant_table, 2n ** 63n, BAR / 4096 + 0x101)).toBe(-XEN_EINVAL);
      // A grant frame over RAM: the RAM frame there is freed (normal domain memory, "to avoid leaking").
      expect(atp(hv, d, XENMAPSPACE_grant_table, 0, 0x200)).toBe(0);
      expect(d.pages.totPages).toBe(d.ramFrames - 1);
      // shared_info over the grant frame: the grant frame is only unhooked.
      expect(atp(hv, d, XENMAPSPACE_shared_info, 0, 0x200)).toBe(0);
      expect(d.xen.grants.sharedFrameGfn(0)).toBeUndefined();
      expect(d.ramHpa(BAR + 0x7000)).toBeUndefined();
      expect(hostFrames(hv)).toBe(total);
    });

    it("XENMAPSPACE_gmfn and gmfn_range move frames; the target's RAM is released; grants, MMIO and nothing cannot be moved", () => {
      const { hv, domains } = machine({ hap, memoryMiB: 8 });
      const d = domains[0]!;
      const total = hostFrames(hv);
      put(hv, d, 0x30_0000, Uint8Array.of(1, 2, 3, 4));
      expect(atp(hv, d, XENMAPSPACE_gmfn, 0x300, 0x301)).toBe(0); // onto RAM: that frame is freed
      expect(get(hv, d, 0x30_1000, 4)).toEqual(Uint8Array.of(1, 2, 3, 4));
      expect(d.ramHpa(0x30_0000)).toBeUndefined();
      expect(d.pages.totPages).toBe(d.ramFrames - 1);
      expect(atp(hv, d, XENMAPSPACE_gmfn, 0x300, 0x302)).toBe(-XEN_EINVAL); // nothing at 0x300 now
      expect(atp(hv, d, XENMAPSPACE_gmfn, MMIO / 4096, 0x302)).toBe(-XEN_EINVAL);
      expect(atp(hv, d, XENMAPSPACE_gmfn, 0x301, 0x301)).toBe(0); // onto itself
      put(hv, d, 0x40_0000, Uint8Array.of(7));
      expect(atp(hv, d, XENMAPSPACE_gmfn_range, 0x400, BAR / 4096, DOMID_SELF, 4)).toBe(0);
      expect(get(hv, d, BAR, 1)).toEqual(Uint8Array.of(7));
      expect(d.ramHpa(0x40_3000)).toBeUndefined();
      expect(d.ramHpa(BAR + 0x3000)).toBeDefined();
      expect(atp(hv, d, XENMAPSPACE_gmfn, 0x50000000, 0x10)).toBe(-XEN_EINVAL);
      expect(atp(hv, d, XENMAPSPACE_gmfn, 0x500, 2n ** 40n)).toBe(-XEN_EINVAL); // gpfn beyond the p2m
      expect(atp(hv, d, XENMAPSPACE_gmfn, 0x500, 0xffff_ffff_ffff_ffffn)).toBe(-XEN_EINVAL); // INVALID_GFN
      expect(hostFrames(hv)).toBe(total);
    });

    it("errnos of add_to_physmap: foreign, dev_mmio, another domain, unknown domain, unknown space, EDOM, EILSEQ, bad pointers", () => {
      const { hv, domains } = machine({ hap, count: 2 });
      const [d, other] = domains as [Domain, Domain];
      expect(atp(hv, d, XENMAPSPACE_gmfn_foreign, 0x300, BAR / 4096)).toBe(-XEN_ENOSYS);
      expect(atp(hv, d, XENMAPSPACE_dev_mmio, 0x300, BAR / 4096)).toBe(-XEN_EACCES);
      expect(atp(hv, d, XENMAPSPACE_shared_info, 0, BAR / 4096, other.id)).toBe(-XEN_EPERM);
      expect(atp(hv, d, XENMAPSPACE_shared_info, 0, BAR / 4096, 0)).toBe(-XEN_EPERM);
      expect(atp(hv, d, XENMAPSPACE_shared_info, 0, BAR / 4096, 999)).toBe(-XEN_ESRCH);
      expect(atp(hv, d, 17, 0, BAR / 4096)).toBe(-XEN_EINVAL);
      expect(atp(hv, d, XENMAPSPACE_shared_info, 0, BAR / 4096, d.id)).toBe(0); // its own id works like DOMID_SELF
      expect(call(hv, d, HYPERVISOR_memory_op, [XENMEM_add_to_physmap + (1 << 22), ARG])).toBe(-XEN_EDOM);
      put(hv, d, ARG, struct(X.SIZEOF, [[X.domid, 2, DOMID_SELF], [X.size, 2, 2], [X.space, 4, XENMAPSPACE_gmfn_range], [X.idx, 8, 0x300], [X.gpfn, 8, BAR / 4096]]));
      expect(call(hv, d, HYPERVISOR_memory_op, [XENMEM_add_to_physmap + (3 << 6), ARG])).toBe(-XEN_EILSEQ);
      for (const p of [MMIO, 0x1_0000_0000, 0x8000_0000_0000, -16]) expect(call(hv, d, HYPERVISOR_memory_op, [XENMEM_add_to_physmap, p])).toBe(-XEN_EFAULT);
      for (const op of [XENMEM_machine_memory_map, XENMEM_machphys_mapping, XENMEM_exchange, 5, 63]) expect(call(hv, d, HYPERVISOR_memory_op, [op, ARG])).toBe(-XEN_ENOSYS);
      // remove_from_physmap: the frame leaves the p2m and stays allocated.
      const RM = xen_remove_from_physmap;
      const remove = (gpfn: number, domid = DOMID_SELF) => {
        put(hv, d, ARG + 0x800, struct(RM.SIZEOF, [[RM.domid, 2, domid], [RM.gpfn, 8, gpfn]]));
        return call(hv, d, HYPERVISOR_memory_op, [XENMEM_remove_from_physmap, ARG + 0x800]);
      };
      expect(remove(0x380)).toBe(0);
      expect(d.ramHpa(0x38_0000)).toBeUndefined();
      expect(d.pages.totPages).toBe(d.ramFrames);
      expect(remove(0x380)).toBe(-XEN_ENOENT);
      expect(remove(0x380, other.id)).toBe(-XEN_EPERM);
      expect(remove(0x380, 4444)).toBe(-XEN_ESRCH);
    });

    it("balloons down and up: decrease, increase and populate against max_pages; orders up to 9; partial answers", () => {
      const { hv, domains } = machine({ hap, memoryMiB: 16 });
      const d = domains[0]!;
      const total = hostFrames(hv);
      const max = d.ramFrames;
      expect(query(hv, d, XENMEM_current_reservation)).toBe(max);
      expect(query(hv, d, XENMEM_maximum_reservation)).toBe(max);
      expect(query(hv, d, XENMEM_maximum_ram_page)).toBe(hv.memory.size / 4096);
      put(hv, d, 0x60_0000, Uint8Array.of(0xee));
      expect(reservation(hv, d, XENMEM_decrease_reservation, [0x600, 0x601, 0x602])).toBe(3);
      expect(query(hv, d, XENMEM_current_reservation)).toBe(max - 3);
      expect(hv.frames.freeFrames).toBe(total - hv.domains.reduce((n, x) => n + x.framesHeld, 0));
      expect(d.ramHpa(0x60_0000)).toBeUndefined();
      expect(reservation(hv, d, XENMEM_decrease_reservation, [0x603, 0x600, 0x604])).toBe(1); // 0x600 is gone: stops there
      expect(reservation(hv, d, XENMEM_decrease_reservation, [MMIO / 4096])).toBe(0);
      // increase_reservation gives a translated guest frames but maps nothing.
      expect(reservation(hv, d, XENMEM_increase_reservation, [0, 0, 0, 0, 0, 0])).toBe(4);
      expect(query(hv, d, XENMEM_current_reservation)).toBe(max);
      expect(reservation(hv, d, XENMEM_populate_physmap, [0x600])).toBe(0); // at max_pages
      expect(reservation(hv, d, XENMEM_decrease_reservation, [0x700, 0x701])).toBe(2);
      expect(reservation(hv, d, XENMEM_populate_physmap, [0x600, 0x601, 0x602])).toBe(2);
      expect(get(hv, d, 0x60_0000, 1)).toEqual(Uint8Array.of(0)); // a fresh zeroed frame
      // Orders: 9 is the most a domU may ask; the extent must be aligned for populate.
      expect(reservation(hv, d, XENMEM_decrease_reservation, [0x800], 9)).toBe(1);
      expect(query(hv, d, XENMEM_current_reservation)).toBe(max - 512);
      expect(reservation(hv, d, XENMEM_decrease_reservation, [0xa00], DOMU_MAX_ORDER + 1)).toBe(0);
      expect(reservation(hv, d, XENMEM_populate_physmap, [0x801], 9)).toBe(0); // misaligned: the frames stay allocated, unmapped
      expect(query(hv, d, XENMEM_current_reservation)).toBe(max);
      expect(reservation(hv, d, XENMEM_decrease_reservation, [0xa00], 9)).toBe(1);
      expect(reservation(hv, d, XENMEM_populate_physmap, [0x800], 9)).toBe(1);
      expect(d.ramHpa(0x80_0000 + 511 * 4096)).toBeDefined();
      // Flags: PoD on oneself, an exact NUMA node, address bits of a page or less: nothing done.
      expect(reservation(hv, d, XENMEM_decrease_reservation, [0x900])).toBe(1);
      expect(reservation(hv, d, XENMEM_populate_physmap, [0x900], 0, XENMEMF_populate_on_demand)).toBe(0);
      expect(reservation(hv, d, XENMEM_populate_physmap, [0x900], 0, (1 << 8) | XENMEMF_exact_node_request)).toBe(0);
      expect(reservation(hv, d, XENMEM_populate_physmap, [0x900], 0, XENMEMF_address_bits(12))).toBe(0);
      expect(reservation(hv, d, XENMEM_populate_physmap, [0x900], 0, XENMEMF_address_bits(20))).toBe(0); // below 1 MiB: the host has none free there
      expect(reservation(hv, d, XENMEM_populate_physmap, [0x900], 0, XENMEMF_address_bits(40))).toBe(1);
      // Continued (start_extent in cmd) calls and bad starts.
      put(hv, d, ARG, struct(R.SIZEOF, [[R.extent_start, 8, EXTENTS], [R.nr_extents, 8, 1], [R.domid, 2, DOMID_SELF]]));
      expect(call(hv, d, HYPERVISOR_memory_op, [XENMEM_decrease_reservation + (5 << 6), ARG])).toBe(5);
      expect(reservation(hv, d, XENMEM_decrease_reservation, [0x900], 0, 0, DOMID_SELF, 2 ** 26)).toBe(0); // too many to continue
      expect(hostFrames(hv)).toBe(total);
      hv.destroyDomain(d.id);
      expect(hv.frames.freeFrames).toBe(total);
    });

    it("a long reservation call is continued; a hostile count stops at the first bad extent", () => {
      const { hv, domains } = machine({ hap, memoryMiB: 32 });
      const d = domains[0]!;
      const n = MEMOP_PAGES_PER_CALL + 904;
      const gfns = Array.from({ length: n }, (_, i) => 0x400 + i);
      put(hv, d, ARG + 0x1000, struct(8 * n, gfns.map((g, i) => [8 * i, 8, g] as const)));
      put(hv, d, ARG, struct(R.SIZEOF, [[R.extent_start, 8, ARG + 0x1000], [R.nr_extents, 8, n], [R.domid, 2, DOMID_SELF]]));
      const r = callAll(hv, d, HYPERVISOR_memory_op, [XENMEM_decrease_reservation, ARG]);
      expect(r).toEqual({ rc: n, continuations: 1 });
      expect(d.pages.totPages).toBe(d.ramFrames - n);
      put(hv, d, ARG, struct(R.SIZEOF, [[R.extent_start, 8, ARG + 0x1000], [R.nr_extents, 8, 2 ** 26 - 1], [R.domid, 2, DOMID_SELF]]));
      expect(callAll(hv, d, HYPERVISOR_memory_op, [XENMEM_populate_physmap, ARG]).rc).toBe(n); // all back, then the list runs into frames it cannot populate
    });

    it("the memory map is the builder's E820; reservation queries and their errnos; 32-bit callers", () => {
      const { hv, domains } = machine({ hap, count: 2 });
      const [d, other] = domains as [Domain, Domain];
      const MM = xen_memory_map;
      const mm = (nr: number, buffer: number) => {
        put(hv, d, ARG, struct(MM.SIZEOF, [[MM.nr_entries, 4, nr], [MM.buffer, 8, buffer]]));
        return call(hv, d, HYPERVISOR_memory_op, [XENMEM_memory_map, ARG]);
      };
      expect(mm(16, ARG + 0x100)).toBe(0);
      // The builder's map: guestMemoryMap's, with the ACPI tables (ACPI NVS) of a PVH domain.
      const e820 = d.boot!.memoryMap;
      const acpi = d.boot!.acpi;
      expect(e820.filter((e) => e.type === 4)).toEqual(acpi === undefined ? [] : [{ addr: acpi.gpa, size: acpi.bytes.length, type: 4 }]);
      expect(e820.filter((e) => e.type !== 4)).toEqual(guestMemoryMap(d.ramFrames * 4096));
      expect(new DataView(get(hv, d, ARG, 4).buffer).getUint32(0, true)).toBe(e820.length);
      const b = new DataView(get(hv, d, ARG + 0x100, 20 * e820.length).buffer);
      const got = e820.map((_, i) => ({ addr: b.getUint32(20 * i, true), size: b.getUint32(20 * i + 8, true), type: b.getUint32(20 * i + 16, true) }));
      expect(got).toEqual(e820);
      // The same map the builder wrote into hvm_start_info (memmap at 0x6100).
      const si = new DataView(get(hv, d, 0x6100, 48).buffer);
      expect([si.getUint32(0, true), si.getUint32(8, true), si.getUint32(24, true), si.getUint32(32, true)]).toEqual([e820[0]!.addr, e820[0]!.size, e820[1]!.addr, e820[1]!.size]);
      expect(mm(1, ARG + 0x100)).toBe(0);
      expect(new DataView(get(hv, d, ARG, 4).buffer).getUint32(0, true)).toBe(1);
      expect(mm(2, MMIO)).toBe(-XEN_EFAULT);
      expect(mm(0, MMIO)).toBe(0);
      expect(call(hv, d, HYPERVISOR_memory_op, [XENMEM_memory_map, MMIO])).toBe(-XEN_EFAULT);
      expect(query(hv, d, XENMEM_current_reservation, other.id)).toBe(-XEN_EPERM);
      expect(query(hv, d, XENMEM_maximum_reservation, 0)).toBe(-XEN_EPERM);
      expect(query(hv, d, XENMEM_current_reservation, 555)).toBe(-XEN_ESRCH);
      // The highest frame the p2m maps: the end of RAM, on both MMUs (the shadow identity table is in no p2m).
      expect(query(hv, d, XENMEM_maximum_gpfn)).toBe(d.ramFrames - 1);
      expect(call(hv, d, HYPERVISOR_memory_op, [XENMEM_current_reservation, MMIO])).toBe(-XEN_EFAULT);
      expect(call(hv, d, HYPERVISOR_memory_op, [XENMEM_current_reservation + (1 << 6), ARG])).toBe(-XEN_EINVAL);
      expect(call(hv, d, HYPERVISOR_memory_op, [XENMEM_maximum_ram_page + (1 << 6), ARG])).toBe(-XEN_EINVAL);
      // The reservation ops answer 0 done for another or an unknown domain, and for a bad pointer.
      expect(reservation(hv, d, XENMEM_decrease_reservation, [0x300], 0, 0, other.id)).toBe(0);
      expect(reservation(hv, d, XENMEM_decrease_reservation, [0x300], 0, 0, 777)).toBe(0);
      expect(call(hv, d, HYPERVISOR_memory_op, [XENMEM_decrease_reservation, MMIO])).toBe(0);
      // Decreasing a grant mapping is refused (the frame is not the domain's).
      const { hv: hv32, domains: d32 } = machine({ hap, long: false });
      const c = d32[0]!;
      const CR = compat_memory_reservation;
      put(hv32, c, ARG + 0x100, struct(4, [[0, 4, 0x300]]));
      put(hv32, c, ARG, struct(CR.SIZEOF, [[CR.extent_start, 4, ARG + 0x100], [CR.nr_extents, 4, 1], [CR.domid, 2, DOMID_SELF]]));
      expect(call(hv32, c, HYPERVISOR_memory_op, [XENMEM_decrease_reservation, ARG])).toBe(1);
      expect(c.ramHpa(0x30_0000)).toBeUndefined();
      const CM = compat_memory_map;
      put(hv32, c, ARG, struct(CM.SIZEOF, [[CM.nr_entries, 4, 5], [CM.buffer, 4, ARG + 0x200]]));
      expect(call(hv32, c, HYPERVISOR_memory_op, [XENMEM_memory_map, ARG])).toBe(0);
      expect(new DataView(get(hv32, c, ARG, 4).buffer).getUint32(0, true)).toBe(c.boot!.acpi !== undefined ? 4 : 3); // low RAM, RAM from 1 MiB, (the ACPI tables of a PVH domain,) the reserved special region
      void XEN_ENXIO;
    });

    it("hostile reservations and add_to_physmaps (fast-check): no throw, frames accounted exactly, another domain untouched", () => {
      const { hv, domains } = machine({ hap, count: 2, memoryMiB: 8 });
      const [d, bystander] = domains as [Domain, Domain];
      const total = hostFrames(hv);
      const before = ramOf(hv, bystander);
      const gfn = fc.oneof(fc.nat({ max: 0x900 }), fc.constantFrom(MMIO / 4096, BAR / 4096, 0xfffff, 0x100000, 2 ** 34, 0), fc.nat({ max: 2 ** 52 }));
      fc.assert(
        fc.property(
          fc.constantFrom(XENMEM_decrease_reservation, XENMEM_increase_reservation, XENMEM_populate_physmap, XENMEM_add_to_physmap),
          fc.array(gfn, { minLength: 0, maxLength: 6 }),
          fc.oneof(fc.constant(0), fc.nat({ max: 12 }), fc.nat()),
          fc.oneof(fc.constant(0), fc.nat({ max: 0xffff_ffff })),
          fc.constantFrom(DOMID_SELF, d.id, bystander.id, 0, 0x7ff1),
          fc.oneof(fc.nat({ max: 8 }), fc.constantFrom(2 ** 31, 2 ** 32 - 1)),
          fc.constantFrom(XENMAPSPACE_shared_info, XENMAPSPACE_grant_table, XENMAPSPACE_gmfn, XENMAPSPACE_gmfn_range, 9),
          (op, gfns, order, flags, domid, nr, space) => {
            let rc: number;
            if (op === XENMEM_add_to_physmap) rc = atp(hv, d, space, gfns[0] ?? 0, gfns[1] ?? 0, domid, order & 0xf);
            else rc = reservation(hv, d, op, gfns, order, flags, domid, nr);
            expect(Number.isInteger(rc)).toBe(true);
            if (op !== XENMEM_add_to_physmap) expect(rc >= 0 && rc <= nr).toBe(true);
            else expect([0, -XEN_EINVAL, -XEN_EPERM, -XEN_ESRCH, -XEN_ENXIO, -XEN_EILSEQ, -XEN_ENOSYS]).toContain(rc);
            expect(d.pages.totPages).toBeLessThanOrEqual(d.pages.maxPages);
            expect(hostFrames(hv)).toBe(total);
          },
        ),
        { numRuns: 300, seed: 7 },
      );
      expect(sameBytes(ramOf(hv, bystander), before)).toBe(true);
      expect(bystander.crashReason).toBeUndefined();
    });
  });

  describe(`memory_op on a guest's own page tables (${mode})`, () => {
    it("a guest that balloons out its own page-table frames only hurts itself: no throw, the other domain runs on", () => {
      const hv = new Hypervisor({ memoryMiB: 128 });
      const db = new DataBuilder();
      db.u64(R.extent_start, db.gpa(0x100)).u64(R.nr_extents, 3).u16(R.domid, DOMID_SELF);
      db.u64(0x100, 0x8).u64(0x108, 0x9).u64(0x110, 0xa); // the builder's PML4, PDPT and first page directory
      const steps: Step[] = [
        { op: "hypercall", nr: HYPERVISOR_memory_op, args: [XENMEM_decrease_reservation, db.gpa(0)] },
        { op: "load32", at: 0x30_0000 },
        { op: "store32", at: 0x30_0004, value: 1 },
      ];
      const victim = createGuest(hv, "victim", hap, steps, db.bytes);
      const otherSteps: Step[] = [{ op: "store32", at: 0x30_0000, value: 0x0bed_0bed }, { op: "load32", at: 0x30_0000 }];
      const other = createGuest(hv, "other", hap, otherSteps);
      hv.run({ maxInstructions: 2_000_000 });
      // The victim lost the tables it runs on: its next walk finds unassigned space and it crashes.
      expect(victim.state).toBe("crashed");
      expect(victim.crashReason).toMatch(/0x8000/);
      // RAX: one extent done. With its PML4 gone the guest's extent list cannot be read any more
      // (copy_from_guest walks the guest's own tables), so the call stops there; the store of RAX
      // is what faulted.
      expect(victim.vcpus[0]!.cpu.lo[0]).toBe(1);
      expect(victim.pages.totPages).toBe(victim.ramFrames - 1);
      expect(other.crashReason).toBeUndefined();
      expect(other.exitCode).toBe(0);
      expect(results(hv, other, otherSteps)).toEqual([0x0bed_0bed]);
    });
  });

  describe(`memory_op and vcpu_info (${mode})`, () => {
    it("a registered vcpu_info page ballooned out stays the hypervisor's (never reused) until the domain is destroyed", () => {
      const { hv, domains } = machine({ hap });
      const d = domains[0]!;
      const total = hostFrames(hv);
      const VR = vcpu_register_vcpu_info;
      put(hv, d, ARG, struct(VR.SIZEOF, [[VR.mfn, 8, 0x300], [VR.offset, 4, 64]]));
      expect(call(hv, d, HYPERVISOR_vcpu_op, [VCPUOP_register_vcpu_info, 0, ARG])).toBe(0);
      const mfn = d.ramHpa(0x30_0000)! / 4096;
      expect(reservation(hv, d, XENMEM_decrease_reservation, [0x300])).toBe(1);
      expect(frameRefs(hv).isDeferred(mfn as never)).toBe(true);
      expect(hostFrames(hv)).toBe(total);
      const fresh = hv.createDomain({ name: "fresh", memoryMiB: 16, hap, kernel: guestImage([]) });
      expect(fresh.pages.owns(mfn)).toBe(false);
      hv.destroyDomain(fresh.id);
      hv.destroyDomain(d.id);
      expect(frameRefs(hv).deferredFrames).toBe(0);
      expect(hostFrames(hv)).toBe(total);
    });
  });

  describe(`memory_op and FIFO event channels (${mode})`, () => {
    it("a FIFO control block page ballooned out stays the hypervisor's until the domain is destroyed", () => {
      const { hv, domains } = machine({ hap });
      const d = domains[0]!;
      const total = hostFrames(hv);
      const IC = evtchn_init_control;
      put(hv, d, ARG, struct(IC.SIZEOF, [[IC.control_gfn, 8, 0x310], [IC.offset, 4, 0], [IC.vcpu, 4, 0]]));
      expect(call(hv, d, HYPERVISOR_event_channel_op, [EVTCHNOP_init_control, ARG])).toBe(0);
      const mfn = d.ramHpa(0x31_0000)! / 4096;
      expect(reservation(hv, d, XENMEM_decrease_reservation, [0x310])).toBe(1);
      expect(frameRefs(hv).isDeferred(mfn as never)).toBe(true);
      expect(hostFrames(hv)).toBe(total);
      hv.destroyDomain(d.id);
      expect(frameRefs(hv).deferredFrames).toBe(0);
      expect(hostFrames(hv)).toBe(total);
    });
  });

  describe(`memory_op with grants (${mode})`, () => {
    it("a grant mapping cannot be ballooned or moved away; a granted frame given up while mapped is kept until unmapped", () => {
      const { hv, domains } = machine({ hap, count: 2 });
      const [granter, mapper] = domains as [Domain, Domain];
      expect(atp(hv, granter, XENMAPSPACE_grant_table, 0, BAR / 4096)).toBe(0);
      put(hv, granter, BAR + 8 * 8 + 4, struct(4, [[0, 4, 0x300]]));
      put(hv, granter, BAR + 8 * 8, struct(4, [[0, 2, 1], [2, 2, mapper.id]]));
      const m = hv.dom0.grants.map(granter.id, 8);
      expect(m).toBe(-1); // for domain 2, not dom0
      const total = hostFrames(hv);
      // The mapper maps it at 0xc0000000 (gnttab_map_grant_ref from the mapper).
      const Mo = { host: 0, flags: 8, ref: 12, dom: 16, status: 18, handle: 20 };
      put(hv, mapper, ARG, struct(32, [[Mo.host, 8, 0xc000_0000], [Mo.flags, 4, 2], [Mo.ref, 4, 8], [Mo.dom, 2, granter.id]]));
      expect(call(hv, mapper, 20, [0, ARG, 1])).toBe(0);
      expect(new DataView(get(hv, mapper, ARG, 32).buffer).getInt16(Mo.status, true)).toBe(0);
      expect(reservation(hv, mapper, XENMEM_decrease_reservation, [0xc0000])).toBe(0);
      expect(atp(hv, mapper, XENMAPSPACE_gmfn, 0xc0000, BAR / 4096)).toBe(-XEN_EINVAL);
      expect(atp(hv, mapper, XENMAPSPACE_shared_info, 0, 0xc0000)).toBe(-XEN_ENXIO);
      // The granter balloons the granted page out: it stays alive for the mapper.
      const mfn = granter.ramHpa(0x30_0000)! / 4096;
      put(hv, granter, 0x30_0000, Uint8Array.of(0x77));
      expect(reservation(hv, granter, XENMEM_decrease_reservation, [0x300])).toBe(1);
      expect(frameRefs(hv).isDeferred(mfn as never)).toBe(true);
      expect(word(hv, mapper, 0xc000_0000) & 0xff).toBe(0x77);
      expect(hostFrames(hv)).toBe(total);
      put(hv, mapper, ARG + 0x100, struct(24, [[0, 8, 0xc000_0000], [16, 4, new DataView(get(hv, mapper, ARG, 32).buffer).getUint32(Mo.handle, true)]]));
      expect(call(hv, mapper, 20, [1, ARG + 0x100, 1])).toBe(0);
      expect(frameRefs(hv).isDeferred(mfn as never)).toBe(false);
      expect(hostFrames(hv)).toBe(total);
      void readGuest;
    });
  });
}
