// @vtlab/arch: machine memory, x86 paging, buses, PCI, simulated time. No virtualization logic.
export {
  PAGE_SHIFT,
  PAGE_SIZE,
  PAGE_MASK,
  MAX_PHYS_ADDR_BITS,
  gva,
  gpa,
  hpa,
  iova,
  gfn,
  mfn,
  frameOf,
  mfnOf,
  gfnOf,
  hpaOf,
  gpaOf,
  u64,
  joinU64,
  splitU64,
} from "./address.js";
export type { Gva, Gpa, Hpa, Iova, Gfn, Mfn, U64 } from "./address.js";

export { MachineMemory, MAX_MACHINE_MEMORY, isMemoryError } from "./memory.js";
export type { MemoryError, PhysicalMemory } from "./memory.js";

export {
  PTE_P,
  PTE_RW,
  PTE_US,
  PTE_PWT,
  PTE_PCD,
  PTE_A,
  PTE_D,
  PTE_PS,
  PTE_PAT_4K,
  PTE_G,
  PTE_PAT_LARGE,
  PTE_HI_XD,
  PTE_HI_ADDR_MASK,
  PTE_LO_ADDR_MASK_4K,
  PTE_LO_ADDR_MASK_2M,
  PTE_LO_ADDR_MASK_1G,
  PDE_2M_RSVD_LO,
  PDPTE_1G_RSVD_LO,
  PFEC_P,
  PFEC_WR,
  PFEC_US,
  PFEC_RSVD,
  PFEC_ID,
  PFEC_PK,
  PagingLevel,
  PAGING_LEVEL_NAMES,
  PAGE_SHIFT_4K,
  PAGE_SHIFT_2M,
  PAGE_SHIFT_1G,
  PAGE_SHIFT_4M,
  reservedHighMask,
  reservedLowAddressMask,
  entryAddress,
  makeEntry,
  describeEntryFlags,
} from "./paging/entry.js";
export {
  Access,
  PageRights,
  WalkStatus,
  WalkResult,
  pagingMode,
  accessErrorCode,
  checkAccessRights,
  walkLinear,
  walk,
  PhysicalPagingStructures,
  PagingFormat,
  PdpteLoadStatus,
  PAE_PDPTE_RSVD_LO,
  PDE_4M_RSVD_LO,
  pde4MReservedLow,
  loadPaePdptes,
} from "./paging/walk.js";
export type {
  PagingMode,
  PagingStructureAccess,
  WalkStep,
  Translation,
  PageFault,
  WalkAccessFault,
} from "./paging/walk.js";

export { Vector, VECTORS_WITH_ERROR_CODE, ExceptionClass, exceptionClass, isDoubleFault } from "./exceptions.js";

export { allOnes, isAccessSize, deviceError } from "./bus/device.js";
export type { AccessSize, BusDevice, DeviceError, BusRegistrationError } from "./bus/device.js";
export { PortIoBus, PORT_COUNT } from "./bus/port-io.js";
export { MmioBus } from "./bus/mmio.js";

export {
  PciConfigSpace,
  PCI_VENDOR_ID,
  PCI_DEVICE_ID,
  PCI_COMMAND,
  PCI_STATUS,
  PCI_REVISION_ID,
  PCI_CLASS_PROG,
  PCI_CLASS_DEVICE,
  PCI_CACHE_LINE_SIZE,
  PCI_LATENCY_TIMER,
  PCI_HEADER_TYPE,
  PCI_BASE_ADDRESS_0,
  PCI_SUBSYSTEM_VENDOR_ID,
  PCI_SUBSYSTEM_ID,
  PCI_ROM_ADDRESS,
  PCI_CAPABILITY_LIST,
  PCI_INTERRUPT_LINE,
  PCI_INTERRUPT_PIN,
  PCI_CAP_START,
  PCI_CONFIG_SPACE_SIZE,
  PCI_COMMAND_IO,
  PCI_COMMAND_MEMORY,
  PCI_COMMAND_MASTER,
  PCI_COMMAND_PARITY,
  PCI_COMMAND_SERR,
  PCI_COMMAND_INTX_DISABLE,
  PCI_STATUS_INTERRUPT,
  PCI_STATUS_CAP_LIST,
  PCI_BASE_ADDRESS_SPACE_IO,
  PCI_BASE_ADDRESS_MEM_TYPE_64,
  PCI_BASE_ADDRESS_MEM_PREFETCH,
  PCI_HEADER_TYPE_NORMAL,
  PCI_HEADER_TYPE_MULTI_FUNCTION,
} from "./pci/config-space.js";
export type { BarKind, BarDefinition, Bar, PciIds, ConfigChange } from "./pci/config-space.js";
export {
  PciBus,
  PciHostBridge,
  hostBridgeFunction,
  bdf,
  formatBdf,
  PCI_CONFIG_ADDRESS_PORT,
  PCI_CONFIG_DATA_PORT,
  PCI_CONFIG_ENABLE,
} from "./pci/bus.js";
export type { Bdf, PciFunction, PciAttachError } from "./pci/bus.js";

export { DirectDma, DMA_FAULT_OUT_OF_RANGE } from "./dma.js";
export type { DmaFault, DmaResult, DmaPort } from "./dma.js";

export { SimClock, DEFAULT_FREQUENCY_HZ } from "./time/clock.js";
export type { TimerCallback } from "./time/clock.js";
export { DEFAULT_COST_MODEL, costModel, modelledCycles } from "./time/cost-model.js";
export type { CostModel, EventCounts } from "./time/cost-model.js";

export { formatHex, formatHex64, echoInput, ECHO_MAX_CHARS } from "./format.js";
