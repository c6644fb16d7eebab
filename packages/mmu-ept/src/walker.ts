/**
 * The two-dimensional walk (SDM Vol. 3C 29.3.2, "Guest-physical and linear addresses when EPT is
 * in use"): the guest's own page walk, run by `walkLinear` of @vtlab/arch, with every
 * guest-physical reference translated through EPT: each guest paging-structure entry (CR3 and
 * every entry address are guest-physical) and the final address. A cold 4-level guest walk over
 * 4-level EPT reads 4 guest entries and 4 x 5 EPT entries: 24 memory references.
 *
 * `NestedWalker` is what the CPU will call (issue 4 wires it): `translateLinear` for a linear
 * address (through the TLB of combined translations, the guest paging-structure caches, the
 * nested TLB and the EPT paging-structure caches), and `translate` (SecondLevelTranslator) for
 * one guest-physical reference.
 *
 * A guest paging-structure cache hit feeds the walker the cached entry's combined rights as one
 * entry and its table's host-physical address, so the walk skips those levels and their EPT
 * translations, the way a processor's combined paging-structure caches do (SDM 29.4.1).
 *
 * Hot paths (`translateLinear`, `walkGuest`, TLB hits) allocate nothing: results go into fields.
 */
import {
  Access,
  PTE_A,
  PTE_HI_XD,
  PTE_P,
  PTE_RW,
  PTE_US,
  PageRights,
  WalkResult,
  WalkStatus,
  checkAccessRights,
  pagingMode,
  walkLinear,
  PagingFormat,
  type PagingLevel,
  type PagingMode,
  type PagingStructureAccess,
  type PhysicalMemory,
  type U64,
} from "@vtlab/arch";
import { EptAccess, type EptMisconfig, type EptViolation, type GuestReference, type SecondLevelTranslator, type VmFailValid } from "@vtlab/cpu-vmx";
import {
  ALL_CACHES,
  NestedCaches,
  TLB_EPT_DIRTY,
  TLB_EPT_SHIFT,
  TLB_GLOBAL,
  TLB_GUEST_DIRTY,
  type CacheSwitches,
  type NestedCacheSizes,
  type TranslationCache,
} from "./caches.js";
import { EPT_W, type EptCapabilities, type EptpError } from "./ept.js";
import { EptStatus, EptTranslator, type EptFault } from "./translator.js";

export const NestedStatus = {
  Ok: 0,
  /** A guest page fault: `errorCode` and `faultLevel` say which. */
  PageFault: 1,
  /** An EPT violation on a guest paging-structure reference or the final access (`fault`). */
  EptViolation: 2,
  /** An EPT misconfiguration (`fault`). */
  EptMisconfig: 3,
} as const;
export type NestedStatus = (typeof NestedStatus)[keyof typeof NestedStatus];

/** 512^(level-1): a linear page number divided by this gives the prefix a level-`level` entry covers. */
const SPAN = [1, 1, 512, 512 ** 2, 512 ** 3, 512 ** 4] as const;
const TWO_32 = 0x1_0000_0000;

/** The EPT access a guest access makes to its final guest-physical address. */
export function eptAccessOf(access: number): number {
  if ((access & Access.Fetch) !== 0) return EptAccess.Fetch;
  return (access & Access.Write) !== 0 ? EptAccess.Write : EptAccess.Read;
}

/** Guest paging structures read through EPT: the `PagingStructureAccess` the guest walk uses. */
class GuestTablesThroughEpt implements PagingStructureAccess<EptFault> {
  /** Guest level served from a paging-structure cache hit (0: none): it and the levels above are synthetic. */
  pscLevel = 0;
  pscTableGpa = 0;
  pscTableHpa = 0;
  pscBits = 0;
  guestReferences = 0;
  eptReferences = 0;
  /** Per guest level: host-physical address of the entry read (NaN: synthetic). */
  readonly entryHpa = new Float64Array(6);
  /** Per guest level: EPT permissions of the page holding the table. */
  readonly entryPerms = new Int32Array(6);
  /** Per guest level: guest-physical and host-physical address of the table read. */
  readonly tableGpa = new Float64Array(6);
  readonly tableHpa = new Float64Array(6);

  constructor(
    private readonly ept: EptTranslator,
    private readonly memory: PhysicalMemory,
  ) {}

