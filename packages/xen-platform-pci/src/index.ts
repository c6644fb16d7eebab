// @vtlab/xen-platform-pci: the Xen platform PCI device (5853:0001), the Xen CPUID leaves and the
// hypercall page. See README.md.
export {
  PCI_VENDOR_ID_XEN,
  PCI_DEVICE_ID_XEN_PLATFORM,
  PCI_CLASS_OTHERS,
  XEN_PLATFORM_SUBCLASS,
  XEN_PLATFORM_CLASS_CODE,
  XEN_PLATFORM_REVISION,
  XEN_PLATFORM_INTERRUPT_PIN,
  XEN_PLATFORM_PCI_DEVICE,
  XEN_PLATFORM_IO_BAR_SIZE,
  XEN_PLATFORM_MMIO_BAR_SIZE,
  XEN_PLATFORM_BAR_FLAGS,
  XEN_PLATFORM_BAR_SUSE_UNPLUG,
  XEN_PLATFORM_BAR_LOG,
  XEN_IOPORT_BASE,
  XEN_IOPORT_LENGTH,
  XEN_IOPORT_PLATFLAGS,
  XEN_IOPORT_MAGIC,
  XEN_IOPORT_UNPLUG,
  XEN_IOPORT_DRVVER,
  XEN_IOPORT_SYSLOG,
  XEN_IOPORT_PROTOVER,
  XEN_IOPORT_PRODNUM,
  XEN_IOPORT_MAGIC_VAL,
  XEN_IOPORT_MAGIC_BLACKLISTED,
  XEN_IOPORT_PROTOCOL_VERSION,
  PFFLAG_ROM_LOCK,
  UNPLUG_ALL_IDE_DISKS,
  UNPLUG_ALL_NICS,
  UNPLUG_AUX_IDE_DISKS,
  UNPLUG_NVME_DISKS,
  PVDRIVERS_PRODUCT,
  XEN_PLATFORM_LOG_BUFFER,
  PCI_ISA_IRQ_MASK,
  hvmloaderIntxIrq,
} from "./constants.js";
export type { PvDriversProduct } from "./constants.js";
export { XenPlatformDevice } from "./platform-device.js";
export type { XenPlatformOptions, XenPlatformUnplug, XenPlatformStats, XenPlatformState } from "./platform-device.js";
export { xenCpuidLeaf, xenTimeScale, XEN_CPUID_LAST_HYPERVISOR_LEAF, XEN_HYPERCALL_PAGE_MSR, TscMode } from "./cpuid.js";
export type { XenCpuidInfo } from "./cpuid.js";
export {
  writeHypercallPage,
  decodeHypercallPageMsr,
  HYPERCALL_STUB_SIZE,
  HYPERCALL_PAGE_SIZE,
  HYPERCALL_STUBS,
  HYPERCALL_PAGE_FILL,
} from "./hypercall-page.js";
export type { HypercallPageRequest } from "./hypercall-page.js";
