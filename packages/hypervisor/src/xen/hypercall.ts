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
  HYPERVISOR_domctl,
  HYPERVISOR_platform_op,
  HYPERVISOR_sysctl,
  HYPERVISOR_vcpu_op,
  XEN_ENOSYS,
  XEN_EPERM,
} from "@vtlab/xen-public";
import type { ExitContext } from "../exits.js";
import { do_vcpu_op } from "./vcpu.js";

/**
 * The five argument registers of one hypercall, read once at the exit. `int`/`uint` give the low
 * 32 bits (C `int` / `unsigned int` parameters); `ptr` a guest-linear address (a
 * XEN_GUEST_HANDLE): the full 64-bit register in 64-bit mode as cpu-vmx's regAddr gives it, the
 * low 32 bits otherwise; `ulong` an unsigned long (64-bit in 64-bit mode), exact below 2^53.
 */
export class HypercallArgs {
  /** Low and high halves of each argument register. */
  readonly lo = new Int32Array(5);
  readonly hi = new Int32Array(5);
  long = false;
  int(i: number): number {
    return this.lo[i]! | 0;
  }
  uint(i: number): number {
    return this.lo[i]! >>> 0;
  }
  /** A guest-linear address: sign-extended 64-bit in long mode (negative for the upper half), else 32-bit. */
  ptr(i: number): number {
    return this.long ? this.hi[i]! * 2 ** 32 + (this.lo[i]! >>> 0) : this.lo[i]! >>> 0;
  }
  /** An unsigned long: the full register in 64-bit mode (exact below 2^53), else 32 bits. */
  ulong(i: number): number {
    return this.long ? (this.hi[i]! >>> 0) * 2 ** 32 + (this.lo[i]! >>> 0) : this.lo[i]! >>> 0;
  }
  /** Bits 63:32 of the register (0 outside 64-bit mode). */
  high(i: number): number {
    return this.long ? this.hi[i]! >>> 0 : 0;
  }
}

export type HypercallHandler = (ctx: ExitContext, args: HypercallArgs) => number;

interface HypercallEntry {
  readonly name: string;
  readonly handler: HypercallHandler;
}

/** The table: hypercall number to its name (as xen.h spells it, without __HYPERVISOR_) and handler. */
const table = new Map<number, HypercallEntry>();

/** Install a hypercall family (each xen/*.ts registers its own at module load via registerHypercalls). */
export function registerHypercall(nr: number, name: string, handler: HypercallHandler): void {
  if (table.has(nr)) throw new Error(`vtlab bug: hypercall ${nr} registered twice`);
  table.set(nr, { name, handler });
}

/** The name of hypercall `nr` as xen.h spells it (without __HYPERVISOR_), or undefined if vtlab does not implement it. */
export function hypercallName(nr: number): string | undefined {
  return table.get(nr)?.name;
}

const DOM0_ONLY = new Map<number, string>([
  [HYPERVISOR_domctl, "domctl"],
  [HYPERVISOR_sysctl, "sysctl"],
  [HYPERVISOR_platform_op, "platform_op"],
]);

registerHypercall(HYPERVISOR_vcpu_op, "vcpu_op", do_vcpu_op);

/** 64-bit argument registers: RDI, RSI, RDX, R10, R8. */
const ARGS64 = [7, 6, 2, 10, 8] as const;
/** 32-bit argument registers: EBX, ECX, EDX, ESI, EDI. */
const ARGS32 = [3, 1, 2, 6, 7] as const;
const args = new HypercallArgs();

/** Run the hypercall in RAX; returns the value for RAX (a negative Xen errno on failure). */
export function hypercall(ctx: ExitContext): number {
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
  const regs = long ? ARGS64 : ARGS32;
  for (let i = 0; i < 5; i++) {
    const r = regs[i]!;
    args.lo[i] = cpu.lo[r]!;
    args.hi[i] = long ? cpu.hi[r]! : 0;
  }
  return entry.handler(ctx, args);
}
