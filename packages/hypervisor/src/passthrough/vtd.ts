/**
 * The host IOMMU (Xen's xen/drivers/passthrough/vtd/iommu.c, qinval.c and iommu.c): one VT-d
 * DMA-remapping unit per host, its register page at DRHD_BASE on a host-only register bus (never
 * mapped into any guest's p2m), programmed only through @vtlab/iommu's register-level `VtdDriver`.
 *
 * Bring-up follows init_vtd_hw and iommu_enable_translation: the fault event's interrupt message
 * (dma_msi_set_affinity), queued invalidation (enable_qinval: one queue page and a status word in
 * hypervisor frames), the root table (iommu_set_root_entry), a global context-cache and IOTLB
 * invalidation (iommu_flush_all), then GCMD_REG.TE.
 *
 * Per domain with an assigned device an `IommuDomain` (DID = domid, 4-level / 48-bit AGAW) is
 * built from the domain's p2m the way Xen's arch_iommu_populate_page_table / iommu_hwdom_init do
 * for a domU: RAM writable, p2m_grant_map_rw writable, p2m_grant_map_ro read-only, nothing for
 * MMIO, POD or absent frames. `p2m.onChange` keeps it in step (Xen's p2m->set_entry calling
 * iommu_legacy_map / iommu_legacy_unmap): ballooning, grant map/unmap and XENMAPSPACE moves.
 *
 * Flush policy:
 * - "strict" (default): each unmap or permission reduction is followed by a page-selective IOTLB
 *   invalidation at once (iommu_iotlb_flush per change).
 * - "deferred": invalidations are queued and done as one domain-selective IOTLB invalidation at
 *   the next flush point (Xen's iommu_dont_flush_iotlb around a batch, then iommu_iotlb_flush_all):
 *   the flush points are the end of every VM-exit handler (so after every hypercall returns) and
 *   the end of every scheduler slice. Between the unmap and the flush point a device may still hit
 *   a stale IOTLB entry and reach the old frame: that window is the price of batching, and the
 *   tests show it.
 *
 * Faults (Xen's iommu_page_fault -> __do_iommu_page_fault): after a DMA the unit blocked, the
 * fault records are read through FRCD_REG, each is attributed to the domain owning the requester
 * BDF, kept in that domain's bounded log (all counted, the last FAULT_LOG_KEEP kept), and cleared
 * (FRCD.F and FSTS_REG's RW1C bits, PFO included) so the recording registers never stay full.
 *
 * Modelled more simply than Xen: one unit covers every PCI function (one DRHD with INCLUDE_PCI_ALL);
 * the fault "interrupt" is serviced synchronously right after the blocked DMA instead of from the
 * fault-event MSI's handler; no interrupt remapping, no device IOTLB (ATS), no super pages in the
 * IOMMU tables (4 KiB leaves only, so a balloon unmap never splits).
 */
import { DirectDma, PAGE_SIZE, MmioBus, formatBdf, gfn as asGfn, mfn as asMfn, type Bdf, type DmaPort, type DmaResult, type Hpa, type Iova, type Mfn } from "@vtlab/arch";
import {
  ContextInvalidation,
  IommuDomain,
  IotlbInvalidation,
  RootTable,
  VTD_REG_PAGE_SIZE,
  VtdDriver,
  VtdUnit,
  type InvalidationRequest,
} from "@vtlab/iommu";
import { P2mType } from "@vtlab/p2m";
import type { Domain, Hypervisor } from "../hypervisor.js";

/** The DRHD register base (the ACPI DMAR table's Register Base Address; the usual first unit on Intel chipsets). */
export const DRHD_BASE = 0xfed9_0000;
/** Fault log entries kept per domain (all are counted). */
export const FAULT_LOG_KEEP = 64;
/** 4-level second-level tables, 48-bit AGAW (Xen's default agaw for a domU on a 48-bit capable unit). */
const IOMMU_LEVELS = 4;
/** The fault event's MSI: address 0xFEE00000 (APIC ID 0), the vector Xen's iommu_page_fault handler would get (a modelling choice: any free vector). */
const FAULT_EVENT_MSI = { address: 0xfee0_0000, data: 0xf0 } as const;

