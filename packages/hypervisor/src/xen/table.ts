/**
 * The hypercall registry: number to name and handler; hypercall.ts fills it with every family's
 * handler (xen/*.ts export theirs as do_<name>, as Xen names them).
 */
import type { ExitContext } from "../exits.js";

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
  /**
   * Set by a handler that did part of its work and wants the guest to re-execute the VMCALL for
   * the rest (Xen's hypercall_create_continuation for HVM: RIP stays on the VMCALL, RAX keeps the
   * number, the argument registers carry the updated arguments from `setArg`).
   */
  preempted = false;
  /** Update argument `i` (the low 32 bits, or a full 64-bit value in 64-bit mode) for a continuation. */
  setArg(i: number, value: number): void {
    this.lo[i] = value | 0;
    this.hi[i] = this.long ? Math.floor(value / 2 ** 32) | 0 : 0;
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
export const table = new Map<number, HypercallEntry>();

/** Install a hypercall family's handler (hypercall.ts does, for the whole table). */
export function registerHypercall(nr: number, name: string, handler: HypercallHandler): void {
  if (table.has(nr)) throw new Error(`vtlab bug: hypercall ${nr} registered twice`);
  table.set(nr, { name, handler });
}

/** The name of hypercall `nr` as xen.h spells it (without __HYPERVISOR_), or undefined if vtlab does not implement it. */
export function hypercallName(nr: number): string | undefined {
  return table.get(nr)?.name;
}

