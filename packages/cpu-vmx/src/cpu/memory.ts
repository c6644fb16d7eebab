/**
 * Memory by linear address: the VPID-tagged TLB, translation (the `@vtlab/arch` page walker,
 * with every guest-physical reference through EPT when it is on), the read and write fast paths
 * over the TLB's host frames, the slow paths (a miss, MMIO, a page split, a store into decoded
 * code), machine memory and devices behind it, and the stack.
 *
 * The TLB's arrays are fields of `Cpu` (so the fast paths, here and in generated code, read them
 * with one load); the functions here take the `Cpu` they work on. From cpu.ts this module imports
 * only types.
 */
import { INVVPID_ALL_CONTEXT, INVVPID_INDIVIDUAL_ADDRESS, INVVPID_SINGLE_CONTEXT_RETAINING_GLOBALS } from "../vmx/controls.js";
import {
  Access,
  PdpteLoadStatus,
  Vector,
  WalkStatus,
  checkAccessRights,
  loadPaePdptes,
  walkLinear,
  type PagingLevel,
  type PagingStructureAccess,
  type U64,
} from "@vtlab/arch";
import type { Cpu, SegmentCache } from "../cpu.js";
import { CR0_PG, Seg } from "../regs.js";
import { ExitReason } from "../vmx/exit-reasons.js";
import { EPT_QUAL_FINAL, EPT_QUAL_LINEAR_VALID, EptAccess, GuestReference, type EptMisconfig, type EptViolation } from "../vmx/interfaces.js";
import { codeStored } from "./code-cache.js";
import { TWO_32, TWO_47, TWO_56, wrap64, wrapAdd } from "./int64.js";
import {
  OK_SUP_FETCH,
  OK_SUP_READ,
  OK_SUP_WRITE,
  OK_USER_FETCH,
  OK_USER_READ,
  OK_USER_WRITE,
  TLB_LARGE,
  TLB_LISTED,
  TLB_MASK,
  TLB_SHIFT_POS,
  TLB_MAX_SETS,
  clearTlbSet,
  newTlbSet,
  type TlbSet,
} from "./tlb.js";


/**
 * Load the PDPTE registers from the PDPT at `cr3` (SDM 4.4.1), for MOV to CR3 in PAE paging and
 * the MOV to CR0 or CR4 that enters or changes it. A present PDPTE with a reserved bit is #GP(0)
 * and loads nothing. Under EPT each read is a guest-physical reference EPT translates; an EPT
 * violation there exits without a valid guest-linear address (SDM 28.2.1).
 */
export function loadPdptes(cpu: Cpu, cr3: number): void {
  const ept = cpu.eptActive;
  const r = loadPaePdptes(ept ? cpu.eptTables : cpu.tables, cr3, cpu.paging.maxPhyAddr, cpu.pdpte, cpu.pdpteScratch);
  if (r.status === PdpteLoadStatus.Ok) {
    cpu.flushTlb(false);
    return;
  }
  if (r.status === PdpteLoadStatus.AccessFault && ept) {
    const f = r.accessFault as EptViolation | EptMisconfig;
    if (f.kind === "ept-misconfig") cpu.vmExit(ExitReason.EptMisconfig, 0, 0, { guestPhysical: f.gpa });
    cpu.vmExit(ExitReason.EptViolation, f.qualification, 0, { guestPhysical: f.gpa });
  }
  // Reserved bits, or a PDPT outside machine memory (reads as all ones: reserved bits set).
  cpu.gp(0);
}

/** Flush the TLB; `keepGlobal` keeps global entries (a CR3 load with CR4.PGE = 1). */
export function flushTlb(cpu: Cpu, keepGlobal: boolean): void {
  // Only entries filled since the last flush can be valid: invalidate those (a VM entry or exit
  // without VPID flushes, so this must cost what the guest used, not the TLB's size).
  const list = cpu.tlbFilled;
  let kept = 0;
  for (let k = 0; k < cpu.tlbFilledCount; k++) {
    const i = list[k]!;
    if (keepGlobal && (cpu.tlbFlags[i]! & 1) !== 0 && cpu.tlbTag[i] === cpu.tlbTag[i]) {
      list[kept++] = i; // a global entry survives (NaN !== NaN filters dead ones)
    } else {
      cpu.tlbTag[i] = Number.NaN;
      cpu.tlbFlags[i] = 0;
    }
  }
  cpu.tlbFilledCount = kept;
  if (!keepGlobal) cpu.tlbLargeShifts = 0;
  cpu.tlbGeneration++;
}