export type IommuFlushPolicy = "strict" | "deferred";

/** HypervisorOptions.iommu: false for `iommu = 0` (no remapping), or the flush policy (default strict). */
export type IommuOption = false | { readonly flush?: IommuFlushPolicy };

/** One blocked DMA, as the fault handler read it from FRCD_REG. */
export interface IommuFaultLogEntry {
  /** The VT-d fault reason code (VT-d spec Appendix A), and its name. */
  readonly reason: number;
  readonly reasonName: string;
  /** The requester, as "bb:dd.f". */
  readonly bdf: string;
  /** The faulting page address (FRCD_REG.FI: the IOVA with the page offset cleared). */
  readonly iova: number;
  readonly access: "read" | "write";
}

/** Per-domain IOMMU statistics (Domain.stats().iommu). Counts are exact; cycles are modelled. */
export interface DomainIommuStats {
  /** "on" through the VT-d unit, "off" with iommu = 0 (DirectDma). */
  readonly remapping: "on" | "off";
  readonly devices: readonly string[];
  readonly dmaRequests: number;
  readonly dmaBytes: number;
  readonly iotlbHits: number;
  readonly iotlbMisses: number;
  readonly iotlbHitRate: number;
  readonly contextCacheHits: number;
  readonly contextCacheMisses: number;
  /** Second-level walks (one per IOTLB miss) and the root/context/table references they made. */
  readonly pageWalks: number;
  readonly walkReferences: number;
  readonly walkReferencesPerDma: number;
  readonly faults: number;
  readonly faultLog: readonly IommuFaultLogEntry[];
  readonly invalidations: { readonly context: number; readonly iotlbPage: number; readonly iotlbDomain: number; readonly iotlbGlobal: number };
  /** Invalidations queued by the deferred policy and not yet flushed. */
  readonly pendingInvalidations: number;
  /** Modelled: IOTLB misses x CostModel.iotlbMiss + invalidations x CostModel.iotlbInvalidation. */
  readonly modelledCycles: number;
}

/** What the host IOMMU keeps per domain: its tables, devices, counters and fault log. */
export class DomainIommu {
  iommuDomain: IommuDomain | undefined;
  readonly devices = new Set<Bdf>();
  unsubscribe: (() => void) | undefined;
  /** Page-selective invalidations waiting for the flush point (deferred policy). */
  pending = 0;
  dmaRequests = 0;
  dmaBytes = 0;
  iotlbHits = 0;
  iotlbMisses = 0;
  contextCacheHits = 0;
  contextCacheMisses = 0;
  walkReferences = 0;
  faults = 0;
  readonly faultLog: IommuFaultLogEntry[] = [];
  invContext = 0;
  invIotlbPage = 0;
  invIotlbDomain = 0;
  invIotlbGlobal = 0;

  constructor(readonly domain: Domain) {}

  logFault(entry: IommuFaultLogEntry): void {
    this.faults++;
    this.faultLog.push(entry);
    if (this.faultLog.length > FAULT_LOG_KEEP) this.faultLog.shift();
  }

