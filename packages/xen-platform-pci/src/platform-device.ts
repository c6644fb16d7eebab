/**
 * The Xen platform PCI device (QEMU's "xen-platform", formerly the event channel device): the
 * PCI function an unmodified OS's PV-on-HVM drivers look for (5853:0001, class 0xff80), its two
 * BARs, the fixed I/O ports 0x10-0x1f of the emulated-device unplug protocol
 * (docs/misc/hvm-emulated-unplug.pandoc), the drivers' log port, and its INTx line, which the
 * hypervisor asserts for event-channel upcalls when the guest chose HVM_PARAM_CALLBACK_TYPE_PCI_INTX.
 *
 * Fixed ports (QEMU's platform_fixed_ioport_*; Linux's XEN_IOPORT_* names):
 * - 0x10, 2-byte read: the magic 0x49d2 (0xd249 once the drivers are blacklisted); other 2-byte
 *   reads 0xffff. 1-byte read: the platform flags. 4-byte reads: all ones.
 * - 0x12, 1-byte read: the protocol version, 1; other byte reads 0xff.
 * - 0x10, 2-byte write: the unplug mask (UNPLUG_*); 4-byte write: the drivers' build number;
 *   1-byte write: the platform flags (PFFLAG_ROM_LOCK).
 * - 0x12, 2-byte write: the product number (pvdrivers.h); 1-byte write: a log byte.
 * BAR0 (0x100 I/O ports, QEMU's "xen-pci", byte registers: wider accesses act as byte accesses at
 * successive offsets, as QEMU's memory core splits them): offset 0 the flags; offset 4 the old
 * SUSE unplug (1: disks and NICs); offset 8 the old VMDP unplug (1: disks, 2: NICs) or a log byte.
 * BAR1: 16 MiB of prefetchable memory that guests use as guest-physical space to place grant-table
 * and shared_info frames (XENMEM_add_to_physmap); the device decodes nothing there.
 *
 * Unplug, as the protocol document defines the bits: UNPLUG_ALL_IDE_DISKS (all IDE and SCSI
 * disks), UNPLUG_AUX_IDE_DISKS (all IDE disks but the primary master; overridden by the first),
 * UNPLUG_NVME_DISKS, UNPLUG_ALL_NICS. The device model acts through the injected `unplug`
 * callbacks (the hypervisor removes its emulated ATA disk).
 *
 * Modelled more simply than QEMU (each deliberate):
 * - PFFLAG_ROM_LOCK is stored and read back but does not make the BIOS area read-only (vtlab
 *   boots without a BIOS). BAR1 reads of unpopulated space are whatever the platform answers for
 *   nothing mapped (all ones in vtlab; QEMU's BAR handler reads 0).
 * - The blacklist is a callback (`blacklisted(product, build)`), asked when the build number is
 *   written (QEMU-traditional looked up /mh/driver-blacklist/<product>/<build> in xenstore).
 * - Log bytes other than printable ASCII and tab are written as '?'. A line ends at '\n' or when
 *   4095 bytes are buffered, as in QEMU's log_writeb (the byte that finds the buffer full is
 *   dropped, as there); QEMU's rate limiter is not modelled.
 * - INTx: `setIntx` sets the device's interrupt request; the line the `setIrq` collaborator sees
 *   is that request gated by PCI_COMMAND_INTX_DISABLE, and PCI_STATUS_INTERRUPT reads the request
 *   (PCI 3.0 6.2.2-6.2.3).
 */
import {
  PCI_COMMAND,
  PCI_COMMAND_INTX_DISABLE,
  PCI_STATUS,
  PCI_STATUS_INTERRUPT,
  PCI_INTERRUPT_LINE,
  PCI_BASE_ADDRESS_0,
  PCI_CACHE_LINE_SIZE,
  PCI_LATENCY_TIMER,
  PciConfigSpace,
  type AccessSize,
  type Bar,
  type BusDevice,
  type BusRegistrationError,
  type DeviceError,
  type PciFunction,
  type PortIoBus,
} from "@vtlab/arch";
import {
  PCI_DEVICE_ID_XEN_PLATFORM,
  PCI_VENDOR_ID_XEN,
  PFFLAG_ROM_LOCK,
  UNPLUG_ALL_IDE_DISKS,
  UNPLUG_ALL_NICS,
  UNPLUG_AUX_IDE_DISKS,
  UNPLUG_NVME_DISKS,
  XEN_IOPORT_BASE,
  XEN_IOPORT_LENGTH,
  XEN_IOPORT_MAGIC_BLACKLISTED,
  XEN_IOPORT_MAGIC_VAL,
  XEN_IOPORT_PROTOCOL_VERSION,
  XEN_PLATFORM_BAR_FLAGS,
  XEN_PLATFORM_BAR_LOG,
  XEN_PLATFORM_BAR_SUSE_UNPLUG,
  XEN_PLATFORM_CLASS_CODE,
  XEN_PLATFORM_INTERRUPT_PIN,
  XEN_PLATFORM_IO_BAR_SIZE,
  XEN_PLATFORM_LOG_BUFFER,
  XEN_PLATFORM_MMIO_BAR_SIZE,
  XEN_PLATFORM_REVISION,
} from "./constants.js";

