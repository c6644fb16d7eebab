/**
 * Grant tables (xen/grant_table.ts) on EPT and on shadow paging: guests that grant, map, read,
 * write, unmap and copy through their own page tables; dom0's typed API; every GNTST_ answer an
 * HVM guest can get; hostile op structs (fast-check); destroy with grants outstanding.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { GNTTAB_OPS_PER_CALL, Hypervisor, MAPTRACK_PER_PAGE, frameRefs, type Domain } from "@vtlab/hypervisor";
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
  GNTTABOP_dump_table,
  GNTTABOP_get_status_frames,
  GNTTABOP_get_version,
  GNTTABOP_map_grant_ref,
  GNTTABOP_query_size,
  GNTTABOP_set_version,
  GNTTABOP_setup_table,
  GNTTABOP_swap_grant_ref,
  GNTTABOP_transfer,
  GNTTABOP_unmap_grant_ref,
  GTF_permit_access,
  GTF_readonly,
  GTF_reading,
  GTF_sub_page,
  GTF_transitive,
  GTF_writing,
  HYPERVISOR_grant_table_op,
  HYPERVISOR_memory_op,
  XENMAPSPACE_grant_table,
  XENMEM_add_to_physmap,
  XEN_EFAULT,
  XEN_EINVAL,
  XEN_ENOSYS,
  XEN_EPERM,
  XEN_ESRCH,
  XEN_EBUSY,
  XEN_ERANGE,
  XENMAPIDX_grant_table_status,
  compat_add_to_physmap,
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
  grant_entry_v2,
  xen_add_to_physmap,
} from "@vtlab/xen-public";
import { ARG, MMIO, call, get, machine, put, ramOf, sameBytes, struct } from "./xen-harness.js";
import { EPT_R, NestedPaging } from "@vtlab/mmu-ept";
import { DataBuilder, createGuest, guestImage, readGuest, results, type Step } from "./xen-guest64.js";

/** Where granters map grant-table frame 0 (the platform device's BAR: unassigned space). */
const GT_GPA = 0xf000_0000;
/** The granted page (granter RAM). */
const DATA_GPA = 0x30_0000;
/** Where mappers map a grant (unassigned space). */
const MAP_GPA = 0xc000_0000;
const REF = 8;
const M = gnttab_map_grant_ref;
const U = gnttab_unmap_grant_ref;
const C = gnttab_copy;
const P = gnttab_copy_ptr;

const le32 = (b: Uint8Array, off: number) => new DataView(b.buffer, b.byteOffset).getUint32(off, true);
const s16 = (b: Uint8Array, off: number) => new DataView(b.buffer, b.byteOffset).getInt16(off, true);

// ---- direct hypercalls (xen-harness) ----

/** XENMEM_add_to_physmap(XENMAPSPACE_grant_table, idx) at `gpa` for `d` (64-bit or compat layout as the vCPU's mode). */
function mapGrantFrame(hv: Hypervisor, d: Domain, idx = 0, gpa = GT_GPA + idx * 4096): number {
  const X = d.vcpus[0]!.cpu.mode64 ? xen_add_to_physmap : compat_add_to_physmap;
  const w = X.SIZEOF === xen_add_to_physmap.SIZEOF ? 8 : 4;
  put(hv, d, ARG, struct(X.SIZEOF, [[X.domid, 2, DOMID_SELF], [X.space, 4, XENMAPSPACE_grant_table], [X.idx, w, idx], [X.gpfn, w, gpa / 4096]]));
  return call(hv, d, HYPERVISOR_memory_op, [XENMEM_add_to_physmap, ARG]);
}

/** The granter writes entry `ref` (frame first, then flags+domid, as Linux's gnttab_grant_foreign_access does). */
function grant(hv: Hypervisor, d: Domain, ref: number, forDomid: number, gfn = DATA_GPA / 4096, flags = GTF_permit_access): void {
  put(hv, d, GT_GPA + ref * 8 + 4, struct(4, [[0, 4, gfn]]));
  put(hv, d, GT_GPA + ref * 8, struct(4, [[0, 2, flags], [2, 2, forDomid]]));
}

function entryFlags(hv: Hypervisor, d: Domain, ref: number): number {
  return new DataView(get(hv, d, GT_GPA + ref * 8, 2).buffer).getUint16(0, true);
}

interface MapOp {
  readonly hostAddr?: number | bigint;
  readonly flags?: number;
  readonly ref?: number;
  readonly dom: number;
}

/** One GNTTABOP_map_grant_ref from `d` (op at ARG): RAX, status, handle. */
function mapRef(hv: Hypervisor, d: Domain, op: MapOp): { rc: number; status: number; handle: number; devBusAddr: number } {
  put(hv, d, ARG, struct(M.SIZEOF, [[M.host_addr, 8, op.hostAddr ?? MAP_GPA], [M.flags, 4, op.flags ?? GNTMAP_host_map], [M.ref, 4, op.ref ?? REF], [M.dom, 2, op.dom]]));
  const rc = call(hv, d, HYPERVISOR_grant_table_op, [GNTTABOP_map_grant_ref, ARG, 1]);
  const b = get(hv, d, ARG, M.SIZEOF);
  return { rc, status: s16(b, M.status), handle: le32(b, M.handle), devBusAddr: le32(b, M.dev_bus_addr) + le32(b, M.dev_bus_addr + 4) * 2 ** 32 };
}

function unmapRef(hv: Hypervisor, d: Domain, handle: number, hostAddr: number | bigint = MAP_GPA): { rc: number; status: number } {
  put(hv, d, ARG, struct(U.SIZEOF, [[U.host_addr, 8, hostAddr], [U.handle, 4, handle], [U.status, 2, 0x7777]]));
  const rc = call(hv, d, HYPERVISOR_grant_table_op, [GNTTABOP_unmap_grant_ref, ARG, 1]);
  return { rc, status: s16(get(hv, d, ARG, U.SIZEOF), U.status) };
}

interface Side {
  readonly ref?: number;
  readonly gmfn?: number;
  readonly domid: number;
  readonly offset?: number;
}

function copyOp(hv: Hypervisor, d: Domain, source: Side, dest: Side, len: number): { rc: number; status: number } {
  const flags = (source.ref !== undefined ? GNTCOPY_source_gref : 0) | (dest.ref !== undefined ? GNTCOPY_dest_gref : 0);
  const side = (base: number, s: Side): (readonly [number, 1 | 2 | 4 | 8, number])[] => [
    [base + P["u.gmfn"], 8, s.ref ?? s.gmfn ?? 0],
    [base + P.domid, 2, s.domid],
    [base + P.offset, 2, s.offset ?? 0],
  ];
  put(hv, d, ARG, struct(C.SIZEOF, [...side(C.source, source), ...side(C.dest, dest), [C.len, 2, len], [C.flags, 2, flags]]));
  const rc = call(hv, d, HYPERVISOR_grant_table_op, [GNTTABOP_copy, ARG, 1]);
  return { rc, status: s16(get(hv, d, ARG, C.SIZEOF), C.status) };
}

