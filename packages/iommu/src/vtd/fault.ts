/**
 * Non-recoverable fault reasons of legacy-mode DMA remapping (VT-d 7.1.3, the table of
 * unsuccessful translation conditions: LRT root-table, LCT context-table, LSL second-level and
 * LGN general conditions) and primary fault logging (VT-d 7.2.1, 7.3): fault-recording
 * registers, FSTS_REG, FECTL_REG and the fault event.
 */
import {
  FECTL_IM,
  FECTL_IP,
  FRCD_FI_LO_MASK,
  FRCD_SID_MASK,
  FRCD_W3_F,
  FRCD_W3_FR_MASK,
  FRCD_W3_T,
  FSTS_FRI_SHIFT,
  FSTS_ICE,
  FSTS_IQE,
  FSTS_ITE,
  FSTS_PFO,
  FSTS_PPF,
  FSTS_RW1C,
} from "./regs.js";

/** VT-d fault reason codes (the FR field of a fault record). */
export const FaultReason = {
  /** VT-d LRT.2 (1h): the present (P) field of the root entry used to process the request is clear. */
  RootEntryNotPresent: 0x1,
  /** VT-d LCT.2 (2h): the present (P) field of the context entry used to process the request is clear. */
  ContextEntryNotPresent: 0x2,
  /** VT-d LCT.4 (3h): invalid programming of a present context entry: AW not in SAGAW, or TT reserved/unsupported. */
  ContextEntryInvalid: 0x3,
  /** VT-d LGN.1 (4h): input address above 2^X - 1, X = min(MGAW, AGAW); for pass-through, above the host address width. */
  AddressBeyondWidth: 0x4,
  /** VT-d LGN.2 (5h): write request to a page without write permission. */
  WriteNotPermitted: 0x5,
  /** VT-d LGN.3 (6h): read request to a page without read permission. */
  ReadNotPermitted: 0x6,
  /** VT-d LSL.1 (7h): error accessing a second-level paging entry (its table pointer leads outside memory). */
  SecondLevelEntryAccessError: 0x7,
  /** VT-d LRT.1 (8h): error accessing the root entry (root-table address outside memory or above HAW). */
  RootEntryAccessError: 0x8,
  /** VT-d LCT.1 (9h): error accessing the context entry (context-table pointer outside memory). */
  ContextEntryAccessError: 0x9,
  /** VT-d LRT.3 (Ah): non-zero reserved field in a present root entry. */
  RootEntryReserved: 0xa,
  /** VT-d LCT.3 (Bh): non-zero reserved field in a present context entry. */
  ContextEntryReserved: 0xb,
  /** VT-d LSL.2 (Ch): non-zero reserved field in a second-level paging entry with R or W set. */
  SecondLevelEntryReserved: 0xc,
  /** VT-d LCT.5 (Dh): translation request or translated request blocked by the context entry's TT (not produced: only untranslated requests are modelled). */
  TranslationBlocked: 0xd,
} as const;
export type FaultReason = (typeof FaultReason)[keyof typeof FaultReason];

const REASON_NAMES: Record<number, string> = {
  [FaultReason.RootEntryNotPresent]: "root entry not present",
  [FaultReason.ContextEntryNotPresent]: "context entry not present",
  [FaultReason.ContextEntryInvalid]: "invalid context entry",
  [FaultReason.AddressBeyondWidth]: "address beyond the guest address width",
  [FaultReason.WriteNotPermitted]: "write not permitted",
  [FaultReason.ReadNotPermitted]: "read not permitted",
  [FaultReason.SecondLevelEntryAccessError]: "error accessing a second-level paging entry",
  [FaultReason.RootEntryAccessError]: "error accessing the root entry",
  [FaultReason.ContextEntryAccessError]: "error accessing the context entry",
  [FaultReason.RootEntryReserved]: "reserved field set in the root entry",
  [FaultReason.ContextEntryReserved]: "reserved field set in the context entry",
  [FaultReason.SecondLevelEntryReserved]: "reserved field set in a second-level paging entry",
  [FaultReason.TranslationBlocked]: "translation blocked by the context entry's TT",
};

