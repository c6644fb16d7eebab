/**
 * Event channels, 2-level ABI (xen/event_channel.ts): HYPERVISOR_event_channel_op from guest code
 * and driven at the hypercall entry, on EPT and on shadow; interdomain channels between guests
 * and with dom0; close, status, reset, the limits; and hostile op numbers and structs.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { EVTCHNS_PER_BUCKET, Hypervisor, type Domain } from "@vtlab/hypervisor";
import {
  DOMID_SELF,
  EVTCHN_2L_NR_CHANNELS,
  EVTCHNOP_alloc_unbound,
  EVTCHNOP_bind_interdomain,
  EVTCHNOP_bind_ipi,
  EVTCHNOP_bind_pirq,
  EVTCHNOP_bind_vcpu,
  EVTCHNOP_bind_virq,
  EVTCHNOP_close,
  EVTCHNOP_expand_array,
  EVTCHNOP_reset,
  EVTCHNOP_reset_cont,
  EVTCHNOP_send,
  EVTCHNOP_set_priority,
  EVTCHNOP_status,
  EVTCHNOP_unmask,
  EVTCHNSTAT_closed,
  EVTCHNSTAT_interdomain,
  EVTCHNSTAT_ipi,
  EVTCHNSTAT_unbound,
  EVTCHNSTAT_virq,
  HYPERVISOR_event_channel_op,
  NR_VIRQS,
  VIRQ_CONSOLE,
  VIRQ_DEBUG,
  VIRQ_DOM_EXC,
  VIRQ_TIMER,
  XEN_EACCES,
  XEN_EBUSY,
  XEN_EEXIST,
  XEN_EFAULT,
  XEN_EINVAL,
  XEN_ENOENT,
  XEN_ENOSPC,
  XEN_ENOSYS,
  XEN_EOPNOTSUPP,
  XEN_EPERM,
  XEN_ESRCH,
  evtchn_alloc_unbound,
  evtchn_bind_interdomain,
  evtchn_bind_ipi,
  evtchn_bind_vcpu,
  evtchn_bind_virq,
  evtchn_close,
  evtchn_reset,
  evtchn_send,
  evtchn_status,
  evtchn_unmask,
  shared_info,
  vcpu_info,
} from "@vtlab/xen-public";
import { EVTCHN_GUESTS } from "./evtchn-guests.js";
import { tinyKernel } from "./tiny-kernel.js";
import { ARG, MMIO, call, get, machine, page, put, ramOf, sameBytes, struct, u32 } from "./xen-harness.js";

const EC = HYPERVISOR_event_channel_op;
const modes = [true, false] as const;
const mmu = (hap: boolean) => (hap ? "EPT" : "shadow");

/** The event-channel ops as a guest would call them (the struct at ARG), returning [rc, struct after]. */
function ops(hv: Hypervisor, d: Domain, vcpu = 0) {
  const run = (cmd: number, bytes: Uint8Array): [number, Uint8Array] => {
    put(hv, d, ARG, bytes);
    const rc = call(hv, d, EC, [cmd, ARG], vcpu);
    return [rc, get(hv, d, ARG, bytes.length)];
  };
  const port = (cmd: number, bytes: Uint8Array, at: number) => {
    const [rc, after] = run(cmd, bytes);
    return rc === 0 ? u32(after, at) : rc;
  };
  return {
    allocUnbound: (dom: number, remote: number) => port(EVTCHNOP_alloc_unbound, struct(evtchn_alloc_unbound.SIZEOF, [[evtchn_alloc_unbound.dom, 2, dom], [evtchn_alloc_unbound.remote_dom, 2, remote]]), evtchn_alloc_unbound.port),
    bindInterdomain: (remote: number, rport: number) => port(EVTCHNOP_bind_interdomain, struct(evtchn_bind_interdomain.SIZEOF, [[evtchn_bind_interdomain.remote_dom, 2, remote], [evtchn_bind_interdomain.remote_port, 4, rport]]), evtchn_bind_interdomain.local_port),
    bindVirq: (virq: number, v: number) => port(EVTCHNOP_bind_virq, struct(evtchn_bind_virq.SIZEOF, [[evtchn_bind_virq.virq, 4, virq], [evtchn_bind_virq.vcpu, 4, v]]), evtchn_bind_virq.port),
    bindIpi: (v: number) => port(EVTCHNOP_bind_ipi, struct(evtchn_bind_ipi.SIZEOF, [[evtchn_bind_ipi.vcpu, 4, v]]), evtchn_bind_ipi.port),
    bindVcpu: (p: number, v: number) => run(EVTCHNOP_bind_vcpu, struct(evtchn_bind_vcpu.SIZEOF, [[evtchn_bind_vcpu.port, 4, p], [evtchn_bind_vcpu.vcpu, 4, v]]))[0],
    send: (p: number) => run(EVTCHNOP_send, struct(evtchn_send.SIZEOF, [[evtchn_send.port, 4, p]]))[0],
    close: (p: number) => run(EVTCHNOP_close, struct(evtchn_close.SIZEOF, [[evtchn_close.port, 4, p]]))[0],
    unmask: (p: number) => run(EVTCHNOP_unmask, struct(evtchn_unmask.SIZEOF, [[evtchn_unmask.port, 4, p]]))[0],
    reset: (dom: number, cont = false) => run(cont ? EVTCHNOP_reset_cont : EVTCHNOP_reset, struct(evtchn_reset.SIZEOF, [[evtchn_reset.dom, 2, dom]]))[0],
    status: (dom: number, p: number) => {
      const [rc, s] = run(EVTCHNOP_status, struct(evtchn_status.SIZEOF, [[evtchn_status.dom, 2, dom], [evtchn_status.port, 4, p]]));
      if (rc !== 0) return rc;
      const dv = new DataView(s.buffer);
      return { status: dv.getUint32(evtchn_status.status, true), vcpu: dv.getUint32(evtchn_status.vcpu, true), dom: dv.getUint16(evtchn_status["u.unbound.dom"], true), port: dv.getUint32(evtchn_status["u.interdomain.port"], true), virq: dv.getUint32(evtchn_status["u.virq"], true) };
    },
  };
}