  reset(): void {
    this.pscLevel = 0;
    this.guestReferences = 0;
    this.eptReferences = 0;
  }

  readEntry(address: number, level: PagingLevel, out: U64): EptFault | undefined {
    const psc = this.pscLevel;
    if (psc !== 0 && level >= psc) {
      if (level > psc) {
        out.lo = PTE_P | PTE_RW | PTE_US | PTE_A;
        out.hi = 0;
      } else {
        const g = this.pscTableGpa;
        const bits = this.pscBits;
        out.lo = (((g >>> 0) & 0xffff_f000) | PTE_P | PTE_A | (bits & (PTE_RW | PTE_US))) >>> 0;
        out.hi = ((Math.floor(g / TWO_32) & 0x000f_ffff) | ((bits & PageRights.NoExecute) !== 0 ? PTE_HI_XD : 0)) >>> 0;
      }
      this.entryHpa[level] = Number.NaN;
      return undefined;
    }
    const offset = address & 0xfff;
    let hpa: number;
    if (level === psc - 1) {
      hpa = this.pscTableHpa + offset;
      this.entryPerms[level] = (this.pscBits >>> TLB_EPT_SHIFT) & 7;
    } else {
      const ept = this.ept;
      const status = ept.translateFast(address, EptAccess.Read, false);
      this.eptReferences += ept.lastReferences;
      if (status !== EptStatus.Ok) return ept.fault;
      hpa = ept.hpa;
      this.entryPerms[level] = ept.perms;
    }
    if (this.memory.read64(hpa, out) !== undefined) {
      out.lo = 0xffff_ffff; // nothing answers beyond machine memory: all ones (reserved bits set)
      out.hi = 0xffff_ffff;
    }
    this.guestReferences++;
    this.entryHpa[level] = hpa;
    this.tableGpa[level] = address - offset;
    this.tableHpa[level] = hpa - offset;
    return undefined;
  }

  setEntryBits(address: number, level: PagingLevel, lowBits: number): EptFault | undefined {
    const hpa = this.entryHpa[level] as number;
    if (Number.isNaN(hpa)) throw new Error("vtlab bug: A/D update of a cached guest paging-structure entry");
    const ept = this.ept;
    // Writing A/D into a guest paging structure is a data write (SDM 29.3.3.2). With EPT A/D on,
    // the read already counted as a write and was checked; otherwise check W now.
    if (!ept.accessedDirty && ((this.entryPerms[level] as number) & EPT_W) === 0) {
      ept.violation(address, ept.effectiveGfn(address), EptAccess.Write, this.entryPerms[level] as number, 0, false);
      return ept.fault;
    }
    const lo = this.memory.read32(hpa);
    if (typeof lo === "number") this.memory.write32(hpa, (lo | lowBits) >>> 0);
    return undefined;
  }
}

/** A successful two-dimensional translation (value form). */
export interface NestedTranslation {
  readonly kind: "translation";
  readonly gpa: number;
  readonly hpa: number;
  readonly references: number;
  readonly guestReferences: number;
  readonly eptReferences: number;
  readonly tlbHit: boolean;
}

/** A guest page fault (value form): the guest's own tables refused the access. */
export interface NestedPageFault {
  readonly kind: "page-fault";
  readonly errorCode: number;
  /** Guest level of the entry at fault; 0 when the combined rights refused the access. */
  readonly level: number;
  readonly references: number;
}

/** An EPT violation or misconfiguration met by the walk or the final access (value form). */
export interface NestedEptFault {
  readonly kind: "ept-fault";
  readonly fault: EptFault;
  readonly references: number;
}

export type NestedWalkOutcome = NestedTranslation | NestedPageFault | NestedEptFault;

export interface NestedWalkerOptions {
  readonly caps?: EptCapabilities;
  /** Cache sizes (default `DEFAULT_CACHE_SIZES`). */
  readonly sizes?: Partial<NestedCacheSizes>;
  /** Which caches are on (default all). */
  readonly switches?: CacheSwitches;
}

/** One logical processor's two-dimensional translation state: EPTP, guest CR3 and mode, caches. */
export class NestedWalker implements SecondLevelTranslator {
  readonly memory: PhysicalMemory;
  readonly ept: EptTranslator;
  readonly caches: NestedCaches;
  /** Guest CR3 bits 51:12 (a guest-physical address). */
  root = 0;
  readonly mode: PagingMode = pagingMode();
  /** CR0.PG: with paging off, a linear address is a guest-physical address. */
  pagingEnabled = true;

