/**
 * Segment descriptors and segment-register loads (SDM Vol. 3A ch. 3 and 5, the MOV/POP Sreg,
 * far JMP/CALL pseudo-code): reading a descriptor from the GDT or LDT, the protected-mode checks
 * for data, stack and code segments, and real-address-mode loads (selector << 4). Modelled more
 * simply than hardware: segment limits are not checked outside 64-bit mode (see cpu.ts).
 * From cpu.ts this module imports only types.
 */
import { Access, Vector } from "@vtlab/arch";
import type { Cpu, SegmentCache } from "../cpu.js";
import { EFER_LMA, SEG_ATTR_ACCESSED, SEG_ATTR_DB, SEG_ATTR_L, SEG_ATTR_S, Seg } from "../regs.js";

/** `loadDescriptor` with the EXT bit of the error code for faults raised while delivering an event. */
export function loadDescriptorExt(cpu: Cpu, selector: number, vector: number, ext: number): SegmentCache {
  const index = selector & 0xfff8;
  const ldt = (selector & 4) !== 0;
  const limit = ldt ? cpu.ldtr.limit : cpu.gdtrLimit;
  if (index + 7 > limit) cpu.fault(vector, (selector & 0xfffc) + ext);
  return cpu.loadDescriptor(selector, vector);
}

/** Read a segment descriptor from the GDT (or LDT) for `selector`; #GP(selector) when out of limits. */
export function loadDescriptor(cpu: Cpu, selector: number, vector: number = Vector.GP): SegmentCache {
  const index = selector & 0xfff8;
  const table = (selector & 4) !== 0 ? cpu.ldtr : undefined;
  const base = table !== undefined ? table.base : cpu.gdtrBase;
  const limit = table !== undefined ? table.limit : cpu.gdtrLimit;
  if (index === 0 && table === undefined) cpu.fault(vector, 0);
  if (index + 7 > limit) cpu.fault(vector, selector & 0xfffc);
  const lo = cpu.readAccess(base + index, 4, Access.Read | Access.Implicit) >>> 0;
  const hi = cpu.readAccess(base + index + 4, 4, Access.Read | Access.Implicit) >>> 0;
  const attr = (hi >>> 8) & 0xf0ff;
  let segLimit = (lo & 0xffff) | (hi & 0xf0000);
  if ((attr & 0x8000) !== 0) segLimit = segLimit * 4096 + 0xfff;
  const segBase = (lo >>> 16) | ((hi & 0xff) << 16) | (hi & 0xff000000);
  return { selector, base: segBase >>> 0, limit: segLimit >>> 0, attr };
}

/**
 * Set the accessed bit (type bit 0) of the code or data segment descriptor `selector` names, as
 * the processor does when it loads the selector into a segment register (SDM Vol. 3A 3.4.5.1):
 * an implicit supervisor write of the descriptor's type byte, made only when the bit is clear
 * (so a read-only GDT whose descriptors are accessed already, as Linux's, is never written; one
 * whose descriptors are not faults, as on hardware). Call it after the load's checks and before
 * anything is committed. Returns the attributes with the bit set, for the segment register.
 * Modelled more simply: the write is a plain byte store, not the locked read-modify-write of the
 * descriptor hardware does.
 */
export function markAccessed(cpu: Cpu, selector: number, attr: number): number {
  if ((attr & (SEG_ATTR_S | SEG_ATTR_ACCESSED)) !== SEG_ATTR_S) return attr; // a system descriptor, or accessed already
  const table = (selector & 4) !== 0 ? cpu.ldtr.base : cpu.gdtrBase;
  cpu.physWrite(cpu.translate(table + (selector & 0xfff8) + 5, Access.Write | Access.Implicit), 1, (attr & 0xff) | SEG_ATTR_ACCESSED);
  return attr | SEG_ATTR_ACCESSED;
}

