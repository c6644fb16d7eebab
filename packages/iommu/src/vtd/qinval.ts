/**
 * Queued invalidation (VT-d 6.5.2): a ring of 128-bit invalidation descriptors in memory that
 * software fills and hardware consumes from IQH_REG to IQT_REG. Modelled descriptors:
 * context-cache (cc_inv_dsc), IOTLB (iotlb_inv_dsc) and invalidation wait (inv_wait_dsc).
 * Device-TLB and interrupt-entry-cache descriptors need capabilities this unit does not report
 * (ECAP_REG.DT, ECAP_REG.IR) and are invalid here, as are the scalable-mode ones.
 *
 * Descriptors are read from memory once, checked for reserved bits, and executed; the first bad
 * one stops the queue with FSTS_REG.IQE set and IQH_REG pointing at it (VT-d 6.5.2.10).
 */
import type { PhysicalMemory, U64 } from "@vtlab/arch";
import { EventControl, type RemappingEventMessage } from "./fault.js";
import {
  type ContextInvalidation,
  ICS_IWC,
  INV_WAIT_IF,
  INV_WAIT_SW,
  IQA_ADDR_LO_MASK,
  IQA_DW,
  IQA_QS_MASK,
  IQ_QH_MASK,
  InvalidationDescriptorType,
  InvalidationQueueError,
  type IotlbInvalidation,
} from "./regs.js";

/** What executing a descriptor asks of the unit's caches. */
export interface InvalidationTarget {
  invalidateContext(granularity: ContextInvalidation, domainId: number, sourceId: number, functionMask: number): void;
  invalidateIotlb(granularity: IotlbInvalidation, domainId: number, address: number, addressMask: number): void;
}

// cc_inv_dsc reserved bits: qword 0 bits 8:6 and 15:12 (dword 0), 63:50 (bits 31:18 of dword 1); qword 1 all.
const CC_D0_RSVD = 0x0000_f1c0;
const CC_D1_RSVD = 0xfffc_0000;
// iotlb_inv_dsc reserved bits: qword 0 bit 8, 15:12, 63:32 (all of dword 1); qword 1 bits 11:7.
const IOTLB_D0_RSVD = 0x0000_f100;
const IOTLB_D2_RSVD = 0x0000_0f80;
// inv_wait_dsc reserved bits: qword 0 bit 8 and 31:12; qword 1 bits 1:0. PD (bit 7) needs page-request drain support: reserved here.
const WAIT_D0_RSVD = 0xffff_f180;
const WAIT_D2_RSVD = 0x0000_0003;

export class InvalidationQueue {
  /** IQA_REG as written (lower and upper dwords). */
  iqaLo = 0;
  iqaHi = 0;
  /** IQH_REG.QH and IQT_REG.QT: byte offsets into the queue. */
  head = 0;
  tail = 0;
  /** ICS_REG.IWC. */
  waitComplete = false;
  /** IQERCD_REG.IQEI of the last queue error. */
  errorInfo = 0;
  readonly event: EventControl;
  /** Descriptors executed. */
  executed = 0;

  constructor(onInvalidationEvent: ((message: RemappingEventMessage) => void) | undefined) {
    this.event = new EventControl(onInvalidationEvent);
  }

  /** Queue size in bytes: 2^QS pages. */
  get sizeBytes(): number {
    return 0x1000 << (this.iqaLo & IQA_QS_MASK);
  }

  get base(): number {
    return this.iqaHi * 0x1_0000_0000 + ((this.iqaLo & IQA_ADDR_LO_MASK) >>> 0);
  }

  /** Set when software writes ICS_REG with IWC = 1 (RW1C). */
  writeIcs(value: number): void {
    if ((value & ICS_IWC) !== 0) {
      this.waitComplete = false;
      this.event.clearPending();
    }
  }

  /**
   * Consume descriptors from head to tail. Returns 0 when the queue drained, or the IQEI code of
   * the error that stopped it (the caller sets FSTS_REG.IQE).
   */
  process(memory: PhysicalMemory, target: InvalidationTarget, lo: U64, hi: U64): number {
    if ((this.iqaLo & IQA_DW) !== 0) return this.fail(InvalidationQueueError.InvalidWidth);
    const size = this.sizeBytes;
    if (this.tail >= size) return this.fail(InvalidationQueueError.InvalidTail);
    const base = this.base;
    // The queue holds at most size/16 descriptors; a head that never reaches the tail is a bug in the model.
    for (let guard = size / 16; this.head !== this.tail; guard--) {
      if (guard < 0) throw new Error("invalidation queue did not drain");
      const at = base + this.head;
      if (memory.read64(at, lo) !== undefined || memory.read64(at + 8, hi) !== undefined) {
        return this.fail(InvalidationQueueError.FetchError);
      }
      const error = this.execute(lo.lo, lo.hi, hi.lo, hi.hi, memory, target);
      if (error !== 0) return this.fail(error);
      this.executed++;
      this.head = (this.head + 16) % size;
    }
    return 0;
  }

  private fail(code: number): number {
    this.errorInfo = code;
    return code;
  }

  private execute(d0: number, d1: number, d2: number, d3: number, memory: PhysicalMemory, target: InvalidationTarget): number {
    const type = (d0 & 0xf) | (((d0 >>> 9) & 0x7) << 4);
    const g = (d0 >>> 4) & 0x3;
    switch (type) {
      case InvalidationDescriptorType.ContextCache: {
        if ((d0 & CC_D0_RSVD) !== 0 || (d1 & CC_D1_RSVD) !== 0 || d2 !== 0 || d3 !== 0 || g === 0) {
          return InvalidationQueueError.ReservedField;
        }
        target.invalidateContext(g as ContextInvalidation, d0 >>> 16, d1 & 0xffff, (d1 >>> 16) & 0x3);
        return 0;
      }
      case InvalidationDescriptorType.Iotlb: {
        if ((d0 & IOTLB_D0_RSVD) !== 0 || d1 !== 0 || (d2 & IOTLB_D2_RSVD) !== 0 || g === 0) {
          return InvalidationQueueError.ReservedField;
        }
        const address = d3 * 0x1_0000_0000 + ((d2 & 0xffff_f000) >>> 0);
        target.invalidateIotlb(g as IotlbInvalidation, d0 >>> 16, address, d2 & 0x3f);
        return 0;
      }
      case InvalidationDescriptorType.Wait: {
        if ((d0 & WAIT_D0_RSVD) !== 0 || (d2 & WAIT_D2_RSVD) !== 0) return InvalidationQueueError.ReservedField;
        if ((d0 & INV_WAIT_SW) !== 0) {
          const statusAddress = d3 * 0x1_0000_0000 + ((d2 & 0xffff_fffc) >>> 0);
          if (memory.write32(statusAddress, d1 >>> 0) !== undefined) return InvalidationQueueError.FetchError;
        }
        if ((d0 & INV_WAIT_IF) !== 0 && !this.waitComplete) {
          this.waitComplete = true;
          this.event.raise();
        }
        return 0;
      }
      default:
        return InvalidationQueueError.InvalidType;
    }
  }

  /** IQT_REG write: the tail's QT field. */
  writeTail(value: number): void {
    this.tail = value & IQ_QH_MASK;
  }
}
