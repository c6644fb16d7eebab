/**
 * @vtlab/mmu-ept benchmarks: cold two-dimensional walks per second, walks per second with the
 * paging-structure caches and nested TLB, translations per second through the TLB, and
 * single guest-physical translations through the nested TLB; then the exact reference counts
 * (cold walks, and references per walk for each cache configuration of the walk-cost workload).
 * Prints one JSON object per figure. Runs against the built package (`pnpm build`).
 */
import { measureRates, report } from "@vtlab/bench-harness";
import { Access } from "@vtlab/arch";
import { EptAccess, GuestReference } from "@vtlab/cpu-vmx";
import { ALL_CACHES, NO_CACHES, NestedStatus, buildWalkCostMachine, coldWalkReferences, runWalkCost } from "@vtlab/mmu-ept";

const m = buildWalkCostMachine(); // a 64 MiB working set in 4 KiB pages scattered over 4 GiB of guest-physical memory
const w = m.walker;
const hiBase = Math.floor(m.base / 0x1_0000_0000);

// A fixed pseudo-random sequence of offsets in the working set (xorshift; no Math.random in vtlab).
const N = 4096;
const offsets = new Uint32Array(N);
let x = 0x9e3779b9;
for (let i = 0; i < N; i++) {
  x ^= x << 13;
  x ^= x >>> 17;
  x ^= x << 5;
  offsets[i] = (x >>> 0) % m.workingSet;
}
// 32 pages: they fit the 64-entry TLB.
const hot = new Uint32Array(N);
for (let i = 0; i < N; i++) hot[i] = ((offsets[i] as number) % (32 * 4096)) >>> 0;
// Guest-physical addresses of 16 data frames, for single translations.
const gpas = new Float64Array(N);
w.caches.set(ALL_CACHES);
for (let i = 0; i < 16; i++) {
  w.translateLinear(hiBase, i * 4096, Access.Read);
  for (let j = i; j < N; j += 16) gpas[j] = w.gpa + ((offsets[j] as number) % 4096);
}

let sink = 0;
function sweep(list: Uint32Array): void {
  for (let i = 0; i < N; i++) {
    if (w.translateLinear(hiBase, list[i] as number, Access.Read) !== NestedStatus.Ok) throw new Error("translation failed");
    sink += w.hpa;
  }
}

await measureRates([
  {
    name: "mmu-ept.walk.cold-2d-4x4",
    unit: "walks/s",
    opsPerCall: N,
    setup: () => w.caches.set(NO_CACHES),
    run: () => sweep(offsets),
  },
  {
    name: "mmu-ept.walk.2d-with-pscs-and-nested-tlb",
    unit: "walks/s",
    opsPerCall: N,
    setup: () => w.caches.set({ ...ALL_CACHES, tlb: false }),
    run: () => sweep(offsets),
  },
  {
    name: "mmu-ept.translate.tlb-hit",
    unit: "translations/s",
    opsPerCall: N,
    setup: () => {
      w.caches.set(ALL_CACHES);
      sweep(hot);
    },
    run: () => sweep(hot),
  },
  {
    name: "mmu-ept.translate.gpa-nested-tlb-hit",
    unit: "translations/s",
    opsPerCall: N,
    setup: () => w.caches.set(ALL_CACHES),
    run: () => {
      for (let i = 0; i < N; i++) sink += w.translate(gpas[i] as number, EptAccess.Read, GuestReference.Final) as number;
    },
  },
]);

// Reference counts are exact, not timed.
for (const [g, e] of [
  [4, 4],
  [5, 4],
  [4, 5],
  [5, 5],
] as const) {
  report({ name: `mmu-ept.walk.references-cold-${g}x${e}`, value: coldWalkReferences({ guestLevels: g, eptLevels: e }), unit: "references/walk" });
}
for (const row of runWalkCost()) {
  const key = row.config.replace(/ \+ /g, "+").replace(/ /g, "-").toLowerCase();
  report({ name: `mmu-ept.walk-cost.random.${key}`, value: Math.round(row.random.referencesPerWalk * 100) / 100, unit: "references/walk" });
  report({ name: `mmu-ept.walk-cost.sequential.${key}`, value: Math.round(row.sequential.referencesPerWalk * 100) / 100, unit: "references/walk" });
}
if (sink === 0.5) console.error(sink); // keep the work observable
