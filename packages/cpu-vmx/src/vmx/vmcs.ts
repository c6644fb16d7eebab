/**
 * The VMCS: every supported component stored by its SDM encoding, VMREAD/VMWRITE with the SDM's
 * semantics (SDM Vol. 3C 30.3: width truncation, the high-half access type of 64-bit fields,
 * unsupported components and read-only fields refused with their VM-instruction errors), and the
 * launch state that decides between VMLAUNCH and VMRESUME (SDM 25.1, 25.11.3).
 *
 * Values are 64 bits, kept as two 32-bit halves; no BigInt. The hypervisor (and the CPU on VM
 * exits) use the typed accessors; the VM-exit information fields are written with
 * `setExitInfo`, which is the processor's privilege and not VMWRITE's.
 */
import { VmcsField, VmcsType, VmcsWidth, vmcsFieldName, vmcsHighAccess, vmcsType, vmcsWidth } from "./vmcs-fields.js";

/** VM-instruction error numbers (SDM Vol. 3C 30.4, Table 30-1). */
export const VmInstructionError = {
  /** VMCALL executed in VMX root operation */
  VmcallInRoot: 1,
  /** VMCLEAR with invalid physical address */
  VmclearInvalidAddress: 2,
  /** VMLAUNCH with non-clear VMCS */
  VmlaunchNonClear: 4,
  /** VMRESUME with non-launched VMCS */
  VmresumeNonLaunched: 5,
  /** VM entry with invalid control field(s) */
  EntryInvalidControls: 7,
  /** VM entry with invalid host-state field(s) */
  EntryInvalidHostState: 8,
  /** VMPTRLD with invalid physical address */
  VmptrldInvalidAddress: 9,
  /** VMPTRLD with incorrect VMCS revision identifier */
  VmptrldBadRevision: 11,
  /** VMREAD/VMWRITE from/to unsupported VMCS component */
  UnsupportedComponent: 12,
  /** VMWRITE to read-only VMCS component */
  WriteReadOnly: 13,
  /** VM entry with events blocked by MOV SS */
  EntryBlockedByMovSs: 26,
  /** Invalid operand to INVEPT/INVVPID */
  InvalidInveptInvvpidOperand: 28,
} as const;
export type VmInstructionError = (typeof VmInstructionError)[keyof typeof VmInstructionError];

/** VMfailValid: the instruction failed and VM_INSTRUCTION_ERROR holds why (SDM 30.2). */
export interface VmFailValid {
  readonly kind: "vmfail-valid";
  readonly error: VmInstructionError;
  readonly field?: number;
  readonly message: string;
}

/** Launch state of a VMCS (SDM 25.1). */
export type LaunchState = "clear" | "launched";

const SUPPORTED: readonly number[] = Object.values(VmcsField);
const SLOT = new Int16Array(0x8000).fill(-1);
SUPPORTED.forEach((encoding, slot) => {
  SLOT[encoding] = slot;
});

/** Width masks in the low half (16-bit and 32-bit fields keep only these bits). */
function lowMask(encoding: number): number {
  const w = vmcsWidth(encoding);
  return w === VmcsWidth.Bits16 ? 0xffff : -1;
}

/**
 * The groups of fields whose changes `Vmcs.changed` records, for VM entry's checks (SDM 27.2,
 * 27.3.1): a check whose inputs kept their values since the last entry that passed it passes
 * again, so vmEntry re-runs a group's checks only when one of its fields changed value. Every
 * check of the SDM reads VMCS fields and the processor's fixed capabilities only, which makes
 * this exact.
 */
export const VMCS_GROUP_CONTROL = 1;
export const VMCS_GROUP_HOST = 2;
export const VMCS_GROUP_GUEST = 4;
export const VMCS_GROUPS_ALL = 7;

/**
 * Fields every entry checks afresh, in no group: they change on almost every exit or entry (RIP,
 * RSP, RFLAGS, the activity and interruptibility states, the event to inject, the timer value).
 */
const PER_ENTRY: readonly number[] = [
  VmcsField.GUEST_RIP,
  VmcsField.GUEST_RSP,
  VmcsField.GUEST_RFLAGS,
  VmcsField.GUEST_ACTIVITY_STATE,
  VmcsField.GUEST_INTERRUPTIBILITY_INFO,
  VmcsField.GUEST_PENDING_DBG_EXCEPTIONS,
  VmcsField.VMX_PREEMPTION_TIMER_VALUE,
  VmcsField.VM_ENTRY_INTR_INFO_FIELD,
  VmcsField.VM_ENTRY_EXCEPTION_ERROR_CODE,
  VmcsField.VM_ENTRY_INSTRUCTION_LEN,
];

