/**
 * @vtlab/iommu tour: a VT-d unit on an MMIO bus, programmed by its driver; a domain's tables
 * built from its p2m; a device assigned to it DMAs by guest-physical address; a DMA aimed at
 * another domain's frame is blocked and recorded; a stale IOTLB entry lives until invalidated.
 * Run with `pnpm --filter @vtlab/iommu example` after `pnpm build`.
 */
import { MachineMemory, MmioBus, bdf, formatBdf, gfn, iova, mfn, type Bdf, type Mfn } from "@vtlab/arch";
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
  type InvalidationRequest,
} from "@vtlab/iommu";

const memory = new MachineMemory(16 * 1024 ** 3);
const mmio = new MmioBus();
const unit = new VtdUnit({
  memory,
  onFaultEvent: (m) => console.log(`fault event: MSI to 0x${m.address.toString(16)}, data 0x${m.data.toString(16)}`),
});
mmio.register(0xfed9_0000, VTD_REG_PAGE_SIZE, unit.registers, "dmar0");
const driver = new VtdDriver(mmio, 0xfed9_0000);
console.log("capabilities:", driver.caps);

// Hypervisor-owned frames for the tables; domain A owns mfns 0x100000.., domain B 0x180000..
const frames = new BumpFrameAllocator(memory, 0x1000 as Mfn, 0x1000);
const root = RootTable.create(memory, frames) as RootTable;
const p2m = new MapP2m();
for (let i = 0; i < 1024; i++) p2m.set(gfn(i), mfn(0x10_0000 + i));
const domainA = IommuDomain.fromP2m(memory, frames, { domainId: 1, levels: 4, p2m, largePages: { "2M": true, "1G": true } }) as IommuDomain;

const nic = bdf(3, 0, 0);
const attach = domainA.attach(root, nic) as InvalidationRequest[];
driver.setRootTable(root.address);
driver.invalidate({ kind: "context", granularity: ContextInvalidation.Global, domainId: 0, sourceId: 0, functionMask: 0 });
driver.invalidate({ kind: "iotlb", granularity: IotlbInvalidation.Global, domainId: 0, address: 0, addressMask: 0, leafOnly: false });
driver.invalidateAll(attach);
driver.enableTranslation();
driver.setFaultEvent({ address: 0xfee0_0000, data: 0x41 });

// The NIC DMAs into guest-physical 0x5000: it lands in A's machine frame 0x100005.
const packet = new TextEncoder().encode("hello from the NIC");
console.log("DMA to gpa 0x5000:", unit.write(nic, iova(0x5000), packet) ?? "ok");
const landed = new Uint8Array(packet.length);
memory.readBytes(0x10_0005 * 4096, landed);
console.log("machine frame 0x100005 holds:", new TextDecoder().decode(landed));

// The NIC aims at domain B's frame by its machine address: blocked and recorded.
const attack = unit.write(nic, iova(0x18_0000 * 4096), packet);
console.log("DMA to B's frame:", attack);
for (const r of driver.readFaults()) {
  console.log(`fault record ${r.index}: ${formatBdf(r.sourceId as Bdf)} ${r.read ? "read" : "write"} 0x${r.pageAddress.toString(16)} reason 0x${r.reason.toString(16)} (${r.reasonName})`);
}
driver.clearFaults();

// Unmap gpa 0x5000 without invalidating: the IOTLB still holds the translation.
const flush = domainA.unmap(gfn(5)) as InvalidationRequest;
console.log("after unmap, before invalidation:", unit.write(nic, iova(0x5000), packet) ?? "ok (stale IOTLB entry)");
driver.invalidate(flush);
console.log("after page-selective invalidation:", unit.write(nic, iova(0x5000), packet)?.reasonName);
console.log("stats:", unit.stats);