const CONDITION_CODES: Record<number, string> = {
  [FaultReason.RootEntryNotPresent]: "LRT.2",
  [FaultReason.ContextEntryNotPresent]: "LCT.2",
  [FaultReason.ContextEntryInvalid]: "LCT.4",
  [FaultReason.AddressBeyondWidth]: "LGN.1",
  [FaultReason.WriteNotPermitted]: "LGN.2",
  [FaultReason.ReadNotPermitted]: "LGN.3",
  [FaultReason.SecondLevelEntryAccessError]: "LSL.1",
  [FaultReason.RootEntryAccessError]: "LRT.1",
  [FaultReason.ContextEntryAccessError]: "LCT.1",
  [FaultReason.RootEntryReserved]: "LRT.3",
  [FaultReason.ContextEntryReserved]: "LCT.3",
  [FaultReason.SecondLevelEntryReserved]: "LSL.2",
  [FaultReason.TranslationBlocked]: "LCT.5",
};

export function faultReasonName(reason: number): string {
  return REASON_NAMES[reason] ?? `fault reason 0x${reason.toString(16)}`;
}

/** The specification's condition code for a fault reason ("LSL.2"), or "" if unknown. */
export function faultCondition(reason: number): string {
  return CONDITION_CODES[reason] ?? "";
}

/**
 * Qualified faults are recorded only when the FPD field of the context entry used is clear.
 * Faults found before a context entry can be trusted (root table, context-table access, reserved
 * bits in the context entry) are never qualified. FPD is evaluated even in a non-present context
 * entry, so "context entry not present" is qualified.
 */
export function isQualifiedFault(reason: number): boolean {
  switch (reason) {
    case FaultReason.ContextEntryNotPresent:
    case FaultReason.ContextEntryInvalid:
    case FaultReason.AddressBeyondWidth:
    case FaultReason.WriteNotPermitted:
    case FaultReason.ReadNotPermitted:
    case FaultReason.SecondLevelEntryAccessError:
    case FaultReason.SecondLevelEntryReserved:
    case FaultReason.TranslationBlocked:
      return true;
    default:
      return false;
  }
}

/** An interrupt message the unit sends (fault event or invalidation completion event). */
export interface RemappingEventMessage {
  /** FEUADDR:FEADDR (or IEUADDR:IEADDR): the MSI address the driver programmed. */
  readonly address: number;
  /** FEDATA (or IEDATA): the MSI data the driver programmed. */
  readonly data: number;
}

/** A decoded fault record, for inspection. */
export interface FaultRecord {
  readonly index: number;
  readonly sourceId: number;
  /** FI: page address of the faulted request (bits 63:12; low 12 bits zero). */
  readonly pageAddress: number;
  /** T: true for a read request, false for a write. */
  readonly read: boolean;
  readonly reason: number;
  readonly reasonName: string;
}

/**
 * The interrupt-message registers and the pending/mask logic that FECTL_REG and IECTL_REG share
 * (VT-d 7.3: an event sets IP; with IM clear the message is sent and IP cleared; with IM set it
 * stays pending until software clears IM).
 */
export class EventControl {
  mask = true;
  pending = false;
  data = 0;
  address = 0;
  upperAddress = 0;
  /** Messages delivered so far. */
  delivered = 0;

  constructor(private readonly send: ((message: RemappingEventMessage) => void) | undefined) {}

  read(): number {
    return ((this.mask ? FECTL_IM : 0) | (this.pending ? FECTL_IP : 0)) >>> 0;
  }

  /** Writes the control register: only IM is writable. Unmasking delivers a pending message. */
  write(value: number): void {
    this.mask = (value & FECTL_IM) !== 0;
    if (!this.mask && this.pending) this.deliver();
  }

  raise(): void {
    if (this.pending) return;
    this.pending = true;
    if (!this.mask) this.deliver();
  }

  /** Software serviced every condition: a still-pending (masked) message is dropped. */
  clearPending(): void {
    this.pending = false;
  }

  private deliver(): void {
    this.pending = false;
    this.delivered++;
    this.send?.({ address: this.upperAddress * 0x1_0000_0000 + (this.address >>> 0), data: this.data >>> 0 });
  }
}

/**
 * Primary fault logging: NFR + 1 fault-recording registers used as a ring through an internal
 * index, FSTS_REG, and the fault event.
 */
export class FaultRecorder {
  /** Four dwords per record, as software reads them. */
  private readonly records: Uint32Array;
  /** Internal index of the register the next fault goes to. */
  private nextIndex = 0;
  /** RW1C status bits of FSTS_REG (PFO, IQE, ICE, ITE). */
  private status = 0;
  /** FSTS_REG.FRI: index of the first pending fault at the moment PPF was set (it does not move as records are cleared). */
  private firstPending = 0;
  /** How many F fields are set (PPF = pendingCount > 0). */
  private pendingCount = 0;
  readonly event: EventControl;
  /** Faults written to a recording register. */
  recorded = 0;
  /** Faults dropped because the register at the internal index still held one (PFO set). */
  dropped = 0;

