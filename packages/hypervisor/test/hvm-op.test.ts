/**
 * HYPERVISOR_hvm_op (xen/hvm_op.ts): set/get_param with Xen's permission rules and checks,
 * set_evtchn_upcall_vector, the callback via (vector, GSI, PCI INTx) and its level, on EPT and
 * on shadow; hostile op numbers and structs.
 */
import { describe, expect, it, vi } from "vitest";
import fc from "fast-check";
import { CallbackVia } from "@vtlab/hypervisor";
import {
  DOMID_SELF,
  HVMOP_get_param,
  HVMOP_get_time,
  HVMOP_set_evtchn_upcall_vector,
  HVMOP_set_param,
  HVM_NR_PARAMS,
  HVM_PARAM_ACPI_IOPORTS_LOCATION,
  HVM_PARAM_CALLBACK_IRQ,
  HVM_PARAM_CONSOLE_EVTCHN,
  HVM_PARAM_CONSOLE_PFN,
  HVM_PARAM_IDENT_PT,
  HVM_PARAM_NESTEDHVM,
  HVM_PARAM_STORE_EVTCHN,
  HVM_PARAM_STORE_PFN,
  HVM_PARAM_VIRIDIAN,
  HVM_PARAM_VM86_TSS,
  HVM_PARAM_VM86_TSS_SIZED,
  HVM_PARAM_X87_FIP_WIDTH,
  HYPERVISOR_hvm_op,
  XEN_EEXIST,
  XEN_EFAULT,
  XEN_EINVAL,
  XEN_ENODEV,
  XEN_ENOENT,
  XEN_ENOSYS,
  XEN_EPERM,
  XEN_ESRCH,
  xen_hvm_evtchn_upcall_vector,
  xen_hvm_param,
} from "@vtlab/xen-public";
import { ARG, MMIO, call, get, machine, page, put, ramOf, sameBytes, struct } from "./xen-harness.js";

const modes = [true, false] as const;
const P = xen_hvm_param;
const param = (domid: number, index: number, value: bigint = 0n) => struct(P.SIZEOF, [[P.domid, 2, domid], [P.index, 4, index], [P.value, 8, value]]);
const VECTOR_TYPE = 2n << 56n; // HVM_PARAM_CALLBACK_TYPE_VECTOR in bits 63:56
const GSI_TYPE = 0n;
const INTX_TYPE = 1n << 56n;

