// @vtlab/hypervisor: public entry (see README.md for what exists and what is still to come).
export { Hypervisor, Domain, DomainError, Vcpu, SPARSE_HOST_MEMORY_MIB, requiredShadowMemoryKiB } from "./hypervisor.js";
export type { DomainOptions, DomainState, DomainStats, HypervisorOptions, VmExitGuestState, RunOptions, RunResult, ExitContext } from "./hypervisor.js";
export { ExitStats, handleExit, MAX_STRING_IO_PER_EXIT } from "./exits.js";
export { HostFrames } from "./host/frames.js";
export type { Extent } from "./host/frames.js";
export { buildPvh, BootLayout, BOOT_CS32, BOOT_CS64, BOOT_DS, BOOT_TSS, BOOT_GDT_LIMIT, MAX_CMDLINE, XEN_HVM_START_MAGIC_VALUE, XEN_HVM_MEMMAP_TYPE_RAM, XEN_HVM_MEMMAP_TYPE_RESERVED, MULTIBOOT_HEADER_MAGIC, MULTIBOOT_BOOTLOADER_MAGIC, MULTIBOOT_SEARCH, MULTIBOOT_AOUT_KLUDGE, MULTIBOOT_INFO_MEMORY, MULTIBOOT_INFO_CMDLINE, MULTIBOOT_INFO_MEM_MAP, MULTIBOOT_MEMORY_AVAILABLE } from "./builder/pvh.js";
export type { BootState, BootError, BuildOptions, GuestPhysicalWriter } from "./builder/pvh.js";
export { extractBzImage, isBzImage, BzImageHeader, BZ_BOOT_FLAG, BZ_HDRS_MAGIC, BZ_MIN_PAYLOAD_VERSION, BZ_SECTOR_SIZE, LZ4_LEGACY_MAGIC, LZ4_LEGACY_BLOCK_SIZE, MAX_VMLINUX_SIZE } from "./builder/bzimage.js";
export type { BzImageInfo, BzImageError } from "./builder/bzimage.js";
export { placeModules, encodeModlist, HVM_MODLIST_ENTRY_SIZE, HVM_START_INFO_NR_MODULES, HVM_START_INFO_MODLIST_PADDR } from "./builder/modules.js";
export type { BootModule, PlacedModule } from "./builder/modules.js";
export { buildAcpiTables, acpiPages, ACPI_INFO_PHYSICAL_ADDRESS, ACPI_TABLES_ADDRESS, E820_NVS } from "./builder/acpi.js";
export type { AcpiTables } from "./builder/acpi.js";
export { DebugConsole, DebugExit, DEBUGCON_PORT, DEBUG_EXIT_PORT } from "./devices/debug-port.js";
export {
  DmaEngine,
  DmaEngineReg,
  DmaEngineError,
  DescStatus,
  DMA_ENGINE_VENDOR_ID,
  DMA_ENGINE_DEVICE_ID,
  DMA_ENGINE_CLASS,
  DMA_ENGINE_BAR_SIZE,
  DMA_ENGINE_ID,
  CTRL_ENABLE,
  CTRL_IRQ_ENABLE,
  CTRL_RESET,
  STATUS_IRQ,
  STATUS_ERROR,
  STATUS_HALTED,
  RING_MAX,
  MAX_TRANSFER,
  DESC_SIZE,
  DESC_SRC,
  DESC_DST,
  DESC_LENGTH,
  DESC_FLAGS,
  DESC_STATUS,
  DESC_COOKIE,
  DESC_FLAG_INTERRUPT,
} from "./devices/dma-engine.js";
export type { DmaEngineOptions, DmaEngineState } from "./devices/dma-engine.js";
export {
  NvmeController,
  NvmeReg,
  NvmeAdminOpcode,
  NvmeIoOpcode,
  NvmeStatus,
  NvmeSct,
  NvmeFeature,
  IdentifyCns,
  sqTailDoorbell,
  cqHeadDoorbell,
  NVME_VENDOR_ID,
  NVME_DEVICE_ID,
  NVME_CLASS,
  NVME_BAR_SIZE,
  NVME_INTERRUPT_PIN,
  NVME_MQES,
  NVME_CAP_TO,
  NVME_CAP_LO,
  NVME_CAP_HI,
  NVME_VS,
  NVME_PAGE_SIZE,
  NVME_MAX_IO_QUEUES,
  NVME_MDTS,
  NVME_MAX_TRANSFER,
  NVME_NSID,
  NVME_LBA_SIZE,
  NVME_FAULTS_KEPT,
  NVME_IOSQES,
  NVME_IOCQES,
  NSID_BROADCAST,
  CAP_CQR,
  CAP_HI_CSS_NVM,
  CC_EN,
  CC_CSS_SHIFT,
  CC_MPS_SHIFT,
  CC_AMS_SHIFT,
  CC_SHN_SHIFT,
  CC_IOSQES_SHIFT,
  CC_IOCQES_SHIFT,
  CSTS_RDY,
  CSTS_CFS,
  CSTS_SHST_MASK,
  CSTS_SHST_COMPLETE,
  AQA_ACQS_SHIFT,
  SQE_SIZE,
  CQE_SIZE,
  STATUS_DNR,
} from "./devices/nvme.js";
export type { NvmeOptions, NvmeStats, NvmeState, NvmeQueueState, NvmeFaultRecord, NvmeFaultSite, NvmeStatusValue } from "./devices/nvme.js";
export {
  Uart16550,
  COM1_PORT,
  COM1_IRQ,
  UART_RBR_THR,
  UART_IER,
  UART_IIR_FCR,
  UART_LCR,
  UART_MCR,
  UART_LSR,
  UART_MSR,
  UART_SCR,
  IER_RDA,
  IER_THRE,
  IER_RLS,
  IER_MS,
  IIR_NO_INTERRUPT,
  IIR_THRE,
  IIR_RDA,
  IIR_FIFO_ENABLED,
  IIR_RLS,
  IIR_CTI,
  FCR_FIFO_ENABLE,
  FCR_CLEAR_RCVR,
  FCR_CLEAR_XMIT,
  FCR_TRIGGER_SHIFT,
  UART_FIFO_SIZE,
  HOST_INPUT_MAX,
  LSR_DR,
  LSR_OE,
  LSR_THRE,
  LSR_TEMT,
  LCR_DLAB,
  MCR_OUT2,
  MCR_LOOP,
  MSR_CTS_DSR_DCD,
} from "./devices/uart16550.js";
export type { Uart16550Options, Uart16550State, Uart16550Stats } from "./devices/uart16550.js";
export { CONSOLE_CAPTURE_DEFAULT, CONSOLE_CHUNK_MAX, ConsoleCapture } from "./console-capture.js";
export type { ConsoleCaptureStats } from "./console-capture.js";
export {
  parseElf,
  loadSegments,
  ELFMAG,
  ELFCLASS32,
  ELFCLASS64,
  ELFDATA2LSB,
  EV_CURRENT,
  ET_EXEC,
  ET_DYN,
  EM_386,
  EM_X86_64,
  PT_LOAD,
  PT_NOTE,
  PF_R,
  PF_W,
  PF_X,
  ELF64_EHDR_SIZE,
  ELF64_PHDR_SIZE,
  ELF32_EHDR_SIZE,
  ELF32_PHDR_SIZE,
  XEN_ELFNOTE_PHYS32_ENTRY,
  XEN_ELFNOTE_ENTRY,
  XEN_ELFNOTE_HYPERCALL_PAGE,
  XEN_ELFNOTE_NAMES,
} from "./builder/elf.js";
export type { ElfImage, ElfSegment, ElfError } from "./builder/elf.js";
// The dom0 peer of the xentest self-test guest (its console handshake, not a Xen ABI).
export { SelfTestPeer, selftestPattern, selftestPatternWord, SELFTEST_HANDSHAKE_PREFIX } from "./xen/selftest_peer.js";
export type { SelfTestGrantAccess, SelfTestPeerPhase, SelfTestPeerStatus } from "./xen/selftest_peer.js";
export {
  AtaDisk,
  AtaCommand,
  MemoryBlockBackend,
  SECTOR_SIZE,
  ATA_DATA,
  ATA_ERROR_FEATURES,
  ATA_SECTOR_COUNT,
  ATA_LBA_LOW,
  ATA_LBA_MID,
  ATA_LBA_HIGH,
  ATA_DEVICE,
  ATA_STATUS_COMMAND,
  ATA_PRIMARY_PORT,
  ATA_PRIMARY_CONTROL_PORT,
  ATA_PRIMARY_IRQ,
  ATA_SR_BSY,
  ATA_SR_DRDY,
  ATA_SR_DF,
  ATA_SR_DRQ,
  ATA_SR_ERR,
  ATA_ER_ABRT,
  ATA_ER_IDNF,
  ATA_DEV_LBA,
  ATA_DEV_SLAVE,
  ATA_CTL_NIEN,
  ATA_CTL_SRST,
} from "./devices/ata.js";
export type { BlockBackend, AtaDiskOptions } from "./devices/ata.js";
export {
  parseDomainConfig,
  formatDomainConfig,
  parseDiskSpec,
  ConfigError,
  CONFIG_MEMORY_MIN_MIB,
  CONFIG_MEMORY_MAX_MIB,
  CONFIG_VCPUS_MAX,
  CONFIG_WEIGHT_MIN,
  CONFIG_WEIGHT_MAX,
  CONFIG_WEIGHT_DEFAULT,
} from "./toolstack/config.js";
export type { DomainConfig, DiskConfig, SerialConfig, OnCrashAction, VifConfig } from "./toolstack/config.js";
export { parseVifSpec, VIF_DEFAULT_BRIDGE } from "./toolstack/config.js";
export { HostNetwork, defaultMac } from "./toolstack/network.js";
export type { VifDevice } from "./toolstack/network.js";
export { Toolstack, domainOptions, MINIMUM_RESTART_TIME_S, RAPID_RESTART_LIMIT } from "./toolstack/toolstack.js";
export type { ToolstackOptions, DomainResources, DomainResourceLoader, ManagedDomain, CrashRecord, CrashOutcome } from "./toolstack/toolstack.js";
export {
  LocalApic,
  apicTimerDivisor,
  ApicDeliveryMode,
  ApicShorthand,
  X2APIC_MSR_BASE, X2APIC_MSR_LAST, X2APIC_BROADCAST,
  MSR_X2APIC_APICID, MSR_X2APIC_VERSION, MSR_X2APIC_TPR, MSR_X2APIC_PPR, MSR_X2APIC_EOI,
  MSR_X2APIC_LDR, MSR_X2APIC_SIVR, MSR_X2APIC_ISR0, MSR_X2APIC_TMR0, MSR_X2APIC_IRR0,
  MSR_X2APIC_ESR, MSR_X2APIC_ICR, MSR_X2APIC_LVT_TIMER, MSR_X2APIC_LVT_THERMAL,
  MSR_X2APIC_LVT_PMI, MSR_X2APIC_LVT_LINT0, MSR_X2APIC_LVT_LINT1, MSR_X2APIC_LVT_ERROR,
  MSR_X2APIC_INIT_COUNT, MSR_X2APIC_CUR_COUNT, MSR_X2APIC_DIV_CONF, MSR_X2APIC_SELF_IPI,
  MSR_IA32_APIC_BASE, APIC_BASE_BSP, APIC_BASE_EXTD, APIC_BASE_EN, APIC_BASE_DEFAULT,
  APIC_VERSION, APIC_MAX_LVT, APIC_VERSION_VALUE, APIC_SVR_VECTOR, APIC_SVR_ENABLE,
  APIC_LVT_VECTOR, APIC_LVT_DELIVERY_MODE, APIC_LVT_DELIVERY_STATUS, APIC_LVT_POLARITY,
  APIC_LVT_REMOTE_IRR, APIC_LVT_TRIGGER_MODE, APIC_LVT_MASKED, APIC_LVT_TIMER_MODE_SHIFT,
  APIC_LVT_TIMER_ONESHOT, APIC_LVT_TIMER_PERIODIC, APIC_LVT_TIMER_TSC_DEADLINE,
  APIC_ESR_SEND_CS, APIC_ESR_RECV_CS, APIC_ESR_SEND_ACCEPT, APIC_ESR_RECV_ACCEPT,
  APIC_ESR_REDIRECTABLE_IPI, APIC_ESR_SEND_ILLEGAL_VECTOR, APIC_ESR_RECV_ILLEGAL_VECTOR,
  APIC_ESR_ILLEGAL_REGISTER, APIC_ICR_VECTOR, APIC_ICR_DELIVERY_MODE_SHIFT,
  APIC_ICR_DEST_LOGICAL, APIC_ICR_LEVEL_ASSERT, APIC_ICR_TRIGGER_LEVEL, APIC_ICR_SHORTHAND_SHIFT,
  XAPIC_MMIO_SIZE, XAPIC_ID, XAPIC_VERSION, XAPIC_TPR, XAPIC_APR, XAPIC_PPR, XAPIC_EOI, XAPIC_RRD,
  XAPIC_LDR, XAPIC_DFR, XAPIC_SVR, XAPIC_ISR0, XAPIC_TMR0, XAPIC_IRR0, XAPIC_ESR, XAPIC_ICR_LO,
  XAPIC_ICR_HI, XAPIC_LVT_TIMER, XAPIC_LVT_ERROR, XAPIC_INIT_COUNT, XAPIC_CUR_COUNT, XAPIC_DIV_CONF,
  XAPIC_BROADCAST,
} from "./devices/lapic.js";
export { DomainMmio, handleMmio, MAX_INSTRUCTION_LENGTH } from "./mmio.js";
export { copyFromGuest, copyToGuest } from "./guest-memory.js";
export type { LocalApicOptions, LocalApicStats, MsrReadOk, MsrReadResult as LapicMsrRead } from "./devices/lapic.js";
export { VCPU_HVM_CONTEXT_SIZE } from "./xen/vcpu.js";
export type { VcpuBringUp } from "./xen/vcpu.js";
export { hypercall, hypercallName, HypercallArgs } from "./xen/hypercall.js";
export { XenDomain, XenStats } from "./xen/domain.js";
export { ControlDomain, DOM0_ID, Dom0Grants } from "./xen/dom0.js";
export type { Dom0GrantMapping, Dom0CopyOp, Dom0CopySide } from "./xen/dom0.js";
export { GrantTable, DEFAULT_MAX_GRANT_FRAMES, DEFAULT_MAX_MAPTRACK_FRAMES, INITIAL_NR_GRANT_FRAMES, GRANT_ENTRIES_PER_FRAME, GRANT_ENTRIES_PER_FRAME_V2, GRANT_STATUS_PER_FRAME, MAPTRACK_PER_PAGE, GNTTAB_OPS_PER_CALL, grantToStatusFrames } from "./xen/grant_table.js";
export { DOMU_MAX_ORDER, MEMOP_PAGES_PER_CALL } from "./xen/memory.js";
export { DomainPages, FrameRefs, P2M_GFN_LIMIT, frameRefs, holdFrameForDomain, setP2mEntry } from "./xen/p2m.js";
export type { P2mChange, P2mUpdateError } from "./xen/p2m.js";
export { guestMemoryMap } from "./builder/pvh.js";
export type { MemoryMapEntry } from "./builder/pvh.js";
export {
  GUEST_MEMORY_MAX_MIB,
  GUEST_MEMORY_MIN_MIB,
  HIGH_MEMORY_START_GFN,
  HVM_BELOW_4G_MMIO_LENGTH,
  HVM_BELOW_4G_RAM_END,
  IDENT_PT_FRAMES,
  IDENT_PT_GFN,
  LOW_MEMORY_END_GFN,
  RESERVED_REGION_END_GFN,
  RESERVED_REGION_GFN,
  guestLayout,
} from "./builder/layout.js";
export type { GuestLayout, GuestRamRange } from "./builder/layout.js";
export type { XenStatsSnapshot } from "./xen/domain.js";
export { combineExceptions } from "./hypervisor.js";
// Time and scheduling (xen/time.ts, timer.ts, sched.ts): the PV clock, Xen's timers, sched_op, runstate.
export { DEFAULT_BOOT_EPOCH, pvclockScale, pvclockDeltaNs, publishVcpuTime, publishWallclock } from "./xen/time.js";
export type { BootEpoch, TimeScale } from "./xen/time.js";
export { VcpuTimers, DomainTimers, evtchnCheckPollers, PERIODIC_TIMER_MIN_NS, STIME_DELTA_MAX, SCHED_POLL_MAX_PORTS, NR_DOMAIN_WATCHDOG_TIMERS } from "./xen/timer.js";
export { VcpuRunstate, RUNSTATE_NAMES, SHUTDOWN_NAMES } from "./xen/sched.js";
export {
  IoApic,
  IoApicDeliveryMode,
  IoApicSource,
  IOAPIC_BASE_DEFAULT,
  IOAPIC_MEM_LENGTH,
  IOAPIC_MMIO_SIZE,
  IOAPIC_REG_SELECT,
  IOAPIC_REG_WINDOW,
  IOAPIC_REG_APIC_ID,
  IOAPIC_REG_VERSION,
  IOAPIC_REG_ARB_ID,
  IOAPIC_REG_RTE0,
  IOAPIC_VERSION_ID,
  IOAPIC_NUM_PINS,
  IOAPIC_RTE_VECTOR,
  IOAPIC_RTE_DELIVERY_MODE_SHIFT,
  IOAPIC_RTE_DELIVERY_MODE,
  IOAPIC_RTE_DEST_LOGICAL,
  IOAPIC_RTE_DELIVERY_STATUS,
  IOAPIC_RTE_POLARITY_LOW,
  IOAPIC_RTE_REMOTE_IRR,
  IOAPIC_RTE_TRIGGER_LEVEL,
  IOAPIC_RTE_MASKED,
  IOAPIC_RTE_DEST_SHIFT,
} from "./devices/ioapic.js";
export type { IoApicOptions, IoApicStats, IoApicState, IoApicDeliver } from "./devices/ioapic.js";
export { PlatformWiring, HVM_BELOW_4G_MMIO_START, HVMLOADER_PCI_IO_START, PLATFORM_LOG_KEEP } from "./devices/platform.js";
export { xenCpuid, xenCpuidInfo, isHypervisorLeaf, VTLAB_HVM_CPUID_FEATURES } from "./xen/cpuid.js";
export { hypercallPageRecord, isXenMsr, rdmsrXen, wrmsrXen, XEN_MSR_FIRST, XEN_MSR_LAST } from "./xen/hypercall_page.js";
export { GUEST_MISC_ENABLE_HI, GUEST_MISC_ENABLE_LO, HOST_UCODE_REVISION, MSR_IA32_MISC_ENABLE, MSR_IA32_UCODE_REV, isPolicyMsr, rdmsrPolicy, wrmsrPolicy } from "./xen/msr.js";
export type { HypercallPageRecord } from "./xen/hypercall_page.js";
export { EventChannels, Dom0EventChannels, TwoLevelPorts, Ecs, EVTCHNS_PER_BUCKET, virqIsGlobal, do_event_channel_op } from "./xen/event_channel.js";
export type { EvtchnPortOps, EvtchnOwner, EvtchnStatus, EvtchnCounters, Dom0EventHandler, Dom0Host } from "./xen/event_channel.js";
export { SharedInfo, registerVcpuInfo } from "./xen/shared_info.js";
export type { VcpuInfoTarget } from "./xen/shared_info.js";
export { EvtchnUpcall, CallbackVia, HvmParams, hvmSetParam, hvmGetParam, do_hvm_op, CALLBACK_NR_GSIS, XEN_PLATFORM_PCI_SLOT } from "./xen/hvm_op.js";
export { FifoPorts, fifoHostOf, evtchnFifoInitControl, evtchnFifoExpandArray, EVTCHN_FIFO_EVENT_WORDS_PER_PAGE, EVTCHN_FIFO_MAX_EVENT_ARRAY_PAGES } from "./xen/event_fifo.js";
export type { FifoHost } from "./xen/event_fifo.js";
export { domainRamFrame } from "./xen/shared_info.js";
export {
  allocMagicPagesHvm,
  specialPfn,
  X86_HVM_END_SPECIAL_REGION,
  X86_HVM_NR_SPECIAL_PAGES,
  SPECIALPAGE_PAGING,
  SPECIALPAGE_ACCESS,
  SPECIALPAGE_SHARING,
  SPECIALPAGE_BUFIOREQ,
  SPECIALPAGE_XENSTORE,
  SPECIALPAGE_IOREQ,
  SPECIALPAGE_IDENT_PT,
  SPECIALPAGE_CONSOLE,
} from "./builder/special-pages.js";
export type { MagicPages } from "./builder/special-pages.js";
export { PvServices } from "./toolstack/xenstore.js";
export type { PvDomain, AttachOptions } from "./toolstack/xenstore.js";
export { HostDisks, BlockBackendStorage } from "./toolstack/vbd.js";
export type { VbdDevice } from "./toolstack/vbd.js";
export { NativeVcpu, nativeBootImage, runNativeSlice, NATIVE_STEP_LIMIT } from "./native.js";
export type { NativeKernel } from "./native.js";

// Device assignment and the host IOMMU (passthrough/).
export type { AssignableDevice } from "./passthrough/device.js";
export { PciPassthrough, parsePciBdf } from "./passthrough/pci.js";
export type { AssignableListing } from "./passthrough/pci.js";
export { HostIommu, DomainIommu, AssignedDmaPort, DRHD_BASE, FAULT_LOG_KEEP } from "./passthrough/vtd.js";
export type { IommuOption, IommuFlushPolicy, IommuFaultLogEntry, DomainIommuStats } from "./passthrough/vtd.js";
// The message formatters the toolstack uses, for its callers (apps/demo) without a dependency on @vtlab/arch.
export { formatHex, formatHex64, echoInput } from "@vtlab/arch";
