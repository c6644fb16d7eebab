/**
 * Native (TypeScript) guest kernels on a real vCPU.
 *
 * A native kernel is a generator function. It receives vCPU 0's `NativeGuestOps` (cpu-vmx's
 * direct execution: every load, store, port access, CPUID, MSR, HLT and VMCALL runs the
 * interpreter's own handler on the vCPU in VMX non-root operation, with the same controls and
 * exits) and `yield`s whenever it would block or has done a step of work. The hypervisor's exit
 * dispatch is the `NativeGuestEnvironment`'s `onExit`, so a VMCALL is the same hypercall, a #PF
 * under shadow paging the same shadow fill, an OUT the same device-model access as for machine
 * code.
 *
 * The model, and where it is simpler than a CPU:
 * - Boot state: the builder's direct 64-bit boot (builder/pvh.ts) of a tiny ELF image
 *   (`nativeBootImage`): long mode, CPL 0, paging on the builder's identity map of the first
 *   4 GiB, so guest-virtual = guest-physical for the kernel. The image's one instruction is never
 *   run; RIP stays at its entry, where each operation notionally sits.
 * - Scheduling: a slice is one step of the generator, from one `yield` to the next: a `yield` is
 *   where the kernel gives up the CPU (it blocked in SCHEDOP_poll, or waits for another domain),
 *   so the scheduler runs other domains and dom0's dispatch between steps. Each operation
 *   retires one instruction and each exit is charged its modelled cost, as in the interpreter's
 *   slice; a step after which the vCPU is still runnable costs at least NATIVE_YIELD_COST. A kernel cannot be preempted between two
 *   `yield`s: a step that retires more than `NATIVE_STEP_LIMIT` instructions crashes the domain
 *   (checked when it yields), so a runaway kernel cannot hold the host for long.
 * - Interrupts: a native kernel has no IDT. It runs with RFLAGS.IF = 0 and waits for events by
 *   polling (SCHEDOP_poll on its ports, then the shared_info pending bits). An event the
 *   hypervisor would inject (an exception reflected to the guest) crashes the domain with the
 *   vector, as a triple fault would.
 * - A kernel that throws (its own bug, or a fault on its own memory, see pv-frontends' GuestMemory)
 *   crashes its domain with the message; returning powers the domain off.
 */
import { type Cpu, NativeGuestOps, type VmExit, type Vmcs, VmcsField as F, vmEntry } from "@vtlab/cpu-vmx";
import { vmEntryFailure } from "./outcomes.js";

/** A native guest kernel: a generator over vCPU 0's GuestOps; `yield` where it would block. */
export type NativeKernel = (ops: NativeGuestOps) => Generator<void, void, void>;

/** Instructions one step of a native kernel (between two yields) may retire before the domain is crashed. */
export const NATIVE_STEP_LIMIT = 1_000_000;

/** Instruction-times charged at least for a step after which the vCPU is still runnable. */
export const NATIVE_YIELD_COST = 1000;

const INTR_INFO_VALID = 0x8000_0000;

/**
 * vCPU 0's GuestOps, with the step limit enforced inside a step: an operation past
 * NATIVE_STEP_LIMIT instructions since the step began throws, which ends the step (and crashes
 * the domain) even if the kernel never yields.
 */
class BoundedNativeOps extends NativeGuestOps {
  stepStart = 0;
  private check(): void {
    if (this.cpu.retired - this.stepStart > NATIVE_STEP_LIMIT) throw new Error(`one step retired more than ${NATIVE_STEP_LIMIT} instructions without yielding`);
  }
  override load(gva: number, size: 1 | 2 | 4 | 8) {
    this.check();
    return super.load(gva, size);
  }
  override store(gva: number, size: 1 | 2 | 4 | 8, value: number) {
    this.check();
    return super.store(gva, size, value);
  }
  override vmcall() {
    this.check();
    return super.vmcall();
  }
  override portIn(port: number, size: 1 | 2 | 4) {
    this.check();
    return super.portIn(port, size);
  }
  override portOut(port: number, size: 1 | 2 | 4, value: number) {
    this.check();
    return super.portOut(port, size, value);
  }
}

/** The native kernel's state on its vCPU. */
export class NativeVcpu {
  private readonly bounded: BoundedNativeOps;
  private gen: Generator<void, void, void> | undefined;
  /** VM exits its operations caused. */
  exits = 0;
  /** Steps (generator resumptions) run. */
  steps = 0;
  finished = false;

  constructor(
    cpu: Cpu,
    private readonly kernel: NativeKernel,
    onExit: (exit: VmExit) => void,
  ) {
    this.bounded = new BoundedNativeOps(cpu, {
      onExit: (exit) => {
        this.exits++;
        onExit(exit);
      },
    });
  }

  get ops(): NativeGuestOps {
    return this.bounded;
  }

  /** Resume the kernel to its next yield: "yield", "done", or the message it threw. */
  step(): "yield" | "done" | { readonly error: string } {
    try {
      this.bounded.stepStart = this.bounded.cpu.retired;
      this.gen ??= this.kernel(this.bounded);
      this.steps++;
      const r = this.gen.next();
      if (r.done === true) {
        this.finished = true;
        return "done";
      }
      return "yield";
    } catch (e) {
      this.finished = true;
      return { error: e instanceof Error ? e.message : String(e) };
    }
  }
}