  // ---- Result of the last translateLinear / walkGuest ----
  status: NestedStatus = NestedStatus.Ok;
  hpa = 0;
  gpa = 0;
  /** Guest #PF error code (status PageFault). */
  errorCode = 0;
  /** Guest level at fault (status PageFault). */
  faultLevel = 0;
  /** The EPT fault (status EptViolation or EptMisconfig). */
  fault: EptFault | undefined = undefined;
  references = 0;
  guestReferences = 0;
  eptReferences = 0;
  tlbHit = false;

  // ---- Exact counters ----
  translations = 0;
  walks = 0;
  totalReferences = 0;
  totalGuestReferences = 0;
  totalEptReferences = 0;
  pageFaults = 0;
  eptFaults = 0;

  private readonly out = new WalkResult<EptFault>();
  private readonly tables: GuestTablesThroughEpt;

  constructor(memory: PhysicalMemory, options: NestedWalkerOptions = {}) {
    this.memory = memory;
    this.caches = new NestedCaches(options.sizes, options.switches ?? ALL_CACHES);
    this.ept = new EptTranslator(memory, { caps: options.caps, caches: this.caches });
    this.tables = new GuestTablesThroughEpt(this.ept, memory);
  }

  /** Load an EPTP (VM entry). Cached mappings stay tagged with their EP4TA. */
  setEptp(lo: number, hi: number): EptpError | undefined {
    return this.ept.setEptp(lo, hi);
  }

  /** SecondLevelTranslator: one guest-physical reference. */
  translate(gpa: number, access: number, reference: GuestReference): number | EptViolation | EptMisconfig {
    return this.ept.translate(gpa, access, reference);
  }

  get lastReferences(): number {
    return this.ept.lastReferences;
  }

  /** INVEPT (see `EptTranslator.invept`). */
  invept(type: number, eptpLo = 0, eptpHi = 0): VmFailValid | undefined {
    return this.ept.invept(type, eptpLo, eptpHi);
  }

  /**
   * The guest's CR3 (bits 51:12) and paging mode. A new CR3 drops the combined mappings except
   * global ones (MOV to CR3 without PCIDs); a new mode drops them all.
   */
  setGuestContext(root: number, mode: PagingMode, pagingEnabled = true): void {
    const m = this.mode;
    const modeChanged =
      m.la57 !== mode.la57 || m.wp !== mode.wp || m.nxe !== mode.nxe || m.smep !== mode.smep || m.smap !== mode.smap || m.pge !== mode.pge || m.maxPhyAddr !== mode.maxPhyAddr || this.pagingEnabled !== pagingEnabled ||
      (m.format ?? PagingFormat.Long) !== (mode.format ?? PagingFormat.Long) || (m.pse ?? false) !== (mode.pse ?? false);
    // PAE paging: new PDPTE registers (a CR3 load) change translations like a new root does.
    const pdpte = mode.format === PagingFormat.Pae ? mode.pdpte : undefined;
    const mp = m.pdpte as Uint32Array;
    let pdpteChanged = false;
    if (pdpte !== undefined) for (let k = 0; k < 8; k++) if (mp[k] !== pdpte[k]) pdpteChanged = true;
    if (modeChanged) this.caches.flushGuest(false);
    else if (root !== this.root || pdpteChanged) this.caches.flushGuest(mode.pge);
    if (pdpte !== undefined) mp.set(pdpte);
    m.format = mode.format ?? PagingFormat.Long;
    m.pse = mode.pse ?? false;
    this.root = root;
    this.pagingEnabled = pagingEnabled;
    m.la57 = mode.la57;
    m.wp = mode.wp;
    m.nxe = mode.nxe;
    m.smep = mode.smep;
    m.smap = mode.smap;
    m.pge = mode.pge;
    m.ac = mode.ac;
    m.maxPhyAddr = mode.maxPhyAddr;
  }

  /** INVLPG: the combined translation of that page in every EP4TA, and every guest paging-structure cache entry (SDM 4.10.4.1). */
  invalidateLinear(gva: number): void {
    const hi = Math.floor(gva / TWO_32) >>> 0;
    this.caches.tlb.invalidateKey(this.vpnOf(hi, gva >>> 0));
    for (let l = 2; l <= 5; l++) this.caches.guestPsc[l]!.flush();
  }