/**
 * Make the TLB tagged `vpid` active (SDM 29.1: translations are tagged with the VPID, so they
 * survive VM entries and exits when VPIDs are on). Sets are created on first use.
 */
export function selectTlb(cpu: Cpu, vpid: number): void {
  if (vpid === cpu.vpid) return;
  // The record of the set being left is the one it was entered with (reused: a VPID switch on
  // every VM exit and entry allocates nothing).
  let left = cpu.tlbActiveRecord;
  if (left === undefined) {
    left = {
      tag: cpu.tlbTag,
      phys: cpu.tlbPhys,
      ok: cpu.tlbOk,
      rights: cpu.tlbRights,
      flags: cpu.tlbFlags,
      view: cpu.tlbView,
      largeShifts: cpu.tlbLargeShifts,
      filled: cpu.tlbFilled,
      filledCount: cpu.tlbFilledCount,
    };
  } else {
    left.tag = cpu.tlbTag;
    left.phys = cpu.tlbPhys;
    left.ok = cpu.tlbOk;
    left.rights = cpu.tlbRights;
    left.flags = cpu.tlbFlags;
    left.view = cpu.tlbView;
    left.largeShifts = cpu.tlbLargeShifts;
    left.filled = cpu.tlbFilled;
    left.filledCount = cpu.tlbFilledCount;
  }
  // The inactive sets: the one left last is parked (cpu.tlbParked), the others are in the map in
  // the order they were left. The switch between a guest's VPID and the root's on every VM exit
  // and entry only swaps the active and the parked set; no map operation.
  let next: TlbSet;
  const parked = cpu.tlbParked;
  if (parked !== undefined && cpu.tlbParkedVpid === vpid) next = parked;
  else {
    // The parked set goes to the map, as the most recently left of those there.
    if (parked !== undefined) cpu.tlbSets.set(cpu.tlbParkedVpid, parked);
    next = cpu.tlbSets.get(vpid) ?? newTlbSet();
    cpu.tlbSets.delete(vpid);
  }
  cpu.tlbParked = left;
  cpu.tlbParkedVpid = cpu.vpid;
  cpu.tlbActiveRecord = next;
  // Over the bound (the parked set counts): drop the least recently selected sets (the parked one
  // is the most recent).
  if (cpu.tlbSets.size + 1 > TLB_MAX_SETS) {
    for (const old of cpu.tlbSets.keys()) {
      if (cpu.tlbSets.size + 1 <= TLB_MAX_SETS) break;
      cpu.tlbSets.delete(old);
      cpu.tlbSetEvictions++;
    }
  }
  cpu.tlbFilled = next.filled;
  cpu.tlbFilledCount = next.filledCount;
  cpu.tlbTag = next.tag;
  cpu.tlbPhys = next.phys;
  cpu.tlbOk = next.ok;
  cpu.tlbRights = next.rights;
  cpu.tlbFlags = next.flags;
  cpu.tlbView = next.view;
  cpu.tlbLargeShifts = next.largeShifts;
  cpu.vpid = vpid;
  cpu.tlbGeneration++;
}

/**
 * INVVPID (SDM Vol. 3C 30.3 "INVVPID"): type 0 individual address, 1 single context, 2 all
 * contexts, 3 single context retaining globals. Returns VMfailValid(28) for an invalid operand
 * (VPID 0 with types 0, 1, 3; a non-canonical address with type 0; an unknown type).
 */
