/**
 * HYPERVISOR_sched_op (Xen's do_sched_op) from 32-bit guests on EPT and shadow: shutdown with
 * each reason and the exit code / state it leaves, shutdown_code, remote_shutdown, yield,
 * block, poll's argument checks, the watchdog; the vCPU runstate (get_runstate_info,
 * register_runstate_memory_area); and hostile sched_op / vcpu_op / set_timer_op calls driven
 * straight through the hypercall table (fast-check), which never throw and answer Xen errnos.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Hypervisor, RUNSTATE_NAMES, hypercall, type Domain, type Vcpu } from "@vtlab/hypervisor";
import { VmcsField } from "@vtlab/cpu-vmx";
import {
  EVTCHNOP_alloc_unbound,
  EVTCHNOP_bind_virq,
  HYPERVISOR_sched_op,
  HYPERVISOR_set_timer_op,
  HYPERVISOR_vcpu_op,
  HVM_PARAM_CALLBACK_IRQ,
  RUNSTATE_blocked,
  RUNSTATE_offline,
  RUNSTATE_running,
  RUNSTATE_runnable,
  SCHEDOP_block,
  SCHEDOP_pin_override,
  SCHEDOP_poll,
  SCHEDOP_remote_shutdown,
  SCHEDOP_shutdown,
  SCHEDOP_shutdown_code,
  SCHEDOP_watchdog,
  SCHEDOP_yield,
  SHUTDOWN_crash,
  SHUTDOWN_poweroff,
  SHUTDOWN_reboot,
  SHUTDOWN_soft_reset,
  SHUTDOWN_suspend,
  SHUTDOWN_watchdog,
  VCPUOP_get_runstate_info,
  VCPUOP_register_runstate_memory_area,
  VIRQ_TIMER,
  XEN_EFAULT,
  XEN_EINVAL,
  XEN_ENOSPC,
  XEN_ENOSYS,
  XEN_EPERM,
  XEN_ESRCH,
  XEN_ETIME,
  XEN_ENOENT,
  XEN_EEXIST,
  XEN_ENXIO,
  XEN_EBUSY,
  XEN_ENOMEM,
  compat_sched_poll,
  compat_vcpu_runstate_info,
  evtchn_alloc_unbound,
  evtchn_bind_virq,
  sched_remote_shutdown,
  sched_shutdown,
  sched_watchdog,
  vcpu_info,
  vcpu_runstate_info,
} from "@vtlab/xen-public";
import { Asm, DATA, HAPS, OUT, booted, image, mmu, page, run, struct } from "./sched-guest.js";
import { SPIN, direct64Kernel } from "./tiny-kernel.js";

const shutdown = (reason: number) => struct(sched_shutdown.SIZEOF, [[sched_shutdown.reason, 4, reason]]);

describe("SCHEDOP_shutdown and SCHEDOP_shutdown_code", () => {
  for (const hap of HAPS) {
    it(`SHUTDOWN_poweroff shuts the domain down with exit code 0; nothing after the call runs (${mmu(hap)})`, () => {
      const g = run(new Asm().schedOp(SCHEDOP_shutdown, DATA).inc(OUT).exit(0x55), { hap, data: shutdown(SHUTDOWN_poweroff) });
      expect(g.d.state).toBe("shutdown");
      expect(g.d.exitCode).toBe(0);
      expect(g.d.shutdownCode).toBe(SHUTDOWN_poweroff);
      expect(g.d.shutdownReason).toBe("SCHEDOP_shutdown(SHUTDOWN_poweroff)");
      expect(g.d.crashReason).toBeUndefined();
      expect(g.u32(OUT)).toBe(0);
    });

    it(`SHUTDOWN_crash crashes the domain, so the toolstack's on_crash applies (${mmu(hap)})`, () => {
      const g = run(new Asm().schedOp(SCHEDOP_shutdown, DATA).exit(0x55), { hap, data: shutdown(SHUTDOWN_crash) });
      expect(g.d.state).toBe("crashed");
      expect(g.d.crashReason).toBe("SCHEDOP_shutdown(SHUTDOWN_crash)");
      expect(g.d.exitCode).toBeUndefined();
    });
  }

  it("reboot, suspend, watchdog and soft_reset stop the domain with their code and no exit code; any other byte too", () => {
    for (const [reason, code] of [
      [SHUTDOWN_reboot, SHUTDOWN_reboot],
      [SHUTDOWN_suspend, SHUTDOWN_suspend],
      [SHUTDOWN_watchdog, SHUTDOWN_watchdog],
      [SHUTDOWN_soft_reset, SHUTDOWN_soft_reset],
      [7, 7],
      [0x1ff, 0xff], // Xen takes (u8)reason
      [0x100, SHUTDOWN_poweroff],
    ] as const) {
      const g = run(new Asm().schedOp(SCHEDOP_shutdown, DATA).exit(0x55), { hap: true, data: shutdown(reason) });
      expect(g.d.state, `reason ${reason}`).toBe("shutdown");
      expect(g.d.shutdownCode, `reason ${reason}`).toBe(code);
      expect(g.d.exitCode, `reason ${reason}`).toBe(code === SHUTDOWN_poweroff ? 0 : undefined);
    }
    const g = run(new Asm().schedOp(SCHEDOP_shutdown, DATA).exit(0x55), { hap: false, data: shutdown(SHUTDOWN_reboot) });
    expect(g.d.shutdownReason).toBe("SCHEDOP_shutdown(SHUTDOWN_reboot)");
  });

  it("a code recorded with SCHEDOP_shutdown_code wins over the reason of the later shutdown; the first recorded code stays", () => {
    const data = page([
      [0, shutdown(SHUTDOWN_reboot)],
      [16, shutdown(SHUTDOWN_crash)],
      [32, shutdown(SHUTDOWN_poweroff)],
    ]);
    const code = new Asm()
      .schedOp(SCHEDOP_shutdown_code, DATA)
      .storeEax(OUT)
      .schedOp(SCHEDOP_shutdown_code, DATA + 16)
      .storeEax(OUT + 4)
      .schedOp(SCHEDOP_shutdown, DATA + 32)
      .exit(0x55);
    for (const hap of HAPS) {
      const g = run(code, { hap, data });
      expect(g.i32(OUT)).toBe(0);
      expect(g.i32(OUT + 4)).toBe(0);
      expect(g.d.state).toBe("shutdown");
      expect(g.d.shutdownCode).toBe(SHUTDOWN_reboot);
      expect(g.d.exitCode).toBeUndefined();
    }
  });

  it("an unreadable sched_shutdown is -EFAULT and the domain keeps running", () => {
    for (const hap of HAPS) {
      for (const bad of [0x7ff_fffe, 0xfee0_0000, 0xffff_fffe]) {
        const g = run(new Asm().schedOp(SCHEDOP_shutdown, bad).storeEax(OUT).schedOp(SCHEDOP_shutdown_code, bad).storeEax(OUT + 4).exit(0x33), { hap });
        expect(g.i32(OUT), `0x${bad.toString(16)}`).toBe(-XEN_EFAULT);
        expect(g.i32(OUT + 4)).toBe(-XEN_EFAULT);
        expect(g.d.exitCode).toBe(0x33);
        expect(g.d.shutdownCode).toBeUndefined();
      }
    }
  });
});

describe("SCHEDOP_remote_shutdown, pin_override, unknown commands", () => {
  it("a guest may not shut another domain down: -EPERM for domains that exist (dom0, itself), -ESRCH otherwise", () => {
    const remote = (domid: number) => struct(sched_remote_shutdown.SIZEOF, [[sched_remote_shutdown.domain_id, 2, domid], [sched_remote_shutdown.reason, 4, SHUTDOWN_poweroff]]);
    const data = page([
      [0, remote(0)],
      [16, remote(1)],
      [32, remote(999)],
      [48, remote(0x7ff0)], // DOMID_SELF is not an id rcu_lock_domain_by_id knows
    ]);
    const code = new Asm();
    [0, 16, 32, 48].forEach((off, i) => code.schedOp(SCHEDOP_remote_shutdown, DATA + off).storeEax(OUT + 4 * i));
    code.schedOp(SCHEDOP_remote_shutdown, 0xfee0_0000).storeEax(OUT + 16);
    code.schedOp(SCHEDOP_pin_override, DATA).storeEax(OUT + 20);
    code.schedOp(99, DATA).storeEax(OUT + 24);
    code.schedOp(-1, DATA).storeEax(OUT + 28);
    code.exit(0x44);
    const g = run(code, { hap: true, data });
    expect([0, 1, 2, 3, 4, 5, 6, 7].map((i) => g.i32(OUT + 4 * i))).toEqual([-XEN_EPERM, -XEN_EPERM, -XEN_ESRCH, -XEN_ESRCH, -XEN_EFAULT, -XEN_EPERM, -XEN_ENOSYS, -XEN_ENOSYS]);
    expect(g.d.exitCode).toBe(0x44);
  });
});

describe("SCHEDOP_yield and SCHEDOP_block", () => {
  it("yield returns 0 and ends the slice: a vCPU that yields in a loop is switched once per yield", () => {
    const code = new Asm();
    const top = code.here;
    code.schedOp(SCHEDOP_yield, 0).storeEax(OUT + 4).inc(OUT).jmp(top);
    const hv = new Hypervisor({ memoryMiB: 64, sliceInstructions: 1_000_000 });
    const d = hv.createDomain({ name: "y", memoryMiB: 8, kernel: image(code) });
    hv.run({ maxInstructions: 200_000 });
    const g = booted(hv, d);
    expect(g.i32(OUT + 4)).toBe(0);
    // Each slice: the yield's VMCALL exit ends it; the next slice runs inc, jmp, and the next yield.
    expect(hv.slicesRun - g.u32(OUT)).toBeLessThanOrEqual(1);
    expect(g.u32(OUT)).toBeGreaterThan(100);
    expect(d.instructions / hv.slicesRun).toBeLessThan(12);
  });

  for (const hap of HAPS) {
    it(`block with nothing pending blocks until an event arrives; it clears evtchn_upcall_mask first (${mmu(hap)})`, () => {
      const hv = new Hypervisor({ memoryMiB: 64 });
      const d = hv.createDomain({ name: "b", memoryMiB: 8, hap, kernel: image(new Asm().schedOp(SCHEDOP_block, 0).storeEax(OUT).exit(0x66)) });
      const info = d.xen.sharedInfo.vcpuInfoHpa(0)!;
      hv.memory.write8(info + vcpu_info.evtchn_upcall_mask, 1);
      expect(hv.run({ maxInstructions: 100_000 }).reason).toBe("idle");
      const v = d.vcpus[0]!;
      expect(d.state).toBe("running");
      expect(v.blocked).toBe(true);
      expect(v.runstate.state).toBe(RUNSTATE_blocked);
      expect(hv.memory.read8(info + vcpu_info.evtchn_upcall_mask)).toBe(0);
      // An upcall for vCPU 0 (what the event-channel code raises) wakes it: the call returns 0.
      hv.memory.write8(info + vcpu_info.evtchn_upcall_pending, 1);
      v.blocked = false;
      hv.run({ maxInstructions: 100_000 });
      expect(d.exitCode).toBe(0x66);
      expect(booted(hv, d).i32(OUT)).toBe(0);
    });
  }

  it("block does not block when an event is waiting for delivery: the callback vector's upcall pending and interrupts open (hvm_local_events_need_delivery)", () => {
    for (const hap of HAPS) {
      const hv = new Hypervisor({ memoryMiB: 64 });
      const d = hv.createDomain({ name: "b", memoryMiB: 8, hap, kernel: image(new Asm().forever()) });
      hv.run({ maxInstructions: 1_000 });
      const v = d.vcpus[0]!;
      const info = d.xen.sharedInfo.vcpuInfoHpa(0)!;
      const setIf = (on: boolean) => v.vmcs.setField(VmcsField.GUEST_RFLAGS, on ? 0x202 : 0x2);
      const block = () => {
        v.blocked = false;
        const rc = call(hv, d, HYPERVISOR_sched_op, [SCHEDOP_block, 0]);
        return { rc, blocked: v.blocked };
      };
      hv.memory.write8(info + vcpu_info.evtchn_upcall_pending, 1);
      setIf(true);
      // No callback set: an upcall pending is not an interrupt waiting, so the vCPU blocks.
      expect(block()).toEqual({ rc: 0, blocked: true });
      // HVM_PARAM_CALLBACK_IRQ = vector 0xf3 (type 2 in bits 63:56).
      expect(d.xen.setHvmParam(HVM_PARAM_CALLBACK_IRQ, (2n << 56n) | 0xf3n)).toBe(0);
      expect(block()).toEqual({ rc: 0, blocked: false });
      // Interrupts disabled (hvm_interrupt_blocked): it blocks until an event kicks it.
      setIf(false);
      expect(block()).toEqual({ rc: 0, blocked: true });
      // An STI shadow blocks it too.
      setIf(true);
      v.vmcs.setField(VmcsField.GUEST_INTERRUPTIBILITY_INFO, 1);
      expect(block()).toEqual({ rc: 0, blocked: true });
      v.vmcs.setField(VmcsField.GUEST_INTERRUPTIBILITY_INFO, 0);
      expect(block()).toEqual({ rc: 0, blocked: false });
      expect(d.crashReason).toBeUndefined();
    }
  });
});

describe("SCHEDOP_poll argument checks", () => {
  const poll = (ports: number, nr: number, timeout = 0) =>
    struct(compat_sched_poll.SIZEOF, [[compat_sched_poll.ports, 4, ports], [compat_sched_poll.nr_ports, 4, nr], [compat_sched_poll.timeout, 8, timeout]]);
  it("more than 128 ports, a port that is not a usable channel, an unreadable array or struct: Xen's errnos, no blocking", () => {
    const PORTS = DATA + 0x400;
    const data = page([
      [0x000, poll(PORTS, 129)],
      [0x020, poll(PORTS, 0xffff_ffff)],
      [0x040, poll(PORTS, 1)], // port 0: reserved
      [0x060, poll(PORTS + 4, 1)], // port 4095: past the allocated ports
      [0x080, poll(PORTS + 8, 1)], // port 4096: past the 2-level ABI
      [0x0a0, poll(0x7ff_fffe, 1)], // the array runs off the end of RAM
      [0x0c0, poll(0xfee0_0000, 1)], // the array is the local APIC page
      [0x400, struct(12, [[0, 4, 0], [4, 4, 4095], [8, 4, 4096]])],
    ]);
    const code = new Asm();
    for (let i = 0; i < 7; i++) code.schedOp(SCHEDOP_poll, DATA + 0x20 * i).storeEax(OUT + 4 * i);
    code.schedOp(SCHEDOP_poll, 0x7ff_fff8).storeEax(OUT + 28); // the struct runs off the end of RAM
    code.exit(0x11);
    for (const hap of HAPS) {
      const g = run(code, { hap, data });
      expect([0, 1, 2, 3, 4, 5, 6, 7].map((i) => g.i32(OUT + 4 * i)), mmu(hap)).toEqual([-XEN_EINVAL, -XEN_EINVAL, -XEN_EINVAL, -XEN_EINVAL, -XEN_EINVAL, -XEN_EFAULT, -XEN_EFAULT, -XEN_EFAULT]);
      expect(g.d.exitCode).toBe(0x11);
      expect(g.d.vcpus[0]!.xenTimers.polling).toBe(false);
    }
  });

  it("a poll on an unbound port with nothing pending blocks until the timeout", () => {
    const PORTS = DATA + 0x400;
    const alloc = struct(evtchn_alloc_unbound.SIZEOF, [[evtchn_alloc_unbound.dom, 2, 0x7ff0], [evtchn_alloc_unbound.remote_dom, 2, 0]]);
    const data = page([
      [0x000, poll(PORTS, 1, 3_000_000)],
      [0x100, alloc],
    ]);
    const code = new Asm()
      .evtchnOp(EVTCHNOP_alloc_unbound, DATA + 0x100)
      .copy32(DATA + 0x100 + evtchn_alloc_unbound.port, PORTS)
      .schedOp(SCHEDOP_poll, DATA)
      .storeEax(OUT)
      .rdtsc(OUT + 8)
      .exit(0x12);
    for (const hap of HAPS) {
      const g = run(code, { hap, data });
      expect(g.i32(OUT)).toBe(0);
      // 3 ms at 2 GHz: the poll timed out, at the cycle the deadline fell on (the idle host jumped there).
      expect(g.u64(OUT + 8)).toBeGreaterThanOrEqual(6_000_000);
      expect(g.u64(OUT + 8)).toBeLessThan(6_000_100);
      expect(g.d.exitCode).toBe(0x12);
    }
  });
});

describe("SCHEDOP_watchdog", () => {
  const wd = (id: number, timeout: number) => struct(sched_watchdog.SIZEOF, [[sched_watchdog.id, 4, id], [sched_watchdog.timeout, 4, timeout]]);
  it("id 0 allocates one of two watchdogs; a known id re-arms or (timeout 0) frees; other ids -EINVAL", () => {
    const data = page([
      [0x00, wd(0, 100)],
      [0x10, wd(0, 100)],
      [0x20, wd(0, 100)],
      [0x30, wd(3, 100)],
      [0x40, wd(2, 0)],
      [0x50, wd(2, 5)],
      [0x60, wd(1, 100)],
    ]);
    const code = new Asm();
    for (let i = 0; i < 7; i++) code.schedOp(SCHEDOP_watchdog, DATA + 0x10 * i).storeEax(OUT + 4 * i);
    code.schedOp(SCHEDOP_watchdog, 0xfee0_0000).storeEax(OUT + 28);
    code.exit(0x21);
    const g = run(code, { hap: true, data });
    expect([0, 1, 2, 3, 4, 5, 6, 7].map((i) => g.i32(OUT + 4 * i))).toEqual([1, 2, -XEN_ENOSPC, -XEN_EINVAL, 0, -XEN_EINVAL, 0, -XEN_EFAULT]);
  });

  for (const hap of HAPS) {
    it(`an armed watchdog that is not re-armed shuts the domain down with SHUTDOWN_watchdog at its timeout (${mmu(hap)})`, () => {
      const g = run(new Asm().schedOp(SCHEDOP_watchdog, DATA).storeEax(OUT).schedOp(SCHEDOP_block, 0).exit(0x22), { hap, data: wd(0, 2) });
      expect(g.i32(OUT)).toBe(1);
      expect(g.d.state).toBe("shutdown");
      expect(g.d.shutdownCode).toBe(SHUTDOWN_watchdog);
      expect(g.d.shutdownReason).toBe("SCHEDOP_watchdog(SHUTDOWN_watchdog)");
      expect(g.hv.clock.nanoseconds).toBeGreaterThanOrEqual(2e9);
      expect(g.hv.clock.nanoseconds).toBeLessThan(2e9 + 1000);
    });
  }
});

/** Decode a runstate info (native or compat layout). */
function runstate(view: DataView, compat: boolean): { state: number; entry: number; time: number[] } {
  const L = compat ? compat_vcpu_runstate_info : vcpu_runstate_info;
  const u64 = (off: number) => view.getUint32(off + 4, true) * 2 ** 32 + view.getUint32(off, true);
  return { state: view.getInt32(L.state, true), entry: u64(L.state_entry_time), time: [0, 1, 2, 3].map((i) => u64(L.time + 8 * i)) };
}

