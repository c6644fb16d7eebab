/**
 * Copying out of a guest's memory by guest-linear address (Xen's copy_from_guest / hvm_copy_from_guest_linear):
 * page by page through the guest's own paging (`MemoryVirtualizer.gvaToGpa`, which answers with
 * guest paging on or off, on EPT and on shadow paging alike), then through the p2m to machine
 * memory. Only p2m RAM and grant mappings are read (`Domain.ramHpa`): a page the p2m marks
 * MMIO, or nothing, ends the copy, so emulated device registers are never read as memory.
 */
import { Access, PAGE_SIZE } from "@vtlab/arch";
import { wrap64 } from "@vtlab/cpu-vmx";
import type { ExitContext } from "./exits.js";

/**
 * Copy up to `length` bytes at guest-linear `linear` of the exiting vCPU into `out` (from index 0),
 * translating each page with `access` (`Access.Read` by default; `Access.Fetch` for instruction
 * bytes; add `Access.User` to check as CPL 3 does). The address wraps as the vCPU's mode wraps it
 * (2^64 in 64-bit mode, 2^32 otherwise). Stops at the first byte whose page the guest's tables do
 * not map with that access or whose guest-physical page is not RAM, or whose address is not
 * canonical in 64-bit mode (`isGuestLinear`); returns the bytes copied. Allocates nothing.
 */
/**
 * Whether `linear` is an address the vCPU can reference: in 64-bit mode a canonical one (bits
 * 63:47, or 63:56 with LA57, all equal: SDM Vol. 1 3.3.7.1), else any 32-bit one. A hypercall
 * argument is a signed number from the register's halves (HypercallArgs.ptr), exact when
 * canonical; a non-canonical register stays outside the canonical range however it rounds, so it
 * is refused (Xen's copy_from_guest fails on it: -EFAULT) instead of being read as a low address.
 */
export function isGuestLinear(ctx: ExitContext, linear: number): boolean {
  const cpu = ctx.vcpu.cpu;
  if (!cpu.mode64) return linear >= 0 && linear < 2 ** 32;
  const limit = cpu.paging.la57 ? 2 ** 56 : 2 ** 47;
  return linear >= -limit && linear < limit;
}

export function copyFromGuest(ctx: ExitContext, linear: number, out: Uint8Array, length: number, access: number = Access.Read): number {
  const { domain: d, vcpu: v, hv } = ctx;
  const cpu = v.cpu;
  const mode64 = cpu.mode64;
  const memory = hv.memory;
  const want = Math.min(length, out.length);
  let n = 0;
  while (n < want) {
    const at = mode64 ? wrap64(linear + n) : (linear + n) >>> 0;
    if (!isGuestLinear(ctx, at)) break;
    const gpa = d.paging.gvaToGpa(cpu, at, access);
    if (typeof gpa !== "number") break;
    const hpa = d.ramHpa(gpa);
    if (hpa === undefined) break;
    const inPage = Math.min(want - n, PAGE_SIZE - (gpa % PAGE_SIZE));
    for (let k = 0; k < inPage; k++) {
      const b = memory.read8(hpa + k);
      if (typeof b !== "number") return n + k;
      out[n + k] = b;
    }
    n += inPage;
  }
  return n;
}

/**
 * Copy `length` bytes of `from` (from index 0) to guest-linear `linear` of the exiting vCPU
 * (Xen's copy_to_guest / hvm_copy_to_guest_linear): page by page through the guest's paging with
 * a write access (plus `Access.User` if given in `access`), then through the p2m; only p2m RAM
 * and writable grant mappings are written. Stops at the first page that does not translate for
 * writing or is neither; returns
 * the bytes copied (a short count is the caller's -EFAULT); a non-canonical address copies
 * nothing. Allocates nothing.
 *
 * Modelled more simply than Xen: a write into a page the shadow code has write-protected as a
 * guest page table does not resync its shadows (the guest can only confuse its own translation;
 * shadow entries still come from its own p2m).
 */
export function copyToGuest(ctx: ExitContext, linear: number, from: Uint8Array, length: number, access: number = Access.Write): number {
  const { domain: d, vcpu: v, hv } = ctx;
  const cpu = v.cpu;
  const mode64 = cpu.mode64;
  const memory = hv.memory;
  const want = Math.min(length, from.length);
  let n = 0;
  while (n < want) {
    const at = mode64 ? wrap64(linear + n) : (linear + n) >>> 0;
    if (!isGuestLinear(ctx, at)) break;
    const gpa = d.paging.gvaToGpa(cpu, at, access | Access.Write);
    if (typeof gpa !== "number") break;
    const hpa = d.ramHpa(gpa, true);
    if (hpa === undefined) break;
    const inPage = Math.min(want - n, PAGE_SIZE - (gpa % PAGE_SIZE));
    for (let k = 0; k < inPage; k++) memory.write8(hpa + k, from[n + k]!);
    // Code decoded from that frame by any vCPU is stale now (a guest may run what we wrote).
    const frame = Math.floor(hpa / PAGE_SIZE);
    hv.machineFrameWritten(frame);
    n += inPage;
  }
  return n;
}