export function invvpid(cpu: Cpu, type: number, vpid: number, address = 0): { kind: "vmfail-valid"; error: 28; message: string } | undefined {
  const bad = (message: string) => ({ kind: "vmfail-valid" as const, error: 28 as const, message: `Invalid operand to INVVPID: ${message}` });
  if (type < INVVPID_INDIVIDUAL_ADDRESS || type > INVVPID_SINGLE_CONTEXT_RETAINING_GLOBALS) return bad(`type ${type}`);
  if (type !== INVVPID_ALL_CONTEXT && (vpid & 0xffff) === 0) return bad("VPID 0");
  if (type === INVVPID_INDIVIDUAL_ADDRESS && !(address >= -TWO_47 && address < TWO_47)) return bad("non-canonical address");
  const vp = vpid & 0xffff;
  if (type === INVVPID_ALL_CONTEXT) {
    for (const set of cpu.tlbSets.values()) clearTlbSet(set);
    if (cpu.tlbParked !== undefined) clearTlbSet(cpu.tlbParked);
    if (cpu.vpid !== 0) cpu.flushTlb(false);
    cpu.tlbGeneration++;
    return undefined;
  }
  const current = cpu.vpid;
  cpu.selectTlb(vp);
  if (type === INVVPID_INDIVIDUAL_ADDRESS) cpu.invalidatePage(address);
  else cpu.flushTlb(type === INVVPID_SINGLE_CONTEXT_RETAINING_GLOBALS);
  cpu.selectTlb(current);
  return undefined;
}

/**
 * INVEPT (SDM "INVEPT"): type 1 single context, 2 all contexts. Combined (GVA -> HPA) mappings
 * are cached here without the EPTP tag, so both types drop every VPID's set (more than
 * single-context needs, which the SDM allows).
 */
export function invept(cpu: Cpu, type: number): { kind: "vmfail-valid"; error: 28; message: string } | undefined {
  if (type !== 1 && type !== 2) return { kind: "vmfail-valid", error: 28, message: `Invalid operand to INVEPT: type ${type}` };
  for (const set of cpu.tlbSets.values()) clearTlbSet(set);
  if (cpu.tlbParked !== undefined) clearTlbSet(cpu.tlbParked);
  cpu.flushTlb(false);
  return undefined;
}

/**
 * INVLPG: drop the translations of the page holding one linear address. The TLB caches a large
 * page as 4 KiB pieces (one entry per piece used); when the address lies in a large page, every
 * cached piece of that page goes (SDM Vol. 3A 4.10.4.1, INVLPG: "if the paging structures map
 * the linear address using a large page and there are multiple TLB entries for that page, the
 * instruction invalidates all of them"). Entries of other pages stay.
 */
export function invalidatePage(cpu: Cpu, lin: number): void {
  const vpn = (lin - (lin & 0xfff)) / 4096;
  const i = vpn & TLB_MASK;
  const tag = cpu.tlbTag;
  if (tag[i] === vpn) tag[i] = Number.NaN;
  const large = cpu.tlbLargeShifts;
  if (large === 0) {
    cpu.tlbGeneration++;
    return;
  }
  const flags = cpu.tlbFlags;
  if ((large & (1 << (30 - 12))) !== 0) {
    // 1 GiB pieces may be cached (2^18 of them per page, more than the TLB holds): scan the
    // filled list, and compact it on the way (an invalid entry leaves it).
    const list = cpu.tlbFilled;
    const n = cpu.tlbFilledCount;
    let kept = 0;
    for (let k = 0; k < n; k++) {
      const j = list[k]!;
      const t = tag[j]!;
      const f = flags[j]!;
      let live = t === t; // NaN: invalid
      if (live && (f & TLB_LARGE) !== 0) {
        const pages = 2 ** (((f >>> TLB_SHIFT_POS) & 0x3f) - 12);
        if (Math.floor(t / pages) === Math.floor(vpn / pages)) {
          tag[j] = Number.NaN;
          live = false;
        }
      }
      if (live) list[kept++] = j;
      else flags[j] = 0;
    }
    cpu.tlbFilledCount = kept;
  } else {
    // 2 MiB (and 4 MiB) pages: the pieces of the page holding `lin` can only sit at the indices
    // of its own 512 (1,024) page numbers, a window of the direct-mapped TLB.
    for (let shift = 21; shift <= 22; shift++) {
      if ((large & (1 << (shift - 12))) === 0) continue;
      const pages = 2 ** (shift - 12);
      const base = Math.floor(vpn / pages) * pages;
      for (let k = 0; k < pages; k++) {
        const j = (base + k) & TLB_MASK;
        if (tag[j] === base + k && (flags[j]! >>> TLB_SHIFT_POS) === shift) tag[j] = Number.NaN;
      }
    }
  }
  cpu.tlbGeneration++;
}

/**
 * Translate a linear address to a machine address for an access of `access` (`Access` bits;
 * `Access.User` is added for CPL 3 unless `Access.Implicit` is set). Raises #GP for a
 * non-canonical address (#SS for a stack access) and #PF for a paging fault.
 */