/** A host with a granter (d1, grant table mapped, REF granted to d2 with a pattern in the page) and a mapper (d2). */
function pair(hap: boolean, count = 2): { hv: Hypervisor; granter: Domain; mapper: Domain; others: Domain[] } {
  const { hv, domains } = machine({ hap, count });
  const [granter, mapper] = domains as [Domain, Domain];
  expect(mapGrantFrame(hv, granter)).toBe(0);
  put(hv, granter, DATA_GPA, Uint8Array.from({ length: 4096 }, (_, i) => (i * 7 + 3) & 0xff));
  grant(hv, granter, REF, mapper.id);
  return { hv, granter, mapper, others: domains.slice(2) };
}

function script(hv: Hypervisor, d: Domain, steps: Step[]): number[] {
  return results(hv, d, steps);
}

for (const hap of [true, false]) {
  const mode = hap ? "EPT" : "shadow";

  describe(`grant tables, guests on ${mode}`, () => {
    it("a guest maps another's grant: reads what the granter wrote, writes through, unmaps (then reads all ones)", () => {
      const hv = new Hypervisor({ memoryMiB: 128 });
      const granter = createGuest(hv, "granter", hap, granterSteps(2).steps, granterSteps(2).data);
      hv.run({ maxInstructions: 2_000_000 });
      const db = new DataBuilder();
      db.u64(M.host_addr, MAP_GPA).u32(M.flags, GNTMAP_host_map).u32(M.ref, REF).u16(M.dom, granter.id);
      db.u64(0x100 + U.host_addr, MAP_GPA);
      const steps: Step[] = [
        { op: "hypercall", nr: HYPERVISOR_grant_table_op, args: [GNTTABOP_map_grant_ref, db.gpa(0), 1] },
        { op: "load32", at: MAP_GPA + 4 },
        { op: "store32", at: MAP_GPA + 8, value: 0xdead_beef },
        { op: "copy32", from: db.gpa(M.handle), to: db.gpa(0x100 + U.handle) },
        { op: "hypercall", nr: HYPERVISOR_grant_table_op, args: [GNTTABOP_unmap_grant_ref, db.gpa(0x100), 1] },
        { op: "load32", at: MAP_GPA + 4 },
      ];
      const mapper = createGuest(hv, "mapper", hap, steps, db.bytes);
      hv.run({ maxInstructions: 2_000_000 });
      expect(mapper.crashReason).toBeUndefined();
      expect(script(hv, mapper, steps)).toEqual([0, 0x600d_0001, 0, 0xffff_ffff]);
      const op = readGuest(hv, mapper, db.gpa(0), 0x200);
      expect(s16(op, M.status)).toBe(GNTST_okay);
      expect(s16(op, 0x100 + U.status)).toBe(GNTST_okay);
      expect(le32(readGuest(hv, granter, DATA_GPA, 16), 8)).toBe(0xdead_beef);
      expect(entryFlags(hv, granter, REF) & (GTF_reading | GTF_writing)).toBe(0);
      expect(mapper.xen.stats.grantMaps).toBe(1);
      expect(mapper.xen.stats.grantUnmaps).toBe(1);
      expect(granter.xen.grants.activeEntries).toBe(0);
    });

    it("a read-only mapping reads; a store to it is dropped (the granter's page unchanged) and the guest runs on", () => {
      const hv = new Hypervisor({ memoryMiB: 128 });
      const g = granterSteps(2, GTF_permit_access | GTF_readonly);
      const granter = createGuest(hv, "granter", hap, g.steps, g.data);
      hv.run({ maxInstructions: 2_000_000 });
      const db = new DataBuilder();
      db.u64(M.host_addr, MAP_GPA).u32(M.flags, GNTMAP_host_map | GNTMAP_readonly).u32(M.ref, REF).u16(M.dom, granter.id);
      // A writable map of the same read-only grant: refused.
      db.u64(0x100 + M.host_addr, MAP_GPA + 0x1000).u32(0x100 + M.flags, GNTMAP_host_map).u32(0x100 + M.ref, REF).u16(0x100 + M.dom, granter.id);
      const steps: Step[] = [
        { op: "hypercall", nr: HYPERVISOR_grant_table_op, args: [GNTTABOP_map_grant_ref, db.gpa(0), 1] },
        { op: "store32", at: MAP_GPA + 12, value: 0xbad0_bad0 },
        { op: "load32", at: MAP_GPA + 12 },
        { op: "hypercall", nr: HYPERVISOR_grant_table_op, args: [GNTTABOP_map_grant_ref, db.gpa(0x100), 1] },
      ];
      const mapper = createGuest(hv, "mapper", hap, steps, db.bytes);
      hv.run({ maxInstructions: 2_000_000 });
      expect(mapper.crashReason).toBeUndefined();
      expect(mapper.state).toBe("shutdown");
      expect(script(hv, mapper, steps)).toEqual([0, 0x600d_0003, 0]);
      const op = readGuest(hv, mapper, db.gpa(0), 0x200);
      expect(s16(op, M.status)).toBe(GNTST_okay);
      expect(s16(op, 0x100 + M.status)).toBe(GNTST_general_error);
      expect(le32(readGuest(hv, granter, DATA_GPA, 16), 12)).toBe(0x600d_0003);
      // Pinned read-only: GTF_reading, not GTF_writing.
      expect(entryFlags(hv, granter, REF) & (GTF_reading | GTF_writing)).toBe(GTF_reading);
      // Really read-only in the virtualizer: the EPT leaf is R only; either way the store exited
      // (an EPT violation, or a shadow #PF on a read-only shadow leaf) and was emulated.
      if (mapper.paging instanceof NestedPaging) expect(mapper.paging.ept.lookup(MAP_GPA)?.perms).toBe(EPT_R);
      expect(mapper.exitStats.mmio).toBe(1);
    });

    it("continues a long batch: 300 unmaps of bad handles in one call, every status written, the VMCALL re-executed", () => {
      const hv = new Hypervisor({ memoryMiB: 128 });
      const n = 300;
      const db = new DataBuilder();
      for (let i = 0; i < n; i++) db.u64(i * U.SIZEOF + U.host_addr, MAP_GPA).u32(i * U.SIZEOF + U.handle, 1000 + i).u16(i * U.SIZEOF + U.status, 0x7777);
      const steps: Step[] = [{ op: "hypercall", nr: HYPERVISOR_grant_table_op, args: [GNTTABOP_unmap_grant_ref, db.gpa(0), n] }];
      const d = createGuest(hv, "d", hap, steps, db.bytes);
      hv.run({ maxInstructions: 2_000_000 });
      expect(script(hv, d, steps)).toEqual([0]);
      const ops = readGuest(hv, d, db.gpa(0), n * U.SIZEOF);
      for (let i = 0; i < n; i++) expect(s16(ops, i * U.SIZEOF + U.status)).toBe(GNTST_bad_handle);
      expect(d.xen.stats.continuations).toBe(Math.ceil(n / GNTTAB_OPS_PER_CALL) - 1);
    });
  });

  describe(`grant tables, hypercall answers (${mode})`, () => {
    it("map, double unmap, a bad handle, host_addr 0 (okay, nothing unmapped)", () => {
      const { hv, granter, mapper } = pair(hap);
      const m = mapRef(hv, mapper, { dom: granter.id });
      expect(m).toMatchObject({ rc: 0, status: GNTST_okay });
      expect(m.devBusAddr).toBe(granter.ramHpa(DATA_GPA));
      expect(get(hv, mapper, MAP_GPA, 4)).toEqual(get(hv, granter, DATA_GPA, 4));
      expect(granter.xen.grants.pinOf(REF)).toBe(1);
      expect(entryFlags(hv, granter, REF)).toBe(GTF_permit_access | GTF_reading | GTF_writing);
      expect(unmapRef(hv, mapper, m.handle, 0)).toEqual({ rc: 0, status: GNTST_okay }); // host_addr 0: nothing done
      expect(granter.xen.grants.pinOf(REF)).toBe(1);
      expect(unmapRef(hv, mapper, m.handle, MAP_GPA + 0x1000)).toEqual({ rc: 0, status: GNTST_general_error }); // not where it is mapped
      expect(unmapRef(hv, mapper, m.handle)).toEqual({ rc: 0, status: GNTST_okay });
      expect(unmapRef(hv, mapper, m.handle)).toEqual({ rc: 0, status: GNTST_bad_handle });
      expect(unmapRef(hv, mapper, 0xffff_ffff)).toEqual({ rc: 0, status: GNTST_bad_handle });
      expect(entryFlags(hv, granter, REF)).toBe(GTF_permit_access);
      expect(mapper.ramHpa(MAP_GPA)).toBeUndefined();
      expect(mapper.crashReason).toBeUndefined();
    });

    it("refs past the table, grants for another domain, revoked before map, bad frames, bad domains, HVM-only flags", () => {
      const { hv, granter, mapper, others } = pair(hap, 3);
      const third = others[0]!;
      const nr = granter.xen.grants.nrEntries();
      expect(nr).toBe(512);
      for (const ref of [nr, nr + 1, 0x7fff_ffff, 0xffff_ffff]) expect(mapRef(hv, mapper, { dom: granter.id, ref }).status).toBe(GNTST_bad_gntref);
      expect(mapRef(hv, mapper, { dom: granter.id, flags: 0 }).status).toBe(GNTST_bad_gntref); // neither host_map nor device_map
      expect(mapRef(hv, mapper, { dom: granter.id, flags: GNTMAP_host_map | GNTMAP_device_map }).status).toBe(GNTST_general_error);
      expect(mapRef(hv, mapper, { dom: granter.id, flags: GNTMAP_host_map | GNTMAP_contains_pte }).status).toBe(GNTST_general_error);
      expect(mapRef(hv, mapper, { dom: granter.id, flags: GNTMAP_host_map | GNTMAP_application_map }).status).toBe(GNTST_general_error);
      // The grant names domain 2: domain 3 cannot map it; dom0 cannot either.
      expect(mapRef(hv, third, { dom: granter.id }).status).toBe(GNTST_general_error);
      expect(hv.dom0.grants.map(granter.id, REF)).toBe(GNTST_general_error);
      for (const dom of [DOMID_SELF, 0x7ff1, 999, 0xffff]) expect(mapRef(hv, mapper, { dom }).status).toBe(GNTST_bad_domain);
      // Dom0 grants nothing: every entry is GTF_invalid.
      expect(mapRef(hv, mapper, { dom: 0, ref: 3 }).status).toBe(GNTST_general_error);
      expect(mapRef(hv, mapper, { dom: 0, ref: 512 }).status).toBe(GNTST_bad_gntref);
      // Revoked (flags cleared) before the map.
      grant(hv, granter, REF + 1, mapper.id, DATA_GPA / 4096, 0);
      expect(mapRef(hv, mapper, { dom: granter.id, ref: REF + 1 }).status).toBe(GNTST_general_error);
      // Sub-page (a v2 flag) is refused for a map.
      grant(hv, granter, REF + 2, mapper.id, DATA_GPA / 4096, GTF_permit_access | GTF_sub_page);
      expect(mapRef(hv, mapper, { dom: granter.id, ref: REF + 2 }).status).toBe(GNTST_general_error);
      // A grant of a frame that is not the granter's RAM: MMIO, nothing, beyond the p2m.
      for (const gfn of [MMIO / 4096, 0x10_0000, 0xffff_ffff]) {
        grant(hv, granter, REF + 3, mapper.id, gfn);
        expect(mapRef(hv, mapper, { dom: granter.id, ref: REF + 3 }).status).toBe(GNTST_bad_page);
        expect(entryFlags(hv, granter, REF + 3)).toBe(GTF_permit_access); // reading/writing cleared again
      }
      // host_addr beyond what a p2m holds.
      expect(mapRef(hv, mapper, { dom: granter.id, hostAddr: 2n ** 60n }).status).toBe(GNTST_general_error);
      expect(granter.xen.grants.activeEntries).toBe(0);
      expect(mapper.crashReason).toBeUndefined();
    });

    it("a revoke while mapped does not revoke the mapping; the pin keeps the frame until unmap", () => {
      const { hv, granter, mapper } = pair(hap);
      const m = mapRef(hv, mapper, { dom: granter.id });
      expect(m.status).toBe(GNTST_okay);
      grant(hv, granter, REF, mapper.id, DATA_GPA / 4096, 0); // the granter clears the entry
      put(hv, granter, DATA_GPA, Uint8Array.of(0x5a));
      expect(get(hv, mapper, MAP_GPA, 1)).toEqual(Uint8Array.of(0x5a));
      // A second map of the now-invalid entry is refused; read-only pins of a pinned entry are not rechecked (Xen).
      expect(mapRef(hv, mapper, { dom: granter.id, hostAddr: MAP_GPA + 0x2000 }).status).toBe(GNTST_okay);
      expect(unmapRef(hv, mapper, m.handle).status).toBe(GNTST_okay);
      expect(granter.xen.grants.pinOf(REF)).toBe(1);
    });

    it("mapping twice at one guest frame crashes the mapper (Xen's p2m_add_page); over RAM the old frame stays the mapper's", () => {
      const { hv, granter, mapper } = pair(hap);
      const held = mapper.pages.totPages;
      const overRam = mapRef(hv, mapper, { dom: granter.id, hostAddr: 0x10_0000 + 0x3000 });
      expect(overRam.status).toBe(GNTST_okay);
      expect(mapper.pages.totPages).toBe(held); // unhooked, not freed (the EPT may have split a 2 MiB page: a table frame, not memory)
      expect(mapper.ramHpa(0x10_3000)).toBe(granter.ramHpa(DATA_GPA));
      const second = mapRef(hv, mapper, { dom: granter.id, hostAddr: 0x10_0000 + 0x3000 });
      expect(second.status).toBe(GNTST_general_error);
      expect(mapper.state).toBe("crashed");
    });

    it("runs out of maptrack handles (GNTST_no_space) and recycles them", () => {
      const { hv, granter, mapper } = pair(hap);
      mapper.xen.grants.maxMaptrackFrames = 1;
      for (let r = 0; r < 4; r++) grant(hv, granter, 16 + r, mapper.id, DATA_GPA / 4096 + r);
      const handles: number[] = [];
      for (let i = 0; i < MAPTRACK_PER_PAGE; i++) {
        const m = mapRef(hv, mapper, { dom: granter.id, ref: 16 + (i % 4), flags: GNTMAP_host_map | GNTMAP_readonly, hostAddr: MAP_GPA + i * 4096 });
        expect(m.status).toBe(GNTST_okay);
        handles.push(m.handle);
      }
      expect(new Set(handles).size).toBe(MAPTRACK_PER_PAGE);
      expect(mapRef(hv, mapper, { dom: granter.id, ref: 16, flags: GNTMAP_host_map | GNTMAP_readonly, hostAddr: MAP_GPA - 4096 }).status).toBe(GNTST_no_space);
      expect(unmapRef(hv, mapper, handles[5]!, MAP_GPA + 5 * 4096).status).toBe(GNTST_okay);
      expect(mapRef(hv, mapper, { dom: granter.id, ref: 16, flags: GNTMAP_host_map | GNTMAP_readonly, hostAddr: MAP_GPA - 4096 })).toMatchObject({ status: GNTST_okay, handle: handles[5] });
    });

    it("pin counters do not overflow: the 128th writable map of one ref is refused", () => {
      const { hv, granter, mapper } = pair(hap);
      let i = 0;
      for (; i < 200; i++) if (mapRef(hv, mapper, { dom: granter.id, hostAddr: MAP_GPA + i * 4096 }).status !== GNTST_okay) break;
      expect(i).toBe(128);
      expect(mapRef(hv, mapper, { dom: granter.id, hostAddr: MAP_GPA + i * 4096 }).status).toBe(GNTST_general_error);
    });

    it("copies between a grant and the caller's own frame, both ways; lengths or offsets past the page are GNTST_bad_copy_arg", () => {
      const { hv, granter, mapper } = pair(hap);
      const mine = 0x28_0000 / 4096;
      put(hv, mapper, mine * 4096, Uint8Array.from({ length: 64 }, (_, i) => 0x80 + i));
      expect(copyOp(hv, mapper, { ref: REF, domid: granter.id, offset: 16 }, { gmfn: mine, domid: DOMID_SELF, offset: 100 }, 32)).toEqual({ rc: 0, status: GNTST_okay });
      expect(get(hv, mapper, mine * 4096 + 100, 32)).toEqual(get(hv, granter, DATA_GPA + 16, 32));
      expect(copyOp(hv, mapper, { gmfn: mine, domid: DOMID_SELF }, { ref: REF, domid: granter.id, offset: 4000 }, 96).status).toBe(GNTST_okay);
      expect(get(hv, granter, DATA_GPA + 4000, 64)).toEqual(get(hv, mapper, mine * 4096, 64));
      expect(entryFlags(hv, granter, REF)).toBe(GTF_permit_access); // pinned for the copy only
      for (const [so, doff, len] of [[4000, 0, 97], [0, 4090, 7], [4096, 0, 1], [0, 0, 4097], [0xffff, 0, 1]] as const) {
        expect([so, doff, len, copyOp(hv, mapper, { ref: REF, domid: granter.id, offset: so }, { gmfn: mine, domid: DOMID_SELF, offset: doff }, len).status]).toEqual([so, doff, len, GNTST_bad_copy_arg]);
      }
      // Zero bytes at the very end of the page is inside it (offset + len <= PAGE_SIZE).
      expect(copyOp(hv, mapper, { ref: REF, domid: granter.id }, { gmfn: mine, domid: DOMID_SELF, offset: 4096 }, 0).status).toBe(GNTST_okay);
      // A frame of another domain (not DOMID_SELF): permission denied; a bad gref; a bad domain; a frame that is not RAM.
      expect(copyOp(hv, mapper, { gmfn: DATA_GPA / 4096, domid: granter.id }, { gmfn: mine, domid: DOMID_SELF }, 8).status).toBe(GNTST_permission_denied);
      expect(copyOp(hv, mapper, { gmfn: mine, domid: mapper.id }, { gmfn: mine + 1, domid: DOMID_SELF }, 8).status).toBe(GNTST_permission_denied);
      expect(copyOp(hv, mapper, { ref: 4096, domid: granter.id }, { gmfn: mine, domid: DOMID_SELF }, 8).status).toBe(GNTST_bad_gntref);
      expect(copyOp(hv, mapper, { ref: REF, domid: 77 }, { gmfn: mine, domid: DOMID_SELF }, 8).status).toBe(GNTST_bad_domain);
      expect(copyOp(hv, mapper, { ref: REF, domid: granter.id }, { gmfn: MMIO / 4096, domid: DOMID_SELF }, 8).status).toBe(GNTST_bad_page);
      // A read-only grant cannot be a copy destination.
      grant(hv, granter, REF + 1, mapper.id, DATA_GPA / 4096, GTF_permit_access | GTF_readonly);
      expect(copyOp(hv, mapper, { gmfn: mine, domid: DOMID_SELF }, { ref: REF + 1, domid: granter.id }, 8).status).toBe(GNTST_general_error);
      expect(copyOp(hv, mapper, { ref: REF + 1, domid: granter.id }, { gmfn: mine, domid: DOMID_SELF }, 8).status).toBe(GNTST_okay);
      expect(mapper.xen.stats.grantCopies).toBe(4);
    });

    it("32-bit callers use the compat layouts (copy, setup_table)", () => {
      const { hv, domains } = machine({ hap, count: 2, long: false });
      const [granter, mapper] = domains as [Domain, Domain];
      expect(mapGrantFrame(hv, granter)).toBe(0);
      put(hv, granter, DATA_GPA, Uint8Array.of(1, 2, 3, 4));
      grant(hv, granter, REF, mapper.id);
      const CC = compat_gnttab_copy;
      const CP = compat_gnttab_copy_ptr;
      put(hv, mapper, ARG, struct(CC.SIZEOF, [[CC.source + CP["u.ref"], 4, REF], [CC.source + CP.domid, 2, granter.id], [CC.dest + CP["u.gmfn"], 4, 0x280], [CC.dest + CP.domid, 2, DOMID_SELF], [CC.len, 2, 4], [CC.flags, 2, GNTCOPY_source_gref]]));
      expect(call(hv, mapper, HYPERVISOR_grant_table_op, [GNTTABOP_copy, ARG, 1])).toBe(0);
      expect(s16(get(hv, mapper, ARG, CC.SIZEOF), CC.status)).toBe(GNTST_okay);
      expect(get(hv, mapper, 0x28_0000, 4)).toEqual(Uint8Array.of(1, 2, 3, 4));
      const CS = compat_gnttab_setup_table;
      put(hv, granter, ARG, struct(CS.SIZEOF, [[CS.dom, 2, DOMID_SELF], [CS.nr_frames, 4, 2], [CS.frame_list, 4, ARG + 0x100]]));
      expect(call(hv, granter, HYPERVISOR_grant_table_op, [GNTTABOP_setup_table, ARG, 1])).toBe(0);
      expect(s16(get(hv, granter, ARG, CS.SIZEOF), CS.status)).toBe(GNTST_okay);
      const list = get(hv, granter, ARG + 0x100, 8);
      expect([le32(list, 0), le32(list, 4)]).toEqual([GT_GPA / 4096, 0xffff_ffff]);
    });

    it("setup_table, query_size, get/set_version, swap, and the commands an HVM guest may not use", () => {
      const { hv, granter, mapper } = pair(hap);
      const S = gnttab_setup_table;
      const setup = (d: Domain, dom: number, nr: number, list: number | bigint = ARG + 0x100, count = 1) => {
        put(hv, d, ARG, struct(S.SIZEOF, [[S.dom, 2, dom], [S.nr_frames, 4, nr], [S.frame_list, 8, list], [S.status, 2, 0x7777]]));
        const rc = call(hv, d, HYPERVISOR_grant_table_op, [GNTTABOP_setup_table, ARG, count]);
        return { rc, status: s16(get(hv, d, ARG, S.SIZEOF), S.status) };
      };
      expect(setup(granter, DOMID_SELF, 3)).toEqual({ rc: 0, status: GNTST_okay });
      const list = get(hv, granter, ARG + 0x100, 24);
      expect([le32(list, 0), le32(list, 4), le32(list, 8), le32(list, 12)]).toEqual([GT_GPA / 4096, 0, 0xffff_ffff, 0xffff_ffff]);
      expect(granter.xen.grants.nrFrames()).toBe(3);
      expect(setup(granter, DOMID_SELF, 65)).toEqual({ rc: 0, status: GNTST_general_error });
      expect(setup(granter, DOMID_SELF, 1, MMIO)).toEqual({ rc: 0, status: GNTST_bad_virt_addr });
      expect(setup(granter, DOMID_SELF, 1, 0xdead_0000_0000n)).toEqual({ rc: 0, status: GNTST_bad_virt_addr }); // non-canonical
      expect(setup(granter, mapper.id, 1)).toEqual({ rc: 0, status: GNTST_permission_denied });
      expect(setup(granter, 0, 1)).toEqual({ rc: 0, status: GNTST_permission_denied });
      expect(setup(granter, 1234, 1)).toEqual({ rc: 0, status: GNTST_bad_domain });
      expect(setup(granter, DOMID_SELF, 1, ARG + 0x100, 2).rc).toBe(-XEN_EINVAL);
      expect(call(hv, granter, HYPERVISOR_grant_table_op, [GNTTABOP_setup_table, MMIO, 1])).toBe(-XEN_EFAULT);
      const Q = gnttab_query_size;
      put(hv, granter, ARG, struct(Q.SIZEOF, [[Q.dom, 2, DOMID_SELF]]));
      expect(call(hv, granter, HYPERVISOR_grant_table_op, [GNTTABOP_query_size, ARG, 1])).toBe(0);
      const q = get(hv, granter, ARG, Q.SIZEOF);
      expect([le32(q, Q.nr_frames), le32(q, Q.max_nr_frames), s16(q, Q.status)]).toEqual([3, 64, GNTST_okay]);
      put(hv, granter, ARG, struct(Q.SIZEOF, [[Q.dom, 2, mapper.id]]));
      call(hv, granter, HYPERVISOR_grant_table_op, [GNTTABOP_query_size, ARG, 1]);
      expect(s16(get(hv, granter, ARG, Q.SIZEOF), Q.status)).toBe(GNTST_permission_denied);
      expect(call(hv, granter, HYPERVISOR_grant_table_op, [GNTTABOP_query_size, ARG, 0])).toBe(-XEN_EINVAL);
      // Versions: 1 only (max_grant_version = 1).
      const V = gnttab_set_version;
      const setVersion = (v: number) => {
        put(hv, granter, ARG, struct(V.SIZEOF, [[V.version, 4, v]]));
        const rc = call(hv, granter, HYPERVISOR_grant_table_op, [GNTTABOP_set_version, ARG, 1]);
        return [rc, le32(get(hv, granter, ARG, 4), 0)];
      };
      expect(setVersion(1)).toEqual([0, 1]);
      granter.xen.grants.maxVersion = 1; // xl.cfg max_grant_version = 1: no v2
      expect(setVersion(2)).toEqual([-XEN_ENOSYS, 1]);
      granter.xen.grants.maxVersion = 2;
      expect(setVersion(0)).toEqual([-XEN_EINVAL, 1]);
      expect(setVersion(3)).toEqual([-XEN_EINVAL, 1]);
      const GV = gnttab_get_version;
      const getVersion = (dom: number) => {
        put(hv, granter, ARG, struct(GV.SIZEOF, [[GV.dom, 2, dom]]));
        return [call(hv, granter, HYPERVISOR_grant_table_op, [GNTTABOP_get_version, ARG, 1]), le32(get(hv, granter, ARG, 8), GV.version)];
      };
      expect(getVersion(DOMID_SELF)).toEqual([0, 1]);
      expect(getVersion(mapper.id)[0]).toBe(-XEN_EPERM);
      expect(getVersion(4321)[0]).toBe(-XEN_ESRCH);
      // Swap two of one's own entries; a pinned one is GNTST_eagain.
      const W = gnttab_swap_grant_ref;
      const swap = (a: number, b: number) => {
        put(hv, granter, ARG, struct(W.SIZEOF, [[W.ref_a, 4, a], [W.ref_b, 4, b]]));
        call(hv, granter, HYPERVISOR_grant_table_op, [GNTTABOP_swap_grant_ref, ARG, 1]);
        return s16(get(hv, granter, ARG, W.SIZEOF), W.status);
      };
      grant(hv, granter, 20, 5, 0x123);
      expect(swap(20, 21)).toBe(GNTST_okay);
      expect(le32(get(hv, granter, GT_GPA + 21 * 8, 8), 4)).toBe(0x123);
      expect(swap(21, 3 * 512)).toBe(GNTST_bad_gntref);
      const m = mapRef(hv, mapper, { dom: granter.id });
      expect(swap(REF, 21)).toBe(GNTST_eagain);
      expect(unmapRef(hv, mapper, m.handle).status).toBe(GNTST_okay);
      for (const cmd of [GNTTABOP_dump_table, GNTTABOP_transfer, GNTTABOP_get_status_frames, 7, 12, 13, 0xfff]) {
        expect(call(hv, granter, HYPERVISOR_grant_table_op, [cmd, ARG, 1])).toBe(-XEN_ENOSYS);
      }
      expect(call(hv, granter, HYPERVISOR_grant_table_op, [GNTTABOP_map_grant_ref | (1 << 12), ARG, 1])).toBe(-XEN_EINVAL);
      expect(call(hv, granter, HYPERVISOR_grant_table_op, [GNTTABOP_map_grant_ref, ARG, 2 ** 31])).toBe(-XEN_EINVAL);
      expect(call(hv, granter, HYPERVISOR_grant_table_op, [GNTTABOP_unmap_grant_ref, ARG, 0xffff_ffff])).toBe(-XEN_EINVAL);
      expect(call(hv, granter, HYPERVISOR_grant_table_op, [GNTTABOP_map_grant_ref, MMIO, 1])).toBe(-XEN_EFAULT);
      expect(call(hv, granter, HYPERVISOR_grant_table_op, [GNTTABOP_map_grant_ref, 0x8000_0000_0000, 1])).toBe(-XEN_EFAULT);
      expect(call(hv, granter, HYPERVISOR_grant_table_op, [GNTTABOP_copy, ARG + 0x1000 - 8, 1])).toBe(0); // 32 bytes over into the next RAM page: fine
      expect(call(hv, granter, HYPERVISOR_grant_table_op, [GNTTABOP_map_grant_ref, 0, 0])).toBe(0);
    });

    it("version 2: set_version with pins (-EBUSY), reserved entries carried over, status frames, sub-page and transitive grants, back to v1", () => {
      const { hv, granter, mapper } = pair(hap);
      const gt = granter.xen.grants;
      const V = gnttab_set_version;
      const setVersion = (v: number) => {
        put(hv, granter, ARG, struct(V.SIZEOF, [[V.version, 4, v]]));
        return [call(hv, granter, HYPERVISOR_grant_table_op, [GNTTABOP_set_version, ARG, 1]), le32(get(hv, granter, ARG, 4), 0)];
      };
      grant(hv, granter, 1, 0, 0x123); // the xenstore entry, for dom0
      const m = mapRef(hv, mapper, { dom: granter.id });
      expect(setVersion(2)).toEqual([-XEN_EBUSY, 1]);
      expect(unmapRef(hv, mapper, m.handle).status).toBe(GNTST_okay);
      const held = granter.framesHeld;
      expect(setVersion(2)).toEqual([0, 2]);
      expect(gt.version).toBe(2);
      expect(gt.nrEntries()).toBe(256);
      expect(gt.nrStatusFrames()).toBe(1);
      expect(granter.framesHeld).toBe(held + 1);
      const E2 = grant_entry_v2;
      const entry = (ref: number) => get(hv, granter, GT_GPA + ref * E2.SIZEOF, E2.SIZEOF);
      expect([s16(entry(1), 0), le32(entry(1), 0) >>> 16, le32(entry(1), E2["full_page.frame"])]).toEqual([GTF_permit_access, 0, 0x123]);
      expect(sameBytes(entry(REF), new Uint8Array(16))).toBe(true); // everything past the reserved entries cleared
      // The status frame, mapped by the guest with XENMAPIDX_grant_table_status.
      const STATUS_GPA = GT_GPA + 0x10_0000;
      expect(mapGrantFrame(hv, granter, XENMAPIDX_grant_table_status, STATUS_GPA)).toBe(0);
      expect(mapGrantFrame(hv, granter, XENMAPIDX_grant_table_status + 8, STATUS_GPA + 4096)).toBe(-XEN_EINVAL); // 9 status frames need 72 grant frames
      const grant2 = (ref: number, domid: number, gfn: number, flags: number, sub?: [number, number]) => {
        put(hv, granter, GT_GPA + ref * E2.SIZEOF + E2["full_page.frame"], struct(8, [[0, 8, gfn]]));
        if (sub !== undefined) put(hv, granter, GT_GPA + ref * E2.SIZEOF + E2["sub_page.page_off"], struct(4, [[0, 2, sub[0]], [2, 2, sub[1]]]));
        put(hv, granter, GT_GPA + ref * E2.SIZEOF, struct(4, [[0, 2, flags], [2, 2, domid]]));
      };
      const status = (ref: number) => new DataView(get(hv, granter, STATUS_GPA + 2 * ref, 2).buffer).getUint16(0, true);
      grant2(REF, mapper.id, DATA_GPA / 4096, GTF_permit_access);
      const m2 = mapRef(hv, mapper, { dom: granter.id });
      expect(m2.status).toBe(GNTST_okay);
      expect(get(hv, mapper, MAP_GPA, 4)).toEqual(get(hv, granter, DATA_GPA, 4));
      expect(status(REF)).toBe(GTF_reading | GTF_writing);
      expect(s16(entry(REF), 0)).toBe(GTF_permit_access); // v2 keeps the status apart from the flags
      expect(unmapRef(hv, mapper, m2.handle).status).toBe(GNTST_okay);
      expect(status(REF)).toBe(0);
      grant2(REF + 1, mapper.id, DATA_GPA / 4096, GTF_permit_access | GTF_readonly);
      expect(mapRef(hv, mapper, { dom: granter.id, ref: REF + 1 }).status).toBe(GNTST_general_error);
      expect(status(REF + 1)).toBe(0);
      // A sub-page grant: no maps; copies inside its bytes only.
      grant2(REF + 2, mapper.id, DATA_GPA / 4096, GTF_permit_access | GTF_sub_page, [100, 50]);
      expect(mapRef(hv, mapper, { dom: granter.id, ref: REF + 2 }).status).toBe(GNTST_general_error);
      const mine = 0x28_0000 / 4096;
      expect(copyOp(hv, mapper, { ref: REF + 2, domid: granter.id, offset: 100 }, { gmfn: mine, domid: DOMID_SELF }, 50).status).toBe(GNTST_okay);
      expect(get(hv, mapper, mine * 4096, 50)).toEqual(get(hv, granter, DATA_GPA + 100, 50));
      expect(copyOp(hv, mapper, { ref: REF + 2, domid: granter.id, offset: 99 }, { gmfn: mine, domid: DOMID_SELF }, 10).status).toBe(GNTST_general_error);
      expect(copyOp(hv, mapper, { ref: REF + 2, domid: granter.id, offset: 100 }, { gmfn: mine, domid: DOMID_SELF }, 51).status).toBe(GNTST_general_error);
      expect(status(REF + 2)).toBe(0);
      // Transitive grants are not modelled (as gnttab=no-transitive): refused for copies, and maps never take them.
      grant2(REF + 3, mapper.id, 0, GTF_transitive);
      expect(copyOp(hv, mapper, { ref: REF + 3, domid: granter.id }, { gmfn: mine, domid: DOMID_SELF }, 8).status).toBe(GNTST_general_error);
      expect(mapRef(hv, mapper, { dom: granter.id, ref: REF + 3 }).status).toBe(GNTST_general_error);
      // setup_table grows the status frames with the table (9 grant frames: 2 status frames).
      const S = gnttab_setup_table;
      put(hv, granter, ARG, struct(S.SIZEOF, [[S.dom, 2, DOMID_SELF], [S.nr_frames, 4, 9], [S.frame_list, 8, ARG + 0x100]]));
      expect(call(hv, granter, HYPERVISOR_grant_table_op, [GNTTABOP_setup_table, ARG, 1])).toBe(0);
      expect(gt.nrStatusFrames()).toBe(2);
      // A reserved entry v1 cannot hold: -ERANGE. Then back to v1: status frames unmapped and freed.
      put(hv, granter, GT_GPA + 2 * E2.SIZEOF + E2["full_page.frame"] + 4, struct(4, [[0, 4, 1]]));
      put(hv, granter, GT_GPA + 2 * E2.SIZEOF, struct(4, [[0, 2, GTF_permit_access]]));
      expect(setVersion(1)).toEqual([-XEN_ERANGE, 2]);
      put(hv, granter, GT_GPA + 2 * E2.SIZEOF, struct(4, [[0, 2, 0]]));
      const held2 = granter.framesHeld;
      expect(setVersion(1)).toEqual([0, 1]);
      expect(gt.nrStatusFrames()).toBe(0);
      expect(granter.framesHeld).toBe(held2 - 2);
      expect(granter.ramHpa(STATUS_GPA)).toBeUndefined();
      expect([entryFlags(hv, granter, 1), le32(get(hv, granter, GT_GPA + 8, 8), 4)]).toEqual([GTF_permit_access, 0x123]);
      expect(gt.nrEntries()).toBe(9 * 512);
    });

    it("hostile op structs (fast-check): the hypervisor never throws, answers are Xen's, other domains' memory is untouched", () => {
      const { hv, granter, mapper, others } = pair(hap, 3);
      const bystander = others[0]!;
      grant(hv, granter, REF + 1, mapper.id, DATA_GPA / 4096, GTF_permit_access | GTF_readonly);
      const before = ramOf(hv, bystander);
      const granterBefore = ramOf(hv, granter);
      const statuses = new Set([GNTST_okay, GNTST_general_error, GNTST_bad_domain, GNTST_bad_gntref, GNTST_bad_handle, GNTST_bad_page, GNTST_bad_copy_arg, GNTST_permission_denied, GNTST_no_space]);
      const errnos = new Set([0, -XEN_EFAULT, -XEN_EINVAL, -XEN_ENOSYS]);
      const domid = fc.oneof(fc.constantFrom(granter.id, mapper.id, bystander.id, 0, DOMID_SELF, 0x7ff1, 0xffff), fc.integer({ min: 0, max: 0xffff }));
      const ref = fc.oneof(fc.constantFrom(REF, REF + 1, 0, 511, 512), fc.nat({ max: 0xffff_ffff }));
      const addr = fc.oneof(fc.constantFrom(MAP_GPA, DATA_GPA, 0x10_0000, MMIO, GT_GPA, 0), fc.nat({ max: 2 ** 40 }).map((n) => n * 4096));
      const opBytes = fc.uint8Array({ minLength: 40, maxLength: 40 });
      fc.assert(
        fc.property(
          fc.constantFrom(GNTTABOP_map_grant_ref, GNTTABOP_unmap_grant_ref, GNTTABOP_copy),
          opBytes,
          domid,
          ref,
          addr,
          fc.integer({ min: 0, max: 31 }),
          fc.oneof(fc.constant(1), fc.constant(2), fc.constant(0), fc.constant(2 ** 31), fc.nat({ max: 5 })),
          fc.constantFrom(ARG, ARG + 4096 - 16, MMIO, 0x8000_0000_0000, -4096, 0x4_0000_0000),
          (cmd, raw, dom, r, hostAddr, flags, count, uop) => {
            const b = raw.slice();
            const dv = new DataView(b.buffer);
            if (cmd === GNTTABOP_map_grant_ref) {
              dv.setUint32(M.host_addr, hostAddr >>> 0, true);
              dv.setUint32(M.host_addr + 4, Math.floor(hostAddr / 2 ** 32), true);
              dv.setUint32(M.flags, flags, true);
              dv.setUint32(M.ref, r, true);
              dv.setUint16(M.dom, dom, true);
            } else if (cmd === GNTTABOP_copy) {
              dv.setUint16(C.source + P.domid, dom, true);
              dv.setUint32(C.source + P["u.ref"], r, true);
              dv.setUint16(C.flags, flags & 3, true);
            }
            put(hv, mapper, ARG, b);
            const rc = call(hv, mapper, HYPERVISOR_grant_table_op, [cmd, uop, count]);
            expect(errnos.has(rc)).toBe(true);
            const back = get(hv, mapper, ARG, 40);
            const st = cmd === GNTTABOP_map_grant_ref ? s16(back, M.status) : cmd === GNTTABOP_unmap_grant_ref ? s16(back, U.status) : s16(back, C.status);
            if (rc === 0 && uop === ARG && count >= 1 && count < 2 ** 31) expect(statuses.has(st)).toBe(true);
          },
        ),
        { numRuns: 400, seed: 12 },
      );
      expect(sameBytes(ramOf(hv, bystander), before)).toBe(true);
      // The granter's memory changed only in the granted page (writable grants, copies into it).
      const after = ramOf(hv, granter);
      for (let f = 0; f < granter.ramFrames; f++) {
        if (f === DATA_GPA / 4096) continue;
        expect(sameBytes(after.subarray(f * 4096, f * 4096 + 4096), granterBefore.subarray(f * 4096, f * 4096 + 4096))).toBe(true);
      }
      expect(bystander.crashReason).toBeUndefined();
    });
  });

  describe(`grant tables, dom0 and destroy (${mode})`, () => {
    it("dom0 maps a guest's grant for domid 0, reads and writes it, unmaps it once; copies to and from host buffers", () => {
      const { hv, domains } = machine({ hap, count: 2 });
      const [granter, other] = domains as [Domain, Domain];
      expect(mapGrantFrame(hv, granter)).toBe(0);
      put(hv, granter, DATA_GPA, Uint8Array.of(9, 8, 7, 6));
      grant(hv, granter, REF, 0);
      // A grant for dom0 cannot be mapped by domain 2.
      expect(mapRef(hv, other, { dom: granter.id }).status).toBe(GNTST_general_error);
      const m = hv.dom0.grants.map(granter.id, REF);
      if (typeof m === "number") throw new Error(`map failed: ${m}`);
      expect(m.read(0, 4)).toEqual(Uint8Array.of(9, 8, 7, 6));
      expect(m.write(4092, Uint8Array.of(1, 2, 3, 4))).toBe(true);
      expect(m.write(4093, Uint8Array.of(1, 2, 3, 4))).toBe(false);
      expect(m.read(4096, 1)).toBeUndefined();
      expect(m.read(-1, 1)).toBeUndefined();
      expect(get(hv, granter, DATA_GPA + 4092, 4)).toEqual(Uint8Array.of(1, 2, 3, 4));
      expect(entryFlags(hv, granter, REF)).toBe(GTF_permit_access | GTF_reading | GTF_writing);
      const ro = hv.dom0.grants.map(granter.id, REF, { readonly: true });
      if (typeof ro === "number") throw new Error(`map failed: ${ro}`);
      expect(ro.write(0, Uint8Array.of(0))).toBe(false);
      expect(hv.dom0.grants.unmap(m)).toBe(GNTST_okay);
      expect(hv.dom0.grants.unmap(m)).toBe(GNTST_bad_handle);
      expect(m.read(0, 4)).toBeUndefined();
      expect(m.mapped).toBe(false);
      expect(entryFlags(hv, granter, REF)).toBe(GTF_permit_access | GTF_reading);
      expect(hv.dom0.grants.unmap(ro.handle)).toBe(GNTST_okay);
      expect(entryFlags(hv, granter, REF)).toBe(GTF_permit_access);
      const out = new Uint8Array(4);
      expect(hv.dom0.grants.copy([
        { source: { domid: granter.id, ref: REF }, dest: { bytes: out }, len: 4 },
        { source: { bytes: Uint8Array.of(0xaa, 0xbb) }, dest: { domid: granter.id, ref: REF, offset: 100 }, len: 2 },
        { source: { domid: granter.id, ref: REF, offset: 4095 }, dest: { bytes: new Uint8Array(2) }, len: 2 },
        { source: { domid: granter.id, ref: 9999 }, dest: { bytes: new Uint8Array(2) }, len: 2 },
        { source: { domid: 55, ref: REF }, dest: { bytes: new Uint8Array(2) }, len: 2 },
      ])).toEqual([GNTST_okay, GNTST_okay, GNTST_bad_copy_arg, GNTST_bad_gntref, GNTST_bad_domain]);
      expect(out).toEqual(Uint8Array.of(9, 8, 7, 6));
      expect(get(hv, granter, DATA_GPA + 100, 2)).toEqual(Uint8Array.of(0xaa, 0xbb));
      expect(hv.dom0.grants.map(granter.id, 600)).toBe(GNTST_bad_gntref);
      expect(hv.dom0.grants.map(DOMID_SELF, REF)).toBe(GNTST_bad_domain);
    });

    it("destroying a granter while dom0 and a guest map its frame: the frame is never reused while mapped; unmaps then free it", () => {
      const { hv, granter, mapper } = pair(hap);
      const total = hv.frames.freeFrames + granter.framesHeld + mapper.framesHeld;
      grant(hv, granter, REF + 1, 0);
      const mfn = granter.ramHpa(DATA_GPA)! / 4096;
      const gm = mapRef(hv, mapper, { dom: granter.id });
      const dm = hv.dom0.grants.map(granter.id, REF + 1);
      if (typeof dm === "number") throw new Error(`map failed: ${dm}`);
      const freeBefore = hv.frames.freeFrames;
      const held = granter.framesHeld;
      hv.destroyDomain(granter.id);
      expect(frameRefs(hv).isDeferred(mfn as never)).toBe(true);
      expect(hv.frames.freeFrames).toBe(freeBefore + held - 1); // all but the mapped frame
      // New domains take every free frame they can: none of them gets the mapped one.
      const fresh: Domain[] = [];
      for (let i = 0; i < 40; i++) {
        try {
          fresh.push(hv.createDomain({ name: `fresh${i}`, memoryMiB: 2, hap, kernel: granterImage() }));
        } catch {
          break;
        }
      }
      expect(fresh.length).toBeGreaterThan(2);
      for (const f of fresh) expect(f.pages.owns(mfn)).toBe(false);
      // The mappings still see the old contents.
      expect(dm.read(0, 4)).toEqual(Uint8Array.from([3, 10, 17, 24]));
      expect(get(hv, mapper, MAP_GPA, 4)).toEqual(Uint8Array.from([3, 10, 17, 24]));
      expect(hv.dom0.grants.unmap(dm)).toBe(GNTST_okay);
      expect(frameRefs(hv).isDeferred(mfn as never)).toBe(true);
      expect(unmapRef(hv, mapper, gm.handle).status).toBe(GNTST_okay);
      expect(frameRefs(hv).isDeferred(mfn as never)).toBe(false);
      expect(mapper.ramHpa(MAP_GPA)).toBeUndefined();
      for (const f of fresh) hv.destroyDomain(f.id);
      hv.destroyDomain(mapper.id);
      expect(frameRefs(hv).deferredFrames).toBe(0);
      expect(hv.frames.freeFrames).toBe(total);
    });

    it("destroying a mapper releases its maps: pins dropped, GTF_reading/GTF_writing cleared, frames back", () => {
      const { hv, granter, mapper } = pair(hap);
      grant(hv, granter, REF + 1, mapper.id, DATA_GPA / 4096 + 1);
      expect(mapRef(hv, mapper, { dom: granter.id }).status).toBe(GNTST_okay);
      expect(mapRef(hv, mapper, { dom: granter.id, ref: REF + 1, flags: GNTMAP_host_map | GNTMAP_readonly, hostAddr: MAP_GPA + 4096 }).status).toBe(GNTST_okay);
      expect(entryFlags(hv, granter, REF + 1)).toBe(GTF_permit_access | GTF_reading);
      const free = hv.frames.freeFrames;
      const held = mapper.framesHeld;
      hv.destroyDomain(mapper.id);
      expect(hv.frames.freeFrames).toBe(free + held);
      expect(entryFlags(hv, granter, REF)).toBe(GTF_permit_access);
      expect(entryFlags(hv, granter, REF + 1)).toBe(GTF_permit_access);
      expect(granter.xen.grants.activeEntries).toBe(0);
      expect(frameRefs(hv).count((granter.ramHpa(DATA_GPA)! / 4096) as never)).toBe(0);
    });
  });
}

/** The granter of the guest-driven tests: map grant frame 0 at GT_GPA, fill the granted page, write entry REF for `forDomid`. */
function granterSteps(forDomid: number, flags = GTF_permit_access, pattern = 0x600d_0000): { steps: Step[]; data: Uint8Array } {
  const db = new DataBuilder();
  const X = xen_add_to_physmap;
  db.u16(X.domid, DOMID_SELF).u32(X.space, XENMAPSPACE_grant_table).u64(X.idx, 0).u64(X.gpfn, GT_GPA / 4096);
  const steps: Step[] = [
    { op: "hypercall", nr: HYPERVISOR_memory_op, args: [XENMEM_add_to_physmap, db.gpa(0)] },
    ...[0, 1, 2, 3].map((i): Step => ({ op: "store32", at: DATA_GPA + 4 * i, value: pattern + i })),
    { op: "store32", at: GT_GPA + REF * 8 + 4, value: DATA_GPA / 4096 },
    { op: "store32", at: GT_GPA + REF * 8, value: (flags | (forDomid << 16)) >>> 0 },
  ];
  return { steps, data: db.bytes };
}

/** Any small kernel (for filling the host with domains). */
function granterImage(): Uint8Array {
  return guestImage([]);
}
