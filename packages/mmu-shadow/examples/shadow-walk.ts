/**
 * A guest in VMX non-root mode on shadow paging: it maps a page by writing its own PTE (an
 * emulated store into a write-protected page table), reads through it (a shadow fill), and
 * takes a true page fault (reflected into the guest with its error code and CR2).
 * Run: pnpm --filter @vtlab/mmu-shadow example
 */
import { PTE_P, PTE_RW } from "@vtlab/arch";
import { KPML4, OpsGuest } from "../src/index.js";

const g = new OpsGuest({ shadow: { outOfSync: false } });
const sp = g.sp!;
const [pdpt, pd, l1] = [g.table(), g.table(), g.table()];
const USER = 2 ** 39; // PML4 index 1
console.log(g.store(KPML4 + 8, pdpt | PTE_P | PTE_RW)); // the PML4 is shadowed (it is CR3): an emulated store
console.log(g.store(pdpt, pd | PTE_P | PTE_RW));
console.log(g.store(pd, l1 | PTE_P | PTE_RW));
g.d.write64(0x40_0000, 42);
console.log(g.store(l1, 0x40_0000 | PTE_P | PTE_RW)); // maps USER -> GPA 0x400000
console.log(g.load(USER)); // { kind: "ok", value: 42 }
console.log(g.load(USER + 0x1000)); // { kind: "pf", errorCode: 0, cr2: USER + 0x1000 }
console.log({ shadowRoot: sp.shadowRoot(g.cpu)?.toString(16), guestCr3: sp.guestCr3(g.cpu)?.toString(16), shadowPages: sp.shadowPagesInUse });
console.log(sp.stats);