export function translate(cpu: Cpu, lin: number, access: number, stack = false): number {
  if (cpu.mode64) {
    const limit = cpu.paging.la57 ? TWO_56 : TWO_47;
    if (lin < -limit || lin >= limit) cpu.fault(stack ? Vector.SS : Vector.GP, 0);
  }
  if ((cpu.cr0 & CR0_PG) === 0) {
    const pa = lin >= 0 ? lin : lin + 2 ** 64; // paging off: 32-bit flat, linear = (guest-)physical
    if (!cpu.eptActive) return pa;
    // Unrestricted guest with paging off: the linear address is the guest-physical address
    // and EPT translates it (SDM 29.3.1). Not cached in the TLB: guests run this way only to boot.
    const kind = (access & Access.Fetch) !== 0 ? EptAccess.Fetch : (access & Access.Write) !== 0 ? EptAccess.Write : EptAccess.Read;
    const hpa = cpu.secondLevel!.translate(pa, kind, GuestReference.Final);
    cpu.counters.eptReferences += cpu.secondLevel!.lastReferences;
    if (typeof hpa !== "number") eptExit(cpu, hpa, lin, true);
    return hpa;
  }
  if (cpu.cpl === 3 && (access & Access.Implicit) === 0) access |= Access.User;
  const vpn = (lin - (lin & 0xfff)) / 4096;
  const i = vpn & TLB_MASK;
  if (cpu.tlbTag[i] === vpn) {
    const write = (access & Access.Write) !== 0;
    const rc = checkAccessRights(cpu.tlbRights[i]!, access, cpu.paging);
    if (rc === 0 && (!write || (cpu.tlbFlags[i]! & 2) !== 0)) {
      cpu.counters.tlbHits++;
      return cpu.tlbPhys[i]! + (lin & 0xfff);
    }
  }
  return walkAndFill(cpu, lin, vpn, access);
}

function walkAndFill(cpu: Cpu, lin: number, vpn: number, access: number): number {
  cpu.counters.tlbMisses++;
  cpu.counters.pageWalks++;
  const out = cpu.walkOut;
  // Exact halves of a signed linear address (|lin| < 2^53): no 2^64 offset, which would round.
  const hi = Math.floor(lin / TWO_32) >>> 0;
  const lo = lin >>> 0;
  const root = (Math.floor(cpu.cr3 / 4096) % 2 ** 40) * 4096; // CR3 bits 51:12
  const ept = cpu.eptActive;
  const status = walkLinear(out, cpu.paging, root, hi, lo, access, ept ? cpu.eptTables : cpu.tables);
  cpu.counters.walkReferences += out.references;
  if (status === WalkStatus.PageFault) {
    cpu.faultLinear = lin;
    cpu.fault(Vector.PF, out.errorCode);
  }
  if (status === WalkStatus.AccessFault && ept) eptExit(cpu, out.accessFault as EptViolation | EptMisconfig, lin, false);
  if (status === WalkStatus.AccessFault) {
    // Paging structures outside machine memory: the walk cannot complete; a real platform
    // would read all-ones (a reserved-bit fault). Report #PF with RSVD as the closest outcome.
    cpu.faultLinear = lin;
    cpu.fault(Vector.PF, 0x9 | (access & 0x16));
  }
  let physicalAddress = out.physicalAddress;
  if (ept) {
    // The final guest-physical address through EPT: the TLB then caches GVA -> HPA.
    const kind = (access & Access.Fetch) !== 0 ? EptAccess.Fetch : (access & Access.Write) !== 0 ? EptAccess.Write : EptAccess.Read;
    const hpa = cpu.secondLevel!.translate(out.physicalAddress, kind, GuestReference.Final);
    cpu.counters.eptReferences += cpu.secondLevel!.lastReferences;
    if (typeof hpa !== "number") eptExit(cpu, hpa, lin, true);
    physicalAddress = hpa;
  }
  const phys = physicalAddress - (physicalAddress % 4096);
  const i = vpn & TLB_MASK;
  if ((cpu.tlbFlags[i]! & TLB_LISTED) === 0) cpu.tlbFilled[cpu.tlbFilledCount++] = i;
  cpu.tlbTag[i] = vpn;
  cpu.tlbPhys[i] = phys;
  cpu.tlbRights[i] = out.rights;
  cpu.tlbFlags[i] = (out.global ? 1 : 0) | (out.dirty ? 2 : 0) | (out.pageShift > 12 ? TLB_LARGE : 0) | TLB_LISTED | (out.pageShift << TLB_SHIFT_POS);
  if (out.pageShift > 12) cpu.tlbLargeShifts |= 1 << (out.pageShift - 12);
  const ram = phys + 4096 <= cpu.memory.size && (cpu.mmio === undefined || !cpu.mmio.claims(phys));
  let ok = 0;
  if (ram) {
    // A frame any CPU over this memory holds decoded code from is mapped without write permission (code-cache.ts, CodeSharing).
    const code = cpu.codeSharing.holders.has(phys / 4096);
    const p = cpu.paging;
    if (checkAccessRights(out.rights, Access.Read, p) === 0) ok |= OK_SUP_READ;
    if (checkAccessRights(out.rights, Access.Write, p) === 0 && out.dirty && !code) ok |= OK_SUP_WRITE;
    if (checkAccessRights(out.rights, Access.Read | Access.User, p) === 0) ok |= OK_USER_READ;
    if (checkAccessRights(out.rights, Access.Write | Access.User, p) === 0 && out.dirty && !code) ok |= OK_USER_WRITE;
    if (checkAccessRights(out.rights, Access.Fetch, p) === 0) ok |= OK_SUP_FETCH;
    if (checkAccessRights(out.rights, Access.Fetch | Access.User, p) === 0) ok |= OK_USER_FETCH;
    const view = cpu.memory.frameDataView((phys / 4096) as never);
    cpu.tlbView[i] = view instanceof DataView ? view : undefined;
  } else {
    cpu.tlbView[i] = undefined;
  }
  cpu.tlbOk[i] = ok;
  return physicalAddress;
}

