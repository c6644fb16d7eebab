/**
 * DMA mapping strategies and their IOTLB behaviour, the comparison of Ben-Yehuda et al., "The
 * Price of Safety: Evaluating IOMMU Performance" (OLS 2007) and Amit et al., "IOMMU: Strategies
 * for Mitigating the IOTLB Bottleneck" (WIOSCA 2010). A driver using the DMA API over an IOMMU
 * either maps each buffer for one DMA and unmaps it after (strict: unmap invalidates the IOTLB
 * entry at once), unmaps lazily and invalidates globally once per batch (deferred, as Linux's
 * intel-iommu does by default with its flush queue), or maps its buffers once and keeps them
 * mapped (persistent).
 *
 * The workload: a device DMAs into a ring of receive buffers, one 4 KiB page each, in ring
 * order. IOVA pages come from an allocator that hands out the most recently freed page first
 * (a free list), the way IOVA caches do. Every count is exact and deterministic.
 */
import type { Bdf, Gfn, Mfn } from "@vtlab/arch";
import type { IommuDomain, InvalidationRequest } from "./domain.js";
import type { VtdDriver } from "./driver.js";
import type { VtdUnit } from "./vtd/unit.js";
import { IotlbInvalidation } from "./vtd/regs.js";

export type MappingStrategy = "strict" | "deferred" | "persistent";

export interface MappingWorkload {
  readonly strategy: MappingStrategy;
  /** Receive buffers in the ring. */
  readonly buffers: number;
  /** DMAs to run (one translation each). */
  readonly dmas: number;
  /** Deferred: unmaps batched before one global IOTLB flush. Default 250 (Linux's HIGH_WATER_MARK). */
  readonly batch?: number;
  /** First IOVA page the allocator hands out. Default 0x1000 (16 MiB). */
  readonly iovaBase?: number;
  /** Machine frame of buffer i is `bufferFrame + i`. */
  readonly bufferFrame: number;
}

export interface MappingResult {
  readonly strategy: MappingStrategy;
  readonly buffers: number;
  readonly dmas: number;
  readonly translations: number;
  readonly iotlbMisses: number;
  /** iotlbMisses / translations. */
  readonly missRate: number;
  /** IOTLB hits during the measured DMAs (translations = hits + misses: no DMA faults). */
  readonly iotlbHits: number;
  readonly contextCacheHits: number;
  readonly contextCacheMisses: number;
  /** Root, context and second-level entries read by the table walks of the measured DMAs. */
  readonly walkReferences: number;
  /** IOTLB invalidation commands issued (page-selective for strict, global for deferred). */
  readonly invalidations: number;
  readonly maps: number;
  readonly unmaps: number;
}

/** Most-recently-freed-first IOVA page allocator over a contiguous range. */
export class IovaAllocator {
  private readonly free: number[] = [];
  private next: number;

  constructor(base: number) {
    this.next = base;
  }

  allocate(): number {
    return this.free.pop() ?? this.next++;
  }

  release(page: number): void {
    this.free.push(page);
  }
}

export interface MappingSetup {
  readonly unit: VtdUnit;
  readonly driver: VtdDriver;
  /** The device's domain: its tables map IOVA pages to buffer frames. */
  readonly domain: IommuDomain;
  readonly device: Bdf;
}

/**
 * Run the workload through the unit (translations) and the driver (invalidations over MMIO).
 * Throws if a DMA faults: that would be a bug in a strategy, not an outcome.
 */
export function runMappingWorkload(setup: MappingSetup, w: MappingWorkload): MappingResult {
  const { unit, driver, domain, device } = setup;
  const alloc = new IovaAllocator(w.iovaBase ?? 0x1000);
  const batch = w.batch ?? 250;
  let maps = 0;
  let unmaps = 0;
  let invalidations = 0;
  const pendingFree: number[] = [];

  const map = (page: number, frame: number): void => {
    const e = domain.map(page as Gfn, frame as Mfn, true);
    if (e !== undefined) throw new Error(e.message);
    maps++;
  };
  const unmap = (page: number): InvalidationRequest => {
    const r = domain.unmap(page as Gfn);
    if (r === undefined || r.kind === "iommu-domain-error") throw new Error(`unmap of IOVA page 0x${page.toString(16)} failed`);
    unmaps++;
    return r;
  };
  const invalidate = (r: InvalidationRequest): void => {
    const e = driver.invalidate(r);
    if (typeof e !== "number") throw new Error(e.message);
    invalidations++;
  };
  const dma = (page: number): void => {
    if (unit.translate(device, page * 0x1000 + 0x40, true) < 0) throw new Error(`DMA to IOVA page 0x${page.toString(16)} faulted`);
  };

  // Persistent mappings are set up before the measured DMAs, as a driver does at open time.
  const persistent: number[] = [];
  if (w.strategy === "persistent") {
    for (let i = 0; i < w.buffers; i++) {
      const page = alloc.allocate();
      map(page, w.bufferFrame + i);
      persistent.push(page);
    }
  }

  const before = unit.stats;
  for (let k = 0; k < w.dmas; k++) {
    const i = k % w.buffers;
    if (w.strategy === "persistent") {
      dma(persistent[i] as number);
      continue;
    }
    const page = alloc.allocate();
    map(page, w.bufferFrame + i);
    dma(page);
    const r = unmap(page);
    if (w.strategy === "strict") {
      invalidate(r);
      alloc.release(page);
    } else {
      pendingFree.push(page);
      if (pendingFree.length >= batch) {
        invalidate({ kind: "iotlb", granularity: IotlbInvalidation.Global, domainId: domain.domainId, address: 0, addressMask: 0, leafOnly: false });
        for (const p of pendingFree) alloc.release(p);
        pendingFree.length = 0;
      }
    }
  }
  const after = unit.stats;
  const translations = after.translations - before.translations;
  const iotlbMisses = after.iotlbMisses - before.iotlbMisses;
  return {
    strategy: w.strategy,
    buffers: w.buffers,
    dmas: w.dmas,
    translations,
    iotlbMisses,
    missRate: translations === 0 ? 0 : iotlbMisses / translations,
    iotlbHits: after.iotlbHits - before.iotlbHits,
    contextCacheHits: after.contextCacheHits - before.contextCacheHits,
    contextCacheMisses: after.contextCacheMisses - before.contextCacheMisses,
    walkReferences: after.walkReferences - before.walkReferences,
    invalidations,
    maps,
    unmaps,
  };
}