  snapshot(remapping: boolean, iotlbMissCost: number, invalidationCost: number): DomainIommuStats {
    const lookups = this.iotlbHits + this.iotlbMisses;
    const inv = this.invContext + this.invIotlbPage + this.invIotlbDomain + this.invIotlbGlobal;
    return {
      remapping: remapping ? "on" : "off",
      devices: [...this.devices].sort((a, b) => a - b).map(formatBdf),
      dmaRequests: this.dmaRequests,
      dmaBytes: this.dmaBytes,
      iotlbHits: this.iotlbHits,
      iotlbMisses: this.iotlbMisses,
      iotlbHitRate: lookups === 0 ? 0 : this.iotlbHits / lookups,
      contextCacheHits: this.contextCacheHits,
      contextCacheMisses: this.contextCacheMisses,
      pageWalks: this.iotlbMisses,
      walkReferences: this.walkReferences,
      walkReferencesPerDma: this.dmaRequests === 0 ? 0 : this.walkReferences / this.dmaRequests,
      faults: this.faults,
      faultLog: this.faultLog.slice(),
      invalidations: { context: this.invContext, iotlbPage: this.invIotlbPage, iotlbDomain: this.invIotlbDomain, iotlbGlobal: this.invIotlbGlobal },
      pendingInvalidations: this.pending,
      modelledCycles: this.iotlbMisses * iotlbMissCost + inv * invalidationCost,
    };
  }
}

/**
 * A device's DMA port while it is assigned: forwards to the VT-d unit (or DirectDma) and
 * attributes the unit's counters to the owning domain; after a blocked DMA runs the fault handler.
 * Allocates nothing on an access that hits the IOTLB.
 */
export class AssignedDmaPort implements DmaPort {
  constructor(
    private readonly iommu: HostIommu,
    private readonly port: DmaPort,
    private readonly owner: DomainIommu,
  ) {}

  read(requester: Bdf, iova: Iova, into: Uint8Array): DmaResult {
    return this.account(requester, iova, into, false);
  }

  write(requester: Bdf, iova: Iova, from: Uint8Array): DmaResult {
    return this.account(requester, iova, from, true);
  }

  private account(requester: Bdf, iova: Iova, bytes: Uint8Array, write: boolean): DmaResult {
    const unit = this.iommu.unit;
    const o = this.owner;
    o.dmaRequests++;
    if (unit === undefined || this.port !== unit) {
      const r = write ? this.port.write(requester, iova, bytes) : this.port.read(requester, iova, bytes);
      if (r === undefined) o.dmaBytes += bytes.length;
      return r;
    }
    const h = unit.iotlb.hits, m = unit.iotlb.misses, ch = unit.contextCache.hits, cm = unit.contextCache.misses;
    const r = write ? this.port.write(requester, iova, bytes) : this.port.read(requester, iova, bytes);
    o.iotlbHits += unit.iotlb.hits - h;
    o.iotlbMisses += unit.iotlb.misses - m;
    o.contextCacheHits += unit.contextCache.hits - ch;
    o.contextCacheMisses += unit.contextCache.misses - cm;
    if (unit.iotlb.misses !== m || unit.contextCache.misses !== cm) {
      // A walk happened: read the unit's reference counter (only on misses: the hit path allocates
      // nothing). Every DMA through the unit comes through an AssignedDmaPort (a free device's DMA
      // is refused before the unit), so the counter's growth since the last read is this walk's.
      const after = unit.stats.walkReferences;
      o.walkReferences += after - this.iommu.lastWalkReferences;
      this.iommu.lastWalkReferences = after;
    }
    if (r === undefined) o.dmaBytes += bytes.length;
    else this.iommu.serviceFaults();
    return r;
  }
}

/** The host's IOMMU: the unit, its driver, the root table, the per-domain tables. */
export class HostIommu {
  /** The VT-d unit; undefined with iommu = 0. */
  readonly unit: VtdUnit | undefined;
  readonly driver: VtdDriver | undefined;
  readonly rootTable: RootTable | undefined;
  /** The host-only register bus the unit's registers sit on (no guest's p2m maps it). */
  readonly registerBus = new MmioBus();
  readonly flush: IommuFlushPolicy;
  private readonly perDomain = new Map<Domain, DomainIommu>();
  /** Hypervisor frames this IOMMU holds (root, context tables, the invalidation queue). */
  private readonly hostFrames: Mfn[] = [];
  /** The unit's walk-reference counter as of the last attributed walk (see AssignedDmaPort). */
  lastWalkReferences = 0;
  /** iommu = 0: bus addresses are machine addresses. */
  readonly direct: DmaPort;
  /** Deferred policy: some domain has queued invalidations (`pending`) since the last flush point. */
  private anyPending = false;
  /** Faults whose requester no domain owns (a free device, or a BDF nobody has). */
  unattributedFaults = 0;