describe("the runstate (VCPUOP_get_runstate_info, register_runstate_memory_area)", () => {
  for (const hap of HAPS) {
    it(`get_runstate_info of the running vCPU: running, and the times add up to the system time (${mmu(hap)})`, () => {
      const code = new Asm().spin(10_000).rdtsc(OUT).vcpuOp(VCPUOP_get_runstate_info, 0, OUT + 0x100).storeEax(OUT + 0x10).rdtsc(OUT + 8).exit(0x31);
      const g = run(code, { hap });
      expect(g.i32(OUT + 0x10)).toBe(0);
      const r = runstate(g.read(OUT + 0x100, compat_vcpu_runstate_info.SIZEOF), true);
      expect(RUNSTATE_NAMES[r.state]).toBe("running");
      const sum = r.time.reduce((a, b) => a + b, 0);
      // System time at 2 GHz is TSC / 2; the vCPU ran from boot.
      expect(sum).toBeGreaterThanOrEqual(Math.floor(g.u64(OUT) / 2));
      expect(sum).toBeLessThanOrEqual(Math.floor(g.u64(OUT + 8) / 2));
      expect(r.time[RUNSTATE_running]).toBe(sum);
    });
  }

  it("get_runstate_info of a vCPU that was never brought up: offline since the domain was built; vCPU 9: -ENOENT; a bad buffer: -EFAULT", () => {
    const code = new Asm()
      .spin(1000)
      .vcpuOp(VCPUOP_get_runstate_info, 1, OUT + 0x100)
      .storeEax(OUT)
      .vcpuOp(VCPUOP_get_runstate_info, 9, OUT + 0x100)
      .storeEax(OUT + 4)
      .vcpuOp(VCPUOP_get_runstate_info, 0, 0x7ff_fff0)
      .storeEax(OUT + 8)
      .exit(0x32);
    const g = run(code, { hap: false, vcpus: 2 });
    expect([g.i32(OUT), g.i32(OUT + 4), g.i32(OUT + 8)]).toEqual([0, -XEN_ENOENT, -XEN_EFAULT]);
    const r = runstate(g.read(OUT + 0x100, compat_vcpu_runstate_info.SIZEOF), true);
    expect(r.state).toBe(RUNSTATE_offline);
    expect(r.entry).toBe(0);
    expect(r.time.slice(0, 3)).toEqual([0, 0, 0]);
    expect(r.time[RUNSTATE_offline]).toBeGreaterThan(0);
  });

  it("two domains sharing the host CPU: each vCPU's time is split between running and runnable, and sums to the system time", () => {
    const hv = new Hypervisor({ memoryMiB: 64, sliceInstructions: 10_000 });
    const code = new Asm().spin(200_000).vcpuOp(VCPUOP_get_runstate_info, 0, OUT + 0x100).exit(0x34);
    const a = hv.createDomain({ name: "a", memoryMiB: 8, kernel: image(code) });
    const b = hv.createDomain({ name: "b", memoryMiB: 8, kernel: image(code) });
    hv.run({ maxInstructions: 2_000_000 });
    for (const d of [a, b]) {
      const g = booted(hv, d);
      const r = runstate(g.read(OUT + 0x100, compat_vcpu_runstate_info.SIZEOF), true);
      expect(r.state).toBe(RUNSTATE_running);
      expect(r.time[RUNSTATE_running]).toBeGreaterThan(150_000);
      expect(r.time[RUNSTATE_runnable]).toBeGreaterThan(150_000);
      expect(r.time[RUNSTATE_blocked]).toBe(0);
      // Host-side: the domain was built at system time 0, so the closed states add up to when the current one began.
      const rs = d.vcpus[0]!.runstate;
      expect(rs.time.reduce((x, y) => x + y, 0)).toBe(rs.entry);
    }
  });

  for (const hap of HAPS) {
    it(`a registered runstate area is written at every context switch through the vCPU's paging (${mmu(hap)})`, () => {
      const hv = new Hypervisor({ memoryMiB: 64, sliceInstructions: 10_000 });
      const AREA = OUT + 0x200;
      const code = new Asm().mov(0, AREA).storeEax(DATA).vcpuOp(VCPUOP_register_runstate_memory_area, 0, DATA).storeEax(OUT).spin(100_000).schedOp(SCHEDOP_block, 0).exit(0x35);
      const a = hv.createDomain({ name: "a", memoryMiB: 8, hap, kernel: image(code) });
      hv.createDomain({ name: "spin", memoryMiB: 8, hap, kernel: image(new Asm().spin(100_000).exit(1)) });
      hv.run({ maxInstructions: 1_000_000 });
      const g = booted(hv, a);
      expect(g.i32(OUT)).toBe(0);
      const rs = a.vcpus[0]!.runstate;
      expect(rs.areaWrites).toBeGreaterThan(10);
      expect(rs.areaFaults).toBe(0);
      // The last switch out: the vCPU blocked in SCHEDOP_block.
      const r = runstate(g.read(AREA, compat_vcpu_runstate_info.SIZEOF), true);
      expect(r.state).toBe(RUNSTATE_blocked);
      expect(r.time).toEqual(Array.from(rs.time));
      expect(r.entry).toBe(rs.entry);
      expect(r.time[RUNSTATE_running]).toBeGreaterThan(50_000);
      expect(r.time[RUNSTATE_runnable]).toBeGreaterThan(0);
    });
  }

  it("an area whose address does not translate is taken (0) and simply not written; a null handle unregisters", () => {
    const code = new Asm()
      .mov(0, 0xfee0_0000)
      .storeEax(DATA)
      .vcpuOp(VCPUOP_register_runstate_memory_area, 0, DATA)
      .storeEax(OUT)
      .vcpuOp(VCPUOP_register_runstate_memory_area, 0, 0x7ff_fffc)
      .storeEax(OUT + 4)
      .schedOp(SCHEDOP_yield, 0)
      .mov(0, 0)
      .storeEax(DATA)
      .vcpuOp(VCPUOP_register_runstate_memory_area, 0, DATA)
      .storeEax(OUT + 8)
      .schedOp(SCHEDOP_yield, 0)
      .exit(0x36);
    for (const hap of HAPS) {
      const g = run(code, { hap });
      expect([g.i32(OUT), g.i32(OUT + 4), g.i32(OUT + 8)]).toEqual([0, -XEN_EFAULT, 0]);
      const rs = g.d.vcpus[0]!.runstate;
      expect(rs.area).toBeUndefined();
      expect(rs.areaWrites).toBe(0);
      expect(rs.areaFaults).toBeGreaterThanOrEqual(2);
      expect(g.d.exitCode).toBe(0x36);
    }
  });

  it("a 64-bit caller gets the x86_64 layout", () => {
    const hv = new Hypervisor({ memoryMiB: 64, sliceInstructions: 2_000 });
    const d = hv.createDomain({ name: "l", memoryMiB: 8, kernel: direct64Kernel(SPIN) });
    hv.run({ maxInstructions: 10_000 });
    expect(call(hv, d, HYPERVISOR_vcpu_op, [VCPUOP_get_runstate_info, 0, 0x20_0000])).toBe(0);
    const r = runstate(booted(hv, d).read(0x20_0000, vcpu_runstate_info.SIZEOF), false);
    expect(r.state).toBe(RUNSTATE_runnable); // driven from the host between slices: switched out
    expect(r.time[RUNSTATE_running]).toBeGreaterThan(0);
    expect(r.time.reduce((x, y) => x + y, 0)).toBe(Math.floor(hv.clock.nanoseconds));
  });
});

