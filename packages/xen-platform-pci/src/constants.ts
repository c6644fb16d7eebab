/**
 * Numbers of the Xen platform PCI device, named as QEMU's hw/i386/xen/xen_platform.c, Linux's
 * include/xen/platform_pci.h and Xen's docs/misc/hvm-emulated-unplug.pandoc name them.
 */

/** PCI_VENDOR_ID_XEN (QEMU hw/pci/pci_ids.h): XenSource. */
export const PCI_VENDOR_ID_XEN = 0x5853;
/** PCI_DEVICE_ID_XEN_PLATFORM (QEMU): the platform device; Linux's xen-platform-pci also matches 0x0002. */
export const PCI_DEVICE_ID_XEN_PLATFORM = 0x0001;
/** PCI_CLASS_OTHERS (PCI code and ID assignment: base class 0xff, "device does not fit any class"). */
export const PCI_CLASS_OTHERS = 0xff;
/** The sub-class QEMU gives the device under PCI_CLASS_OTHERS (class_id = PCI_CLASS_OTHERS << 8 | 0x80). */
export const XEN_PLATFORM_SUBCLASS = 0x80;
/** The 24-bit class code (base 0xff, sub-class 0x80, programming interface 0). */
export const XEN_PLATFORM_CLASS_CODE = ((PCI_CLASS_OTHERS << 16) | (XEN_PLATFORM_SUBCLASS << 8)) >>> 0;
/** Revision ID QEMU sets (k->revision = 1). */
export const XEN_PLATFORM_REVISION = 1;
/** Interrupt pin: INTA# (PCI_INTERRUPT_PIN = 1, as QEMU sets it). */
export const XEN_PLATFORM_INTERRUPT_PIN = 1;
/** PCI device number of the platform device on a Xen HVM machine with qemu-xen: 00:03.0. */
export const XEN_PLATFORM_PCI_DEVICE = 3;

/** BAR0: an I/O BAR of 0x100 bytes (QEMU's "xen-pci" region). */
export const XEN_PLATFORM_IO_BAR_SIZE = 0x100;
/** BAR1: a 16 MiB prefetchable memory BAR (QEMU's "xen-mmio"), where guests place grant-table and shared_info frames. */
export const XEN_PLATFORM_MMIO_BAR_SIZE = 0x100_0000;
/** BAR0 offset 0: the platform flags byte (read/write; same register as the fixed port 0x10). */
export const XEN_PLATFORM_BAR_FLAGS = 0;
/** BAR0 offset 4: old SUSE xen-kmp unplug (write 1: unplug all disks and NICs). */
export const XEN_PLATFORM_BAR_SUSE_UNPLUG = 4;
/** BAR0 offset 8: old Novell VMDP unplug (1: disks, 2: NICs); any other byte is a log byte. */
export const XEN_PLATFORM_BAR_LOG = 8;

/** XEN_PLATFORM_IOPORT (QEMU) / XEN_IOPORT_BASE (Linux): the fixed I/O ports 0x10-0x1f. */
export const XEN_IOPORT_BASE = 0x10;
/** Length of the fixed I/O port region (QEMU's "xen-fixed", 16 ports). */
export const XEN_IOPORT_LENGTH = 16;
/** XEN_IOPORT_PLATFLAGS: port 0x10, 1-byte read/write, the platform flags. */
export const XEN_IOPORT_PLATFLAGS = XEN_IOPORT_BASE + 0;
/** XEN_IOPORT_MAGIC: port 0x10, 2-byte read, the magic number. */
export const XEN_IOPORT_MAGIC = XEN_IOPORT_BASE + 0;
/** XEN_IOPORT_UNPLUG: port 0x10, 2-byte write, the mask of emulated devices to unplug. */
export const XEN_IOPORT_UNPLUG = XEN_IOPORT_BASE + 0;
/** XEN_IOPORT_DRVVER: port 0x10, 4-byte write, the drivers' build number. */
export const XEN_IOPORT_DRVVER = XEN_IOPORT_BASE + 0;
/** XEN_IOPORT_SYSLOG: port 0x12, 1-byte write, a byte of the drivers' log. */
export const XEN_IOPORT_SYSLOG = XEN_IOPORT_BASE + 2;
/** XEN_IOPORT_PROTOVER: port 0x12, 1-byte read, the protocol version. */
export const XEN_IOPORT_PROTOVER = XEN_IOPORT_BASE + 2;
/** XEN_IOPORT_PRODNUM: port 0x12, 2-byte write, the drivers' product number (xen/include/public/hvm/pvdrivers.h). */
export const XEN_IOPORT_PRODNUM = XEN_IOPORT_BASE + 2;

