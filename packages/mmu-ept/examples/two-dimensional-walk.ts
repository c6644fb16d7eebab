/**
 * A tour of @vtlab/mmu-ept: a domain's EPT built from its p2m, a vCPU set up for EPT, the
 * 24-reference two-dimensional walk, the caches that make it cheap, and the exits the hypervisor
 * handles (MMIO, populate on demand, log-dirty). Run after `pnpm build`:
 *   pnpm --filter @vtlab/mmu-ept example
 */
import { Access, MachineMemory, PAGING_LEVEL_NAMES, PTE_P, PTE_RW, PTE_US, gfn, mfn, type Mfn } from "@vtlab/arch";
import { CR0_PE, CR0_PG, CR0_WP, CR4_PAE, Cpu, EFER_LMA, EFER_LME, ExitReason, Vmcs, VmcsField, type VmExit } from "@vtlab/cpu-vmx";
import { ALL_CACHES, EPT_LEVEL_NAMES, EptGuestMemory, GuestPageTables, NO_CACHES, NestedPaging, describeEptEntry, describeQualification, formatWalkCostTable, isP2mError, runWalkCost, type EptFault } from "@vtlab/mmu-ept";
import { P2mType, RangeP2m, SimpleFrameAllocator } from "@vtlab/p2m";

const GiB = 1024 ** 3;
const hex = (n: number) => `0x${n.toString(16)}`;
const show = (o: ReturnType<NonNullable<ReturnType<NestedPaging["walkerFor"]>>["walk"]>) =>
  o.kind === "translation"
    ? `gpa ${hex(o.gpa)} -> hpa ${hex(o.hpa)}: ${o.references} references (${o.guestReferences} guest + ${o.eptReferences} EPT)${o.tlbHit ? ", TLB hit" : ""}`
    : JSON.stringify(o);

// ---- The domain: 256 MiB of RAM at machine 8 GiB, an emulated device at 0xf0000000, 1 MiB populated on demand ----
const memory = new MachineMemory(64 * GiB);
const p2m = new RangeP2m();
p2m.setRange(gfn(0), (256 << 20) / 4096, P2mType.Ram, mfn((8 * GiB) / 4096));
p2m.setRange(gfn(0xf0000), 16, P2mType.Mmio);
p2m.setRange(gfn(0x20000), 256, P2mType.PopulateOnDemand); // at 512 MiB
let podNext = (16 * GiB) / 4096;
const np = NestedPaging.create({
  memory,
  p2m,
  frames: new SimpleFrameAllocator(memory, ((32 * GiB) / 4096) as Mfn, 4096),
  populate: () => podNext++ as Mfn,
  largePages: false, // 4 KiB EPT pages: the classic 24-reference walk (2 MiB pages would make it 19)
});
if (isP2mError(np)) throw new Error(np.message);
console.log(`EPT built from the p2m: ${np.ept.tableFrames} table frames; gpa 0x123456 -> ${hex(np.ept.lookup(0x12_3456)!.hpa)} through a ${np.ept.lookup(0x12_3456)!.pageShift === 21 ? "2 MiB" : "4 KiB"} page`);

// ---- The guest builds its own page tables in its RAM (the hypervisor never shadows them) ----
let nextTable = 0x10_0000;
const guestMemory = new EptGuestMemory(memory, np.ept);
const tables = new GuestPageTables(guestMemory, () => (nextTable += 4096) - 4096);
const GVA = 0x7f12_3456_7000;
tables.map(GVA, 0x0420_0000, 12, PTE_P | PTE_RW | PTE_US);
tables.map(GVA + 0x1000, 0xf000_0000, 12, PTE_P | PTE_RW); // the device's registers
tables.map(GVA + 0x2000, 0x2000_5000, 12, PTE_P | PTE_RW); // populate-on-demand memory