/** What a native slice needs from the hypervisor (its private exit dispatch and timer polling). */
export interface NativeSliceHost {
  readonly instructionCost: number;
  readonly exitCost: number;
  advanceClock(cycles: number): void;
  pollApics(): void;
}

/** The vCPU a native slice runs (structurally the hypervisor's Vcpu). */
export interface NativeSliceVcpu {
  readonly cpu: Cpu;
  readonly vmcs: Vmcs;
  launched: boolean;
  inGuest: boolean;
  readonly blocked: boolean;
  readonly xenTimers: { yieldRequested: boolean };
  readonly domain: { readonly state: string; crash(reason: string): void; shutdownWith(reason: number, origin: string): void };
}

/**
 * One scheduler slice of a native vCPU: enter (VMLAUNCH the first time), step the kernel until
 * the budget is spent or the vCPU blocks or yields. Returns instructions retired and the slice
 * time charged (instructions plus exits at their cost), like the interpreter's slice.
 */
export function runNativeSlice(host: NativeSliceHost, v: NativeSliceVcpu, native: NativeVcpu, budget: number): { retired: number; charged: number } {
  const d = v.domain;
  let retired = 0;
  let exitCharge = 0;
  if (!v.inGuest) {
    // Nothing to inject (a native kernel has no IDT; see onExit below); a long preemption timer,
    // since the slice is bounded by the kernel's steps, not by the timer.
    v.vmcs.setField(F.VMX_PREEMPTION_TIMER_VALUE, 0xffff_ffff);
    const fail = vmEntry(v.cpu, v.vmcs, !v.launched);
    if (fail !== undefined) {
      d.crash(vmEntryFailure(fail));
      return { retired: 0, charged: 0 };
    }
    v.launched = true;
    v.inGuest = true;
  }
  if (d.state === "running" && !v.blocked && !native.finished && budget > 0) {
    const before = v.cpu.retired;
    const exitsBefore = native.exits;
    const r = native.step();
    const n = v.cpu.retired - before;
    retired += n;
    exitCharge += ((native.exits - exitsBefore) * host.exitCost) / host.instructionCost;
    // A step that leaves the vCPU runnable costs at least NATIVE_YIELD_COST instruction-times
    // (a kernel's idle-loop turn), so a kernel spinning on `yield` spends the host's budget and
    // lets the clock move; a step that blocked costs what it retired (at least one).
    const time = v.blocked ? Math.max(1, n) : Math.max(NATIVE_YIELD_COST, n);
    host.advanceClock(time * host.instructionCost);
    exitCharge += time - n;
    host.pollApics();
    if (r === "done") d.shutdownWith(0, "native kernel returned: SCHEDOP_shutdown");
    else if (r !== "yield") d.crash(`native kernel: ${r.error}`);
    else if (n > NATIVE_STEP_LIMIT) d.crash(`native kernel: one step retired ${n} instructions without yielding (limit ${NATIVE_STEP_LIMIT})`);
  }
  return { retired, charged: retired + exitCharge };
}

/**
 * After the hypervisor handled a native vCPU's exit: an event it wants injected cannot be
 * delivered (no IDT), so the domain crashes with it, as a triple fault would end it.
 */
export function nativeAfterExit(v: NativeSliceVcpu): void {
  const info = v.vmcs.read32(F.VM_ENTRY_INTR_INFO_FIELD);
  if ((info & INTR_INFO_VALID) === 0) return;
  v.vmcs.setField(F.VM_ENTRY_INTR_INFO_FIELD, 0);
  v.domain.crash(`native kernel: vector ${info & 0xff} injected (a native kernel has no IDT)`);
}

/**
 * The boot image of a native domain: an ELF64 executable with one PT_LOAD segment of one HLT at
 * 1 MiB and no PVH note or Multiboot header, so the builder boots it directly in 64-bit mode on
 * its identity map. Its code never runs: the native kernel's operations execute at its entry.
 */
export function nativeBootImage(): Uint8Array {
  const EHDR = 64;
  const PHDR = 56;
  const image = new Uint8Array(EHDR + PHDR + 16);
  const v = new DataView(image.buffer);
  const base = 0x10_0000;
  image.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1], 0); // ELFMAG, ELFCLASS64, ELFDATA2LSB, EV_CURRENT
  v.setUint16(16, 2, true); // e_type ET_EXEC
  v.setUint16(18, 62, true); // e_machine EM_X86_64
  v.setUint32(20, 1, true); // e_version
  v.setUint32(24, base, true); // e_entry
  v.setUint32(32, EHDR, true); // e_phoff
  v.setUint16(52, EHDR, true); // e_ehsize
  v.setUint16(54, PHDR, true); // e_phentsize
  v.setUint16(56, 1, true); // e_phnum
  const p = EHDR;
  v.setUint32(p + 0, 1, true); // p_type PT_LOAD
  v.setUint32(p + 4, 5, true); // p_flags R+X
  v.setUint32(p + 8, EHDR + PHDR, true); // p_offset
  v.setUint32(p + 16, base, true); // p_vaddr
  v.setUint32(p + 24, base, true); // p_paddr
  v.setUint32(p + 32, 16, true); // p_filesz
  v.setUint32(p + 40, 16, true); // p_memsz
  v.setUint32(p + 48, 0x1000, true); // p_align
  image[EHDR + PHDR] = 0xf4; // hlt
  return image;
}
