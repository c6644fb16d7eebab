/**
 * Device assignment (Xen's xen/drivers/passthrough/pci.c: pci_add_device, assign_device,
 * deassign_device, and xl's `pci-assignable-list`): the host's assignable PCI functions, which
 * domain owns each, and what handing one to a domain does.
 *
 * assign_device: the device must be free (a second assignment is refused naming the owner); its
 * context entry is pointed at the domain's IOMMU tables with a context-cache invalidation
 * (vtd.ts); it appears on the domain's PCI bus at its host BDF (modelled more simply than xl's
 * virtual slot choice: the guest BDF is the host BDF); BAR0 gets an address in the MMIO hole as
 * hvmloader's pci_setup would give it (after the platform device's 16 MiB BAR, naturally
 * aligned, memory decoding on) and is registered as trap-and-emulate MMIO of the domain (see
 * device.ts: Xen maps the real BAR instead); INTx is wired to the domain's IO-APIC input
 * `hvmloaderIntxIrq(device, pin)`, through an IO-APIC source of its own so that functions
 * sharing the GSI form a wired OR.
 *
 * deassign_device (explicit, or on Domain.destroy): device.reset() (PCIe FLR: its DMA stops),
 * the context entry cleared and the context cache and IOTLB invalidated, INTx disconnected, the
 * device off the domain's bus and free again; its DMA port refuses everything until the next
 * assignment (a free device is quarantined: Xen's dom_io with no mappings).
 */
import {
  PCI_BASE_ADDRESS_0,
  PCI_COMMAND,
  PCI_COMMAND_MEMORY,
  PCI_INTERRUPT_LINE,
  PCI_INTERRUPT_PIN,
  formatBdf,
  bdf as makeBdf,
  type Bdf,
  type DmaPort,
  type DmaResult,
  type Iova,
} from "@vtlab/arch";
import { hvmloaderIntxIrq } from "@vtlab/xen-platform-pci";
import { XEN_EINVAL } from "@vtlab/xen-public";
import { FaultReason } from "@vtlab/iommu";
import type { Domain, Hypervisor } from "../hypervisor.js";
import type { AssignableDevice } from "./device.js";
import { HVM_BELOW_4G_MMIO_START } from "../devices/platform.js";
import { IOAPIC_BASE_DEFAULT } from "../devices/ioapic.js";
import type { HostIommu } from "./vtd.js";

/** The platform device's BAR1 (XEN_PLATFORM_MMIO_BAR_SIZE, 16 MiB) sits at the bottom of the hole; assigned BARs follow it. */
const PLATFORM_BAR_SIZE = 0x100_0000;
/**
 * IO-APIC input sources (IoApicSource bits) for assigned devices' INTx: 8..31, one per assigned
 * function on a GSI, so functions sharing a line (every INTx reaches ISA IRQ 5, 10 or 11) are a
 * wired OR: one deasserting leaves the others' interrupts up.
 */
const PASSTHROUGH_INTX_SOURCE_BASE = 8;
const PASSTHROUGH_INTX_SOURCE_LAST = 31;

/** One row of `xl pci-assignable-list` (with the owner, as `xl pci-list` would show it). */
export interface AssignableListing {
  readonly bdf: string;
  readonly name: string;
  /** The owning domain's name, or "free". */
  readonly owner: string;
}

/** A PCI address in xl.cfg's BDF syntax ("00:04.0" or "0000:00:04.0", hex), or a reason string. */
export function parsePciBdf(text: string): Bdf | string {
  const m = /^(?:([0-9a-fA-F]{1,4}):)?([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2})\.([0-7])$/.exec(text);
  if (m === null) {
    if (/[,@]/.test(text)) return `"${text}": options (",key=value") and virtual slots ("@vslot") are not supported; give only [DDDD:]BB:DD.F`;
    return `"${text}" is not a PCI address; give [DDDD:]BB:DD.F in hex, e.g. "00:04.0"`;
  }
  const seg = m[1] === undefined ? 0 : parseInt(m[1], 16);
  if (seg !== 0) return `"${text}": PCI segment ${m[1]} does not exist (only segment 0000)`;
  const device = parseInt(m[3]!, 16);
  if (device > 0x1f) return `"${text}": device number 0x${m[3]} is above 0x1f`;
  return makeBdf(parseInt(m[2]!, 16), device, parseInt(m[4]!, 10));
}

/** A port that refuses every DMA (a free, quarantined device: no context entry, Xen's dom_io). */
const QUARANTINE: DmaPort = {
  read: (requester: Bdf, iova: Iova): DmaResult => refused(requester, iova, false),
  write: (requester: Bdf, iova: Iova): DmaResult => refused(requester, iova, true),
};

