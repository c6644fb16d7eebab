/**
 * @vtlab/mmu-shadow benchmarks (one JSON object per figure):
 * - shadow page faults handled per second (a fill of a not-present shadow entry, through a real
 *   instruction in VMX non-root mode, the VM entry and exit included);
 * - emulated guest PTE writes per second (write-protection fault, decode, emulate, propagate);
 * - ptemod (Adams and Agesen, ASPLOS 2006): exits and modelled cycles per guest PTE
 *   modification under shadow paging (out-of-sync off and on) and EPT. Cycles are modelled with
 *   @vtlab/arch's DEFAULT_COST_MODEL; exits are exact counts.
 */
import { nestedPagingFactory } from "../test/ept-factory.js";
import { measureRates, report } from "@vtlab/bench-harness";
import { PTE_P, PTE_RW } from "@vtlab/arch";
import { KPML4, OpsGuest, ptemod } from "../src/index.js";

const F = PTE_P | PTE_RW;
const USER = 2 ** 39;
const PAGES = 512;

/** A guest with one L1 of 512 user pages; returns the guest and its L1. */
function guest(): { g: OpsGuest; l1: number } {
  const g = new OpsGuest();
  const pdpt = g.table();
  const pd = g.table();
  const l1 = g.table();
  g.d.write64(KPML4 + 8, pdpt | F);
  g.d.write64(pdpt, pd | F);
  g.d.write64(pd, l1 | F);
  for (let i = 0; i < PAGES; i++) g.d.write64(l1 + i * 8, (0x40_0000 + i * 0x1000) | F);
  return { g, l1 };
}

let faults = guest();
let writes = guest();
await measureRates([
  {
    name: "mmu-shadow.page-faults",
    unit: "faults/s",
    opsPerCall: PAGES,
    setup: () => void (faults = guest()),
    run: () => {
      const { g, l1 } = faults;
      // Clear the guest A bits and throw the L1 shadow away: every load below is one fill fault.
      for (let i = 0; i < PAGES; i++) g.d.write64(l1 + i * 8, (0x40_0000 + i * 0x1000) | F);
      g.sp!.unshadow((4 * 1024 ** 3 + l1) / 4096);
      for (let i = 0; i < PAGES; i++) g.load(USER + i * 0x1000);
    },
  },
  {
    name: "mmu-shadow.emulated-pte-writes",
    unit: "writes/s",
    opsPerCall: PAGES,
    setup: () => {
      writes = guest();
      writes.g.load(USER);
    },
    run: () => {
      const { g, l1 } = writes;
      for (let i = 0; i < PAGES; i++) g.store(l1 + i * 8, (0x40_0000 + i * 0x1000) | F);
      g.load(USER); // a use, so the unshadow heuristic keeps the table shadowed
    },
  },
]);

for (const [label, r] of [
  ["shadow", ptemod("shadow", 2000)],
  ["shadow-oos", ptemod("shadow", 2000, { outOfSync: true })],
  ["ept", ptemod("ept", 2000, {}, nestedPagingFactory)],
] as const) {
  report({ name: `mmu-shadow.ptemod.${label}.exits`, value: r.exitsPerModification, unit: "exits/PTE modification" });
  report({ name: `mmu-shadow.ptemod.${label}.cycles`, value: Math.round(r.cyclesPerModification), unit: "modelled cycles/PTE modification" });
}