/** Linear address of `offset` in segment `s` (only FS and GS have bases in 64-bit mode). */
export function linear(cpu: Cpu, s: number, offset: number): number {
  if (cpu.mode64) return s >= Seg.FS ? wrap64(offset + (cpu.seg[s] as SegmentCache).base) : offset;
  return (offset + (cpu.seg[s] as SegmentCache).base) >>> 0;
}

export function read8(cpu: Cpu, lin: number): number {
  if ((cpu.cr0 & CR0_PG) !== 0) {
    const vpn = (lin - (lin & 0xfff)) / 4096;
    const i = vpn & TLB_MASK;
    if (cpu.tlbTag[i] === vpn && (cpu.tlbOk[i]! & (cpu.cpl === 3 ? OK_USER_READ : OK_SUP_READ)) !== 0) {
      return cpu.tlbView[i]!.getUint8(lin & 0xfff);
    }
  }
  return cpu.physRead(cpu.translate(lin, Access.Read), 1);
}

export function read16(cpu: Cpu, lin: number): number {
  const off = lin & 0xfff;
  if ((cpu.cr0 & CR0_PG) !== 0 && off <= 0xffe) {
    const vpn = (lin - off) / 4096;
    const i = vpn & TLB_MASK;
    if (cpu.tlbTag[i] === vpn && (cpu.tlbOk[i]! & (cpu.cpl === 3 ? OK_USER_READ : OK_SUP_READ)) !== 0) {
      return cpu.tlbView[i]!.getUint16(off, true);
    }
  }
  return readSlow(cpu, lin, 2, Access.Read);
}

/** 32-bit read, returned as a signed int32. */
export function read32(cpu: Cpu, lin: number): number {
  const off = lin & 0xfff;
  if ((cpu.cr0 & CR0_PG) !== 0 && off <= 0xffc) {
    const vpn = (lin - off) / 4096;
    const i = vpn & TLB_MASK;
    if (cpu.tlbTag[i] === vpn && (cpu.tlbOk[i]! & (cpu.cpl === 3 ? OK_USER_READ : OK_SUP_READ)) !== 0) {
      return cpu.tlbView[i]!.getInt32(off, true);
    }
  }
  return readSlow(cpu, lin, 4, Access.Read) | 0;
}

