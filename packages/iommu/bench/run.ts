/**
 * @vtlab/iommu benchmarks. Wall-clock: DMA translations per second with IOTLB hits and with
 * misses (a context-cache hit and a 4-level walk), and 64-byte DMA writes per second through the
 * DmaPort. Exact, deterministic: IOTLB miss rates of the strict, deferred and persistent mapping
 * strategies (Ben-Yehuda et al. 2007; Amit et al. 2010) on the default 64-entry IOTLB.
 * Prints one JSON object per figure. Runs against the built package (`pnpm build`).
 */
import { measureRates, report } from "@vtlab/bench-harness";
import { DEFAULT_COST_MODEL, MachineMemory, MmioBus, bdf, gfn, iova, mfn, type Mfn } from "@vtlab/arch";
import {
  BumpFrameAllocator,
  ContextInvalidation,
  IommuDomain,
  IotlbInvalidation,
  MapP2m,
  RootTable,
  VTD_REG_PAGE_SIZE,
  VtdDriver,
  VtdUnit,
  runMappingWorkload,
  type MappingStrategy,
} from "@vtlab/iommu";

const DRHD = 0xfed9_0000;
const DEV = bdf(0, 3, 0);
const HOT_PAGES = 32; // fits the 64-entry IOTLB
const COLD_PAGES = 0x4_0000; // 1 GiB of 4 KiB pages: far beyond it

function fail(message: string): never {
  throw new Error(message);
}

function setup(pages: number) {
  const memory = new MachineMemory(64 * 1024 ** 3);
  const mmio = new MmioBus();
  const unit = new VtdUnit({ memory });
  mmio.register(DRHD, VTD_REG_PAGE_SIZE, unit.registers, "dmar0");
  const driver = new VtdDriver(mmio, DRHD);
  const frames = new BumpFrameAllocator(memory, 0x1000 as Mfn, 0x1_0000);
  const root = RootTable.create(memory, frames);
  if (!(root instanceof RootTable)) fail(root.message);
  const p2m = new MapP2m();
  for (let i = 0; i < pages; i++) p2m.set(gfn(i), mfn(0x40_0000 + i));
  const domain = IommuDomain.fromP2m(memory, frames, { domainId: 1, levels: 4, p2m });
  if (!(domain instanceof IommuDomain)) fail(domain.message);
  const actions = domain.attach(root, DEV);
  if (!Array.isArray(actions)) fail(actions.message);
  driver.setRootTable(root.address);
  driver.invalidate({ kind: "context", granularity: ContextInvalidation.Global, domainId: 0, sourceId: 0, functionMask: 0 });
  driver.invalidate({ kind: "iotlb", granularity: IotlbInvalidation.Global, domainId: 0, address: 0, addressMask: 0, leafOnly: false });
  driver.enableTranslation();
  return { memory, unit, driver, domain };
}

// A fixed pseudo-random sequence of pages (xorshift; no Math.random in vtlab).
const N = 4096;
const coldAddresses = new Float64Array(N);
let x = 0x2545f491;
for (let i = 0; i < N; i++) {
  x ^= x << 13;
  x ^= x >>> 17;
  x ^= x << 5;
  coldAddresses[i] = ((x >>> 0) % COLD_PAGES) * 4096 + (i & 0xff8);
}

const hot = setup(HOT_PAGES);
const cold = setup(COLD_PAGES);
const payload = new Uint8Array(64).fill(0x5a);
let sink = 0;

for (let i = 0; i < HOT_PAGES; i++) hot.unit.translate(DEV, i * 4096, false); // warm the IOTLB
const coldBefore = cold.unit.stats;

await measureRates([
  {
    name: "iommu.translate.iotlb-hit",
    unit: "translations/s",
    opsPerCall: N,
    run: () => {
      const u = hot.unit;
      for (let i = 0; i < N; i++) sink += u.translate(DEV, (i % HOT_PAGES) * 4096 + 0x10, (i & 1) === 0);
    },
  },
  {
    name: "iommu.translate.iotlb-miss",
    unit: "translations/s",
    opsPerCall: N,
    run: () => {
      const u = cold.unit;
      for (let i = 0; i < N; i++) sink += u.translate(DEV, coldAddresses[i] as number, false);
    },
  },
  {
    name: "iommu.dma.write-64B-iotlb-hit",
    unit: "DMAs/s",
    opsPerCall: N,
    run: () => {
      const u = hot.unit;
      for (let i = 0; i < N; i++) if (u.write(DEV, iova((i % HOT_PAGES) * 4096 + 0x100), payload) !== undefined) fail("DMA faulted");
    },
  },
]);

const coldAfter = cold.unit.stats;
if (hot.unit.stats.faults !== 0 || coldAfter.faults !== 0) fail("a benchmark translation faulted");
report({
  name: "iommu.translate.iotlb-miss.measured-miss-rate",
  value: Math.round(((coldAfter.iotlbMisses - coldBefore.iotlbMisses) / (coldAfter.translations - coldBefore.translations)) * 1e4) / 1e4,
  unit: "misses/translation",
});
report({
  name: "iommu.walk.references-per-miss-4level",
  value: Math.round(((coldAfter.walkReferences - coldBefore.walkReferences) / (coldAfter.iotlbMisses - coldBefore.iotlbMisses)) * 100) / 100,
  unit: "entries read/miss",
});

// Exact, deterministic: the mapping strategies' IOTLB miss rates.
const strategies: [MappingStrategy, number][] = [
  ["strict", 32],
  ["deferred", 32],
  ["persistent", 32],
  ["persistent", 64],
  ["strict", 256],
  ["deferred", 256],
  ["persistent", 256],
];
for (const [strategy, buffers] of strategies) {
  const s = setup(0);
  const r = runMappingWorkload({ unit: s.unit, driver: s.driver, domain: s.domain, device: DEV }, { strategy, buffers, dmas: 10_000, bufferFrame: 0x50_0000 });
  const tag = `${strategy}.ring-${buffers}`;
  report({ name: `iommu.iotlb.miss-rate.${tag}`, value: Math.round(r.missRate * 1e4) / 1e4, unit: "misses/translation" });
  report({ name: `iommu.invalidations-per-dma.${tag}`, value: Math.round((r.invalidations / r.dmas) * 1e4) / 1e4, unit: "invalidations/DMA" });
  report({
    name: `iommu.modelled-miss-cycles-per-dma.${tag}`,
    value: Math.round((r.iotlbMisses / r.dmas) * DEFAULT_COST_MODEL.iotlbMiss),
    unit: "cycles/DMA (modelled)",
  });
  // What each DMA costs the unit's caches: every IOTLB miss is one second-level page walk.
  const perDma = (n: number) => Math.round((n / r.dmas) * 1e4) / 1e4;
  report({ name: `iommu.iotlb.hit-rate.${tag}`, value: Math.round((r.iotlbHits / r.translations) * 1e4) / 1e4, unit: "hits/translation" });
  report({ name: `iommu.context-cache.hits-per-dma.${tag}`, value: perDma(r.contextCacheHits), unit: "context-cache hits/DMA" });
  report({ name: `iommu.page-walks-per-dma.${tag}`, value: perDma(r.iotlbMisses), unit: "walks/DMA" });
  report({ name: `iommu.walk-references-per-dma.${tag}`, value: perDma(r.walkReferences), unit: "entries read/DMA" });
}

if (sink === 0.5) console.error(sink); // keep the work observable