/** What the device model does when the guest's drivers ask for emulated devices to go away. */
export interface XenPlatformUnplug {
  /** UNPLUG_ALL_IDE_DISKS (`auxOnly` false: every IDE and SCSI disk) or UNPLUG_AUX_IDE_DISKS alone (`auxOnly` true: all but the primary master). */
  readonly ideDisks?: (auxOnly: boolean) => void;
  /** UNPLUG_ALL_NICS. */
  readonly nics?: () => void;
  /** UNPLUG_NVME_DISKS. */
  readonly nvmeDisks?: () => void;
}

export interface XenPlatformOptions {
  /** The INTx line (INTA#): called with the new level whenever the gated line changes. */
  readonly setIrq?: (level: boolean) => void;
  /** The device model's unplug actions. */
  readonly unplug?: XenPlatformUnplug;
  /** A complete line of the drivers' log (without the '\n'). */
  readonly onLog?: (line: string) => void;
  /** Whether drivers with this product and build number are blacklisted (default: none are). */
  readonly blacklisted?: (product: number, build: number) => boolean;
  /** PCI_INTERRUPT_LINE as firmware left it (default 0xff, "unknown"). */
  readonly interruptLine?: number;
}

export interface XenPlatformStats {
  /** Unplug-mask writes (port 0x10, 2 bytes) and the old SUSE / VMDP BAR0 unplugs. */
  unplugRequests: number;
  /** Disk, NIC and NVMe unplug actions taken. */
  diskUnplugs: number;
  nicUnplugs: number;
  nvmeUnplugs: number;
  /** Log lines delivered and log bytes written. */
  logLines: number;
  logBytes: number;
  /** Rising edges of the INTx request. */
  intxAssertions: number;
}

/** A snapshot of the device: plain data (`state()`, `XenPlatformDevice.fromState`). */
export interface XenPlatformState {
  /** The 256 configuration-space bytes as software reads them. */
  readonly config: readonly number[];
  readonly flags: number;
  readonly productNumber: number;
  readonly buildNumber: number;
  readonly blacklisted: boolean;
  /** Every UNPLUG_* bit requested so far (OR of the masks). */
  readonly unplugged: number;
  /** Log bytes buffered towards the next line. */
  readonly logPending: readonly number[];
  /** The INTx request (before PCI_COMMAND_INTX_DISABLE gating). */
  readonly intx: boolean;
}

/** The configuration space, with PCI_STATUS_INTERRUPT following the device's INTx request. */
class XenPlatformConfigSpace extends PciConfigSpace {
  constructor(
    private readonly intxPending: () => boolean,
    private readonly afterWrite: () => void,
  ) {
    super({
      vendorId: PCI_VENDOR_ID_XEN,
      deviceId: PCI_DEVICE_ID_XEN_PLATFORM,
      classCode: XEN_PLATFORM_CLASS_CODE,
      revision: XEN_PLATFORM_REVISION,
      subsystemVendorId: PCI_VENDOR_ID_XEN,
      subsystemId: PCI_DEVICE_ID_XEN_PLATFORM,
      interruptPin: XEN_PLATFORM_INTERRUPT_PIN,
    });
  }

  override read(offset: number, size: 1 | 2 | 4): number {
    const value = super.read(offset, size);
    const at = PCI_STATUS - offset; // byte index of the status register's low byte in this access
    if (at >= 0 && at < size && this.intxPending()) return (value | (PCI_STATUS_INTERRUPT << (8 * at))) >>> 0;
    return value;
  }

  override write(offset: number, size: 1 | 2 | 4, value: number): void {
    super.write(offset, size, value);
    this.afterWrite();
  }
}

/** Printable ASCII and tab pass into a log line; any other byte is written as '?'. */
function logChar(b: number): string {
  return (b >= 0x20 && b < 0x7f) || b === 0x09 ? String.fromCharCode(b) : "?";
}

export class XenPlatformDevice implements PciFunction {
  readonly name = "Xen platform device";
  readonly config: PciConfigSpace;
  /** The fixed ports 0x10-0x1f (install with `installFixedPorts`, or register `fixedPorts` yourself). */
  readonly fixedPorts: BusDevice;
  /** BAR0's registers (the PCI bus maps them where software programs BAR0). */
  readonly ioBar: Bar;
  /** BAR1: 16 MiB prefetchable memory, no registers. */
  readonly mmioBar: Bar;
  readonly stats: XenPlatformStats = { unplugRequests: 0, diskUnplugs: 0, nicUnplugs: 0, nvmeUnplugs: 0, logLines: 0, logBytes: 0, intxAssertions: 0 };