function refused(requester: Bdf, iova: Iova, write: boolean): DmaResult {
  return { kind: "dma-fault", requester, iova, write, reason: FaultReason.ContextEntryNotPresent, reasonName: "device not assigned (no context entry)" };
}

interface Assignment {
  readonly domain: Domain;
  readonly barBase: number;
  /** The GSI and IO-APIC source its INTx drives (undefined without an interrupt pin). */
  readonly intx: { readonly gsi: number; readonly source: number } | undefined;
}

/** The host's assignable devices and their owners. */
export class PciPassthrough {
  private readonly devices = new Map<Bdf, AssignableDevice>();
  private readonly owners = new Map<Bdf, Assignment>();
  /** Domains in global log-dirty mode (enableLogDirty). */
  private readonly logDirty = new WeakSet<Domain>();
  /** Next free BAR address per domain (hvmloader's mem_resource.base). */
  private readonly nextBar = new WeakMap<Domain, number>();
  /** IO-APIC sources taken per domain, as bit masks per GSI. */
  private readonly intxSources = new WeakMap<Domain, Map<number, number>>();

  constructor(
    private readonly hv: Hypervisor,
    readonly iommu: HostIommu,
  ) {}

  /** pci_add_device: make `dev` assignable. Throws on a duplicate BDF (a vtlab setup bug). */
  add(dev: AssignableDevice): void {
    if (this.devices.has(dev.requester)) throw new Error(`PCI device ${formatBdf(dev.requester)} is already registered (${this.devices.get(dev.requester)!.name})`);
    this.devices.set(dev.requester, dev);
    dev.connectDma(QUARANTINE);
    dev.connectIntx(undefined);
  }

  /** `xl pci-assignable-list`, with owners. */
  list(): AssignableListing[] {
    return [...this.devices.values()]
      .sort((a, b) => a.requester - b.requester)
      .map((d) => ({ bdf: formatBdf(d.requester), name: d.name, owner: this.owners.get(d.requester)?.domain.name ?? "free" }));
  }

  device(id: Bdf): AssignableDevice | undefined {
    return this.devices.get(id);
  }

  ownerOf(id: Bdf): Domain | undefined {
    return this.owners.get(id)?.domain;
  }

  /** Devices assigned to `d`. */
  assignedTo(d: Domain): AssignableDevice[] {
    const out: AssignableDevice[] = [];
    for (const [id, a] of this.owners) if (a.domain === d) out.push(this.devices.get(id)!);
    return out;
  }

  /** Check `text` names a free assignable device; the error message otherwise. */
  check(text: string): Bdf | string {
    const id = parsePciBdf(text);
    if (typeof id === "string") return `pci: ${id}`;
    const dev = this.devices.get(id);
    if (dev === undefined) {
      const names = this.list().map((l) => `${l.bdf} (${l.name})`);
      return `pci: no assignable device at ${formatBdf(id)}; assignable: ${names.length === 0 ? "none" : names.join(", ")}`;
    }
    const owner = this.owners.get(id);
    if (owner !== undefined) return `pci: ${formatBdf(id)} (${dev.name}) is already assigned to domain ${owner.domain.name}`;
    return id;
  }