/** The 2-level state of a port as the guest sees it in shared_info / vcpu_info. */
function bits(hv: Hypervisor, d: Domain, port: number, vcpu = 0) {
  const si = d.xen.sharedInfo;
  const b = (hpa: number) => hv.memory.read8(hpa) as number;
  const vi = si.vcpuInfoHpa(vcpu)!;
  return {
    pending: (b(si.hpa + shared_info.evtchn_pending + (port >> 3)) >> (port & 7)) & 1,
    masked: (b(si.hpa + shared_info.evtchn_mask + (port >> 3)) >> (port & 7)) & 1,
    sel: (b(vi + vcpu_info.evtchn_pending_sel + (port >> 9)) >> ((port >> 6) & 7)) & 1,
    upcall: b(vi + vcpu_info.evtchn_upcall_pending),
  };
}

/** Clear what a guest's upcall handler clears: evtchn_upcall_pending, the selector, the port's pending bit. */
function guestAck(hv: Hypervisor, d: Domain, port: number, vcpu = 0) {
  const si = d.xen.sharedInfo;
  const vi = si.vcpuInfoHpa(vcpu)!;
  hv.memory.write8(vi + vcpu_info.evtchn_upcall_pending, 0);
  hv.memory.fill(vi + vcpu_info.evtchn_pending_sel, 8, 0);
  const at = si.hpa + shared_info.evtchn_pending + (port >> 3);
  hv.memory.write8(at, (hv.memory.read8(at) as number) & ~(1 << (port & 7)));
}

function setMask(hv: Hypervisor, d: Domain, port: number, on: boolean) {
  const at = d.xen.sharedInfo.hpa + shared_info.evtchn_mask + (port >> 3);
  const old = hv.memory.read8(at) as number;
  hv.memory.write8(at, on ? old | (1 << (port & 7)) : old & ~(1 << (port & 7)));
}