// ---- hostile calls through the hypercall table ----

const setReg = (v: Vcpu, r: number, lo: number, hi: number) => {
  v.cpu.lo[r] = lo | 0;
  v.cpu.hi[r] = hi | 0;
};

/** Make hypercall `nr` on vCPU 0 as its VMCALL exit would, with [lo, hi] argument registers (or numbers). */
function call(hv: Hypervisor, d: Domain, nr: number, args: readonly (number | readonly [number, number])[]): number {
  const v = d.vcpus[0]!;
  const regs = v.cpu.mode64 ? [7, 6, 2, 10, 8] : [3, 1, 2, 6, 7];
  setReg(v, 0, nr, 0);
  args.forEach((a, i) => (typeof a === "number" ? setReg(v, regs[i]!, a, a < 0 ? -1 : Math.floor(a / 2 ** 32)) : setReg(v, regs[i]!, a[0], a[1])));
  const rc = hypercall({ hv, domain: d, vcpu: v });
  if (typeof rc !== "number") throw new Error("hypercall preempted");
  return rc;
}

/** Every errno these calls may answer with (Xen's errno.h), negated. */
const ERRNOS = new Set([XEN_EFAULT, XEN_EINVAL, XEN_ENOSPC, XEN_ENOSYS, XEN_EPERM, XEN_ESRCH, XEN_ETIME, XEN_ENOENT, XEN_EEXIST, XEN_ENXIO, XEN_EBUSY, XEN_ENOMEM].map((e) => -e));