/** 64-bit read: returns the low half (int32); the high half is left in `tmpHi`. */
export function read64(cpu: Cpu, lin: number): number {
  const off = lin & 0xfff;
  if ((cpu.cr0 & CR0_PG) !== 0 && off <= 0xff8) {
    const vpn = (lin - off) / 4096;
    const i = vpn & TLB_MASK;
    if (cpu.tlbTag[i] === vpn && (cpu.tlbOk[i]! & (cpu.cpl === 3 ? OK_USER_READ : OK_SUP_READ)) !== 0) {
      const v = cpu.tlbView[i]!;
      cpu.tmpHi = v.getInt32(off + 4, true);
      return v.getInt32(off, true);
    }
  }
  const lo = readSlow(cpu, lin, 4, Access.Read) | 0;
  cpu.tmpHi = readSlow(cpu, wrapAdd(lin, 4, cpu.mode64), 4, Access.Read) | 0;
  return lo;
}

export function write8(cpu: Cpu, lin: number, v: number): void {
  if ((cpu.cr0 & CR0_PG) !== 0) {
    const vpn = (lin - (lin & 0xfff)) / 4096;
    const i = vpn & TLB_MASK;
    if (cpu.tlbTag[i] === vpn && (cpu.tlbOk[i]! & (cpu.cpl === 3 ? OK_USER_WRITE : OK_SUP_WRITE)) !== 0) {
      cpu.tlbView[i]!.setUint8(lin & 0xfff, v);
      return;
    }
  }
  writeSlow(cpu, lin, 1, v);
}

export function write16(cpu: Cpu, lin: number, v: number): void {
  const off = lin & 0xfff;
  if ((cpu.cr0 & CR0_PG) !== 0 && off <= 0xffe) {
    const vpn = (lin - off) / 4096;
    const i = vpn & TLB_MASK;
    if (cpu.tlbTag[i] === vpn && (cpu.tlbOk[i]! & (cpu.cpl === 3 ? OK_USER_WRITE : OK_SUP_WRITE)) !== 0) {
      cpu.tlbView[i]!.setUint16(off, v, true);
      return;
    }
  }
  writeSlow(cpu, lin, 2, v);
}

export function write32(cpu: Cpu, lin: number, v: number): void {
  const off = lin & 0xfff;
  if ((cpu.cr0 & CR0_PG) !== 0 && off <= 0xffc) {
    const vpn = (lin - off) / 4096;
    const i = vpn & TLB_MASK;
    if (cpu.tlbTag[i] === vpn && (cpu.tlbOk[i]! & (cpu.cpl === 3 ? OK_USER_WRITE : OK_SUP_WRITE)) !== 0) {
      cpu.tlbView[i]!.setInt32(off, v, true);
      return;
    }
  }
  writeSlow(cpu, lin, 4, v);
}

export function write64(cpu: Cpu, lin: number, lo: number, hi: number): void {
  const off = lin & 0xfff;
  if ((cpu.cr0 & CR0_PG) !== 0 && off <= 0xff8) {
    const vpn = (lin - off) / 4096;
    const i = vpn & TLB_MASK;
    if (cpu.tlbTag[i] === vpn && (cpu.tlbOk[i]! & (cpu.cpl === 3 ? OK_USER_WRITE : OK_SUP_WRITE)) !== 0) {
      const view = cpu.tlbView[i]!;
      view.setInt32(off, lo, true);
      view.setInt32(off + 4, hi, true);
      return;
    }
  }
  if (off <= 0xff8 || (cpu.cr0 & CR0_PG) === 0) {
    const phys = cpu.translate(lin, Access.Write);
    cpu.physWrite(phys, 4, lo);
    cpu.physWrite(phys + 4, 4, hi);
    return;
  }
  // A page split: both pages are translated (first page first, so CR2 names the first
  // faulting byte) before either is written.
  cpu.translate(lin, Access.Write);
  cpu.translate(wrapAdd(lin, 4096 - off, cpu.mode64), Access.Write);
  writeSlow(cpu, lin, 4, lo);
  writeSlow(cpu, wrapAdd(lin, 4, cpu.mode64), 4, hi);
}

/**
 * The frame behind linear address `lin` when the TLB already allows a write there at the current
 * privilege (the check the store fast paths make: RAM, not decoded code, the dirty bit set), else
 * undefined. For bulk stores (a REP STOS run) that write what the fast path would, byte for byte.
 */