/** Per slot: the low-half mask, whether the high half is kept (64-bit and natural width), the change group. */
const SLOT_MASK = new Int32Array(SUPPORTED.length);
const SLOT_WIDE = new Uint8Array(SUPPORTED.length);
const SLOT_GROUP = new Uint8Array(SUPPORTED.length);
/**
 * Per slot: 1 for the guest segment-register fields (selector, base, limit, access rights of
 * ES, CS, SS, DS, FS, GS, TR and LDTR), which a VM exit may save lazily (Vmcs.deferSave).
 */
const SLOT_LAZY = new Uint8Array(SUPPORTED.length);
SUPPORTED.forEach((encoding, slot) => {
  if (/^GUEST_(ES|CS|SS|DS|FS|GS|TR|LDTR)_(SELECTOR|BASE|LIMIT|AR_BYTES)$/.test(vmcsFieldName(encoding) ?? "")) SLOT_LAZY[slot] = 1;
  SLOT_MASK[slot] = lowMask(encoding);
  const w = vmcsWidth(encoding);
  SLOT_WIDE[slot] = w === VmcsWidth.Bits64 || w === VmcsWidth.Natural ? 1 : 0;
  const t = vmcsType(encoding);
  const group = t === VmcsType.Control ? VMCS_GROUP_CONTROL : t === VmcsType.HostState ? VMCS_GROUP_HOST : t === VmcsType.GuestState ? VMCS_GROUP_GUEST : 0;
  SLOT_GROUP[slot] = PER_ENTRY.includes(encoding) ? 0 : group;
});

export class Vmcs {
  /** The VMCS revision identifier (IA32_VMX_BASIC bits 30:0); an arbitrary model value. */
  static readonly REVISION_ID = 0x0000_0001;

  private readonly lo = new Int32Array(SUPPORTED.length);
  private readonly hi = new Int32Array(SUPPORTED.length);
  launchState: LaunchState = "clear";
  /**
   * The groups (VMCS_GROUP_*) with a field whose value changed since the last VM entry whose
   * checks passed (vmEntry clears it then); every group at first.
   */
  changed = VMCS_GROUPS_ALL;
  /** The vCPU whose entry checks last passed with this VMCS (its capabilities are the checks' other input). */
  checkedBy: object | undefined = undefined;
  /**
   * A VM exit's save of the guest segment registers, not yet made (deferSave): the vCPU that
   * holds them and the function that writes them into this VMCS. Any access to one of those
   * fields makes the save first, so every read sees what the exit saved; a VM entry from the
   * same vCPU with the save still pending takes its segment registers as they are (loading what
   * the exit would have saved is, after normalisation, what they already hold).
   */
  private lazyCpu: object | undefined = undefined;
  private lazySave: ((cpu: never, vmcs: Vmcs) => void) | undefined = undefined;

  /** Defer the save of the guest segment fields to the first access of one (see lazyCpu). */
  deferSave<C extends object>(cpu: C, save: (cpu: C, vmcs: Vmcs) => void): void {
    this.lazyCpu = cpu;
    this.lazySave = save as (cpu: never, vmcs: Vmcs) => void;
  }

  /** Whether the save of the guest segment fields is pending with `cpu`'s registers. */
  savePendingWith(cpu: object): boolean {
    return this.lazyCpu === cpu;
  }

  /** Make the pending save of the guest segment fields now. */
  private materialize(): void {
    const cpu = this.lazyCpu as never;
    const save = this.lazySave!;
    this.lazyCpu = undefined;
    this.lazySave = undefined;
    save(cpu, this);
  }
  /** Scratch for 64-bit reads. */
  readonly out = { lo: 0, hi: 0 };

  /** VMCLEAR: the launch state becomes clear (SDM 30.3 "VMCLEAR"). */
  clear(): void {
    if (this.lazyCpu !== undefined) this.materialize();
    this.launchState = "clear";
    this.changed = VMCS_GROUPS_ALL;
  }