/** XEN_IOPORT_MAGIC_VAL: what a 2-byte read of port 0x10 returns. */
export const XEN_IOPORT_MAGIC_VAL = 0x49d2;
/** The magic as a blacklisted driver reads it (hvm-emulated-unplug step 5: 0x49d2 turns into 0xd249). */
export const XEN_IOPORT_MAGIC_BLACKLISTED = 0xd249;
/** The unplug protocol version a 1-byte read of port 0x12 returns (QEMU: "Version number", 1). */
export const XEN_IOPORT_PROTOCOL_VERSION = 1;

/** PFFLAG_ROM_LOCK (QEMU): platform flags bit 0, the BIOS ROM area 0xC0000-0xFFFFF read-only. */
export const PFFLAG_ROM_LOCK = 1;

/** UNPLUG_ALL_IDE_DISKS: unplug all emulated IDE and SCSI disks (not CD drives). */
export const UNPLUG_ALL_IDE_DISKS = 1 << 0;
/** UNPLUG_ALL_NICS: unplug all emulated NICs. */
export const UNPLUG_ALL_NICS = 1 << 1;
/** UNPLUG_AUX_IDE_DISKS: unplug all IDE disks except the primary master; overridden by UNPLUG_ALL_IDE_DISKS. */
export const UNPLUG_AUX_IDE_DISKS = 1 << 2;
/** UNPLUG_NVME_DISKS: unplug all emulated NVMe disks. */
export const UNPLUG_NVME_DISKS = 1 << 3;

/** PVDRIVERS_PRODUCT_LIST (xen/include/public/hvm/pvdrivers.h): product numbers written to port 0x12. */
export const PVDRIVERS_PRODUCT = {
  "xensource-windows": 0x0001,
  "gplpv-windows": 0x0002,
  linux: 0x0003,
  "xenserver-windows-v7.0+": 0x0004,
  "xenserver-windows-v7.2+": 0x0005,
  experimental: 0xffff,
} as const;
export type PvDriversProduct = keyof typeof PVDRIVERS_PRODUCT;

/** QEMU's log_writeb buffer: a line is flushed at '\n' or when 4095 bytes are buffered. */
export const XEN_PLATFORM_LOG_BUFFER = 4096;

/**
 * The ISA IRQ a PCI INTx pin reaches on a Xen HVM machine, as hvmloader programs it: the
 * "barber's pole" swizzle onto the four PCI-ISA links (link = (pin - 1 + device) & 3;
 * tools/firmware/hvmloader/pci.c) and hvmloader's link routes, which walk PCI_ISA_IRQ_MASK
 * (0x0c20: ISA IRQs 5, 10, 11) giving links 0..3 IRQs 5, 10, 11, 5. For 00:03.0 INTA: link 3,
 * IRQ 5. Xen asserts this ISA IRQ (its GSI on the IO-APIC) together with the PCI GSI
 * hvm_pci_intx_gsi() when the line is asserted.
 */
export const PCI_ISA_IRQ_MASK = 0x0c20;
export function hvmloaderIntxIrq(device: number, pin: number): number {
  const routes: number[] = [];
  let irq = 0;
  for (let link = 0; link < 4; link++) {
    do irq = (irq + 1) & 15;
    while ((PCI_ISA_IRQ_MASK & (1 << irq)) === 0);
    routes.push(irq);
  }
  return routes[((pin - 1 + device) & 3) >>> 0] as number;
}