export function writeView(cpu: Cpu, lin: number): DataView | undefined {
  if ((cpu.cr0 & CR0_PG) === 0) return undefined;
  const off = lin & 0xfff;
  const vpn = (lin - off) / 4096;
  const i = vpn & TLB_MASK;
  if (cpu.tlbTag[i] === vpn && (cpu.tlbOk[i]! & (cpu.cpl === 3 ? OK_USER_WRITE : OK_SUP_WRITE)) !== 0) return cpu.tlbView[i];
  return undefined;
}

/** Read with an explicit access kind (implicit supervisor accesses to descriptor tables, fetches). */
export function readAccess(cpu: Cpu, lin: number, size: 1 | 2 | 4, access: number): number {
  return readSlow(cpu, lin, size, access);
}

function readSlow(cpu: Cpu, lin: number, size: number, access: number): number {
  const off = lin & 0xfff;
  if (off + size <= 4096 || (cpu.cr0 & CR0_PG) === 0) {
    return cpu.physRead(cpu.translate(lin, access), size);
  }
  // Crossing a page: translate the first page, then the second at its first byte (so CR2
  // names the first faulting byte), then read little-endian.
  const p0 = cpu.translate(lin, access);
  const p1 = cpu.translate(wrapAdd(lin, 4096 - off, cpu.mode64), access);
  const first = 4096 - off;
  let v = 0;
  for (let b = size - 1; b >= 0; b--) v = v * 256 + cpu.physRead(b < first ? p0 + b : p1 + (b - first), 1);
  return v;
}

function writeSlow(cpu: Cpu, lin: number, size: number, v: number): void {
  const off = lin & 0xfff;
  if (off + size <= 4096 || (cpu.cr0 & CR0_PG) === 0) {
    cpu.physWrite(cpu.translate(lin, Access.Write), size, v);
    return;
  }
  const first = 4096 - off;
  const p0 = cpu.translate(lin, Access.Write);
  const p1 = cpu.translate(wrapAdd(lin, first, cpu.mode64), Access.Write);
  for (let b = 0; b < size; b++) {
    const phys = b < first ? p0 + b : p1 + (b - first);
    cpu.physWrite(phys, 1, (v >>> (8 * b)) & 0xff);
  }
}

/** Read machine memory or a device behind it. */
export function physRead(cpu: Cpu, phys: number, size: number): number {
  if (cpu.mmio?.claims(phys) === true) return cpu.mmio.read(phys, size as 1 | 2 | 4);
  const m = cpu.memory;
  const r = size === 1 ? m.read8(phys) : size === 2 ? m.read16(phys) : m.read32(phys);
  return typeof r === "number" ? r : size === 1 ? 0xff : size === 2 ? 0xffff : 0xffff_ffff;
}

/** Write machine memory or a device; writes to decoded code invalidate it (self-modifying code). */
export function physWrite(cpu: Cpu, phys: number, size: number, v: number): void {
  if (cpu.mmio?.claims(phys) === true) {
    cpu.mmio.write(phys, size as 1 | 2 | 4, v);
    return;
  }
  const frame = (phys - (phys % 4096)) / 4096;
  if (cpu.codeSharing.holders.has(frame)) codeStored(cpu, frame);
  const m = cpu.memory;
  if (size === 1) m.write8(phys, v);
  else if (size === 2) m.write16(phys, v);
  else m.write32(phys, v);
}

/** An EPT violation or misconfiguration becomes a VM exit (reasons 48, 49; SDM 28.2.1, 28.2.4). */
function eptExit(cpu: Cpu, fault: EptViolation | EptMisconfig, lin: number, final: boolean): never {
  if (fault.kind === "ept-misconfig") {
    return cpu.vmExit(ExitReason.EptMisconfig, 0, 0, { guestPhysical: fault.gpa });
  }
  const qualification = fault.qualification | EPT_QUAL_LINEAR_VALID | (final ? EPT_QUAL_FINAL : 0);
  return cpu.vmExit(ExitReason.EptViolation, qualification, 0, { guestPhysical: fault.gpa, guestLinear: lin });
}

/** Push a 64-bit value (64-bit mode) from halves. */
export function push64(cpu: Cpu, lo: number, hi: number): void {
  const rsp = wrap64(cpu.regAddr(4) - 8);
  write64Stack(cpu, rsp, lo, hi);
  cpu.setRegFromNumber(4, rsp);
}

