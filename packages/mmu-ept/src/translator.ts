/**
 * The EPT dimension: translating one guest-physical address through the EPT paging structures
 * (SDM Vol. 3C 29.3.2), with misconfiguration checks (29.3.3.1), violations and their exit
 * qualification (29.3.3.2, Table 28-7), accessed and dirty flags (29.3.5), the nested TLB and the
 * guest-physical paging-structure caches (29.4), and INVEPT (29.4.3).
 *
 * `translateFast` is the hot path: it writes its result into fields and allocates nothing unless
 * it fails (a violation or misconfiguration is a value, created when it happens).
 *
 * Modelled more simply than hardware, on purpose:
 * - The guest-linear address is always valid (qualification bit 7): PAE paging, whose PDPTE loads
 *   are the exception, is not modelled. Bits 9-12 (advanced information, NMI unblocking) stay 0.
 * - Accessed flags are set (and the dirty flag, for a write) only when the translation succeeds;
 *   a walk that ends in a violation changes nothing.
 * - An entry read from beyond machine memory reads as all ones (a misconfiguration: reserved bits).
 * - Mode-based execute control, sub-page permissions, #VE and the page-modification log are not modelled.
 */
import type { PhysicalMemory, U64 } from "@vtlab/arch";
import {
  EptAccess,
  GuestReference,
  VmInstructionError,
  type EptMisconfig,
  type EptViolation,
  type SecondLevelTranslator,
  type VmFailValid,
} from "@vtlab/cpu-vmx";
import { NTLB_DIRTY, NestedCaches, type TranslationCache } from "./caches.js";
import {
  DEFAULT_EPT_CAPABILITIES,
  EPT_A,
  EPT_D,
  EPT_GLA_FAULT,
  EPT_GLA_VALID,
  EPT_LO_ADDR_MASK_1G,
  EPT_LO_ADDR_MASK_2M,
  EPT_LO_ADDR_MASK_4K,
  EPT_PAGE_SIZE,
  EPT_RWX,
  decodeEptp,
  eptEntryAddress,
  eptMisconfigReason,
  eptReservedHighMask,
  type EptCapabilities,
  type EptMisconfigReason,
  type EptpError,
} from "./ept.js";

export const EptStatus = {
  Ok: 0,
  Violation: 1,
  Misconfig: 2,
} as const;
export type EptStatus = (typeof EptStatus)[keyof typeof EptStatus];

/** An EPT violation with what the walk saw. */
export interface EptViolationDetail extends EptViolation {
  /** Level of the entry that ended the walk: the not-present entry, or the leaf when the rights refused the access. */
  readonly level: number;
  readonly reference: GuestReference;
}

/** An EPT misconfiguration with the entry at fault. */
export interface EptMisconfigDetail extends EptMisconfig {
  readonly level: number;
  readonly reason: EptMisconfigReason;
  readonly entryLo: number;
  readonly entryHi: number;
}

export type EptFault = EptViolationDetail | EptMisconfigDetail;

/** INVEPT types (SDM 31.3 "INVEPT"). */
export const InveptType = {
  /** Invalidate the mappings associated with the EP4TA in the descriptor's EPTP. */
  SingleContext: 1,
  /** Invalidate the mappings associated with every EP4TA. */
  AllContext: 2,
} as const;
export type InveptType = (typeof InveptType)[keyof typeof InveptType];

/** 512^(level-1): a guest frame number divided by this gives the prefix a level-`level` entry covers. */
const SPAN = [1, 1, 512, 512 ** 2, 512 ** 3, 512 ** 4] as const;
const PAGE_BYTES = [0, 2 ** 12, 2 ** 21, 2 ** 30] as const;

export interface EptTranslatorOptions {
  readonly caps?: EptCapabilities;
  /** Caches to use (shared with a `NestedWalker`); default: all on, default sizes. */
  readonly caches?: NestedCaches;
}

/** Translation of guest-physical addresses through one logical processor's EPT state and caches. */
export class EptTranslator implements SecondLevelTranslator {
  readonly memory: PhysicalMemory;
  readonly caps: EptCapabilities;
  readonly caches: NestedCaches;
  /** EPTP fields in force (set by `setEptp`). */
  levels: 4 | 5 = 4;
  accessedDirty = false;
  /** The EP4TA: the EPT root's host-physical address, and the tag of every cached mapping. */
  root = -1;

  // ---- Result of the last translation ----
  /** Host-physical address (status Ok). */
  hpa = 0;
  /** Logical AND of bits 2:0 of the entries used (status Ok). */
  perms = 0;
  /** Page size of the EPT leaf (status Ok; 12 on a nested-TLB hit). */
  pageShift = 12;
  /** A write through this translation needs no walk: the leaf's dirty flag is set, or EPT A/D flags are off (status Ok). */
  dirty = false;
  /** The violation or misconfiguration (status Violation, Misconfig). */
  fault: EptFault | undefined = undefined;
  /** EPT paging-structure entries read by the last translation (memory references). */
  lastReferences = 0;