describe.each(modes)("HVMOP_set_param / HVMOP_get_param (hap=%s)", (hap) => {
  const setup = (count = 1) => {
    const m = machine({ hap, count });
    const d = m.domains[0]!;
    const set = (domid: number, index: number, value: bigint = 0n) => {
      put(m.hv, d, ARG, param(domid, index, value));
      return call(m.hv, d, HYPERVISOR_hvm_op, [HVMOP_set_param, ARG]);
    };
    const getp = (domid: number, index: number): bigint | number => {
      put(m.hv, d, ARG, param(domid, index, 0xdead_beefn));
      const rc = call(m.hv, d, HYPERVISOR_hvm_op, [HVMOP_get_param, ARG]);
      return rc !== 0 ? rc : new DataView(get(m.hv, d, ARG, P.SIZEOF).buffer).getBigUint64(P.value, true);
    };
    return { ...m, d, set, getp };
  };

  it("HVM_PARAM_CALLBACK_IRQ round-trips all 64 bits and chooses the callback", () => {
    const { d, set, getp } = setup();
    expect(set(DOMID_SELF, HVM_PARAM_CALLBACK_IRQ, VECTOR_TYPE | 0xf3n)).toBe(0);
    expect(getp(DOMID_SELF, HVM_PARAM_CALLBACK_IRQ)).toBe(VECTOR_TYPE | 0xf3n);
    expect(getp(d.id, HVM_PARAM_CALLBACK_IRQ)).toBe(VECTOR_TYPE | 0xf3n);
    expect(d.xen.upcall.via).toBe(CallbackVia.Vector);
    expect(d.xen.upcall.vector).toBe(0xf3);
    expect(set(d.id, HVM_PARAM_CALLBACK_IRQ, GSI_TYPE | 9n)).toBe(0);
    expect([d.xen.upcall.via, d.xen.upcall.gsi]).toEqual([CallbackVia.Gsi, 9]);
    expect(set(d.id, HVM_PARAM_CALLBACK_IRQ, 0n)).toBe(0); // GSI 0: none
    expect(d.xen.upcall.via).toBe(CallbackVia.None);
    expect(set(d.id, HVM_PARAM_CALLBACK_IRQ, GSI_TYPE | 24n)).toBe(0); // past the IO-APIC's pins: none
    expect(d.xen.upcall.via).toBe(CallbackVia.None);
    expect(set(d.id, HVM_PARAM_CALLBACK_IRQ, INTX_TYPE | (3n << 11n) | 0n)).toBe(0); // 00:03.0 INTA
    expect([d.xen.upcall.via, d.xen.upcall.pciDev, d.xen.upcall.pciIntx]).toEqual([CallbackVia.PciIntx, 3, 0]);
    expect(set(d.id, HVM_PARAM_CALLBACK_IRQ, (3n << 56n) | 0xf3n)).toBe(0); // an unknown type: none
    expect(d.xen.upcall.via).toBe(CallbackVia.None);
    expect(getp(d.id, HVM_PARAM_CALLBACK_IRQ)).toBe((3n << 56n) | 0xf3n); // stored as given
  });

  it("what a guest may set and read: the rest is -EPERM, deprecated params -EINVAL, past HVM_NR_PARAMS -EINVAL", () => {
    const { d, set, getp } = setup();
    expect(d.xen.setHvmParam(HVM_PARAM_STORE_PFN, 0xfeffc)).toBe(0);
    expect(d.xen.setHvmParam(HVM_PARAM_STORE_EVTCHN, 3)).toBe(0);
    expect(d.xen.setHvmParam(HVM_PARAM_CONSOLE_PFN, 0xfeffd)).toBe(0);
    expect(d.xen.setHvmParam(HVM_PARAM_CONSOLE_EVTCHN, 2)).toBe(0);
    expect(d.xen.setHvmParam(HVM_PARAM_IDENT_PT, 0xfeffe000)).toBe(0);
    expect(getp(DOMID_SELF, HVM_PARAM_STORE_PFN)).toBe(0xfeffcn);
    expect(getp(DOMID_SELF, HVM_PARAM_STORE_EVTCHN)).toBe(3n);
    expect(getp(DOMID_SELF, HVM_PARAM_CONSOLE_PFN)).toBe(0xfeffdn);
    expect(getp(DOMID_SELF, HVM_PARAM_CONSOLE_EVTCHN)).toBe(2n);
    expect(getp(DOMID_SELF, HVM_PARAM_IDENT_PT)).toBe(-XEN_EPERM);
    expect(set(DOMID_SELF, HVM_PARAM_STORE_PFN, 1n)).toBe(-XEN_EPERM);
    expect(set(DOMID_SELF, HVM_PARAM_IDENT_PT, 1n)).toBe(-XEN_EPERM);
    expect(set(DOMID_SELF, HVM_PARAM_STORE_EVTCHN, 5n)).toBe(0); // a guest may set its store/console ports
    expect(d.xen.getHvmParam(HVM_PARAM_STORE_EVTCHN)).toBe(5);
    expect(set(DOMID_SELF, HVM_PARAM_NESTEDHVM, 1n)).toBe(-XEN_EINVAL);
    expect(getp(DOMID_SELF, HVM_PARAM_NESTEDHVM)).toBe(-XEN_EINVAL);
    expect(set(DOMID_SELF, HVM_NR_PARAMS, 1n)).toBe(-XEN_EINVAL);
    expect(getp(DOMID_SELF, 0xffff_ffff)).toBe(-XEN_EINVAL);
    expect(set(DOMID_SELF, HVM_PARAM_ACPI_IOPORTS_LOCATION, 1n)).toBe(-XEN_ENODEV); // no ACPI PM timer
    expect(set(DOMID_SELF, HVM_PARAM_X87_FIP_WIDTH, 8n)).toBe(0);
    expect(set(DOMID_SELF, HVM_PARAM_X87_FIP_WIDTH, 2n)).toBe(-XEN_EINVAL);
    expect(getp(DOMID_SELF, HVM_PARAM_X87_FIP_WIDTH)).toBe(8n);
    // Set-once params (toolstack side): a second, different value is -EEXIST.
    expect(d.xen.setHvmParam(HVM_PARAM_VIRIDIAN, 1)).toBe(0);
    expect(d.xen.setHvmParam(HVM_PARAM_VIRIDIAN, 1)).toBe(0);
    expect(d.xen.setHvmParam(HVM_PARAM_VIRIDIAN, 3)).toBe(-XEN_EEXIST);
    expect(d.xen.setHvmParam(HVM_PARAM_CALLBACK_IRQ, (2n << 56n) | 0x40n)).toBe(0);
    expect(d.xen.upcall.vector).toBe(0x40);
    expect(() => d.xen.setHvmParam(HVM_PARAM_STORE_PFN, 2 ** 60)).toThrow(RangeError);
  });

  it("HVM_PARAM_VM86_TSS is kept as a 128-byte HVM_PARAM_VM86_TSS_SIZED; a truncated value crashes the guest that set it", () => {
    const { d, set, getp } = setup();
    expect(set(DOMID_SELF, HVM_PARAM_VM86_TSS, 0x1000n)).toBe(0);
    expect(getp(DOMID_SELF, HVM_PARAM_VM86_TSS)).toBe(0x1000n);
    expect(getp(DOMID_SELF, HVM_PARAM_VM86_TSS_SIZED)).toBe((128n << 32n) | 0x1000n);
    expect(set(DOMID_SELF, HVM_PARAM_VM86_TSS_SIZED, (0xffffn << 32n) | 0x2000n)).toBe(0);
    expect(getp(DOMID_SELF, HVM_PARAM_VM86_TSS_SIZED)).toBe((8329n << 32n) | 0x2000n); // capped
    expect(d.state).toBe("running");
    expect(set(DOMID_SELF, HVM_PARAM_VM86_TSS, 1n << 32n)).toBe(-XEN_EINVAL);
    expect(d.state).toBe("crashed");
  });

  it("domid: DOMID_SELF or its own id; another guest -EPERM; dom0 (not HVM) -EINVAL; no such domain -ESRCH; bad pointer -EFAULT", () => {
    const { hv, domains, set, getp } = setup(2);
    const other = domains[1]!;
    expect(set(other.id, HVM_PARAM_CALLBACK_IRQ, 1n)).toBe(-XEN_EPERM);
    expect(getp(other.id, HVM_PARAM_CALLBACK_IRQ)).toBe(-XEN_EPERM);
    expect(set(0, HVM_PARAM_CALLBACK_IRQ, 1n)).toBe(-XEN_EINVAL);
    expect(set(77, HVM_PARAM_CALLBACK_IRQ, 1n)).toBe(-XEN_ESRCH);
    expect(getp(0x7ff1, HVM_PARAM_CALLBACK_IRQ)).toBe(-XEN_ESRCH);
    expect(other.xen.getHvmParam(HVM_PARAM_CALLBACK_IRQ)).toBe(0);
    const d = domains[0]!;
    expect(call(hv, d, HYPERVISOR_hvm_op, [HVMOP_set_param, MMIO])).toBe(-XEN_EFAULT);
    if (hap) expect(call(hv, d, HYPERVISOR_hvm_op, [HVMOP_get_param, d.ramFrames * 4096 - 8])).toBe(-XEN_EFAULT); // off the end of RAM (shadow: the identity table follows)
    expect(call(hv, d, HYPERVISOR_hvm_op, [HVMOP_get_param, 0xe000_0000])).toBe(-XEN_EFAULT);
    expect(call(hv, d, HYPERVISOR_hvm_op, [99, ARG])).toBe(-XEN_ENOSYS);
    expect(call(hv, d, HYPERVISOR_hvm_op, [(1n << 32n) | BigInt(HVMOP_set_param), ARG])).toBe(-XEN_ENOSYS); // unsigned long op
  });

  it("HVMOP_get_time: Xen's NOW(), the host's simulated clock in ns", () => {
    const { hv, d } = setup();
    expect(call(hv, d, HYPERVISOR_hvm_op, [HVMOP_get_time, ARG])).toBe(0);
    expect(Number(new DataView(get(hv, d, ARG, 8).buffer).getBigUint64(0, true))).toBe(hv.clock.nanoseconds);
  });
});