  constructor(
    private readonly hv: Hypervisor,
    option: IommuOption | undefined,
  ) {
    this.direct = new DirectDma(hv.memory);
    this.flush = option === false ? "strict" : (option?.flush ?? "strict");
    if (option === false) {
      this.unit = undefined;
      this.driver = undefined;
      this.rootTable = undefined;
      return;
    }
    if (this.flush !== "strict" && this.flush !== "deferred") throw new RangeError(`iommu flush policy must be "strict" or "deferred"; got ${String(this.flush)}`);
    const unit = new VtdUnit({ memory: hv.memory, clock: hv.clock, costModel: hv.cost, name: "dmar0" });
    this.unit = unit;
    const reg = this.registerBus.register(DRHD_BASE, VTD_REG_PAGE_SIZE, unit.registers, "dmar0");
    if (reg !== undefined) throw new Error(`vtlab bug: ${reg.message}`);
    const driver = new VtdDriver(this.registerBus, DRHD_BASE);
    this.driver = driver;
    const frames = this.allocator();
    const root = RootTable.create(hv.memory, frames);
    if (!(root instanceof RootTable)) throw new Error(`vtlab bug: root table: ${root.message}`);
    this.rootTable = root;
    // init_vtd_hw: the fault event's MSI, then enable_qinval.
    driver.setFaultEvent(FAULT_EVENT_MSI);
    if (driver.caps.queuedInvalidation) {
      const q = frames.allocate();
      const status = frames.allocate();
      if (q === undefined || status === undefined) throw new Error("vtlab bug: no host frame for the invalidation queue");
      check(driver.enableQueuedInvalidation(hv.memory, (q * PAGE_SIZE) as Hpa, (status * PAGE_SIZE) as Hpa));
    }
    // iommu_set_root_entry, iommu_flush_all (global context cache and IOTLB), iommu_enable_translation.
    check(driver.setRootTable(root.address));
    check(driver.invalidateAll([
      { kind: "context", granularity: ContextInvalidation.Global, domainId: 0, sourceId: 0, functionMask: 0 },
      { kind: "iotlb", granularity: IotlbInvalidation.Global, domainId: 0, address: 0, addressMask: 0, leafOnly: false },
    ]));
    check(driver.enableTranslation());
  }

  private allocator(): { allocate(): Mfn | undefined } {
    return {
      allocate: () => {
        const f = this.hv.frames.allocate();
        if (f !== undefined) this.hostFrames.push(f);
        return f;
      },
    };
  }

  get remapping(): boolean {
    return this.unit !== undefined;
  }

  /** The domain's IOMMU record, if it has (had) devices or faults. */
  stateOf(d: Domain): DomainIommu | undefined {
    return this.perDomain.get(d);
  }

  private ensure(d: Domain): DomainIommu {
    let s = this.perDomain.get(d);
    if (s === undefined) {
      s = new DomainIommu(d);
      this.perDomain.set(d, s);
    }
    return s;
  }