  constructor(
    readonly count: number,
    onFaultEvent: ((message: RemappingEventMessage) => void) | undefined,
  ) {
    if (!Number.isInteger(count) || count < 1 || count > 256) {
      throw new RangeError(`a remapping unit has 1 to 256 fault-recording registers; got ${count}`);
    }
    this.records = new Uint32Array(count * 4);
    this.event = new EventControl(onFaultEvent);
  }

  /**
   * Record a fault (VT-d 7.2.1). Returns false when it was dropped: the register at the internal
   * index still has F set, so hardware sets PFO instead.
   */
  record(sourceId: number, address: number, read: boolean, reason: number): boolean {
    const i = this.nextIndex;
    const base = i * 4;
    if (((this.records[base + 3] as number) & FRCD_W3_F) !== 0) {
      this.dropped++;
      this.setStatus(FSTS_PFO);
      return false;
    }
    const page = address - (address % 0x1000);
    this.records[base] = (page % 0x1_0000_0000) & FRCD_FI_LO_MASK;
    this.records[base + 1] = Math.floor(page / 0x1_0000_0000) >>> 0;
    this.records[base + 2] = sourceId & FRCD_SID_MASK;
    this.records[base + 3] = (FRCD_W3_F | (read ? FRCD_W3_T : 0) | (reason & FRCD_W3_FR_MASK)) >>> 0;
    this.nextIndex = (i + 1) % this.count;
    this.recorded++;
    const hadStatus = this.hasStatus();
    if (this.pendingCount++ === 0) this.firstPending = i;
    if (!hadStatus) this.event.raise();
    return true;
  }

  /** Set an error status bit (IQE, ICE, ITE or PFO) and raise the fault event if it is the first condition. */
  setStatus(bit: number): void {
    const hadStatus = this.hasStatus();
    this.status |= bit & FSTS_RW1C;
    if (!hadStatus) this.event.raise();
  }

  hasStatusBit(bit: number): boolean {
    return (this.status & bit) !== 0;
  }

  readFsts(): number {
    const ppf = this.pendingCount > 0;
    return (this.status | (ppf ? FSTS_PPF | (this.firstPending << FSTS_FRI_SHIFT) : 0)) >>> 0;
  }

  /** FSTS_REG write: RW1C bits clear where 1 is written; PPF and FRI are read-only. */
  writeFsts(value: number): void {
    this.status &= ~(value & FSTS_RW1C);
    this.afterClear();
  }

  /** Read dword `dword` (0..3) of record `index`. */
  readRecord(index: number, dword: number): number {
    return this.records[index * 4 + dword] ?? 0;
  }

  /** Only F (bit 127) is writable, RW1C; everything else is read-only. */
  writeRecord(index: number, dword: number, value: number): void {
    if (dword !== 3 || (value & FRCD_W3_F) === 0) return;
    const base = index * 4;
    const w3 = this.records[base + 3] as number;
    if ((w3 & FRCD_W3_F) === 0) return;
    this.records[base + 3] = (w3 & ~FRCD_W3_F) >>> 0;
    this.pendingCount--;
    this.afterClear();
  }

  /** Records with F set, oldest first (from the first pending index onward). */
  pending(): FaultRecord[] {
    const out: FaultRecord[] = [];
    for (let k = 0; k < this.count; k++) {
      const i = (this.firstPending + k) % this.count;
      const base = i * 4;
      const w3 = this.records[base + 3] as number;
      if ((w3 & FRCD_W3_F) === 0) continue;
      const reason = w3 & FRCD_W3_FR_MASK;
      out.push({
        index: i,
        sourceId: (this.records[base + 2] as number) & FRCD_SID_MASK,
        pageAddress: (this.records[base + 1] as number) * 0x1_0000_0000 + (this.records[base] as number),
        read: (w3 & FRCD_W3_T) !== 0,
        reason,
        reasonName: faultReasonName(reason),
      });
    }
    return out;
  }

  /** Translation disabled: the internal index resets to zero (VT-d 7.2.1). */
  resetIndex(): void {
    this.nextIndex = 0;
  }

  private hasStatus(): boolean {
    return (this.status & (FSTS_PFO | FSTS_IQE | FSTS_ICE | FSTS_ITE)) !== 0 || this.pendingCount > 0;
  }

  private afterClear(): void {
    if (!this.hasStatus()) this.event.clearPending();
  }
}
