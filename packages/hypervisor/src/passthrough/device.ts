/**
 * The seam between an assignable PCI device model (devices/nvme.ts, devices/dma-engine.ts) and
 * the host's device-assignment code (passthrough/): what Xen's drivers/passthrough/pci.c needs to
 * know of a physical function to hand it to a domain.
 *
 * The device is a host device: it exists before any domain and outlives them. It reaches memory
 * only through the `DmaPort` it is connected to, with its own BDF as requester id: the host's
 * VT-d unit (bus addresses are the owning domain's guest-physical addresses, translated through
 * that domain's second-level tables), or, with `iommu = 0`, `DirectDma` (bus addresses are
 * machine addresses: a device can reach every frame of every domain). Its INTx line is connected
 * to the owning domain's IO-APIC input while it is assigned.
 *
 * Modelled more simply than real passthrough: the device's BAR0 register block is
 * trap-and-emulate MMIO in the owning domain (its accesses are VM exits handled by the device
 * model), where Xen maps a physical BAR straight into the guest's p2m (p2m_mmio_direct) and only
 * emulates the configuration space. The DMA path, the part an IOMMU exists for, is the real one.
 */
import type { Bdf, BusDevice, DmaPort, PciFunction } from "@vtlab/arch";

export interface AssignableDevice extends PciFunction {
  /** A short name for listings and logs ("nvme", "dma-engine"). */
  readonly name: string;
  /** The host's bus:device.function: also its requester (source) id on DMA. */
  readonly requester: Bdf;
  /** The BAR0 register block, and its size in bytes (a power of two, >= 4 KiB). */
  readonly registers: BusDevice;
  readonly registerSize: number;
  /** Where the device's DMA goes from now on (the IOMMU or DirectDma); set by assignment. */
  connectDma(port: DmaPort): void;
  /** The device's INTx# line level (asserted true); set by assignment, undefined when unassigned. */
  connectIntx(line: ((asserted: boolean) => void) | undefined): void;
  /**
   * Function-level reset (PCIe FLR): in-flight and queued work is dropped, bus mastering and the
   * registers return to their reset values, INTx is deasserted. After it the device issues no DMA
   * until a driver programs it again. Called when the device is deassigned (domain destroy).
   */
  reset(): void;
}