describe("an upcall from guest code: bind_ipi, send, the callback vector taken (test/evtchn-guests/upcall.S)", () => {
  const boot = (hap: boolean, mode: number) => {
    const hv = new Hypervisor({ memoryMiB: 64, sliceInstructions: 20_000 });
    const d = hv.createDomain({ name: "upcall", memoryMiB: 8, hap, kernel: tinyKernel(EVTCHN_GUESTS.upcall) });
    d.writeGuest(0x130010, Uint8Array.of(mode, 0, 0, 0));
    hv.run({ maxInstructions: 2_000_000 });
    const word = (gpa: number) => hv.memory.read32(d.machineAddress(gpa)!) as number;
    return { hv, d, word };
  };
  for (const hap of modes) {
    it(`HVMOP_set_evtchn_upcall_vector: the local APIC takes vector 0xf3, the guest EOIs (${mmu(hap)})`, () => {
      const { hv, d, word } = boot(hap, 0);
      expect(d.crashReason).toBeUndefined();
      expect(d.shutdownReason).toMatch(/halted with interrupts disabled/);
      expect([word(0x130020), word(0x130024), word(0x130028)]).toEqual([0, 0, 0]);
      const port = word(0x13002c);
      expect(port).toBe(1); // the lowest free port (0 is reserved)
      // Two upcalls: Xen's hvmop_set_evtchn_upcall_vector asserts the vector at once (taken right
      // after STI), and the send marks evtchn_upcall_pending, which raises it again.
      expect(word(0x130000)).toBe(2);
      expect(bits(hv, d, port)).toEqual({ pending: 1, masked: 0, sel: 1, upcall: 1 });
      expect(d.xen.stats.upcallsInjected).toBe(2);
      expect(d.xen.stats.eventsSent).toBe(1);
      expect(d.xen.stats.eventsDelivered).toBe(1);
      expect(d.vcpus[0]!.apic!.stats.eoi).toBe(2);
      expect(d.xen.evtchn.isPending(port)).toBe(true);
      expect(d.xen.upcallPending(0)).toBe(true);
    });

    it(`HVM_PARAM_CALLBACK_IRQ type vector: 0xf3 injected straight into the vCPU, not through the APIC (${mmu(hap)})`, () => {
      const { hv, d, word } = boot(hap, 1);
      expect(d.crashReason).toBeUndefined();
      expect(word(0x130020)).toBe(0);
      expect(word(0x130000)).toBe(1);
      expect(bits(hv, d, word(0x13002c))).toEqual({ pending: 1, masked: 0, sel: 1, upcall: 1 });
      expect(d.xen.stats.upcallsInjected).toBe(1);
      expect(d.vcpus[0]!.apic!.stats.eoi).toBe(0);
      expect(d.vcpus[0]!.apic!.pendingVector()).toBe(-1); // nothing in the APIC's IRR
    });

    it(`no callback: the event stays pending, nothing is injected (${mmu(hap)})`, () => {
      const { hv, d, word } = boot(hap, 2);
      expect(d.crashReason).toBeUndefined();
      expect(word(0x130028)).toBe(0);
      expect(word(0x130000)).toBe(0);
      expect(bits(hv, d, word(0x13002c))).toEqual({ pending: 1, masked: 0, sel: 1, upcall: 1 });
      expect(d.xen.stats.upcallsInjected).toBe(0);
    });
  }
});