describe.each(modes)("HVMOP_set_evtchn_upcall_vector and the callback via (hap=%s)", (hap) => {
  const upcallVector = (vcpu: number, vector: number) => struct(xen_hvm_evtchn_upcall_vector.SIZEOF, [[xen_hvm_evtchn_upcall_vector.vcpu, 4, vcpu], [xen_hvm_evtchn_upcall_vector.vector, 1, vector]]);

  it("vectors below 0x10 are -EINVAL, a vCPU the domain lacks -ENOENT; the vector goes to that vCPU's local APIC", () => {
    const { hv, domains: [d] } = machine({ hap, vcpus: 2 });
    const rc = (vcpu: number, vector: number) => {
      put(hv, d!, ARG, upcallVector(vcpu, vector));
      return call(hv, d!, HYPERVISOR_hvm_op, [HVMOP_set_evtchn_upcall_vector, ARG]);
    };
    expect(rc(0, 0x0f)).toBe(-XEN_EINVAL);
    expect(rc(2, 0xf3)).toBe(-XEN_ENOENT);
    expect(rc(0xffff_ffff, 0xf3)).toBe(-XEN_ENOENT);
    expect(call(hv, d!, HYPERVISOR_hvm_op, [HVMOP_set_evtchn_upcall_vector, MMIO])).toBe(-XEN_EFAULT);
    const v1 = d!.vcpus[1]!;
    v1.apic!.write(0xf0, 4, 0x1ff);
    expect(rc(1, 0xe0)).toBe(0);
    expect(d!.xen.upcall.upcallVector(1)).toBe(0xe0);
    v1.apic!.acknowledge(0xe0); // the assertion at set time (Xen's hvm_assert_evtchn_irq), taken
    v1.apic!.write(0xb0, 4, 0);
    const p = d!.xen.evtchn.bindIpi(1);
    d!.xen.evtchn.send(p);
    expect(v1.apic!.pendingVector()).toBe(0xe0);
    expect(d!.vcpus[0]!.apic!.pendingVector()).toBe(-1);
  });

  it("an upcall raised while the local APIC is software-disabled is raised again when SVR bit 8 is set (Xen's vlapic_reg_write APIC_SPIV)", () => {
    const { hv, domains: [d] } = machine({ hap, vcpus: 2 });
    const v1 = d!.vcpus[1]!;
    expect(v1.apic!.softwareEnabled).toBe(false); // power-up state
    put(hv, d!, ARG, upcallVector(1, 0xe0));
    expect(call(hv, d!, HYPERVISOR_hvm_op, [HVMOP_set_evtchn_upcall_vector, ARG])).toBe(0);
    const p = d!.xen.evtchn.bindIpi(1);
    d!.xen.evtchn.send(p); // sets evtchn_upcall_pending; the disabled APIC drops the vector
    expect(d!.xen.sharedInfo.upcallPending(1)).toBe(true);
    expect(v1.apic!.pendingVector()).toBe(-1);
    const before = d!.xen.stats.upcallsInjected;
    v1.apic!.write(0xf0, 4, 0x1ff); // software-enable
    expect(v1.apic!.pendingVector()).toBe(0xe0);
    expect(d!.xen.stats.upcallsInjected).toBe(before + 1);
    v1.apic!.acknowledge(0xe0);
    v1.apic!.write(0xb0, 4, 0);
    // Enabled again while enabled: no edge, nothing raised; nor with nothing pending after a disable/enable.
    v1.apic!.write(0xf0, 4, 0x1ff);
    expect(v1.apic!.pendingVector()).toBe(-1);
    hv.memory.write8(d!.xen.sharedInfo.vcpuInfoHpa(1)!, 0); // the guest clears evtchn_upcall_pending
    v1.apic!.write(0xf0, 4, 0xff);
    v1.apic!.write(0xf0, 4, 0x1ff);
    expect(v1.apic!.pendingVector()).toBe(-1);
    expect(d!.xen.stats.upcallsInjected).toBe(before + 1);
    // vCPU 0 (no upcall vector of its own) is untouched throughout.
    expect(d!.vcpus[0]!.apic!.pendingVector()).toBe(-1);
  });

  it("GSI callback: the IO-APIC line follows vCPU 0's evtchn_upcall_pending, dropped before the next entry once the guest clears it", () => {
    const { hv, domains: [d] } = machine({ hap, vcpus: 2 });
    const setLevel = vi.spyOn(d!.ioapic, "setLevel");
    expect(d!.xen.setHvmParam(HVM_PARAM_CALLBACK_IRQ, 11)).toBe(0);
    expect(setLevel).not.toHaveBeenCalled();
    const p1 = d!.xen.evtchn.bindIpi(1);
    d!.xen.evtchn.send(p1); // vCPU 1's events do not drive the line (as Xen)
    expect(setLevel).not.toHaveBeenCalled();
    const p0 = d!.xen.evtchn.bindIpi(0);
    d!.xen.evtchn.send(p0);
    expect(setLevel.mock.calls.map((c) => [c[0], c[1]])).toEqual([[11, true]]);
    expect(d!.xen.upcall.asserted).toBe(true);
    expect(d!.xen.stats.upcallsInjected).toBe(1);
    // Still pending: the next entry keeps it asserted.
    d!.xen.intrAssist(d!.vcpus[0]!);
    expect(setLevel).toHaveBeenCalledTimes(1);
    // The guest clears evtchn_upcall_pending: the next entry (on any vCPU) deasserts.
    hv.memory.write8(d!.xen.sharedInfo.vcpuInfoHpa(0)!, 0);
    expect(d!.xen.intrAssist(d!.vcpus[1]!)).toBe(-1);
    expect(setLevel.mock.calls.map((c) => [c[0], c[1]])).toEqual([[11, true], [11, false]]);
    // Moving the callback while asserted moves the line.
    d!.xen.evtchn.send(p0); // pending already, no new upcall
    hv.memory.write8(d!.xen.sharedInfo.vcpuInfoHpa(0)!, 0);
    hv.memory.fill(d!.xen.sharedInfo.vcpuInfoHpa(0)! + 8, 8, 0);
    hv.memory.fill(d!.xen.sharedInfo.hpa + 2048, 8, 0);
    d!.xen.evtchn.send(p0);
    expect(setLevel.mock.lastCall?.slice(0, 2)).toEqual([11, true]);
    expect(d!.xen.setHvmParam(HVM_PARAM_CALLBACK_IRQ, 5)).toBe(0);
    expect(setLevel.mock.calls.slice(-2).map((c) => [c[0], c[1]])).toEqual([[11, false], [5, true]]);
  });

  it("PCI INTx callback: the platform device's INTx (00:03.0 INTA) follows vCPU 0's upcall; another device/pin drives nothing", () => {
    const { hv, domains: [d] } = machine({ hap });
    const platform = d!.platform;
    if (platform === undefined) throw new Error("no Xen platform device in the domain");
    const setIntx = vi.spyOn(platform, "setIntx");
    expect(d!.xen.setHvmParam(HVM_PARAM_CALLBACK_IRQ, (1n << 56n) | (3n << 11n) | 1n)).toBe(0); // INTB: not its pin
    const p = d!.xen.evtchn.bindIpi(0);
    d!.xen.evtchn.send(p);
    expect(setIntx).not.toHaveBeenCalled();
    expect(d!.xen.upcall.asserted).toBe(true);
    expect(d!.xen.setHvmParam(HVM_PARAM_CALLBACK_IRQ, (1n << 56n) | (3n << 11n))).toBe(0);
    expect(setIntx.mock.calls).toEqual([[true]]);
    hv.memory.write8(d!.xen.sharedInfo.vcpuInfoHpa(0)!, 0);
    d!.xen.intrAssist(d!.vcpus[0]!);
    expect(setIntx.mock.calls).toEqual([[true], [false]]);
  });

  it("the vector callback is answered before each entry while the vCPU's upcall is pending", () => {
    const { hv, domains: [d] } = machine({ hap, vcpus: 2 });
    expect(d!.xen.setHvmParam(HVM_PARAM_CALLBACK_IRQ, (2n << 56n) | 0xf3n)).toBe(0);
    const [v0, v1] = d!.vcpus;
    expect(d!.xen.intrAssist(v0!)).toBe(-1);
    d!.xen.evtchn.send(d!.xen.evtchn.bindIpi(0));
    expect(d!.xen.intrAssist(v0!)).toBe(0xf3);
    expect(d!.xen.intrAssist(v0!)).toBe(0xf3);
    expect(d!.xen.intrAssist(v1!)).toBe(-1);
    hv.memory.write8(d!.xen.sharedInfo.vcpuInfoHpa(0)!, 0);
    expect(d!.xen.intrAssist(v0!)).toBe(-1);
  });
});