  /**
   * Connect `source` to `d`'s tables (Xen's domain_context_mapping_one): the domain's IommuDomain
   * is built from its p2m on the first device, then the context entry and its invalidations.
   * Returns the DMA port the device should use, or an error message.
   */
  attach(d: Domain, source: Bdf): DmaPort | string {
    const s = this.ensure(d);
    if (this.unit === undefined) {
      s.devices.add(source);
      return new AssignedDmaPort(this, this.direct, s);
    }
    if (s.iommuDomain === undefined) {
      const built = this.buildTables(d);
      if (typeof built === "string") return built;
      s.iommuDomain = built;
      s.unsubscribe = d.p2m.onChange((g, count, type, m) => this.p2mChanged(s, g, count, type, m));
    }
    const actions = s.iommuDomain.attach(this.rootTable!, source);
    if (!Array.isArray(actions)) return `context entry for ${formatBdf(source)}: ${actions.message}`;
    this.perform(s, actions);
    s.devices.add(source);
    return new AssignedDmaPort(this, this.unit, s);
  }

  /** Clear `source`'s context entry, invalidate the context cache and the domain's IOTLB (Xen's domain_context_unmap_one). */
  detach(d: Domain, source: Bdf): void {
    const s = this.perDomain.get(d);
    if (s === undefined || !s.devices.delete(source)) return;
    if (s.iommuDomain === undefined) return;
    const actions = s.iommuDomain.detach(this.rootTable!, source);
    if (Array.isArray(actions)) this.perform(s, actions);
    if (s.devices.size === 0) this.teardown(s);
  }

  /** The domain's last device is gone: stop following its p2m, give its table frames back. */
  private teardown(s: DomainIommu): void {
    s.unsubscribe?.();
    s.unsubscribe = undefined;
    const dom = s.iommuDomain;
    s.iommuDomain = undefined;
    s.pending = 0;
    if (dom !== undefined) for (const f of dom.tableFrames) this.hv.frames.freeExtent(f, 1);
  }

  /** arch_iommu_populate_page_table for a domU: RAM and grant mappings only. */
  private buildTables(d: Domain): IommuDomain | string {
    // With `free`, a table the domain's unmaps leave empty goes back to the host at once (balloon churn cannot grow the tables).
    const host = this.hv.frames;
    const frames = { allocate: () => host.allocate(), free: (f: Mfn) => host.freeExtent(f, 1) };
    const dom = IommuDomain.create(this.hv.memory, frames, { domainId: d.id, levels: IOMMU_LEVELS });
    if (!(dom instanceof IommuDomain)) return `IOMMU tables: ${dom.message}`;
    for (const run of d.p2m.runs()) {
      const w = writableFor(run.type);
      if (w === undefined) continue;
      for (let i = 0; i < run.count; i++) {
        const e = dom.map(asGfn(run.gfn + i), asMfn(run.mfn + i), w);
        if (e !== undefined) {
          for (const f of dom.tableFrames) this.hv.frames.freeExtent(f, 1);
          return `IOMMU tables: ${e.message}`;
        }
      }
    }
    return dom;
  }

  /** p2m->set_entry's IOMMU half (iommu_legacy_map / iommu_legacy_unmap) for [g, g + count). */
  private p2mChanged(s: DomainIommu, g: number, count: number, type: P2mType, m: number): void {
    const dom = s.iommuDomain;
    if (dom === undefined) return;
    const w = writableFor(type);
    for (let i = 0; i < count; i++) {
      const at = asGfn(g + i);
      if (at >= dom.frameLimit) break;
      const old = dom.lookup(at);
      if (w === undefined) {
        if (old === undefined) continue;
        const inv = dom.unmap(at);
        if (inv !== undefined && inv.kind === "iotlb") this.invalidatePage(s, inv);
        continue;
      }
      const e = dom.map(at, asMfn(m + i), w);
      if (e !== undefined) {
        s.domain.crash(`IOMMU map of gfn 0x${(g + i).toString(16)} failed: ${e.message}`);
        return;
      }
      // A changed frame or a lost write right: the old translation must go (with CM = 0 a
      // not-present entry is never cached, so a new mapping needs no invalidation).
      if (old !== undefined && (old.mfn !== m + i || (old.writable && !w))) {
        this.invalidatePage(s, { kind: "iotlb", granularity: IotlbInvalidation.Page, domainId: dom.domainId, address: (g + i) * PAGE_SIZE, addressMask: 0, leafOnly: true });
      }
    }
  }

