/**
 * A tour of @vtlab/arch: build 4-level page tables in machine memory, walk them the way the
 * MMU does (and watch accessed/dirty bits appear), take a page fault, and enumerate a PCI bus
 * through the 0xCF8/0xCFC host bridge. Run: `pnpm --filter @vtlab/arch example`.
 */
import {
  Access,
  MachineMemory,
  MmioBus,
  PAGING_LEVEL_NAMES,
  PCI_BASE_ADDRESS_0,
  PTE_P,
  PTE_RW,
  PTE_US,
  PciBus,
  PciConfigSpace,
  PciHostBridge,
  PhysicalPagingStructures,
  PortIoBus,
  SimClock,
  DEFAULT_COST_MODEL,
  bdf,
  describeEntryFlags,
  hostBridgeFunction,
  makeEntry,
  modelledCycles,
  pagingMode,
  walk,
  type PagingLevel,
} from "@vtlab/arch";

const hex = (n: number) => `0x${n.toString(16)}`;
const GiB = 1024 ** 3;

// 1. A 64 GiB machine: nothing is allocated until it is written.
const mem = new MachineMemory(64 * GiB);
console.log(`machine memory: ${mem.size / GiB} GiB configured, ${mem.allocatedFrames} frames allocated`);

// 2. Page tables mapping va 0x7f00_0000_1000 -> pa 0x8_1234_5000 (user, writable).
const [pml4, pdpt, pd, pt] = [0x1000, 0x2000, 0x3000, 0x4000];
const va = 0x7f00_0000_1abc;
const flags = PTE_P | PTE_RW | PTE_US;
const index = (shift: number) => Math.floor(va / 2 ** shift) % 512;
for (const [table, shift, next] of [
  [pml4, 39, pdpt],
  [pdpt, 30, pd],
  [pd, 21, pt],
  [pt, 12, 0x8_1234_5000],
] as const) {
  const e = makeEntry(next, flags);
  mem.write64(table + index(shift) * 8, e.lo, e.hi);
}
console.log(`page tables built: ${mem.allocatedFrames} frames allocated`);

// 3. A user-mode write: four references, then A set everywhere and D in the PTE.
const tables = new PhysicalPagingStructures(mem);
const mode = pagingMode({ smap: true, smep: true });
const t = walk(pml4, va, Access.Write | Access.User, mode, tables);
if (t.kind !== "translation") throw new Error(`unexpected ${t.kind}`);
console.log(`\nwalk of ${hex(va)} (user write): pa ${hex(t.physicalAddress)}, ${t.references} memory references`);
for (const s of walk(pml4, va, Access.Read, mode, tables).steps) {
  const name = PAGING_LEVEL_NAMES[s.level as PagingLevel];
  console.log(`  ${name.padEnd(6)} @ ${hex(s.address).padEnd(8)} = ${hex(s.hi * 2 ** 32 + s.lo).padEnd(14)} ${describeEntryFlags(s.lo, s.hi)}`);
}

// 4. The same page from the kernel with SMAP on and RFLAGS.AC clear: a page fault.
const f = walk(pml4, va, Access.Read, mode, tables);
const pf = walk(pml4, va, Access.Write, mode, tables);
console.log(`\nkernel read with SMAP, AC=0: ${f.kind === "page-fault" ? `#PF error code ${hex(f.errorCode)}` : f.kind}`);
console.log(`kernel write with SMAP, AC=0: ${pf.kind === "page-fault" ? `#PF error code ${hex(pf.errorCode)}` : pf.kind}`);
const np = walk(pml4, 0x1000, Access.Read, mode, tables);
console.log(`kernel read of an unmapped page: ${np.kind === "page-fault" ? `#PF error code ${hex(np.errorCode)} at level ${np.level}` : np.kind}`);

// 5. A PCI bus with the Xen platform device's ids, enumerated as firmware would.
const ports = new PortIoBus();
const pci = new PciBus(ports, new MmioBus());
const bridge = PciHostBridge.install(ports, pci);
if (!(bridge instanceof PciHostBridge)) throw new Error(bridge.message);
pci.attach(bdf(0, 0, 0), hostBridgeFunction());
const platform = new PciConfigSpace({ vendorId: 0x5853, deviceId: 0x0001, classCode: 0xff8000, revision: 1, interruptPin: 1 });
platform.defineBar(0, { kind: "io", size: 0x100 });
platform.defineBar(1, { kind: "memory32", size: 0x100_0000, prefetchable: true });
pci.attach(bdf(0, 2, 0), { name: "xen-platform", config: platform });
console.log("\nPCI enumeration through 0xCF8/0xCFC:");
for (let dev = 0; dev < 32; dev++) {
  ports.write(0xcf8, 4, (0x8000_0000 | (dev << 11)) >>> 0);
  const id = ports.read(0xcfc, 4);
  if (id === 0xffff_ffff) continue;
  const bars: string[] = [];
  for (let b = 0; b < 2; b++) {
    ports.write(0xcf8, 4, (0x8000_0000 | (dev << 11) | (PCI_BASE_ADDRESS_0 + 4 * b)) >>> 0);
    ports.write(0xcfc, 4, 0xffff_ffff);
    const v = ports.read(0xcfc, 4);
    if (v !== 0) bars.push(`BAR${b} ${v & 1 ? "I/O" : "mem"} ${hex(((~(v & (v & 1 ? ~3 : ~15)) >>> 0) + 1) >>> 0)} bytes`);
  }
  console.log(`  00:${dev.toString(16).padStart(2, "0")}.0 ${hex(id & 0xffff)}:${hex(id >>> 16)} ${bars.join(", ")}`);
}

// 6. Simulated time: counts are exact, cycles are modelled.
const clock = new SimClock();
const cycles = modelledCycles({ memoryReferences: t.references, instructions: 1 }, DEFAULT_COST_MODEL);
clock.advance(cycles);
console.log(`\nmodelled: one store with a cold 4-level walk = ${cycles} cycles (${clock.nanoseconds} ns at ${clock.frequencyHz / 1e9} GHz)`);
