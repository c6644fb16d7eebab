/**
 * Two Xen calls Debian's Linux makes on its PVH path that vtlab used to answer -ENOSYS (issue 16):
 * - HYPERVISOR_vm_assist(VMASST_CMD_enable, VMASST_TYPE_runstate_update_flag), from
 *   xen_setup_runstate_info: an HVM domain may enable only that assist (HVM_VM_ASSIST_MASK);
 * - VCPUOP_register_vcpu_time_memory_area, from xen_setup_vsyscall_time_info: a second copy of
 *   the vCPU's vcpu_time_info at a guest-linear address, kept up to date with every PV-clock
 *   update (Linux checks XEN_PVCLOCK_TSC_STABLE_BIT in it and uses it for its vDSO).
 */
import { describe, expect, it } from "vitest";
import {
  HYPERVISOR_vcpu_op,
  HYPERVISOR_vm_assist,
  VCPUOP_register_vcpu_time_memory_area,
  VMASST_CMD_disable,
  VMASST_CMD_enable,
  VMASST_TYPE_4gb_segments,
  VMASST_TYPE_m2p_strict,
  VMASST_TYPE_runstate_update_flag,
  VMASST_TYPE_writable_pagetables,
  XEN_EFAULT,
  XEN_EINVAL,
  XEN_ENOENT,
  XEN_ENOSYS,
  XEN_PVCLOCK_TSC_STABLE_BIT,
  vcpu_info,
  vcpu_register_time_memory_area,
  vcpu_time_info,
} from "@vtlab/xen-public";
import { ARG, MMIO, call, get, machine, put, sameBytes, struct, u32 } from "./xen-harness.js";

/** A page of the guest's RAM for the time area (guest-linear = guest-physical in the harness). */
const AREA = 0x21_0000;

