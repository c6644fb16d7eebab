/**
 * What a DMA-capable device calls to reach memory. An IOMMU implements it (translating the
 * device's I/O virtual address for its requester id); so does "no IOMMU", where the bus address
 * is the machine address.
 */
import type { Hpa, Iova } from "./address.js";
import type { PhysicalMemory } from "./memory.js";
import type { Bdf } from "./pci/bus.js";

/** A DMA the platform refused. `reason` is the remapping unit's fault reason code (VT-d's for the IOMMU). */
export interface DmaFault {
  readonly kind: "dma-fault";
  readonly requester: Bdf;
  readonly iova: Iova;
  readonly write: boolean;
  readonly reason: number;
  readonly reasonName: string;
}

export type DmaResult = DmaFault | undefined;

export interface DmaPort {
  /** Read `into.length` bytes at `iova` on behalf of `requester`: all or nothing. */
  read(requester: Bdf, iova: Iova, into: Uint8Array): DmaResult;
  /** Write `from` at `iova` on behalf of `requester`: all or nothing. */
  write(requester: Bdf, iova: Iova, from: Uint8Array): DmaResult;
}

/** Reason code DirectDma reports for an address outside machine memory (not a VT-d code). */
export const DMA_FAULT_OUT_OF_RANGE = 0x100;

/**
 * No IOMMU: the device's bus address is the machine address, and a device can reach every
 * frame of every domain. This is the unsafe baseline that VT-d exists to fix.
 */
export class DirectDma implements DmaPort {
  constructor(private readonly memory: PhysicalMemory) {}

  read(requester: Bdf, address: Iova, into: Uint8Array): DmaResult {
    const e = this.memory.readBytes(address as number as Hpa, into);
    return e === undefined ? undefined : outOfRange(requester, address, false);
  }

  write(requester: Bdf, address: Iova, from: Uint8Array): DmaResult {
    const e = this.memory.writeBytes(address as number as Hpa, from);
    return e === undefined ? undefined : outOfRange(requester, address, true);
  }
}

function outOfRange(requester: Bdf, address: Iova, write: boolean): DmaFault {
  return { kind: "dma-fault", requester, iova: address, write, reason: DMA_FAULT_OUT_OF_RANGE, reasonName: "beyond machine memory" };
}
