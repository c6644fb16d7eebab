/**
 * The Xen platform PCI device in a domain's device model (@vtlab/xen-platform-pci's
 * `XenPlatformDevice`): on the PCI bus at 00:03.0 as on a Xen HVM machine with qemu-xen, its fixed
 * ports 0x10-0x1f on the domain's port bus, its INTx wired to the IO-APIC, its unplug requests
 * acted on, and its log lines kept.
 *
 * vtlab boots kernels without firmware, so the hypervisor does what hvmloader does for the device
 * (tools/firmware/hvmloader/pci.c): BAR1 (16 MiB) at the bottom of the MMIO hole, 0xF0000000
 * (HVM_BELOW_4G_MMIO_START; higher when RAM reaches it, aligned to 16 MiB, left unprogrammed if
 * it cannot fit below the IO-APIC), BAR0 at I/O port 0xC000, I/O and memory decoding on, and the
 * interrupt line register set to the ISA IRQ its INTA# reaches.
 *
 * INTx routing, modelled as a fixed wire: INTA# of 00:03.0 reaches PCI-ISA link 3, which
 * hvmloader routes to ISA IRQ 5 (`hvmloaderIntxIrq`), so the line drives IO-APIC GSI 5, the value
 * firmware leaves in PCI_INTERRUPT_LINE. The guest may rewrite that register (it is a scratch
 * register for the OS); the wire does not move. Xen asserts GSI 5 and also the PCI GSI
 * hvm_pci_intx_gsi(3, INTA) = 28, which a 24-pin IO-APIC does not have: vtlab drives GSI 5 only.
 *
 * Unplug: UNPLUG_ALL_IDE_DISKS removes the emulated primary-master ATA disk from the domain's
 * ports (the `AtaDisk` and its backend stay in `Domain.disk`, for a PV backend later) and counts
 * it; UNPLUG_AUX_IDE_DISKS alone keeps the primary master, which is all vtlab has; NICs and NVMe
 * disks: vtlab emulates none, so those requests are only counted (by the device's stats).
 */
import { HVM_BELOW_4G_MMIO_START } from "../builder/layout.js";
import { PCI_BASE_ADDRESS_0, PCI_COMMAND, PCI_COMMAND_IO, PCI_COMMAND_MEMORY, bdf } from "@vtlab/arch";
import {
  XEN_PLATFORM_INTERRUPT_PIN,
  XEN_PLATFORM_MMIO_BAR_SIZE,
  XEN_PLATFORM_PCI_DEVICE,
  XenPlatformDevice,
  hvmloaderIntxIrq,
} from "@vtlab/xen-platform-pci";
import type { Domain } from "../hypervisor.js";
import { ATA_PRIMARY_CONTROL_PORT, ATA_PRIMARY_PORT } from "./ata.js";
import { IOAPIC_BASE_DEFAULT, IoApicSource } from "./ioapic.js";

/** HVM_BELOW_4G_MMIO_START (xen/include/public/hvm/e820.h): where hvmloader starts placing memory BARs (builder/layout.ts). */
export { HVM_BELOW_4G_MMIO_START };
/** hvmloader's io_resource.base: where it starts placing I/O BARs. */
export const HVMLOADER_PCI_IO_START = 0xc000;
/** The ATA disk's ISA IRQ (GSI 14), deasserted when the disk is unplugged. */
const ATA_GSI = 14;
/** Log lines kept per domain (the oldest are dropped past this; `logLines` counts all). */
export const PLATFORM_LOG_KEEP = 256;

/** What the platform device did in this domain: unplugs, and the drivers' log. */
export class PlatformWiring {
  /** Emulated disks taken off the ports by an unplug. */
  disksUnplugged = 0;
  /** Whether the emulated ATA disk is still on the ports. */
  ataPlugged: boolean;
  /** Log lines written (all of them), and the last PLATFORM_LOG_KEEP. */
  logLines = 0;
  readonly log: string[] = [];

  constructor(
    private readonly d: Domain,
    private readonly onLog: ((line: string) => void) | undefined,
  ) {
    this.ataPlugged = d.disk !== undefined;
  }

  /** UNPLUG_ALL_IDE_DISKS (`auxOnly` false) or UNPLUG_AUX_IDE_DISKS (true: the primary master stays). */
  unplugIdeDisks(auxOnly: boolean): void {
    if (auxOnly || !this.ataPlugged) return;
    const d = this.d;
    d.ports.unregister(ATA_PRIMARY_PORT);
    d.ports.unregister(ATA_PRIMARY_CONTROL_PORT);
    d.ioapic.setLevel(ATA_GSI, false, IoApicSource.Ata);
    this.ataPlugged = false;
    this.disksUnplugged++;
  }

  logLine(line: string): void {
    this.logLines++;
    this.log.push(line);
    if (this.log.length > PLATFORM_LOG_KEEP) this.log.shift();
    this.onLog?.(line);
  }
}

/** Create the platform device for `d`, attach it at 00:03.0 and set it up as hvmloader would. */
export function platformDevice(d: Domain, wiring: PlatformWiring): XenPlatformDevice {
  const gsi = hvmloaderIntxIrq(XEN_PLATFORM_PCI_DEVICE, XEN_PLATFORM_INTERRUPT_PIN);
  const dev = new XenPlatformDevice({
    setIrq: (level) => d.ioapic.setLevel(gsi, level, IoApicSource.PlatformIntx),
    unplug: { ideDisks: (auxOnly) => wiring.unplugIdeDisks(auxOnly) },
    onLog: (line) => wiring.logLine(line),
    interruptLine: gsi,
  });
  const attached = d.pci.attach(bdf(0, XEN_PLATFORM_PCI_DEVICE, 0), dev);
  if (attached !== undefined) throw new Error(`vtlab bug: ${attached.message}`);
  const ports = dev.installFixedPorts(d.ports);
  if (ports !== undefined) throw new Error(`vtlab bug: ${ports.message}`);
  // Firmware's resource assignment (hvmloader's pci_setup).
  const ramEnd = d.layout.lowFrames * 4096; // low RAM ends at the MMIO hole at the latest (builder/layout.ts)
  const align = XEN_PLATFORM_MMIO_BAR_SIZE;
  const mmioBase = Math.max(HVM_BELOW_4G_MMIO_START, Math.ceil(ramEnd / align) * align);
  if (mmioBase + XEN_PLATFORM_MMIO_BAR_SIZE <= IOAPIC_BASE_DEFAULT) dev.config.write(PCI_BASE_ADDRESS_0 + 4, 4, mmioBase);
  dev.config.write(PCI_BASE_ADDRESS_0, 4, HVMLOADER_PCI_IO_START);
  dev.config.write(PCI_COMMAND, 2, PCI_COMMAND_IO | PCI_COMMAND_MEMORY);
  return dev;
}