describe.each(modes)("event channels driven at the hypercall entry (hap=%s)", (hap) => {
  it("bind_ipi + send: the pending bit, the selector and evtchn_upcall_pending, once", () => {
    const { hv, domains: [d] } = machine({ hap });
    const o = ops(hv, d!);
    const p = o.bindIpi(0);
    expect(p).toBe(1);
    expect(bits(hv, d!, p)).toEqual({ pending: 0, masked: 0, sel: 0, upcall: 0 });
    expect(o.send(p)).toBe(0);
    expect(bits(hv, d!, p)).toEqual({ pending: 1, masked: 0, sel: 1, upcall: 1 });
    expect(o.send(p)).toBe(0); // already pending: nothing new
    expect(d!.xen.stats.eventsSent).toBe(2);
    expect(d!.xen.stats.eventsDelivered).toBe(1);
    // A port in the second selector word (64..127).
    const ports = Array.from({ length: 70 }, () => o.bindIpi(0));
    expect(ports.at(-1)).toBe(71);
    expect(d!.xen.evtchn.validPorts).toBe(2 * EVTCHNS_PER_BUCKET); // a second bucket
    guestAck(hv, d!, p);
    expect(o.send(70)).toBe(0);
    expect(bits(hv, d!, 70)).toEqual({ pending: 1, masked: 0, sel: 1, upcall: 1 });
  });

  it("masking: a masked port becomes pending without an upcall; unmask delivers it", () => {
    const { hv, domains: [d] } = machine({ hap });
    const o = ops(hv, d!);
    const p = o.bindIpi(0);
    setMask(hv, d!, p, true);
    expect(o.send(p)).toBe(0);
    expect(bits(hv, d!, p)).toEqual({ pending: 1, masked: 1, sel: 0, upcall: 0 });
    expect(d!.xen.stats.eventsDelivered).toBe(1);
    expect(o.unmask(p)).toBe(0);
    expect(bits(hv, d!, p)).toEqual({ pending: 1, masked: 0, sel: 1, upcall: 1 });
    // Unmasking a port that is not pending, or not masked, delivers nothing.
    guestAck(hv, d!, p);
    setMask(hv, d!, p, true);
    expect(o.unmask(p)).toBe(0);
    expect(bits(hv, d!, p)).toEqual({ pending: 0, masked: 0, sel: 0, upcall: 0 });
    // Unmask of a port that is not bound does nothing (Xen's evtchn_usable); past the buckets it is -EINVAL.
    setMask(hv, d!, 40, true);
    expect(o.unmask(40)).toBe(0);
    expect(bits(hv, d!, 40).masked).toBe(1);
    expect(o.unmask(EVTCHNS_PER_BUCKET)).toBe(-XEN_EINVAL);
    expect(o.unmask(EVTCHN_2L_NR_CHANNELS)).toBe(-XEN_EINVAL);
  });

  it("the per-vCPU upcall vector reaches the local APIC; unmask re-delivers it", () => {
    const { hv, domains: [d] } = machine({ hap });
    const v = d!.vcpus[0]!;
    v.apic!.write(0xf0, 4, 0x1ff); // SVR: software enable, as the guest would
    d!.xen.upcall.setUpcallVector(0, 0xf3);
    expect(v.apic!.pendingVector()).toBe(0xf3); // Xen's hvm_assert_evtchn_irq at set time
    v.apic!.acknowledge(0xf3);
    v.apic!.write(0xb0, 4, 0); // EOI
    const o = ops(hv, d!);
    const p = o.bindIpi(0);
    setMask(hv, d!, p, true);
    o.send(p);
    expect(v.apic!.pendingVector()).toBe(-1);
    o.unmask(p);
    expect(v.apic!.pendingVector()).toBe(0xf3);
    expect(d!.xen.stats.upcallsInjected).toBe(2);
  });

  it("interdomain between two guests: alloc_unbound, bind_interdomain (pending at once), sends both ways", () => {
    const { hv, domains: [a, b] } = machine({ hap, count: 2 });
    const oa = ops(hv, a!);
    const ob = ops(hv, b!);
    const pa = oa.allocUnbound(DOMID_SELF, b!.id);
    expect(pa).toBe(1);
    expect(oa.status(DOMID_SELF, pa)).toMatchObject({ status: EVTCHNSTAT_unbound, dom: b!.id, vcpu: 0 });
    expect(ob.bindInterdomain(a!.id, 99)).toBe(-XEN_EINVAL); // no such port
    expect(ob.bindInterdomain(77, pa)).toBe(-XEN_ESRCH); // no such domain
    const pb = ob.bindInterdomain(a!.id, pa);
    expect(pb).toBe(1);
    expect(bits(hv, b!, pb).pending).toBe(1); // "we may have lost notifications on the remote unbound port"
    expect(oa.status(a!.id, pa)).toMatchObject({ status: EVTCHNSTAT_interdomain, dom: b!.id, port: pb });
    expect(ob.status(DOMID_SELF, pb)).toMatchObject({ status: EVTCHNSTAT_interdomain, dom: a!.id, port: pa });
    expect(ob.bindInterdomain(a!.id, pa)).toBe(-XEN_EINVAL); // not unbound any more
    guestAck(hv, b!, pb);
    expect(oa.send(pa)).toBe(0);
    expect(bits(hv, b!, pb)).toEqual({ pending: 1, masked: 0, sel: 1, upcall: 1 });
    expect(bits(hv, a!, pa).pending).toBe(0);
    expect(ob.send(pb)).toBe(0);
    expect(bits(hv, a!, pa)).toEqual({ pending: 1, masked: 0, sel: 1, upcall: 1 });
    expect(a!.xen.stats.eventsSent).toBe(1);
    expect(b!.xen.stats.eventsDelivered).toBe(2);
    // A port offered to one domain cannot be bound by another.
    const pc = oa.allocUnbound(DOMID_SELF, 12);
    expect(ob.bindInterdomain(a!.id, pc)).toBe(-XEN_EINVAL);
    // Acting on another domain's table needs privilege.
    expect(ob.allocUnbound(a!.id, b!.id)).toBe(-XEN_EPERM);
    expect(ob.status(a!.id, pa)).toBe(-XEN_EPERM);
    expect(ob.reset(a!.id)).toBe(-XEN_EPERM);
    expect(ob.allocUnbound(0, b!.id)).toBe(-XEN_EPERM); // dom0 exists
    expect(ob.allocUnbound(4000, b!.id)).toBe(-XEN_ESRCH);
  });

  it("close: the peer becomes unbound (offered to the closer again), a send there is dropped, a closed port is -EINVAL", () => {
    const { hv, domains: [a, b] } = machine({ hap, count: 2 });
    const oa = ops(hv, a!);
    const ob = ops(hv, b!);
    const pa = oa.allocUnbound(DOMID_SELF, b!.id);
    const pb = ob.bindInterdomain(a!.id, pa);
    expect(ob.close(pb)).toBe(0);
    expect(oa.status(DOMID_SELF, pa)).toMatchObject({ status: EVTCHNSTAT_unbound, dom: b!.id });
    expect(ob.status(DOMID_SELF, pb)).toMatchObject({ status: EVTCHNSTAT_closed });
    expect(bits(hv, b!, pb).pending).toBe(0); // closing clears the pending bit
    expect(oa.send(pa)).toBe(0); // unbound: dropped
    expect(ob.send(pb)).toBe(-XEN_EINVAL);
    expect(ob.close(pb)).toBe(-XEN_EINVAL);
    expect(ob.close(0)).toBe(-XEN_EINVAL); // reserved
    // The freed port is the next one handed out, and b can bind a's port again.
    expect(ob.bindInterdomain(a!.id, pa)).toBe(pb);
    expect(ob.status(DOMID_SELF, 0)).toMatchObject({ status: EVTCHNSTAT_closed });
    expect(ob.status(DOMID_SELF, EVTCHNS_PER_BUCKET - 1)).toMatchObject({ status: EVTCHNSTAT_closed });
    expect(ob.status(DOMID_SELF, EVTCHNS_PER_BUCKET)).toBe(-XEN_EINVAL); // past the allocated bucket
  });

  it("a loopback channel (alloc_unbound for DOMID_SELF, then bind_interdomain to it)", () => {
    const { hv, domains: [d] } = machine({ hap });
    const o = ops(hv, d!);
    const p1 = o.allocUnbound(DOMID_SELF, DOMID_SELF);
    expect(o.status(DOMID_SELF, p1)).toMatchObject({ status: EVTCHNSTAT_unbound, dom: d!.id });
    const p2 = o.bindInterdomain(DOMID_SELF, p1);
    expect(p2).toBe(2);
    guestAck(hv, d!, p2);
    expect(o.send(p2)).toBe(0);
    expect(bits(hv, d!, p1)).toMatchObject({ pending: 1, upcall: 1 });
    expect(bits(hv, d!, p2).pending).toBe(0);
    expect(o.close(p1)).toBe(0);
    expect(o.status(DOMID_SELF, p2)).toMatchObject({ status: EVTCHNSTAT_unbound, dom: d!.id });
  });

  it("bind_virq: VIRQ_TIMER per vCPU, global VIRQs on vCPU 0 only, -EEXIST, sendVirq, close", () => {
    const { hv, domains: [d] } = machine({ hap, vcpus: 2 });
    const o = ops(hv, d!);
    const t0 = o.bindVirq(VIRQ_TIMER, 0);
    const t1 = o.bindVirq(VIRQ_TIMER, 1);
    expect([t0, t1]).toEqual([1, 2]);
    expect(o.bindVirq(VIRQ_TIMER, 0)).toBe(-XEN_EEXIST);
    expect(o.bindVirq(VIRQ_TIMER, 2)).toBe(-XEN_ENOENT);
    expect(o.bindVirq(VIRQ_TIMER, -1)).toBe(-XEN_ENOENT);
    expect(o.bindVirq(NR_VIRQS, 0)).toBe(-XEN_EINVAL);
    expect(o.bindVirq(-1, 0)).toBe(-XEN_EINVAL);
    expect(o.bindVirq(VIRQ_CONSOLE, 1)).toBe(-XEN_EINVAL); // global
    const c = o.bindVirq(VIRQ_CONSOLE, 0);
    expect(o.bindVirq(VIRQ_DEBUG, 1)).toBe(4); // per-vCPU
    expect(o.status(DOMID_SELF, t1)).toMatchObject({ status: EVTCHNSTAT_virq, virq: VIRQ_TIMER, vcpu: 1 });
    d!.xen.evtchn.sendVirq(1, VIRQ_TIMER);
    expect(bits(hv, d!, t1, 1)).toEqual({ pending: 1, masked: 0, sel: 1, upcall: 1 });
    expect(bits(hv, d!, t0, 0).pending).toBe(0);
    expect(d!.xen.upcallPending(0)).toBe(false);
    expect(d!.xen.evtchn.upcallPending(1)).toBe(true);
    d!.xen.evtchn.sendVirq(1, VIRQ_DOM_EXC); // not bound: nothing
    d!.xen.evtchn.sendVirq(7, VIRQ_TIMER); // no such vCPU: nothing
    d!.xen.evtchn.sendVirq(0, 99);
    // A global VIRQ moved to vCPU 1 with bind_vcpu is delivered there; a per-vCPU one cannot move.
    expect(o.bindVcpu(c, 1)).toBe(0);
    d!.xen.evtchn.sendVirq(0, VIRQ_CONSOLE);
    expect(bits(hv, d!, c, 1).pending).toBe(1);
    expect(o.bindVcpu(t0, 1)).toBe(-XEN_EINVAL);
    expect(o.bindVcpu(t0, 2)).toBe(-XEN_ENOENT);
    expect(o.bindVcpu(EVTCHN_2L_NR_CHANNELS, 0)).toBe(-XEN_EINVAL);
    const ipi = o.bindIpi(0);
    expect(o.bindVcpu(ipi, 1)).toBe(-XEN_EINVAL);
    expect(o.status(DOMID_SELF, ipi)).toMatchObject({ status: EVTCHNSTAT_ipi, vcpu: 0 });
    // Closing unbinds the VIRQ: it can be bound again.
    expect(o.close(t0)).toBe(0);
    d!.xen.evtchn.sendVirq(0, VIRQ_TIMER);
    expect(bits(hv, d!, t0).pending).toBe(0);
    expect(o.bindVirq(VIRQ_TIMER, 0)).toBe(t0);
    expect(d!.xen.evtchn.virqPort(0, VIRQ_TIMER)).toBe(t0);
  });

  it("bind_ipi to another vCPU notifies that vCPU's vcpu_info and wakes it when blocked", () => {
    const { hv, domains: [d] } = machine({ hap, vcpus: 2 });
    const o = ops(hv, d!);
    const p = o.bindIpi(1);
    const v1 = d!.vcpus[1]!;
    expect(v1.blocked).toBe(true); // not up: an event does not start it
    o.send(p);
    expect(v1.blocked).toBe(true);
    expect(bits(hv, d!, p, 1)).toEqual({ pending: 1, masked: 0, sel: 1, upcall: 1 });
    // A vCPU that is up and blocked (HLT, SCHEDOP_block) wakes when its upcall becomes pending.
    const v0 = d!.vcpus[0]!;
    const q = o.bindIpi(0);
    v0.blocked = true;
    const wakeups = v0.wakeups;
    o.send(q);
    expect(v0.blocked).toBe(false);
    expect(v0.wakeups).toBe(wakeups + 1);
  });

  it("reset closes every port; reset_cont without a reset in progress is -EBUSY", () => {
    const { hv, domains: [a, b] } = machine({ hap, count: 2 });
    const oa = ops(hv, a!);
    const ob = ops(hv, b!);
    const pa = oa.allocUnbound(DOMID_SELF, b!.id);
    const pb = ob.bindInterdomain(a!.id, pa);
    oa.bindIpi(0);
    oa.bindVirq(VIRQ_TIMER, 0);
    expect(oa.reset(DOMID_SELF, true)).toBe(-XEN_EBUSY);
    expect(oa.reset(DOMID_SELF)).toBe(0);
    expect(a!.xen.evtchn.activePorts).toBe(0);
    for (const p of [1, 2, 3]) expect(oa.status(DOMID_SELF, p)).toMatchObject({ status: EVTCHNSTAT_closed });
    expect(ob.status(DOMID_SELF, pb)).toMatchObject({ status: EVTCHNSTAT_unbound, dom: a!.id });
    expect(oa.bindVirq(VIRQ_TIMER, 0)).toBe(1);
    expect(oa.reset(a!.id)).toBe(0);
    expect(oa.reset(999)).toBe(-XEN_ESRCH);
  });

  it("the table stops at the ABI's 4096 ports: -ENOSPC, and nothing past port 4095 is valid", () => {
    const { hv, domains: [d] } = machine({ hap });
    const o = ops(hv, d!);
    const ec = d!.xen.evtchn;
    for (let i = 1; i < EVTCHN_2L_NR_CHANNELS; i++) expect(ec.bindIpi(0)).toBe(i);
    expect(o.bindIpi(0)).toBe(-XEN_ENOSPC);
    expect(o.allocUnbound(DOMID_SELF, 0)).toBe(-XEN_ENOSPC);
    expect(o.bindVirq(VIRQ_TIMER, 0)).toBe(-XEN_ENOSPC);
    expect(ec.validPorts).toBe(EVTCHN_2L_NR_CHANNELS);
    expect(o.send(EVTCHN_2L_NR_CHANNELS - 1)).toBe(0);
    expect(bits(hv, d!, EVTCHN_2L_NR_CHANNELS - 1).pending).toBe(1);
    for (const p of [EVTCHN_2L_NR_CHANNELS, EVTCHN_2L_NR_CHANNELS + 1, 0x7fff_ffff, 0xffff_ffff]) {
      expect(o.send(p)).toBe(-XEN_EINVAL);
      expect(o.close(p)).toBe(-XEN_EINVAL);
      expect(o.status(DOMID_SELF, p)).toBe(-XEN_EINVAL);
      expect(o.unmask(p)).toBe(-XEN_EINVAL);
    }
    // The last bit of the bitmap is the last byte of evtchn_pending: evtchn_mask is untouched.
    expect(page(hv, d!.xen.sharedInfo.hpa).subarray(shared_info.evtchn_mask, shared_info.evtchn_mask + 512).every((x) => x === 0)).toBe(true);
    // A smaller max_evtchn_port (xl's max_event_channels) is honoured.
    o.reset(DOMID_SELF);
    ec.maxPort = 3;
    expect([o.bindIpi(0), o.bindIpi(0), o.bindIpi(0), o.bindIpi(0)]).toEqual([1, 2, 3, -XEN_ENOSPC]);
  });

  it("EVTCHNOP_bind_pirq (no PIRQs), set_priority and expand_array under the 2-level ABI answer as Xen", () => {
    const { hv, domains: [d] } = machine({ hap });
    put(hv, d!, ARG, new Uint8Array(32));
    expect(call(hv, d!, EC, [EVTCHNOP_bind_pirq, ARG])).toBe(-XEN_EINVAL);
    expect(call(hv, d!, EC, [EVTCHNOP_expand_array, ARG])).toBe(-XEN_EOPNOTSUPP); // before init_control
    expect(call(hv, d!, EC, [EVTCHNOP_set_priority, ARG])).toBe(-XEN_ENOSYS); // port 0 is valid; 2-level has no priorities
    put(hv, d!, ARG, struct(8, [[0, 4, 4096]]));
    expect(call(hv, d!, EC, [EVTCHNOP_set_priority, ARG])).toBe(-XEN_EINVAL);
    expect(call(hv, d!, EC, [99, ARG])).toBe(-XEN_ENOSYS);
    expect(call(hv, d!, EC, [EVTCHNOP_send, MMIO])).toBe(-XEN_EFAULT);
    expect(call(hv, d!, EC, [EVTCHNOP_send, 0x8000_0000_0000n])).toBe(-XEN_EFAULT); // non-canonical
    // Runs off the end of RAM (on shadow the identity page table's frames follow RAM in the p2m).
    if (hap) expect(call(hv, d!, EC, [EVTCHNOP_send, d!.ramFrames * 4096 - 2])).toBe(-XEN_EFAULT);
  });

  it("a status struct is copied back whole, as Xen's __copy_to_guest does", () => {
    const { hv, domains: [d] } = machine({ hap });
    const o = ops(hv, d!);
    const p = o.bindIpi(0);
    const s = struct(evtchn_status.SIZEOF, [[evtchn_status.dom, 2, DOMID_SELF], [evtchn_status.port, 4, p], [evtchn_status.u + 4, 4, 0xdeadbeef]]);
    put(hv, d!, ARG, s);
    expect(call(hv, d!, EC, [EVTCHNOP_status, ARG])).toBe(0);
    const after = get(hv, d!, ARG, evtchn_status.SIZEOF);
    expect(u32(after, evtchn_status.status)).toBe(EVTCHNSTAT_ipi);
    expect(u32(after, evtchn_status.u + 4)).toBe(0xdeadbeef); // untouched union bytes come back as they were
    expect(d!.xen.evtchn.stateOf(p)).toBe(6);
  });
});