describe("hostile hvm_op: any op number and struct bytes, any pointer", () => {
  const errnos = new Set([0, -XEN_EPERM, -XEN_ENOENT, -XEN_ESRCH, -XEN_EFAULT, -XEN_EEXIST, -XEN_EINVAL, -XEN_ENODEV, -XEN_ENOSYS]);
  for (const hap of modes) {
    it(`never throws, answers Xen errnos, never touches the other domain (${hap ? "EPT" : "shadow"})`, () => {
      const { hv, domains: [a, v] } = machine({ hap, count: 2 });
      const ramBefore = ramOf(hv, v!);
      const siBefore = page(hv, v!.xen.sharedInfo.hpa);
      const paramsBefore = [...v!.xen.hvmParams.lo, ...v!.xen.hvmParams.hi];
      fc.assert(
        fc.property(
          fc.oneof(fc.constantFrom(HVMOP_set_param, HVMOP_get_param, HVMOP_set_evtchn_upcall_vector, HVMOP_get_time), fc.integer({ min: 0, max: 40 }), fc.bigInt({ min: 0n, max: (1n << 64n) - 1n })),
          fc.uint8Array({ minLength: 16, maxLength: 16 }),
          fc.constantFrom(DOMID_SELF, a!.id, v!.id, 0, 0x7ff2),
          fc.integer({ min: 0, max: HVM_NR_PARAMS + 2 }),
          fc.oneof(fc.constant(ARG), fc.constant(MMIO), fc.constant(a!.ramFrames * 4096 - 6), fc.bigInt({ min: 0n, max: (1n << 64n) - 1n })),
          (op, bytes, domid, index, ptr) => {
            const dv = new DataView(bytes.buffer);
            if (index % 2 === 0) {
              dv.setUint16(P.domid, domid, true);
              dv.setUint32(P.index, index, true);
            }
            put(hv, a!, ARG, bytes);
            const rc = call(hv, a!, HYPERVISOR_hvm_op, [op, ptr]);
            expect(errnos.has(rc), `op ${op} -> ${rc}`).toBe(true);
          },
        ),
        { numRuns: 400, seed: 7 },
      );
      expect(sameBytes(ramOf(hv, v!), ramBefore)).toBe(true);
      expect(sameBytes(page(hv, v!.xen.sharedInfo.hpa), siBefore)).toBe(true);
      expect([...v!.xen.hvmParams.lo, ...v!.xen.hvmParams.hi]).toEqual(paramsBefore);
    });
  }
});