describe("hostile sched_op, vcpu_op and set_timer_op (fast-check)", () => {
  const ARG = 0x20_0000;
  const pointers = (long: boolean) =>
    fc.constantFrom<readonly [number, number]>(
      [ARG, 0],
      [ARG + 0xffc, 0], // crosses into the next page
      [0x7ff_fffc, 0], // runs off the end of RAM
      [0xfee0_0000, 0], // the local APIC page
      [0xffff_fffc, 0], // wraps at 4 GiB in 32-bit mode
      [0, 0],
      ...(long ? ([[0, 0x8000], [0xffff_f000, -1], [ARG, 0x1_0000]] as const) : []),
    );
  const u32 = fc.oneof(fc.constantFrom(0, 1, 2, 3, 127, 128, 129, 4095, 4096, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff), fc.integer({ min: 0, max: 0xffff_ffff }));
  const word = fc.tuple(u32, u32);
  const command = (long: boolean) =>
    fc.oneof(
      fc.record({ nr: fc.constant(HYPERVISOR_sched_op), cmd: fc.integer({ min: -2, max: 9 }), arg: pointers(long), vcpu: fc.constant(0) }),
      fc.record({ nr: fc.constant(HYPERVISOR_vcpu_op), cmd: fc.integer({ min: 3, max: 14 }), arg: pointers(long), vcpu: fc.constantFrom(0, 1, 2, 0xffff_ffff) }),
      fc.record({ nr: fc.constant(HYPERVISOR_set_timer_op), cmd: fc.constant(0), arg: word, vcpu: fc.constant(0) }),
    );
  // Contents of the argument page: u64 deadlines near now, at 2^63, huge periods, random words.
  const contents = fc.array(fc.oneof(u32, fc.constantFrom(0x8000_0000, 0x4000_0000, 0x3fff_ffff)), { minLength: 64, maxLength: 64 });

  for (const long of [false, true]) {
    for (const hap of HAPS) {
      it(`never throws and answers 0, a watchdog id or a Xen errno; the other domain's memory is untouched (${long ? "64" : "32"}-bit, ${mmu(hap)})`, () => {
        const hv = new Hypervisor({ memoryMiB: 96, sliceInstructions: 2_000 });
        const d = hv.createDomain({ name: "h", memoryMiB: 8, hap, vcpus: 2, kernel: long ? direct64Kernel(SPIN) : image(new Asm().forever()) });
        const other = hv.createDomain({ name: "o", memoryMiB: 4, hap, kernel: image(new Asm().forever()) });
        hv.run({ maxInstructions: 10_000 });
        // A VIRQ_TIMER binding, so that timers that fire set a pending bit.
        const bind = struct(evtchn_bind_virq.SIZEOF, [[evtchn_bind_virq.virq, 4, VIRQ_TIMER]]);
        for (let i = 0; i < bind.length; i++) hv.memory.write8(d.ramHpa(ARG + 0x800 + i)!, bind[i]!);
        call(hv, d, 32, [EVTCHNOP_bind_virq, ARG + 0x800]);
        const otherBefore = snapshot(hv, other);
        fc.assert(
          fc.property(fc.array(fc.tuple(command(long), contents), { minLength: 1, maxLength: 8 }), (cmds) => {
            for (const [c, words] of cmds) {
              for (let i = 0; i < words.length; i++) hv.memory.write32(d.ramHpa(ARG + 4 * i)!, words[i]!);
              const args: (number | readonly [number, number])[] = c.nr === HYPERVISOR_set_timer_op ? (long ? [c.arg] : [c.arg[0], c.arg[1]]) : c.nr === HYPERVISOR_vcpu_op ? [c.cmd, c.vcpu, c.arg] : [c.cmd, c.arg];
              const rc = call(hv, d, c.nr, args);
              const ok = rc === 0 || (c.nr === HYPERVISOR_sched_op && c.cmd === SCHEDOP_watchdog && (rc === 1 || rc === 2)) || (c.nr === HYPERVISOR_vcpu_op && c.cmd === 3 && (rc === 0 || rc === 1)) || ERRNOS.has(rc);
              if (!ok) return false;
              // Let the host run a little: due timers fire, polls time out, blocked vCPUs wake.
              if (d.vcpus[0]!.blocked && d.state === "running") d.vcpus[0]!.blocked = false;
              hv.run({ maxInstructions: 3_000 });
            }
            return true;
          }),
          { numRuns: 60, seed: long ? 12 : 21 },
        );
        expect(snapshot(hv, other)).toEqual(otherBefore);
        expect(hv.clock.nanoseconds).toBeLessThan(2 ** 52);
      });
    }
  }
});

/** A digest of a domain's RAM (every byte, as 32-bit words summed with their index). */
function snapshot(hv: Hypervisor, d: Domain): number[] {
  const out: number[] = [];
  for (let gpa = 0; gpa < d.ramFrames * 4096; gpa += 4096) {
    let h = 0;
    const base = d.ramHpa(gpa)!;
    for (let k = 0; k < 4096; k += 4) h = (Math.imul(h, 31) + (hv.memory.read32(base + k) as number)) | 0;
    out.push(h);
  }
  return out;
}