/** Load a data segment register (MOV Sreg, POP Sreg) with the protected-mode checks that matter. */
export function loadDataSegment(cpu: Cpu, s: number, selector: number): void {
  const cache = cpu.seg[s] as SegmentCache;
  if (cpu.realMode) {
    // Real-address mode: selector and base only; the cached limit and attributes stay (SDM 20.1.1).
    cache.selector = selector;
    cache.base = selector * 16;
    return;
  }
  if ((selector & 0xfffc) === 0) {
    if (s === Seg.SS && (!cpu.mode64 || cpu.cpl === 3)) cpu.gp(0);
    cache.selector = selector;
    cache.attr = 0;
    if (!cpu.mode64 || s < Seg.FS) cache.base = 0;
    return;
  }
  const d = cpu.loadDescriptor(selector);
  if ((d.attr & 0x10) === 0) cpu.gp(selector & 0xfffc);
  if (s === Seg.SS) {
    if ((d.attr & 0x0a) !== 0x02 || (selector & 3) !== cpu.cpl || ((d.attr >>> 5) & 3) !== cpu.cpl) cpu.gp(selector & 0xfffc);
    if ((d.attr & 0x80) === 0) cpu.fault(Vector.SS, selector & 0xfffc);
  } else {
    if ((d.attr & 0x0a) === 0x08) cpu.gp(selector & 0xfffc); // execute-only code
    if ((d.attr & 0x80) === 0) cpu.fault(Vector.NP, selector & 0xfffc);
  }
  const attr = markAccessed(cpu, selector, d.attr);
  cache.selector = selector;
  cache.attr = attr;
  cache.limit = d.limit;
  if (!cpu.mode64 || s < Seg.FS) cache.base = d.base;
  else if (s >= Seg.FS) cache.base = d.base; // a selector load sets FS/GS base from the descriptor's 32-bit base
  if (s === Seg.SS) cpu.updateMode();
}

/**
 * Load CS for a far JMP or CALL straight to a code segment (SDM "JMP", "CALL", protected and
 * IA-32e mode): a nonconforming segment needs RPL <= CPL and DPL = CPL, a conforming one
 * DPL <= CPL, else #GP(selector); CPL does not change and CS.RPL becomes CPL. Call gates, task
 * gates and TSS selectors are not modelled: they are system descriptors, #GP(selector) here.
 */
export function loadCodeSegment(cpu: Cpu, selector: number): void {
  if (cpu.realMode) {
    const c = cpu.seg[Seg.CS] as SegmentCache;
    c.selector = selector;
    c.base = selector * 16;
    cpu.updateMode();
    return;
  }
  const d = cpu.codeDescriptor(selector, (selector & 3) > cpu.cpl ? -1 : cpu.cpl);
  const attr = markAccessed(cpu, selector, d.attr);
  const cs = cpu.seg[Seg.CS] as SegmentCache;
  cs.selector = (selector & 0xfffc) | cpu.cpl;
  cs.base = d.base;
  cs.limit = d.limit;
  cs.attr = attr;
  cpu.updateMode();
}

/**
 * The code-segment descriptor for `selector`, checked for a transfer to privilege level `pl`
 * (-1: refused, #GP(selector)): a code segment, DPL = pl when nonconforming or DPL <= pl when
 * conforming, present (#NP), and not L = 1 with D = 1 in IA-32e mode.
 */
export function codeDescriptor(cpu: Cpu, selector: number, pl: number): SegmentCache {
  const sel = selector & 0xfffc;
  const d = cpu.loadDescriptor(selector);
  if ((d.attr & 0x18) !== 0x18 || pl < 0) cpu.gp(sel);
  const dpl = (d.attr >>> 5) & 3;
  if ((d.attr & 0x04) !== 0 ? dpl > pl : dpl !== pl) cpu.gp(sel);
  if ((d.attr & 0x80) === 0) cpu.fault(Vector.NP, sel);
  if ((cpu.efer & EFER_LMA) !== 0 && (d.attr & SEG_ATTR_L) !== 0 && (d.attr & SEG_ATTR_DB) !== 0) cpu.gp(sel);
  return d;
}