describe.each(modes)("dom0's event channels for the backends (hap=%s)", (hap) => {
  it("dom0 offers a port, the guest binds and sends; dom0's handler runs at dispatch, not inside the hypercall", () => {
    const { hv, domains: [g] } = machine({ hap });
    const dom0 = hv.dom0.evtchn;
    const p0 = dom0.allocUnbound(g!.id);
    expect(p0).toBe(1);
    const seen: number[] = [];
    dom0.onEvent(p0, (port) => seen.push(port));
    const og = ops(hv, g!);
    const pg = og.bindInterdomain(0, p0);
    expect(og.status(DOMID_SELF, pg)).toMatchObject({ status: EVTCHNSTAT_interdomain, dom: 0, port: p0 });
    expect(og.send(pg)).toBe(0);
    expect(seen).toEqual([]); // queued only
    expect(dom0.isPending(p0)).toBe(true);
    expect(dom0.dispatch()).toBe(1);
    expect(seen).toEqual([p0]);
    expect(dom0.isPending(p0)).toBe(false);
    expect(dom0.dispatch()).toBe(0);
    // dom0 sends: the guest's port becomes pending.
    expect(dom0.send(p0)).toBe(0);
    expect(bits(hv, g!, pg)).toMatchObject({ pending: 1, upcall: 1 });
    expect(dom0.counters.eventsSent).toBe(1);
    // The guest closes: dom0's port is unbound again, offered to the guest.
    expect(og.close(pg)).toBe(0);
    expect(dom0.status(p0)).toMatchObject({ status: EVTCHNSTAT_unbound, dom: g!.id });
    expect(dom0.send(p0)).toBe(0);
    expect(dom0.close(p0)).toBe(0);
    expect(dom0.close(p0)).toBe(-XEN_EINVAL);
  });

  it("dom0 binds to a port the guest offered it (alloc_unbound remote 0); the new port starts pending", () => {
    const { hv, domains: [g] } = machine({ hap });
    const og = ops(hv, g!);
    const pg = og.allocUnbound(DOMID_SELF, 0);
    const dom0 = hv.dom0.evtchn;
    expect(dom0.bindInterdomain(g!.id, pg + 1)).toBe(-XEN_EINVAL);
    expect(dom0.bindInterdomain(999, pg)).toBe(-XEN_ESRCH);
    const p0 = dom0.bindInterdomain(g!.id, pg);
    expect(p0).toBe(1);
    expect(dom0.takePending()).toEqual([p0]);
    expect(og.send(pg)).toBe(0);
    expect(og.send(pg)).toBe(0); // still pending: queued once
    expect(dom0.takePending()).toEqual([p0]);
    expect(dom0.takePending()).toEqual([]);
    // Ports without a handler stay queued through dispatch.
    og.send(pg);
    expect(dom0.dispatch()).toBe(0);
    expect(dom0.takePending()).toEqual([p0]);
  });

  it("destroying a guest closes its channels: dom0's and the other guest's ports become unbound", () => {
    const { hv, domains: [a, b] } = machine({ hap, count: 2 });
    const dom0 = hv.dom0.evtchn;
    const p0 = dom0.allocUnbound(a!.id);
    const oa = ops(hv, a!);
    const ob = ops(hv, b!);
    oa.bindInterdomain(0, p0);
    const pb = ob.allocUnbound(DOMID_SELF, a!.id);
    oa.bindInterdomain(b!.id, pb);
    const freeBefore = hv.frames.freeFrames;
    const held = a!.framesHeld;
    hv.destroyDomain(a!.id);
    expect(dom0.status(p0)).toMatchObject({ status: EVTCHNSTAT_unbound, dom: a!.id });
    expect(ob.status(DOMID_SELF, pb)).toMatchObject({ status: EVTCHNSTAT_unbound, dom: a!.id });
    expect(ob.send(pb)).toBe(0);
    expect(ob.bindInterdomain(a!.id, 1)).toBe(-XEN_ESRCH);
    expect(hv.frames.freeFrames).toBe(freeBefore + held); // shared_info went back with the rest
  });
});