  /** Drop all combined mappings (INVVPID single-context); `keepGlobal` keeps global pages. */
  flushGuest(keepGlobal = false): void {
    this.caches.flushGuest(keepGlobal);
  }

  /**
   * Translate the linear address `vaHi:vaLo` for `access` (`Access` bits of @vtlab/arch): TLB,
   * else the two-dimensional walk and the final EPT translation. Results go into the fields.
   */
  translateLinear(vaHi: number, vaLo: number, access: number): NestedStatus {
    this.translations++;
    this.tlbHit = false;
    this.fault = undefined;
    const eacc = eptAccessOf(access);
    const ept = this.ept;
    if (!this.pagingEnabled) {
      this.references = this.guestReferences = this.eptReferences = 0;
      this.gpa = vaHi * TWO_32 + vaLo;
      return this.finish(this.gpa, eacc, -1, 0, false, false);
    }
    const vpn = this.vpnOf(vaHi, vaLo);
    const tlb = this.caches.tlb;
    if (tlb.enabled) {
      const s = tlb.lookup(vpn, ept.root);
      if (s >= 0) {
        const bits = tlb.bits[s] as number;
        const need = (access & Access.Write) !== 0 ? TLB_GUEST_DIRTY | TLB_EPT_DIRTY : 0;
        if (checkAccessRights(bits & 0xf, access, this.mode) === 0 && (eacc & ~(bits >>> TLB_EPT_SHIFT) & 7) === 0 && (bits & need) === need) {
          const off = vaLo & 0xfff;
          this.hpa = (tlb.value[s] as number) + off;
          this.gpa = (tlb.value2[s] as number) + off;
          this.references = this.guestReferences = this.eptReferences = 0;
          this.tlbHit = true;
          this.status = NestedStatus.Ok;
          return NestedStatus.Ok;
        }
      }
    }
    const status = this.walkGuest(vaHi, vaLo, access);
    if (status !== NestedStatus.Ok) {
      tlb.invalidateKey(vpn);
      return status;
    }
    const out = this.out;
    return this.finish(this.gpa, eacc, vpn, out.rights, out.global, out.dirty);
  }

  /** The final EPT translation of `gpa`, then the TLB fill (`vpn` < 0: paging off, no fill). */
  private finish(gpa: number, eacc: number, vpn: number, rights: number, global: boolean, guestDirty: boolean): NestedStatus {
    const ept = this.ept;
    const st = ept.translateFast(gpa, eacc, true);
    this.eptReferences += ept.lastReferences;
    this.references += ept.lastReferences;
    this.totalEptReferences += ept.lastReferences;
    this.totalReferences += ept.lastReferences;
    if (st !== EptStatus.Ok) {
      if (vpn >= 0) this.caches.tlb.invalidateKey(vpn);
      return this.eptFault(st);
    }
    this.hpa = ept.hpa;
    const tlb = this.caches.tlb;
    if (vpn >= 0 && tlb.enabled) {
      const s = tlb.fill(vpn, ept.root);
      tlb.value[s] = ept.hpa - (ept.hpa % 4096);
      tlb.value2[s] = gpa - (gpa % 4096);
      tlb.bits[s] = rights | (ept.perms << TLB_EPT_SHIFT) | (global ? TLB_GLOBAL : 0) | (guestDirty ? TLB_GUEST_DIRTY : 0) | (ept.dirty ? TLB_EPT_DIRTY : 0);
    }
    this.status = NestedStatus.Ok;
    return NestedStatus.Ok;
  }

