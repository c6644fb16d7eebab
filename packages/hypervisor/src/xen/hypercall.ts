/**
 * The hypercall table (Xen's xen/arch/x86/hvm/hypercall.c, hvm_hypercall): a VMCALL exit with the
 * number in RAX. Arguments come from RDI, RSI, RDX, R10, R8 in 64-bit mode and from EBX, ECX,
 * EDX, ESI, EDI otherwise; the result goes to RAX (a negative Xen errno on failure, sign-extended).
 * A hypercall from CPL > 0 is -EPERM (Xen: "hypercalls from user mode are not allowed" for HVM);
 * a number nobody implements is -ENOSYS and is counted by number; the dom0-only families
 * (domctl, sysctl, platform_op) answer -EPERM to a guest, as Xen's XSM default does.
 *
 * Every handler reads guest memory only through copy_from_guest / copy_to_guest
 * (guest-memory.ts), validates what it copied, and answers with Xen's errno: nothing a guest
 * passes can make a handler throw.
 */
import {
  HYPERVISOR_console_io,
  HYPERVISOR_domctl,
  HYPERVISOR_event_channel_op,
  HYPERVISOR_grant_table_op,
  HYPERVISOR_hvm_op,
  HYPERVISOR_memory_op,
  HYPERVISOR_platform_op,
  HYPERVISOR_sched_op,
  HYPERVISOR_set_timer_op,
  HYPERVISOR_sysctl,
  HYPERVISOR_vcpu_op,
  HYPERVISOR_vm_assist,
  HYPERVISOR_xen_version,
  XEN_ENOSYS,
  XEN_EPERM,
} from "@vtlab/xen-public";
import type { ExitContext } from "../exits.js";
import { HypercallArgs, registerHypercall, table } from "./table.js";
import { do_console_io } from "./console.js";
import { do_event_channel_op } from "./event_channel.js";
import { do_grant_table_op } from "./grant_table.js";
import { do_hvm_op } from "./hvm_op.js";
import { do_memory_op } from "./memory.js";
import { do_sched_op, do_set_timer_op } from "./sched.js";
import { do_vcpu_op } from "./vcpu.js";
import { do_vm_assist } from "./vm_assist.js";
import { do_xen_version } from "./xen_version.js";

const DOM0_ONLY = new Map<number, string>([
  [HYPERVISOR_domctl, "domctl"],
  [HYPERVISOR_sysctl, "sysctl"],
  [HYPERVISOR_platform_op, "platform_op"],
]);

// The table, by number; names as xen.h spells them without __HYPERVISOR_.
registerHypercall(HYPERVISOR_memory_op, "memory_op", do_memory_op);
registerHypercall(HYPERVISOR_set_timer_op, "set_timer_op", do_set_timer_op);
registerHypercall(HYPERVISOR_xen_version, "xen_version", do_xen_version);
registerHypercall(HYPERVISOR_console_io, "console_io", do_console_io);
registerHypercall(HYPERVISOR_grant_table_op, "grant_table_op", do_grant_table_op);
registerHypercall(HYPERVISOR_vcpu_op, "vcpu_op", do_vcpu_op);
registerHypercall(HYPERVISOR_sched_op, "sched_op", do_sched_op);
registerHypercall(HYPERVISOR_event_channel_op, "event_channel_op", do_event_channel_op);
registerHypercall(HYPERVISOR_hvm_op, "hvm_op", do_hvm_op);
registerHypercall(HYPERVISOR_vm_assist, "vm_assist", do_vm_assist);

export { HypercallArgs, registerHypercall, hypercallName } from "./table.js";
export type { HypercallHandler } from "./table.js";

/** 64-bit argument registers: RDI, RSI, RDX, R10, R8. */
const ARGS64 = [7, 6, 2, 10, 8] as const;
/** 32-bit argument registers: EBX, ECX, EDX, ESI, EDI. */
const ARGS32 = [3, 1, 2, 6, 7] as const;
const args = new HypercallArgs();

/** What `hypercall` returns when the handler created a continuation: leave RAX and RIP alone. */
export const HYPERCALL_PREEMPTED = Symbol("hypercall preempted");

/**
 * Run the hypercall in RAX; returns the value for RAX (a negative Xen errno on failure), or
 * HYPERCALL_PREEMPTED when the guest must re-execute the VMCALL for the rest of the work (the
 * argument registers were updated).
 */
export function hypercall(ctx: ExitContext): number | typeof HYPERCALL_PREEMPTED {
  const cpu = ctx.vcpu.cpu;
  const stats = ctx.domain.xen.stats;
  ctx.domain.hypercalls++;
  const long = cpu.mode64;
  const nrHi = long ? cpu.hi[0]! : 0;
  const nr = cpu.lo[0]! >>> 0;
  if (cpu.cpl !== 0) {
    stats.countHypercall("(from CPL > 0)");
    return -XEN_EPERM;
  }
  const dom0Only = nrHi === 0 ? DOM0_ONLY.get(nr) : undefined;
  if (dom0Only !== undefined) {
    stats.countHypercall(dom0Only);
    return -XEN_EPERM;
  }
  const entry = nrHi === 0 ? table.get(nr) : undefined;
  if (entry === undefined) {
    stats.countUnknown(nrHi === 0 ? nr : nrHi * 2 ** 32 + nr);
    return -XEN_ENOSYS;
  }
  stats.countHypercall(entry.name);
  args.long = long;
  args.preempted = false;
  const regs = long ? ARGS64 : ARGS32;
  for (let i = 0; i < 5; i++) {
    const r = regs[i]!;
    args.lo[i] = cpu.lo[r]!;
    args.hi[i] = long ? cpu.hi[r]! : 0;
  }
  const result = entry.handler(ctx, args);
  if (!args.preempted) return result;
  for (let i = 0; i < 5; i++) {
    const r = regs[i]!;
    cpu.lo[r] = args.lo[i]!;
    if (long) cpu.hi[r] = args.hi[i]!;
    else cpu.hi[r] = 0;
  }
  stats.continuations++;
  return HYPERCALL_PREEMPTED;
}