  private flags = 0;
  private productNumber = 0;
  private buildNumber = 0;
  private blacklistedFlag = false;
  private unpluggedMask = 0;
  private log: number[] = [];
  private intxRequest = false;
  /** The level last given to `setIrq`. */
  private line = false;

  constructor(private readonly options: XenPlatformOptions = {}) {
    const config = new XenPlatformConfigSpace(
      () => this.intxRequest,
      () => this.updateLine(),
    );
    this.config = config;
    this.fixedPorts = {
      read: (offset, size) => this.fixedRead(offset, size),
      write: (offset, size, value) => this.fixedWrite(offset, size, value),
    };
    const barDevice: BusDevice = {
      read: (offset, size) => this.barRead(offset, size),
      write: (offset, size, value) => this.barWrite(offset, size, value),
    };
    this.ioBar = config.defineBar(0, { kind: "io", size: XEN_PLATFORM_IO_BAR_SIZE, device: barDevice });
    this.mmioBar = config.defineBar(1, { kind: "memory32", size: XEN_PLATFORM_MMIO_BAR_SIZE, prefetchable: true });
    const line = options.interruptLine ?? 0xff;
    config.write(PCI_INTERRUPT_LINE, 1, line & 0xff);
  }

  /** Register the fixed ports 0x10-0x1f on a port bus. */
  installFixedPorts(ports: PortIoBus): BusRegistrationError | undefined {
    return ports.register(XEN_IOPORT_BASE, XEN_IOPORT_LENGTH, this.fixedPorts, "Xen platform fixed ports");
  }

  /** Drive the INTx request (INTA#): the event-channel upcall line for HVM_PARAM_CALLBACK_TYPE_PCI_INTX. */
  setIntx(asserted: boolean): void {
    if (asserted && !this.intxRequest) this.stats.intxAssertions++;
    this.intxRequest = asserted;
    this.updateLine();
  }

  /** The INTx request as the device holds it (PCI_STATUS_INTERRUPT). */
  get intx(): boolean {
    return this.intxRequest;
  }

  /** The level the interrupt line has (the request, unless PCI_COMMAND_INTX_DISABLE is set). */
  get intxLine(): boolean {
    return this.line;
  }

  /** PCI_INTERRUPT_LINE as software last wrote it. */
  get interruptLine(): number {
    return this.config.read(PCI_INTERRUPT_LINE, 1);
  }

  /** Where BAR0 and BAR1 are programmed (0: unprogrammed). */
  get ioBarAddress(): number {
    return this.config.barAddress(0);
  }
  get mmioBarAddress(): number {
    return this.config.barAddress(1);
  }

  /** Whether the drivers were told they are blacklisted (the magic reads 0xd249). */
  get blacklisted(): boolean {
    return this.blacklistedFlag;
  }

  /** Every UNPLUG_* bit requested so far. */
  get unplugged(): number {
    return this.unpluggedMask;
  }

  /** The product number the drivers wrote to port 0x12 (0 until they do). */
  get product(): number {
    return this.productNumber;
  }

  /** The build number the drivers wrote to port 0x10 (0 until they do). */
  get build(): number {
    return this.buildNumber;
  }

  /** A snapshot: plain data. */
  state(): XenPlatformState {
    const config: number[] = [];
    for (let o = 0; o < 256; o++) config.push(this.config.read(o, 1));
    // PCI_STATUS_INTERRUPT is the INTx request, kept apart.
    config[PCI_STATUS] = (config[PCI_STATUS] as number) & ~PCI_STATUS_INTERRUPT;
    return {
      config,
      flags: this.flags,
      productNumber: this.productNumber,
      buildNumber: this.buildNumber,
      blacklisted: this.blacklistedFlag,
      unplugged: this.unpluggedMask,
      logPending: [...this.log],
      intx: this.intxRequest,
    };
  }