export function pop64(cpu: Cpu): number {
  const rsp = cpu.regAddr(4);
  const lo = read64Stack(cpu, rsp);
  const hi = cpu.tmpHi;
  cpu.setRegFromNumber(4, wrap64(rsp + 8));
  cpu.tmpHi = hi;
  return lo;
}

// Outside 64-bit mode a stack with SS.B = 0 uses SP: the address wraps at 64 KiB (SDM Vol. 1 6.2.3).
export function push32(cpu: Cpu, v: number): void {
  const esp = cpu.ssB ? (cpu.lo[4]! - 4) >>> 0 : (cpu.lo[4]! - 4) & 0xffff;
  cpu.write32(cpu.linear(Seg.SS, esp), v);
  setStackPointer32(cpu, esp);
}

export function pop32(cpu: Cpu): number {
  const esp = cpu.ssB ? cpu.lo[4]! >>> 0 : cpu.lo[4]! & 0xffff;
  const v = cpu.read32(cpu.linear(Seg.SS, esp));
  setStackPointer32(cpu, (esp + 4) >>> 0);
  return v;
}

export function push16(cpu: Cpu, v: number): void {
  if (cpu.mode64) {
    const rsp = wrap64(cpu.regAddr(4) - 2);
    if (rsp < -TWO_47 || rsp >= TWO_47) cpu.fault(Vector.SS, 0);
    cpu.write16(rsp, v);
    cpu.setRegFromNumber(4, rsp);
  } else {
    const esp = cpu.ssB ? (cpu.lo[4]! - 2) >>> 0 : (cpu.lo[4]! - 2) & 0xffff;
    cpu.write16(cpu.linear(Seg.SS, esp), v);
    setStackPointer32(cpu, esp);
  }
}

export function pop16(cpu: Cpu): number {
  if (cpu.mode64) {
    const rsp = cpu.regAddr(4);
    if (rsp < -TWO_47 || rsp >= TWO_47) cpu.fault(Vector.SS, 0);
    const v = cpu.read16(rsp);
    cpu.setRegFromNumber(4, wrap64(rsp + 2));
    return v;
  }
  const esp = cpu.ssB ? cpu.lo[4]! >>> 0 : cpu.lo[4]! & 0xffff;
  const v = cpu.read16(cpu.linear(Seg.SS, esp));
  setStackPointer32(cpu, (esp + 2) >>> 0);
  return v;
}

function setStackPointer32(cpu: Cpu, esp: number): void {
  if (cpu.ssB) cpu.setReg32(4, esp);
  else cpu.setReg16(4, esp);
}

function write64Stack(cpu: Cpu, lin: number, lo: number, hi: number): void {
  if (lin < -TWO_47 || lin >= TWO_47) cpu.fault(Vector.SS, 0);
  cpu.write64(lin, lo, hi);
}

function read64Stack(cpu: Cpu, lin: number): number {
  if (lin < -TWO_47 || lin >= TWO_47) cpu.fault(Vector.SS, 0);
  return cpu.read64(lin);
}

/** The walk's paging-structure access under EPT: every entry's guest-physical address is translated (a reference EPT counts). */
export function eptPagingStructures(cpu: Cpu): PagingStructureAccess<EptViolation | EptMisconfig> {
  return {
    readEntry: (gpa: number, _level: PagingLevel, out: U64) => {
      const hpa = cpu.secondLevel!.translate(gpa, EptAccess.Read, GuestReference.PagingStructure);
      cpu.counters.eptReferences += cpu.secondLevel!.lastReferences;
      if (typeof hpa !== "number") return hpa;
      const e = cpu.memory.read64(hpa, out);
      return e === undefined ? undefined : { kind: "ept-misconfig", gpa };
    },
    setEntryBits: (gpa: number, _level: PagingLevel, bits: number) => {
      const hpa = cpu.secondLevel!.translate(gpa, EptAccess.Write, GuestReference.PagingStructure);
      cpu.counters.eptReferences += cpu.secondLevel!.lastReferences;
      if (typeof hpa !== "number") return hpa;
      const lo = cpu.memory.read32(hpa);
      if (typeof lo !== "number") return { kind: "ept-misconfig", gpa };
      cpu.memory.write32(hpa, (lo | bits) >>> 0);
      return undefined;
    },
  };
}
