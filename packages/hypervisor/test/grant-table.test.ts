import { describe, expect, it } from "vitest";
import { Hypervisor, type Domain } from "@vtlab/hypervisor";
import {
  GNTMAP_host_map,
  GNTMAP_readonly,
  GNTST_okay,
  GNTTABOP_map_grant_ref,
  GNTTABOP_unmap_grant_ref,
  GTF_permit_access,
  GTF_reading,
  GTF_writing,
  HYPERVISOR_grant_table_op,
  HYPERVISOR_memory_op,
  XENMAPSPACE_grant_table,
  XENMEM_add_to_physmap,
  gnttab_map_grant_ref,
  gnttab_unmap_grant_ref,
  xen_add_to_physmap,
  DOMID_SELF,
} from "@vtlab/xen-public";
import { DataBuilder, createGuest, readGuest, results, type Step } from "./xen-guest64.js";

/** Where the granter maps its grant table (the platform device's BAR, unassigned space). */
const GT_GPA = 0xf000_0000;
/** The granted page (granter RAM). */
const DATA_GPA = 0x30_0000;
/** Where the mapper maps the grant (unassigned space). */
const MAP_GPA = 0xc000_0000;
const REF = 8;

/** The granter's script: map grant frame 0 at GT_GPA, fill the granted page, write entry REF for `forDomid`. */
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

function runToEnd(hv: Hypervisor): void {
  hv.run({ maxInstructions: 2_000_000 });
}

for (const hap of [true, false]) {
  const mode = hap ? "EPT" : "shadow";
  describe(`grant tables (${mode})`, () => {
    it("a guest maps another's grant: reads what the granter wrote, writes through, unmaps (then reads all ones)", () => {
      const hv = new Hypervisor({ memoryMiB: 128 });
      const g = granterSteps(2);
      const granter = createGuest(hv, "granter", hap, g.steps, g.data);
      runToEnd(hv);
      expect(results(hv, granter, g.steps)[0]).toBe(0);
      const db = new DataBuilder();
      const M = gnttab_map_grant_ref;
      const U = gnttab_unmap_grant_ref;
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
      expect(mapper.id).toBe(2);
      // While mapped, the granter's entry has GTF_reading | GTF_writing: look between the two hypercalls.
      runToEnd(hv);
      expect(mapper.crashReason).toBeUndefined();
      const r = results(hv, mapper, steps);
      expect(r).toEqual([0, 0x600d_0001, 0, 0xffff_ffff]);
      const op = new DataView(readGuest(hv, mapper, db.gpa(0), 0x200).buffer);
      expect(op.getInt16(M.status, true)).toBe(GNTST_okay);
      expect(op.getInt16(0x100 + U.status, true)).toBe(GNTST_okay);
      expect(new DataView(readGuest(hv, granter, DATA_GPA, 16).buffer).getUint32(8, true)).toBe(0xdead_beef);
      const entry = new DataView(readGuest(hv, granter, GT_GPA + REF * 8, 8).buffer);
      expect(entry.getUint16(0, true) & (GTF_reading | GTF_writing)).toBe(0);
      expect(mapper.xen.stats.grantMaps).toBe(1);
      expect(mapper.xen.stats.grantUnmaps).toBe(1);
      expect(granter.xen.grants.activeEntries).toBe(0);
    });
  });
}

export type { Domain };
void GNTMAP_readonly;