  /**
   * A device restored from `state()` (the unplug callbacks are not run again). The writable
   * configuration registers (command, cache line size, latency timer, BARs, interrupt line) are
   * written back through the masks; the rest of configuration space is the device's constant.
   */
  static fromState(state: XenPlatformState, options: XenPlatformOptions = {}): XenPlatformDevice {
    const dev = new XenPlatformDevice(options);
    const b = (o: number): number => (state.config[o] ?? 0) & 0xff;
    const cfg = dev.config;
    cfg.write(PCI_CACHE_LINE_SIZE, 1, b(PCI_CACHE_LINE_SIZE));
    cfg.write(PCI_LATENCY_TIMER, 1, b(PCI_LATENCY_TIMER));
    for (let i = 0; i < 6; i++) {
      const o = PCI_BASE_ADDRESS_0 + 4 * i;
      cfg.write(o, 4, (b(o) | (b(o + 1) << 8) | (b(o + 2) << 16) | (b(o + 3) << 24)) >>> 0);
    }
    cfg.write(PCI_INTERRUPT_LINE, 1, b(PCI_INTERRUPT_LINE));
    cfg.write(PCI_COMMAND, 2, b(PCI_COMMAND) | (b(PCI_COMMAND + 1) << 8));
    dev.flags = state.flags & PFFLAG_ROM_LOCK;
    dev.productNumber = state.productNumber & 0xffff;
    dev.buildNumber = state.buildNumber >>> 0;
    dev.blacklistedFlag = state.blacklisted;
    dev.unpluggedMask = state.unplugged & 0xffff;
    dev.log = state.logPending.slice(0, XEN_PLATFORM_LOG_BUFFER - 1).map((x) => x & 0xff);
    dev.intxRequest = state.intx;
    dev.updateLine();
    return dev;
  }

  // ---- internals ----

  private updateLine(): void {
    const level = this.intxRequest && (this.config.command & PCI_COMMAND_INTX_DISABLE) === 0;
    if (level === this.line) return;
    this.line = level;
    this.options.setIrq?.(level);
  }

  private fixedRead(offset: number, size: AccessSize): number {
    if (size === 1) {
      if (offset === 0) return this.flags;
      if (offset === 2) return XEN_IOPORT_PROTOCOL_VERSION;
      return 0xff;
    }
    if (size === 2) {
      if (offset === 0) return this.blacklistedFlag ? XEN_IOPORT_MAGIC_BLACKLISTED : XEN_IOPORT_MAGIC_VAL;
      return 0xffff;
    }
    return 0xffff_ffff;
  }

  private fixedWrite(offset: number, size: AccessSize, value: number): DeviceError | undefined {
    if (size === 1) {
      if (offset === 0) this.flags = value & PFFLAG_ROM_LOCK;
      else if (offset === 2) this.logByte(value & 0xff);
    } else if (size === 2) {
      if (offset === 0) this.requestUnplug(value & 0xffff);
      else if (offset === 2) this.productNumber = value & 0xffff;
    } else if (offset === 0) {
      this.buildNumber = value >>> 0;
      if (this.options.blacklisted?.(this.productNumber, this.buildNumber) === true) this.blacklistedFlag = true;
    }
    return undefined;
  }

  private barRead(offset: number, size: AccessSize): number {
    let value = 0;
    for (let i = size - 1; i >= 0; i--) value = value * 256 + (offset + i === XEN_PLATFORM_BAR_FLAGS ? this.flags : 0xff);
    return value >>> 0;
  }

  private barWrite(offset: number, size: AccessSize, value: number): DeviceError | undefined {
    for (let i = 0; i < size; i++) {
      const b = (value >>> (8 * i)) & 0xff;
      const o = offset + i;
      if (o === XEN_PLATFORM_BAR_FLAGS) this.flags = b & PFFLAG_ROM_LOCK;
      else if (o === XEN_PLATFORM_BAR_SUSE_UNPLUG) {
        if (b === 1) this.requestUnplug(UNPLUG_ALL_IDE_DISKS | UNPLUG_ALL_NICS);
      } else if (o === XEN_PLATFORM_BAR_LOG) {
        if (b === 1) this.requestUnplug(UNPLUG_ALL_IDE_DISKS);
        else if (b === 2) this.requestUnplug(UNPLUG_ALL_NICS);
        else this.logByte(b);
      }
    }
    return undefined;
  }

  private requestUnplug(mask: number): void {
    this.stats.unplugRequests++;
    this.unpluggedMask |= mask;
    const u = this.options.unplug;
    if ((mask & (UNPLUG_ALL_IDE_DISKS | UNPLUG_AUX_IDE_DISKS)) !== 0) {
      this.stats.diskUnplugs++;
      u?.ideDisks?.((mask & UNPLUG_ALL_IDE_DISKS) === 0);
    }
    if ((mask & UNPLUG_NVME_DISKS) !== 0) {
      this.stats.nvmeUnplugs++;
      u?.nvmeDisks?.();
    }
    if ((mask & UNPLUG_ALL_NICS) !== 0) {
      this.stats.nicUnplugs++;
      u?.nics?.();
    }
  }

  private logByte(b: number): void {
    this.stats.logBytes++;
    if (b === 0x0a || this.log.length === XEN_PLATFORM_LOG_BUFFER - 1) {
      const line = this.log.map(logChar).join("");
      this.log = [];
      this.stats.logLines++;
      this.options.onLog?.(line);
      return;
    }
    this.log.push(b);
  }
}