  /** Whether `encoding` names a component this VMCS supports (either access type). */
  static supports(encoding: number): boolean {
    if (!Number.isInteger(encoding) || encoding < 0 || encoding > 0x7fff) return false;
    const base = encoding & ~1;
    if (SLOT[base] === -1) return false;
    return !vmcsHighAccess(encoding) || vmcsWidth(base) === VmcsWidth.Bits64;
  }

  /**
   * VMREAD: the value of the component (the high half of a 64-bit field for a high-access
   * encoding), as a number exact below 2^53, or VMfailValid(12) for an unsupported component.
   * `readHalves` gives the full 64 bits.
   */
  vmread(encoding: number): number | VmFailValid {
    if (!Vmcs.supports(encoding)) return fail(VmInstructionError.UnsupportedComponent, encoding, "VMREAD from unsupported VMCS component");
    const slot = SLOT[encoding & ~1] as number;
    if (this.lazyCpu !== undefined && SLOT_LAZY[slot] !== 0) this.materialize();
    if (vmcsHighAccess(encoding)) return this.hi[slot]! >>> 0;
    const w = vmcsWidth(encoding);
    if (w === VmcsWidth.Bits16 || w === VmcsWidth.Bits32) return this.lo[slot]! >>> 0;
    return (this.hi[slot]! >>> 0) * 0x1_0000_0000 + (this.lo[slot]! >>> 0);
  }

  /**
   * VMWRITE: VMfailValid(12) for an unsupported component, VMfailValid(13) for a read-only
   * (VM-exit information) field; otherwise the value is truncated to the field's width.
   */
  vmwrite(encoding: number, lo: number, hi = 0): VmFailValid | undefined {
    if (!Vmcs.supports(encoding)) return fail(VmInstructionError.UnsupportedComponent, encoding, "VMWRITE to unsupported VMCS component");
    if (vmcsType(encoding) === VmcsType.ReadOnlyData) return fail(VmInstructionError.WriteReadOnly, encoding, "VMWRITE to read-only VMCS component");
    const slot = SLOT[encoding & ~1] as number;
    if (this.lazyCpu !== undefined && SLOT_LAZY[slot] !== 0) this.materialize();
    if (vmcsHighAccess(encoding)) {
      if (this.hi[slot] !== (lo | 0)) this.changed |= SLOT_GROUP[slot]!;
      this.hi[slot] = lo;
      return undefined;
    }
    this.store(slot, lo, hi);
    return undefined;
  }

  /** Read a 32-bit (or 16-bit) field directly, for the processor's own use. Throws on a bug. */
  read32(field: VmcsField): number {
    const slot = slotOf(field);
    if (this.lazyCpu !== undefined && SLOT_LAZY[slot] !== 0) this.materialize();
    return this.lo[slot]! >>> 0;
  }

  /** Read a 64-bit or natural-width field into `out` (lo/hi). */
  readHalves(field: VmcsField): { lo: number; hi: number } {
    const slot = slotOf(field);
    if (this.lazyCpu !== undefined && SLOT_LAZY[slot] !== 0) this.materialize();
    this.out.lo = this.lo[slot]! >>> 0;
    this.out.hi = this.hi[slot]! >>> 0;
    return this.out;
  }

  /** A natural-width or 64-bit field as a signed number (exact for canonical addresses). */
  readNatural(field: VmcsField): number {
    const slot = slotOf(field);
    if (this.lazyCpu !== undefined && SLOT_LAZY[slot] !== 0) this.materialize();
    return this.hi[slot]! * 0x1_0000_0000 + (this.lo[slot]! >>> 0);
  }

  /** The processor's write of any field, read-only ones included (VM exits fill them). */
  setField(field: VmcsField, lo: number, hi = 0): void {
    this.store(slotOf(field), lo, hi);
  }

  /** The processor's write of the field in `slot` (vmcsSlot): setField without the field lookup. */
  putSlot(slot: number, lo: number, hi: number): void {
    this.store(slot, lo, hi);
  }

  /** The processor's write of the natural-width field in `slot` (vmcsSlot): setNatural without the field lookup. */
  putNatural(slot: number, value: number): void {
    this.store(slot, value >>> 0, Math.floor(value / 0x1_0000_0000) | 0);
  }