describe("hostile event_channel_op: any op number and struct bytes, any pointer", () => {
  const errnos = new Set([0, -XEN_EPERM, -XEN_ENOENT, -XEN_ESRCH, -XEN_EFAULT, -XEN_EACCES, -XEN_EBUSY, -XEN_EEXIST, -XEN_EINVAL, -XEN_ENOSPC, -XEN_ENOSYS, -XEN_EOPNOTSUPP]);
  for (const hap of modes) {
    for (const long of [true, false]) {
      it(`never throws, answers Xen errnos, leaves the other domain's memory byte-identical (${mmu(hap)}, ${long ? "64" : "32"}-bit)`, () => {
        const { hv, domains: [attacker, victim] } = machine({ hap, count: 2, long });
        const a = attacker!;
        const v = victim!;
        const ramBefore = ramOf(hv, v);
        const siBefore = page(hv, v.xen.sharedInfo.hpa);
        const ptr = fc.oneof(
          fc.constant(ARG),
          fc.constant(ARG + 4096 - 3), // the struct runs into the next page (RAM: fine)
          fc.constant(a.ramFrames * 4096 - 4), // runs off the end of RAM
          fc.constant(MMIO),
          fc.constant(0xfec0_0000), // the IO-APIC page
          fc.constant(0x1_0000_0000), // beyond the identity map
          fc.constant(-0x1000), // the top of the address space
          fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
        );
        const call1 = fc.record({
          cmd: fc.oneof(fc.integer({ min: 0, max: 16 }), fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 })),
          bytes: fc.uint8Array({ minLength: 32, maxLength: 32 }),
          port: fc.oneof(fc.integer({ min: 0, max: 80 }), fc.constantFrom(4095, 4096, 4097, 0x7fff_ffff, 0xffff_ffff)),
          dom: fc.constantFrom(DOMID_SELF, a.id, v.id, 0, 0x7ff1, 0xffff),
          ptr,
        });
        fc.assert(
          fc.property(fc.array(call1, { minLength: 1, maxLength: 40 }), (calls) => {
            for (const c of calls) {
              const b = c.bytes.slice();
              const dv = new DataView(b.buffer);
              // Often make the struct meaningful: a port and a domain where the ops read them.
              if (c.port % 3 !== 0) {
                dv.setUint32(4, c.port, true);
                dv.setUint32(0, c.port, true);
                dv.setUint16(0, c.dom, true);
              }
              put(hv, a, ARG, b);
              const rc = call(hv, a, EC, [c.cmd, c.ptr]);
              expect(errnos.has(rc), `cmd ${c.cmd} -> ${rc}`).toBe(true);
            }
            expect(a.xen.evtchn.validPorts).toBeLessThanOrEqual(EVTCHN_2L_NR_CHANNELS);
            expect(a.state).toBe("running");
          }),
          { numRuns: 100, seed: 12 },
        );
        expect(sameBytes(ramOf(hv, v), ramBefore)).toBe(true);
        expect(sameBytes(page(hv, v.xen.sharedInfo.hpa), siBefore)).toBe(true);
      });
    }
  }
});