  /** assign_device: hand the device at `text` to `d`; returns an error message or undefined. */
  assign(d: Domain, text: string): string | undefined {
    if (d.state === "destroyed") return `pci: domain ${d.name} is destroyed`;
    const id = this.check(text);
    if (typeof id === "string") return id;
    // assign_device: -EXDEV for a domain in global log-dirty mode (p2m->global_logdirty).
    if (this.logDirty.has(d)) return `pci: ${formatBdf(id)}: domain ${d.name} is in log-dirty mode (Xen's assign_device: -EXDEV)`;
    const dev = this.devices.get(id)!;
    // The BAR's place in the hole, as hvmloader's pci_setup: naturally aligned, after what it placed.
    const size = dev.registerSize;
    const start = this.nextBar.get(d) ?? hvmloaderMmioStart(d);
    const base = Math.ceil(start / size) * size;
    if (base + size > IOAPIC_BASE_DEFAULT) return `pci: no room in the MMIO hole below 0x${IOAPIC_BASE_DEFAULT.toString(16)} for ${formatBdf(id)}'s ${size}-byte BAR0`;
    const pin = dev.config.read(PCI_INTERRUPT_PIN, 1);
    const gsi = pin >= 1 && pin <= 4 ? hvmloaderIntxIrq((id >>> 3) & 0x1f, pin) : undefined;
    const taken = gsi === undefined ? 0 : (this.intxSources.get(d)?.get(gsi) ?? 0);
    let source = PASSTHROUGH_INTX_SOURCE_BASE;
    while (source <= PASSTHROUGH_INTX_SOURCE_LAST && (taken & (1 << source)) !== 0) source++;
    if (gsi !== undefined && source > PASSTHROUGH_INTX_SOURCE_LAST) return `pci: ${formatBdf(id)}: no free IO-APIC source on GSI ${gsi} (at most ${PASSTHROUGH_INTX_SOURCE_LAST - PASSTHROUGH_INTX_SOURCE_BASE + 1} assigned functions share one)`;
    const onBus = d.pci.attach(id, dev);
    if (onBus !== undefined) return `pci: ${formatBdf(id)}: ${onBus.message}`;
    const mmioName = `pci ${formatBdf(id)} ${dev.name} BAR0`;
    const reg = d.mmio.register(base, size, dev.registers, mmioName);
    if (reg !== undefined) {
      d.pci.detach(id);
      return `pci: ${formatBdf(id)}: ${reg.message}`;
    }
    const port = this.iommu.attach(d, id);
    if (typeof port === "string") {
      d.mmio.bus.unregister(base);
      d.pci.detach(id);
      return `pci: ${formatBdf(id)}: ${port}`;
    }
    this.nextBar.set(d, base + size);
    // libxl resets a device before handing it over (libxl__device_pci_reset): whatever a previous
    // owner, or a stray access while it was free, left programmed is gone.
    dev.reset();
    dev.config.write(PCI_BASE_ADDRESS_0, 4, base);
    // A 64-bit BAR0's upper half (BAR1's register) too: the hole is below 4 GiB, and whatever a
    // previous owner wrote there must not move the next owner's BAR away from its registers.
    if (dev.config.bars.some((b) => b.index === 0 && b.kind === "memory64")) dev.config.write(PCI_BASE_ADDRESS_0 + 4, 4, 0);
    if (gsi !== undefined) {
      let bySource = this.intxSources.get(d);
      if (bySource === undefined) this.intxSources.set(d, (bySource = new Map()));
      bySource.set(gsi, (taken | (1 << source)) >>> 0);
      dev.config.write(PCI_INTERRUPT_LINE, 1, gsi);
      dev.connectIntx((asserted) => d.ioapic.setLevel(gsi, asserted, source));
    }
    dev.config.write(PCI_COMMAND, 2, (dev.config.read(PCI_COMMAND, 2) | PCI_COMMAND_MEMORY) >>> 0);
    dev.connectDma(port);
    this.owners.set(id, { domain: d, barBase: base, intx: gsi === undefined ? undefined : { gsi, source } });
    if (!this.iommu.remapping) {
      d.log(`(XEN) WARNING: iommu=0: ${formatBdf(id)} (${dev.name}) assigned without DMA remapping; it can read and write every frame of every domain`);
    }
    return undefined;
  }

  /** deassign_device: quiesce the device and give it back to the host; false if `d` does not own it. */
  deassign(d: Domain, id: Bdf): boolean {
    const a = this.owners.get(id);
    if (a === undefined || a.domain !== d) return false;
    const dev = this.devices.get(id)!;
    dev.reset(); // FLR: queued work dropped, bus mastering off, INTx deasserted
    dev.connectDma(QUARANTINE);
    dev.connectIntx(undefined);
    if (a.intx !== undefined) {
      const bySource = this.intxSources.get(d);
      bySource?.set(a.intx.gsi, ((bySource.get(a.intx.gsi) ?? 0) & ~(1 << a.intx.source)) >>> 0);
    }
    this.iommu.detach(d, id);
    d.mmio.bus.unregister(a.barBase);
    d.pci.detach(id);
    this.owners.delete(id);
    return true;
  }

  /**
   * paging_log_dirty_enable (xen/arch/x86/mm/paging.c): with assigned devices (has_arch_pdevs)
   * refused with -EINVAL, since DMA writes bypass the dirty log; otherwise the domain's memory
   * virtualizer starts logging. Returns 0 or -XEN_EINVAL.
   */
  enableLogDirty(d: Domain): number {
    if (this.assignedTo(d).length > 0 || this.logDirty.has(d)) return -XEN_EINVAL;
    const r: unknown = d.paging.enableLogDirty();
    if (r !== undefined) return -XEN_EINVAL;
    this.logDirty.add(d);
    return 0;
  }

  /** Every device of `d` (Domain.destroy). */
  deassignAll(d: Domain): void {
    for (const dev of this.assignedTo(d)) this.deassign(d, dev.requester);
    this.iommu.forget(d);
  }
}

/** Where hvmloader starts placing BARs after the platform device's (see devices/platform.ts). */
function hvmloaderMmioStart(d: Domain): number {
  const ramEnd = d.layout.lowFrames * 4096;
  const platformBase = Math.max(HVM_BELOW_4G_MMIO_START, Math.ceil(ramEnd / PLATFORM_BAR_SIZE) * PLATFORM_BAR_SIZE);
  return platformBase + (d.platform !== undefined ? PLATFORM_BAR_SIZE : 0);
}