  /**
   * The processor's accessors for a slot outside the lazily saved segment fields (vmcsEagerSlot):
   * as putSlot, putNatural, slotLow and slotNatural, without the check for a pending save (no
   * such field is ever saved lazily). For the VM exit and entry paths, where they are inlined.
   */
  eagerPut(slot: number, lo: number, hi: number): void {
    const l = lo & SLOT_MASK[slot]!;
    const h = SLOT_WIDE[slot] !== 0 ? hi | 0 : 0;
    if (this.lo[slot] !== l || this.hi[slot] !== h) {
      this.changed |= SLOT_GROUP[slot]!;
      this.lo[slot] = l;
      this.hi[slot] = h;
    }
  }

  /** putNatural for an eager slot (see eagerPut). */
  eagerPutNatural(slot: number, value: number): void {
    this.eagerPut(slot, value >>> 0, Math.floor(value / 0x1_0000_0000) | 0);
  }

  /** slotLow for an eager slot (see eagerPut). */
  eagerLow(slot: number): number {
    return this.lo[slot]! >>> 0;
  }

  /** The high half of an eager slot (see eagerPut), unsigned. */
  eagerHigh(slot: number): number {
    return this.hi[slot]! >>> 0;
  }

  /** slotNatural for an eager slot (see eagerPut). */
  eagerNatural(slot: number): number {
    return this.hi[slot]! * 0x1_0000_0000 + (this.lo[slot]! >>> 0);
  }

  /** The low half of the field in `slot` (vmcsSlot), unsigned. */
  slotLow(slot: number): number {
    if (this.lazyCpu !== undefined && SLOT_LAZY[slot] !== 0) this.materialize();
    return this.lo[slot]! >>> 0;
  }

  /** The natural-width field in `slot` (vmcsSlot) as a signed number, as readNatural. */
  slotNatural(slot: number): number {
    if (this.lazyCpu !== undefined && SLOT_LAZY[slot] !== 0) this.materialize();
    return this.hi[slot]! * 0x1_0000_0000 + (this.lo[slot]! >>> 0);
  }

  /** Store a slot's halves (truncated to its width), recording a change of value in `changed`. */
  private store(slot: number, lo: number, hi: number): void {
    if (this.lazyCpu !== undefined && SLOT_LAZY[slot] !== 0) this.materialize();
    this.eagerPut(slot, lo, hi);
  }

  /** Set a natural-width field from a signed number below 2^53 in magnitude. */
  setNatural(field: VmcsField, value: number): void {
    this.setField(field, value >>> 0, Math.floor(value / 0x1_0000_0000) | 0);
  }

  /** A plain snapshot of every non-zero field, by SDM name: for inspection and state saving. */
  snapshot(): Record<string, string> {
    if (this.lazyCpu !== undefined) this.materialize();
    const out: Record<string, string> = {};
    SUPPORTED.forEach((encoding, slot) => {
      const lo = this.lo[slot]! >>> 0;
      const hi = this.hi[slot]! >>> 0;
      if ((lo | hi) !== 0) out[vmcsFieldName(encoding) ?? encoding.toString(16)] = `0x${hi.toString(16)}${lo.toString(16).padStart(hi !== 0 ? 8 : 1, "0")}`;
    });
    return out;
  }
}

/** The storage slot of a supported field, for the processor's slot accessors (putSlot, slotLow). */
export function vmcsSlot(field: VmcsField): number {
  return slotOf(field);
}

/**
 * The storage slot of a supported field outside the lazily saved guest segment fields, for the
 * eager accessors (Vmcs.eagerPut, eagerLow, ...). Throws for a segment field (a bug in vtlab).
 */
export function vmcsEagerSlot(field: VmcsField): number {
  const slot = slotOf(field);
  if (SLOT_LAZY[slot] !== 0) throw new Error(`vtlab bug: VMCS field 0x${field.toString(16)} is saved lazily: use vmcsSlot and the checked accessors`);
  return slot;
}

function slotOf(field: number): number {
  // (Small enough to inline on the VM exit and entry paths; the error is thrown out of line.)
  const slot = field >= 0 && field <= 0x7fff ? SLOT[field & 0x7ffe]! : -1;
  if (slot < 0) unsupportedField(field);
  return slot;
}

function unsupportedField(field: number): never {
  throw new Error(`vtlab bug: VMCS field 0x${field.toString(16)} is not supported`);
}

function fail(error: VmInstructionError, field: number, what: string): VmFailValid {
  const name = vmcsFieldName(field);
  return { kind: "vmfail-valid", error, field, message: `${what} 0x${field.toString(16)}${name !== undefined ? ` (${name})` : ""}` };
}