for (const hap of [true, false]) {
  const mmu = hap ? "EPT" : "shadow";

  describe(`HYPERVISOR_vm_assist (${mmu})`, () => {
    it("runstate_update_flag is enabled and disabled; every other type is -EINVAL; another command is -ENOSYS", () => {
      const { hv, domains: [d] } = machine({ hap });
      expect(call(hv, d!, HYPERVISOR_vm_assist, [VMASST_CMD_enable, VMASST_TYPE_runstate_update_flag])).toBe(0);
      expect(d!.xen.vmAssist).toBe(1 << VMASST_TYPE_runstate_update_flag);
      expect(d!.xen.stats.hypercalls.get("vm_assist")).toBe(1);
      expect(d!.xen.stats.unknownHypercalls.size).toBe(0);
      // The PV-only assists, m2p_strict (32), and types at and past BITS_PER_LONG.
      for (const type of [VMASST_TYPE_4gb_segments, VMASST_TYPE_writable_pagetables, 4, 6, 31, VMASST_TYPE_m2p_strict, 63, 64, 0xffff_ffff]) {
        expect(call(hv, d!, HYPERVISOR_vm_assist, [VMASST_CMD_enable, type]), `type ${type}`).toBe(-XEN_EINVAL);
      }
      expect(call(hv, d!, HYPERVISOR_vm_assist, [2, VMASST_TYPE_runstate_update_flag])).toBe(-XEN_ENOSYS);
      expect(call(hv, d!, HYPERVISOR_vm_assist, [0xffff_ffff, VMASST_TYPE_runstate_update_flag])).toBe(-XEN_ENOSYS);
      expect(d!.xen.vmAssist).toBe(1 << VMASST_TYPE_runstate_update_flag);
      expect(call(hv, d!, HYPERVISOR_vm_assist, [VMASST_CMD_disable, VMASST_TYPE_runstate_update_flag])).toBe(0);
      expect(d!.xen.vmAssist).toBe(0);
    });

    it("a 32-bit caller (PVH entry state) gets the same answers; one domain's assists are its own", () => {
      const { hv, domains: [a, b] } = machine({ hap, long: false, count: 2 });
      expect(call(hv, a!, HYPERVISOR_vm_assist, [VMASST_CMD_enable, VMASST_TYPE_runstate_update_flag])).toBe(0);
      expect(call(hv, a!, HYPERVISOR_vm_assist, [VMASST_CMD_enable, VMASST_TYPE_m2p_strict])).toBe(-XEN_EINVAL);
      expect(a!.xen.vmAssist).toBe(1 << VMASST_TYPE_runstate_update_flag);
      expect(b!.xen.vmAssist).toBe(0);
    });
  });

  describe(`VCPUOP_register_vcpu_time_memory_area (${mmu})`, () => {
    const register = (addr: number | bigint) => struct(vcpu_register_time_memory_area.SIZEOF, [[vcpu_register_time_memory_area["addr.p"], 8, addr]]);
    const primary = (hv: ReturnType<typeof machine>["hv"], d: ReturnType<typeof machine>["domains"][number], vcpu = 0) => {
      const out = new Uint8Array(vcpu_time_info.SIZEOF);
      hv.memory.readBytes(d.xen.sharedInfo.vcpuInfoHpa(vcpu)! + vcpu_info.time, out);
      return out;
    };

    it("the area gets the vcpu_time_info at once and after every update, TSC-stable, version even", () => {
      const { hv, domains: [d] } = machine({ hap });
      put(hv, d!, ARG, register(AREA));
      expect(call(hv, d!, HYPERVISOR_vcpu_op, [VCPUOP_register_vcpu_time_memory_area, 0, ARG])).toBe(0);
      const first = get(hv, d!, AREA, vcpu_time_info.SIZEOF);
      expect([...first]).toEqual([...primary(hv, d!)]);
      expect(u32(first, vcpu_time_info.version) % 2).toBe(0);
      expect(first[vcpu_time_info.flags]! & XEN_PVCLOCK_TSC_STABLE_BIT).toBe(XEN_PVCLOCK_TSC_STABLE_BIT);
      expect(d!.vcpus[0]!.timeArea.writes).toBe(1);
      hv.run({ maxInstructions: 200_000 }); // more slices: more PV-clock updates
      const later = get(hv, d!, AREA, vcpu_time_info.SIZEOF);
      expect([...later]).toEqual([...primary(hv, d!)]);
      expect(u32(later, vcpu_time_info.system_time)).not.toBe(u32(first, vcpu_time_info.system_time));
      expect(d!.vcpus[0]!.timeArea.writes).toBeGreaterThan(1);
      expect(d!.vcpus[0]!.timeArea.faults).toBe(0);
    });

    it("0 unregisters: the area is left as it was", () => {
      const { hv, domains: [d] } = machine({ hap });
      put(hv, d!, ARG, register(AREA));
      expect(call(hv, d!, HYPERVISOR_vcpu_op, [VCPUOP_register_vcpu_time_memory_area, 0, ARG])).toBe(0);
      put(hv, d!, ARG, register(0));
      expect(call(hv, d!, HYPERVISOR_vcpu_op, [VCPUOP_register_vcpu_time_memory_area, 0, ARG])).toBe(0);
      expect(d!.vcpus[0]!.timeArea.addr).toBeUndefined();
      const kept = get(hv, d!, AREA, vcpu_time_info.SIZEOF);
      hv.run({ maxInstructions: 200_000 });
      expect([...get(hv, d!, AREA, vcpu_time_info.SIZEOF)]).toEqual([...kept]);
    });

    it("hostile: the struct unreadable is -EFAULT; a vCPU the domain lacks -ENOENT; an area on MMIO, non-canonical or at the top of the address space is accepted (as Xen's guest_handle_okay for HVM) and its copies fail, counted, without touching anything", () => {
      const { hv, domains: [d, other] } = machine({ hap, count: 2 });
      expect(call(hv, d!, HYPERVISOR_vcpu_op, [VCPUOP_register_vcpu_time_memory_area, 0, MMIO])).toBe(-XEN_EFAULT);
      expect(call(hv, d!, HYPERVISOR_vcpu_op, [VCPUOP_register_vcpu_time_memory_area, 0, 0x7fff_ffff_f000n])).toBe(-XEN_EFAULT);
      put(hv, d!, ARG, register(AREA));
      expect(call(hv, d!, HYPERVISOR_vcpu_op, [VCPUOP_register_vcpu_time_memory_area, 1, ARG])).toBe(-XEN_ENOENT);
      const otherRam = get(hv, other!, 0, 0x40_0000);
      for (const addr of [MMIO, 0x8000_0000_0000_0000n, 0xffff_ffff_ffff_fff0n, 0x7fff_ffff_fff8n]) {
        put(hv, d!, ARG, register(addr));
        expect(call(hv, d!, HYPERVISOR_vcpu_op, [VCPUOP_register_vcpu_time_memory_area, 0, ARG])).toBe(0);
      }
      const t = d!.vcpus[0]!.timeArea;
      expect(t.writes).toBe(0);
      expect(t.faults).toBe(4);
      hv.run({ maxInstructions: 100_000 });
      expect(t.faults).toBeGreaterThan(4);
      expect(d!.crashReason).toBeUndefined();
      expect(other!.crashReason).toBeUndefined();
      expect(sameBytes(get(hv, other!, 0, 0x40_0000), otherRam)).toBe(true);
    });
  });
}
