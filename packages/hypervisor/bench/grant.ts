/**
 * Grant-table benchmark (JSON lines, wall time around the simulation): GNTTABOP_map_grant_ref +
 * GNTTABOP_unmap_grant_ref pairs per second, on EPT and on shadow. Domain B's guest maps a page
 * domain A granted it at an unassigned guest frame and unmaps it again, in a loop: two VMCALL
 * exits per pair, the granter's entry flags set and cleared, the mapper's p2m entry made and
 * removed with the EPT (or shadow) entries and TLBs in step.
 */
import { report } from "@vtlab/bench-harness";
import { Hypervisor } from "@vtlab/hypervisor";
import { GNTMAP_host_map, GNTTABOP_map_grant_ref, GNTTABOP_unmap_grant_ref, GTF_permit_access, HYPERVISOR_grant_table_op, gnttab_map_grant_ref, gnttab_unmap_grant_ref, grant_entry_v1 } from "@vtlab/xen-public";
import { tinyKernel } from "../test/tiny-kernel.js";

const PAIRS = 50_000;
const MAP_OP = 0x10_2000;
const UNMAP_OP = 0x10_2100;
const HOST_ADDR = 0xc000_0000;
const REF = 8;

const le32 = (n: number) => [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];

/** 32-bit loop: map (EBX = 0, ECX = op, EDX = 1), copy the handle into the unmap op, unmap; ESI times; then isa-debug-exit 0. */
function loopCode(): Uint8Array {
  const call = (cmd: number, op: number) => [0xb8, ...le32(HYPERVISOR_grant_table_op), 0xbb, ...le32(cmd), 0xb9, ...le32(op), 0xba, ...le32(1), 0x0f, 0x01, 0xc1];
  const body = [
    ...call(GNTTABOP_map_grant_ref, MAP_OP),
    0xa1, ...le32(MAP_OP + gnttab_map_grant_ref.handle), // mov eax, [handle]
    0xa3, ...le32(UNMAP_OP + gnttab_unmap_grant_ref.handle), // mov [unmap.handle], eax
    ...call(GNTTABOP_unmap_grant_ref, UNMAP_OP),
    0x4e, // dec esi
  ];
  const code = [0xbe, ...le32(PAIRS), ...body, 0x75, (256 - (body.length + 2)) & 0xff, 0x31, 0xc0, 0xe7, 0xf4];
  return Uint8Array.from(code);
}

function pairs(hap: boolean): number {
  const hv = new Hypervisor({ memoryMiB: 64 });
  const a = hv.createDomain({ name: "a", memoryMiB: 4, hap, kernel: tinyKernel("faf4") }); // cli; hlt
  const hex = Array.from(loopCode(), (x) => x.toString(16).padStart(2, "0")).join("");
  const b = hv.createDomain({ name: "b", memoryMiB: 4, hap, kernel: tinyKernel(hex) });
  // A's grant, as its guest would write it into its table: frame, then flags and domid.
  const table = a.xen.grants.sharedFrameMfn(0)! * 4096 + REF * grant_entry_v1.SIZEOF;
  hv.memory.write32(table + grant_entry_v1.frame, 0x300);
  hv.memory.write32(table + grant_entry_v1.flags, (GTF_permit_access | (b.id << 16)) >>> 0);
  const op = new Uint8Array(gnttab_map_grant_ref.SIZEOF);
  const v = new DataView(op.buffer);
  v.setUint32(gnttab_map_grant_ref.host_addr, HOST_ADDR, true);
  v.setUint32(gnttab_map_grant_ref.flags, GNTMAP_host_map, true);
  v.setUint32(gnttab_map_grant_ref.ref, REF, true);
  v.setUint16(gnttab_map_grant_ref.dom, a.id, true);
  b.writeGuest(MAP_OP, op);
  const un = new Uint8Array(gnttab_unmap_grant_ref.SIZEOF);
  new DataView(un.buffer).setUint32(gnttab_unmap_grant_ref.host_addr, HOST_ADDR, true);
  b.writeGuest(UNMAP_OP, un);
  const t0 = performance.now();
  hv.run();
  const ms = performance.now() - t0;
  const s = b.xen.stats;
  if (b.exitCode !== 0 || s.grantMaps !== PAIRS || s.grantUnmaps !== PAIRS) throw new Error(`map/unmap loop on ${hap ? "ept" : "shadow"}: exit ${String(b.exitCode)}, ${s.grantMaps} maps, ${s.grantUnmaps} unmaps, ${b.crashReason ?? ""}`);
  return PAIRS / (ms / 1000);
}

for (const hap of [true, false]) {
  const mode = hap ? "ept" : "shadow";
  pairs(hap); // warm-up (JIT)
  report({ name: `hypervisor.grant-map-unmap-pairs-per-second.${mode}`, value: Math.round(pairs(hap)), unit: "pairs/s" });
}