  // ---- Exact counters ----
  translations = 0;
  walks = 0;
  references = 0;
  violations = 0;
  misconfigs = 0;
  adWrites = 0;

  private readonly rsvdHi: number;
  private readonly e: U64 = { lo: 0, hi: 0 };
  private readonly stepAddress = new Float64Array(6);
  private readonly stepLo = new Uint32Array(6);
  private readonly stepHi = new Uint32Array(6);
  private readonly stepPerms = new Int32Array(6);

  constructor(memory: PhysicalMemory, options: EptTranslatorOptions = {}) {
    this.memory = memory;
    this.caps = options.caps ?? DEFAULT_EPT_CAPABILITIES;
    this.caches = options.caches ?? new NestedCaches();
    this.rsvdHi = eptReservedHighMask(this.caps.maxPhyAddr);
  }

  /** Load an EPTP (as VM entry does from the VMCS): refused with the failing check when invalid. */
  setEptp(lo: number, hi: number): EptpError | undefined {
    const f = decodeEptp(lo, hi, this.caps);
    if (f.kind === "eptp-invalid") return f;
    this.levels = f.levels;
    this.accessedDirty = f.accessedDirty;
    this.root = f.root;
    return undefined;
  }

  /** SecondLevelTranslator: the host-physical address, or the violation or misconfiguration. */
  translate(gpa: number, access: number, reference: GuestReference): number | EptViolation | EptMisconfig {
    const status = this.translateFast(gpa, access, reference === GuestReference.Final);
    return status === EptStatus.Ok ? this.hpa : (this.fault as EptFault);
  }

  /**
   * Translate `gpa` for `access` (`EptAccess` bits). `final`: the access is to the translation of
   * a linear address; otherwise it is to a guest paging-structure entry, which counts as a write
   * when EPT A/D flags are on (SDM 29.3.3.2; the qualification then has bits 0 and 1 set).
   */
  translateFast(gpa: number, access: number, final: boolean): EptStatus {
    if (this.root < 0) throw new Error("vtlab bug: EPT translation before an EPTP was loaded");
    this.translations++;
    this.lastReferences = 0;
    let acc = access & EPT_RWX;
    if (!final && this.accessedDirty) acc |= EptAccess.Read | EptAccess.Write;
    const write = (acc & EptAccess.Write) !== 0;
    const low = gpa & 0xfff;
    const gfn = (gpa - low) / 4096;
    // 4-level EPT uses GPA bits 47:0 only.
    const gfnEff = this.levels === 4 ? gfn % 2 ** 36 : gfn;
    const ctx = this.root;
    const caches = this.caches;

    // Nested TLB: a guest-physical mapping that allows the access (and, for a write, is dirty).
    const ntlb = caches.nestedTlb;
    if (ntlb.enabled) {
      const s = ntlb.lookup(gfnEff, ctx);
      if (s >= 0) {
        const bits = ntlb.bits[s] as number;
        if ((acc & ~bits & EPT_RWX) === 0 && (!write || (bits & NTLB_DIRTY) !== 0)) {
          this.hpa = (ntlb.value[s] as number) + low;
          this.perms = bits & EPT_RWX;
          this.pageShift = 12;
          this.dirty = (bits & NTLB_DIRTY) !== 0;
          return EptStatus.Ok;
        }
      }
    }

    // Guest-physical paging-structure caches: start below the deepest level that hits.
    let level: number = this.levels;
    let table = this.root;
    let perms = EPT_RWX;
    const psc = caches.eptPsc;
    if ((psc[2] as TranslationCache).enabled) {
      for (let l = 2; l <= this.levels; l++) {
        const c = psc[l] as TranslationCache;
        const s = c.lookup(Math.floor(gfnEff / (SPAN[l] as number)), ctx);
        if (s >= 0) {
          table = c.value[s] as number;
          perms = c.bits[s] as number;
          level = l - 1;
          break;
        }
      }
    }
    const walkStart = level;

    // The walk: read, check, combine.
    const e = this.e;
    const memory = this.memory;
    for (;;) {
      const address = table + (Math.floor(gfnEff / (SPAN[level] as number)) % 512) * 8;
      if (memory.read64(address, e) !== undefined) {
        e.lo = 0xffff_ffff; // nothing answers beyond machine memory: the read sees all ones
        e.hi = 0xffff_ffff;
      }
      this.lastReferences++;
      const lo = e.lo;
      const hi = e.hi;
      if ((lo & EPT_RWX) === 0) {
        this.references += this.lastReferences;
        return this.violation(gpa, gfnEff, acc, 0, level, final);
      }
      const reason = eptMisconfigReason(lo, hi, level, this.caps, this.rsvdHi);
      if (reason !== 0) {
        this.references += this.lastReferences;
        this.misconfigs++;
        this.fault = { kind: "ept-misconfig", gpa, level, reason: reason as EptMisconfigReason, entryLo: lo, entryHi: hi };
        return EptStatus.Misconfig;
      }
      perms &= lo;
      this.stepAddress[level] = address;
      this.stepLo[level] = lo;
      this.stepHi[level] = hi;
      this.stepPerms[level] = perms & EPT_RWX;
      if (level === 1 || (level <= 3 && (lo & EPT_PAGE_SIZE) !== 0)) break;
      table = eptEntryAddress(lo, hi);
      level--;
    }
    const leaf = level;
    this.walks++;
    this.references += this.lastReferences;
    if ((acc & ~perms & EPT_RWX) !== 0) return this.violation(gpa, gfnEff, acc, perms & EPT_RWX, leaf, final);

    // Accessed flags on every entry used, the dirty flag on the leaf for a write (SDM 29.3.5).
    let dirty = true;
    if (this.accessedDirty) {
      for (let l = walkStart; l >= leaf; l--) {
        const lo = this.stepLo[l] as number;
        const want = l === leaf && write ? EPT_A | EPT_D : EPT_A;
        if ((lo & want) !== want) {
          const nlo = (lo | want) >>> 0;
          memory.write32(this.stepAddress[l] as number, nlo);
          this.stepLo[l] = nlo;
          this.adWrites++;
        }
      }
      dirty = ((this.stepLo[leaf] as number) & EPT_D) !== 0;
    }

    const shift = 12 + 9 * (leaf - 1);
    const mask = leaf === 1 ? EPT_LO_ADDR_MASK_4K : leaf === 2 ? EPT_LO_ADDR_MASK_2M : EPT_LO_ADDR_MASK_1G;
    this.hpa = eptEntryAddress(this.stepLo[leaf] as number, this.stepHi[leaf] as number, mask) + (gpa % (PAGE_BYTES[leaf] as number));
    this.perms = perms & EPT_RWX;
    this.pageShift = shift;
    this.dirty = dirty;

    // Fill the caches: each entry that referenced a table, then the translation itself.
    if ((psc[2] as TranslationCache).enabled) {
      for (let l = walkStart; l > leaf; l--) {
        const c = psc[l] as TranslationCache;
        const s = c.fill(Math.floor(gfnEff / (SPAN[l] as number)), ctx);
        c.value[s] = eptEntryAddress(this.stepLo[l] as number, this.stepHi[l] as number);
        c.bits[s] = this.stepPerms[l] as number;
      }
    }
    if (ntlb.enabled) {
      const s = ntlb.fill(gfnEff, ctx);
      ntlb.value[s] = this.hpa - low;
      ntlb.bits[s] = this.perms | (dirty ? NTLB_DIRTY : 0);
    }
    return EptStatus.Ok;
  }

