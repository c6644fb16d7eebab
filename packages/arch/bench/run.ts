/**
 * @vtlab/arch benchmarks: cold 4-level page walks per second and machine-memory reads per
 * second. Prints one JSON object per figure. Runs against the built package (`pnpm build`).
 */
import { measureRates, report } from "@vtlab/bench-harness";
import {
  Access,
  MachineMemory,
  PTE_P,
  PTE_RW,
  PTE_US,
  PhysicalPagingStructures,
  WalkResult,
  WalkStatus,
  makeEntry,
  pagingMode,
  walkLinear,
  type MemoryError,
  type U64,
} from "@vtlab/arch";

const GiB = 1024 ** 3;
const FLAGS = PTE_P | PTE_RW | PTE_US;

/** Identity-style tables mapping 1 GiB of linear space (va 0..1 GiB) with 4 KiB pages at 4 GiB. */
function buildTables(mem: MachineMemory): number {
  let next = 0x10_0000;
  const alloc = () => {
    const a = next;
    next += 4096;
    return a;
  };
  const pml4 = alloc();
  const pdpt = alloc();
  const pd = alloc();
  const put = (table: number, index: number, address: number) => {
    const e = makeEntry(address, FLAGS);
    mem.write64(table + index * 8, e.lo, e.hi);
  };
  put(pml4, 0, pdpt);
  put(pdpt, 0, pd);
  for (let i = 0; i < 512; i++) {
    const pt = alloc();
    put(pd, i, pt);
    for (let j = 0; j < 512; j++) put(pt, j, 4 * GiB + (i * 512 + j) * 4096);
  }
  return pml4;
}

const mem = new MachineMemory(8 * GiB);
const root = buildTables(mem);
const tables = new PhysicalPagingStructures(mem);
const mode = pagingMode();
const out = new WalkResult<MemoryError>();

// A fixed pseudo-random sequence of linear addresses (xorshift; no Math.random in vtlab).
const N = 4096;
const addresses = new Uint32Array(N);
let x = 0x9e3779b9;
for (let i = 0; i < N; i++) {
  x ^= x << 13;
  x ^= x >>> 17;
  x ^= x << 5;
  addresses[i] = (x >>> 0) & 0x3fff_fff8; // within 1 GiB
}

// Memory-read targets: 4096 addresses spread over the 2 GiB of page tables and data frames touched above.
const readAddrs = new Float64Array(N);
for (let i = 0; i < N; i++) readAddrs[i] = 0x10_0000 + (((addresses[i] as number) >>> 3) % (512 * 4096)) * 4;
for (let i = 0; i < N; i += 64) mem.write32(4 * GiB + (addresses[i] as number), i); // allocate some data frames too

let sink = 0;
const pair: U64 = { lo: 0, hi: 0 };

await measureRates([
  {
    name: "arch.walk.cold-4level-4k",
    unit: "walks/s",
    opsPerCall: N,
    run: () => {
      for (let i = 0; i < N; i++) {
        if (walkLinear(out, mode, root, 0, addresses[i] as number, Access.Read, tables) !== WalkStatus.Ok) throw new Error("walk failed");
        sink += out.physicalAddress;
      }
    },
  },
  {
    name: "arch.memory.read32",
    unit: "reads/s",
    opsPerCall: N,
    run: () => {
      for (let i = 0; i < N; i++) sink += mem.read32(readAddrs[i] as number) as number;
    },
  },
  {
    name: "arch.memory.read64",
    unit: "reads/s",
    opsPerCall: N,
    run: () => {
      for (let i = 0; i < N; i++) {
        mem.read64(readAddrs[i] as number, pair);
        sink += pair.lo;
      }
    },
  },
]);

// Reference counts are exact, not timed: the figure the walk-cost tables build on.
walkLinear(out, mode, root, 0, 0x1234_5000, Access.Read, tables);
report({ name: "arch.walk.references-4level-4k", value: out.references, unit: "references/walk" });
if (sink === 0.5) console.error(sink); // keep the work observable