  /**
   * The guest dimension only: walk the guest's tables (each entry through EPT) and leave the
   * guest-physical address in `gpa`; the final address is not translated.
   */
  walkGuest(vaHi: number, vaLo: number, access: number): NestedStatus {
    this.walks++;
    this.fault = undefined;
    const t = this.tables;
    t.reset();
    const mode = this.mode;
    const top = mode.la57 ? 5 : 4;
    const vpn = this.vpnOf(vaHi, vaLo);
    const ctx = this.ept.root;
    const psc = this.caches.guestPsc;
    // The paging-structure caches are keyed by the long-mode levels' spans: 32-bit and PAE walks
    // (SDM 4.3, 4.4) do not use them (modelled more simply: hardware caches those walks too).
    const pscOn = (psc[2] as TranslationCache).enabled && (mode.format ?? PagingFormat.Long) === PagingFormat.Long;
    if (pscOn) {
      for (let l = 2; l <= top; l++) {
        const c = psc[l] as TranslationCache;
        const s = c.lookup(Math.floor(vpn / (SPAN[l] as number)), ctx);
        if (s >= 0) {
          t.pscLevel = l;
          t.pscTableHpa = c.value[s] as number;
          t.pscTableGpa = c.value2[s] as number;
          t.pscBits = c.bits[s] as number;
          break;
        }
      }
    }
    const out = this.out;
    const status = walkLinear(out, mode, this.root, vaHi, vaLo, access, t);
    this.guestReferences = t.guestReferences;
    this.eptReferences = t.eptReferences;
    this.references = t.guestReferences + t.eptReferences;
    this.totalGuestReferences += t.guestReferences;
    this.totalEptReferences += t.eptReferences;
    this.totalReferences += this.references;
    if (status === WalkStatus.PageFault) {
      this.pageFaults++;
      this.errorCode = out.errorCode;
      this.faultLevel = out.faultLevel;
      this.status = NestedStatus.PageFault;
      // A page fault invalidates the paging-structure-cache entries for its address (SDM 4.10.4.2).
      for (let l = 2; l <= top; l++) psc[l]!.invalidate(Math.floor(vpn / (SPAN[l] as number)), ctx);
      return NestedStatus.PageFault;
    }
    if (status === WalkStatus.AccessFault) {
      const f = out.accessFault as EptFault;
      this.faultLevel = out.faultLevel;
      this.ept.fault = f;
      return this.eptFault(f.kind === "ept-violation" ? EptStatus.Violation : EptStatus.Misconfig);
    }
    this.gpa = out.physicalAddress;
    if (pscOn) {
      // Cache every entry of this walk that referenced a table, below any level that hit.
      const leaf = out.pageShift === 12 ? 1 : out.pageShift === 21 ? 2 : 3;
      const from = t.pscLevel !== 0 ? t.pscLevel - 1 : top;
      let rights = PageRights.Writable | PageRights.User;
      for (let i = 0; i < out.steps; i++) {
        const level = out.stepLevel[i] as number;
        if (level <= leaf) break;
        rights &= (out.stepLo[i] as number) | PageRights.NoExecute;
        if (((out.stepHi[i] as number) & PTE_HI_XD) !== 0 && mode.nxe) rights |= PageRights.NoExecute;
        if (level > from) continue;
        const c = psc[level] as TranslationCache;
        const s = c.fill(Math.floor(vpn / (SPAN[level] as number)), ctx);
        c.value[s] = t.tableHpa[level - 1] as number;
        c.value2[s] = t.tableGpa[level - 1] as number;
        c.bits[s] = rights | ((t.entryPerms[level - 1] as number) << TLB_EPT_SHIFT);
      }
    }
    this.status = NestedStatus.Ok;
    return NestedStatus.Ok;
  }

  /** Value form of `translateLinear` (tests, tools): `gva` below 2^53. */
  walk(gva: number, access: number): NestedWalkOutcome {
    const hi = Math.floor(gva / TWO_32) >>> 0;
    const status = this.translateLinear(hi, gva >>> 0, access);
    if (status === NestedStatus.Ok) {
      return { kind: "translation", gpa: this.gpa, hpa: this.hpa, references: this.references, guestReferences: this.guestReferences, eptReferences: this.eptReferences, tlbHit: this.tlbHit };
    }
    if (status === NestedStatus.PageFault) return { kind: "page-fault", errorCode: this.errorCode, level: this.faultLevel, references: this.references };
    return { kind: "ept-fault", fault: this.fault as EptFault, references: this.references };
  }

  private eptFault(st: EptStatus): NestedStatus {
    this.eptFaults++;
    this.fault = this.ept.fault;
    this.status = st === EptStatus.Violation ? NestedStatus.EptViolation : NestedStatus.EptMisconfig;
    return this.status;
  }

  /** Linear page number: bits 47:12 (4-level) or 56:12 (5-level) of the address. */
  private vpnOf(vaHi: number, vaLo: number): number {
    return (vaHi & (this.mode.la57 ? 0x01ff_ffff : 0xffff)) * 0x10_0000 + (vaLo >>> 12);
  }
}