  /**
   * Record an EPT violation: the qualification of SDM Table 28-7 (access bits 2:0, the AND of
   * the entries' R/W/X in bits 5:3, linear address valid, final access or walk). The violation
   * invalidates the guest-physical mappings that would translate the address (SDM 29.4.3.1).
   */
  violation(gpa: number, gfnEff: number, access: number, perms: number, level: number, final: boolean): EptStatus {
    this.violations++;
    const qualification = (access & EPT_RWX) | (perms << 3) | EPT_GLA_VALID | (final ? EPT_GLA_FAULT : 0);
    this.fault = { kind: "ept-violation", gpa, qualification, level, reference: final ? GuestReference.Final : GuestReference.PagingStructure };
    const ctx = this.root;
    this.caches.nestedTlb.invalidate(gfnEff, ctx);
    for (let l = 2; l <= this.levels; l++) this.caches.eptPsc[l]!.invalidate(Math.floor(gfnEff / (SPAN[l] as number)), ctx);
    return EptStatus.Violation;
  }

  /** The guest frame number as the EPT walk uses it (4-level EPT ignores GPA bits above 47). */
  effectiveGfn(gpa: number): number {
    const gfn = (gpa - (gpa & 0xfff)) / 4096;
    return this.levels === 4 ? gfn % 2 ** 36 : gfn;
  }

  /**
   * INVEPT (SDM 31.3): single-context invalidates the guest-physical and combined mappings of the
   * EP4TA in `eptp`; all-context, every mapping. An unsupported type or an invalid EPTP fails
   * with VM-instruction error 28.
   */
  invept(type: number, eptpLo = 0, eptpHi = 0): VmFailValid | undefined {
    if (type === InveptType.SingleContext && this.caps.inveptSingleContext) {
      const f = decodeEptp(eptpLo, eptpHi, this.caps);
      if (f.kind === "eptp-invalid") return inveptFail(`INVEPT single-context with an invalid EPTP: ${f.message}`);
      this.caches.flushContext(f.root);
      return undefined;
    }
    if (type === InveptType.AllContext && this.caps.inveptAllContext) {
      this.caches.flushAll();
      return undefined;
    }
    return inveptFail(`INVEPT type ${type} is not supported`);
  }
}

function inveptFail(message: string): VmFailValid {
  return { kind: "vmfail-valid", error: VmInstructionError.InvalidInveptInvvpidOperand, message };
}