// ---- A vCPU in long mode, configured for EPT ----
const cpu = new Cpu({ memory });
cpu.cr0 = CR0_PE | CR0_PG | CR0_WP;
cpu.cr4 = CR4_PAE;
cpu.efer = EFER_LME | EFER_LMA;
cpu.cr3 = tables.root;
const vmcs = new Vmcs();
np.setupVcpu(cpu, vmcs);
const eptp = vmcs.vmread(VmcsField.EPT_POINTER) as number;
console.log(`EPT_POINTER ${hex(eptp)}, SECONDARY_VM_EXEC_CONTROL ${hex(vmcs.read32(VmcsField.SECONDARY_VM_EXEC_CONTROL))}, VPID ${vmcs.read32(VmcsField.VIRTUAL_PROCESSOR_ID)}`);
const walker = np.walkerFor(cpu)!;

// ---- The two-dimensional walk, cold ----
walker.caches.set(NO_CACHES);
const cold = walker.walk(GVA + 0x10, Access.Read);
console.log(`\nCold walk of ${hex(GVA + 0x10)}:`);
for (let level = 4; level >= 1; level--) {
  const entryGpa = tables.entryFor(GVA, level) as number;
  const steps = np.ept.inspect(entryGpa);
  console.log(`  guest ${PAGING_LEVEL_NAMES[level]} at gpa ${hex(entryGpa)}: ${steps.map((s) => EPT_LEVEL_NAMES[s.level]).join(" -> ")} (${steps.length}), then the entry (1)`);
}
const final = np.ept.inspect(0x0420_0010);
console.log(`  final gpa ${hex(0x0420_0010)}: ${final.map((s) => `${EPT_LEVEL_NAMES[s.level]} [${describeEptEntry(s.lo, s === final.at(-1))}]`).join(" -> ")}`);
console.log(`  => ${show(cold)}`);

// ---- With the caches hardware uses ----
walker.caches.set(ALL_CACHES);
walker.walk(GVA, Access.Read);
console.log(`\nWarm: ${show(walker.walk(GVA + 0x20, Access.Read))}`);
console.log(`cache hits/misses: ${JSON.stringify(walker.caches.stats())}`);

// ---- Exits the hypervisor handles ----
function exitFor(f: EptFault, gva: number): VmExit {
  return f.kind === "ept-violation"
    ? { reason: ExitReason.EptViolation, qualification: f.qualification, instructionLength: 0, guestPhysical: f.gpa, guestLinear: gva }
    : { reason: ExitReason.EptMisconfig, qualification: 0, instructionLength: 0, guestPhysical: f.gpa };
}
for (const [what, gva, access] of [
  ["write to the device", GVA + 0x1000 + 4, Access.Write],
  ["read of populate-on-demand memory", GVA + 0x2000, Access.Read],
] as const) {
  const out = walker.walk(gva, access);
  if (out.kind !== "ept-fault") continue;
  const q = out.fault.kind === "ept-violation" ? describeQualification(out.fault.qualification) : "misconfiguration";
  console.log(`\n${what}: EPT violation at gpa ${hex(out.fault.gpa)} (${q})`);
  console.log(`  handleExit -> ${JSON.stringify(np.handleExit(cpu, vmcs, exitFor(out.fault, gva)))}`);
}
console.log(`  retried: ${show(walker.walk(GVA + 0x2000, Access.Read))}`);

// ---- Log-dirty for live migration (EPT dirty flags: no exits at all) ----
np.enableLogDirty();
walker.walk(GVA + 8, Access.Write);
console.log(`\nlog-dirty (${np.logDirtyMethod}): frames written since enabling: ${np.cleanDirty().map(hex).join(", ")}`);

// ---- What the caches save (a small run; the README's table uses the full workload) ----
console.log("\nReferences per access and per walk, 64 MiB working set, 16k random reads and a 256-byte sweep:\n");
console.log(formatWalkCostTable(runWalkCost({ randomAccesses: 1 << 14, sequentialStride: 256 })));