  /** Strict: invalidate now (iommu_iotlb_flush). Deferred: queue for the flush point. */
  private invalidatePage(s: DomainIommu, inv: InvalidationRequest): void {
    if (this.flush === "deferred") {
      s.pending++;
      this.anyPending = true;
      return;
    }
    this.perform(s, [inv]);
  }

  /**
   * A flush point (end of a VM-exit handler, so of every hypercall; end of a scheduler slice):
   * the deferred policy's queued invalidations become one domain-selective IOTLB invalidation per
   * domain (iommu_iotlb_flush_all). Nothing to do under the strict policy.
   */
  flushPoint(): void {
    // Called after every exit handler: nothing to walk unless an invalidation was queued since.
    if (!this.anyPending) return;
    this.anyPending = false;
    for (const s of this.perDomain.values()) {
      if (s.pending === 0 || s.iommuDomain === undefined) continue;
      s.pending = 0;
      this.perform(s, [{ kind: "iotlb", granularity: IotlbInvalidation.Domain, domainId: s.iommuDomain.domainId, address: 0, addressMask: 0, leafOnly: false }]);
    }
  }

  /** Issue invalidations through the driver, counting them against the domain. */
  private perform(s: DomainIommu, requests: readonly InvalidationRequest[]): void {
    const driver = this.driver;
    if (driver === undefined || requests.length === 0) return;
    for (const r of requests) {
      if (r.kind === "context") s.invContext++;
      else if (r.granularity === IotlbInvalidation.Page) s.invIotlbPage++;
      else if (r.granularity === IotlbInvalidation.Domain) s.invIotlbDomain++;
      else s.invIotlbGlobal++;
    }
    const e = driver.invalidateAll(requests);
    if (e !== undefined) throw new Error(`vtlab bug: VT-d invalidation failed: ${e.message}`);
  }

  /**
   * Xen's iommu_page_fault / __do_iommu_page_fault: read every pending fault record, attribute
   * it to the domain that owns the requester, log it, clear the records and FSTS_REG (PFO too).
   */
  serviceFaults(): void {
    const driver = this.driver;
    if (driver === undefined) return;
    const records = driver.readFaults();
    if (records.length === 0 && !driver.faultOverflow) return;
    for (const r of records) {
      const owner = this.ownerOf(r.sourceId as Bdf);
      const entry: IommuFaultLogEntry = { reason: r.reason, reasonName: r.reasonName, bdf: formatBdf(r.sourceId as Bdf), iova: r.pageAddress, access: r.read ? "read" : "write" };
      if (owner === undefined) this.unattributedFaults++;
      else owner.logFault(entry);
    }
    driver.clearFaults();
  }

  private ownerOf(source: Bdf): DomainIommu | undefined {
    for (const s of this.perDomain.values()) if (s.devices.has(source)) return s;
    return undefined;
  }

  /** Forget a destroyed domain's record after its devices are detached (its stats went with it). */
  forget(d: Domain): void {
    const s = this.perDomain.get(d);
    if (s === undefined) return;
    if (s.iommuDomain !== undefined) this.teardown(s);
  }

  /** Hypervisor frames held by the IOMMU itself (root/context tables, queue). */
  get framesHeld(): number {
    return this.hostFrames.length;
  }
}

/** What a p2m type maps to in a domU's IOMMU tables: writable, read-only, or nothing. */
function writableFor(type: P2mType): boolean | undefined {
  if (type === P2mType.Ram || type === P2mType.GrantMapRw) return true;
  if (type === P2mType.GrantMapRo) return false;
  return undefined;
}

function check(e: { message: string } | undefined): void {
  if (e !== undefined) throw new Error(`vtlab bug: VT-d bring-up: ${e.message}`);
}
