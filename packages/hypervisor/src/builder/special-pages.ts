/**
 * The toolstack's "magic pages" of an HVM guest (Xen's tools/libs/guest/xg_dom_x86.c
 * alloc_magic_pages_hvm, and libxl_dom.c's store and console ports): eight special pages at the
 * top of the low MMIO hole, populated as the domain's own memory and zeroed, named to the guest
 * through HVM params (HVM_PARAM_STORE_PFN, CONSOLE_PFN, the ioreq, paging, monitor and sharing
 * rings), and two unbound event channels offered to dom0 (the xenstore and console backends'
 * domain), published as HVM_PARAM_STORE_EVTCHN and HVM_PARAM_CONSOLE_EVTCHN. A PV-on-HVM guest
 * reads these with HVMOP_get_param to find its xenstore ring and console ring, as Linux's
 * xenbus_init and xen_console init do.
 *
 * Modelled more simply than xl: the domain's max_pages grows by exactly the special pages (xl
 * adds LIBXL_MAXMEM_CONSTANT, 1 MiB, of slack); the IDENT_PT page is populated but unused (shadow
 * domains run paging-off guests on an identity table in no p2m, Domain.identityPageTable).
 */
import { gfn as asGfn } from "@vtlab/arch";
import {
  GNTTAB_RESERVED_CONSOLE,
  GNTTAB_RESERVED_XENSTORE,
  HVM_PARAM_BUFIOREQ_PFN,
  HVM_PARAM_CONSOLE_EVTCHN,
  HVM_PARAM_CONSOLE_PFN,
  HVM_PARAM_IOREQ_PFN,
  HVM_PARAM_MONITOR_RING_PFN,
  HVM_PARAM_PAGING_RING_PFN,
  HVM_PARAM_SHARING_RING_PFN,
  HVM_PARAM_STORE_EVTCHN,
  HVM_PARAM_STORE_PFN,
} from "@vtlab/xen-public";
import type { Domain, Hypervisor } from "../hypervisor.js";
import { DOM0_ID } from "../xen/dom0.js";
import { X86_HVM_END_SPECIAL_REGION, X86_HVM_NR_SPECIAL_PAGES } from "./layout.js";
import { isP2mUpdateError, setP2mEntry } from "../xen/p2m.js";

export { X86_HVM_END_SPECIAL_REGION, X86_HVM_NR_SPECIAL_PAGES };
/** xg_dom_x86.c: the special pages by index. */
export const SPECIALPAGE_PAGING = 0;
export const SPECIALPAGE_ACCESS = 1;
export const SPECIALPAGE_SHARING = 2;
export const SPECIALPAGE_BUFIOREQ = 3;
export const SPECIALPAGE_XENSTORE = 4;
export const SPECIALPAGE_IOREQ = 5;
export const SPECIALPAGE_IDENT_PT = 6;
export const SPECIALPAGE_CONSOLE = 7;

/** xg_dom_x86.c special_pfn(x): the guest frame of special page x. */
export function specialPfn(x: number): number {
  return X86_HVM_END_SPECIAL_REGION - X86_HVM_NR_SPECIAL_PAGES + x;
}

/** What the toolstack gave the domain: the xenstore and console rings and their event channels (the domain's ports, offered to dom0). */
export interface MagicPages {
  readonly storePfn: number;
  readonly storeEvtchn: number;
  readonly consolePfn: number;
  readonly consoleEvtchn: number;
}

/**
 * Populate `count` frames of the domain's own memory from guest frame `firstGfn` (outside its
 * RAM: the max_pages limit grows by as many, as libxl's build adds them beyond the configured
 * memory), zeroed. Returns a message naming what failed, or undefined.
 */
export function populateFixedFrames(d: Domain, firstGfn: number, count: number, what: string): string | undefined {
  d.pages.maxPages += count;
  for (let i = 0; i < count; i++) {
    const mfn = d.pages.allocate();
    if (mfn === undefined) return `${what}: no host frame for guest frame 0x${(firstGfn + i).toString(16)}`;
    const r = setP2mEntry(d, asGfn(firstGfn + i), { kind: "ram", mfn });
    if (isP2mUpdateError(r)) return `${what} at guest frame 0x${(firstGfn + i).toString(16)}: ${r.message}`;
  }
  return undefined;
}

/**
 * Populate the special pages and set the params and ports (libxl's order: store port, then
 * console port). Returns what it set up, or a message naming what failed (no memory on the
 * host, no free port).
 */
export function allocMagicPagesHvm(hv: Hypervisor, d: Domain): MagicPages | string {
  const err = populateFixedFrames(d, specialPfn(0), X86_HVM_NR_SPECIAL_PAGES, "special pages");
  if (err !== undefined) return err;
  const params: [number, number][] = [
    [HVM_PARAM_STORE_PFN, specialPfn(SPECIALPAGE_XENSTORE)],
    [HVM_PARAM_BUFIOREQ_PFN, specialPfn(SPECIALPAGE_BUFIOREQ)],
    [HVM_PARAM_IOREQ_PFN, specialPfn(SPECIALPAGE_IOREQ)],
    [HVM_PARAM_CONSOLE_PFN, specialPfn(SPECIALPAGE_CONSOLE)],
    [HVM_PARAM_PAGING_RING_PFN, specialPfn(SPECIALPAGE_PAGING)],
    [HVM_PARAM_MONITOR_RING_PFN, specialPfn(SPECIALPAGE_ACCESS)],
    [HVM_PARAM_SHARING_RING_PFN, specialPfn(SPECIALPAGE_SHARING)],
  ];
  for (const [index, value] of params) {
    const rc = d.xen.setHvmParam(index, value);
    if (rc !== 0) return `HVM param ${index}: error ${rc}`;
  }
  // xc_evtchn_alloc_unbound(domid, store_domid) then (domid, console_domid): both backends are in dom0 here.
  const storeEvtchn = hv.dom0.evtchn.allocUnboundFor(d.id, DOM0_ID);
  if (storeEvtchn < 0) return `xenstore event channel: error ${storeEvtchn}`;
  const consoleEvtchn = hv.dom0.evtchn.allocUnboundFor(d.id, DOM0_ID);
  if (consoleEvtchn < 0) return `console event channel: error ${consoleEvtchn}`;
  for (const [index, value] of [
    [HVM_PARAM_STORE_EVTCHN, storeEvtchn],
    [HVM_PARAM_CONSOLE_EVTCHN, consoleEvtchn],
  ] as const) {
    const rc = d.xen.setHvmParam(index, value);
    if (rc !== 0) return `HVM param ${index}: error ${rc}`;
  }
  // xc_dom_gnttab_hvm_seed: the console and xenstore pages granted to their backends' domain, so
  // xenstored and the console backend map them by grant (refs 0 and 1), never by frame number.
  for (const [ref, pfn] of [
    [GNTTAB_RESERVED_CONSOLE, specialPfn(SPECIALPAGE_CONSOLE)],
    [GNTTAB_RESERVED_XENSTORE, specialPfn(SPECIALPAGE_XENSTORE)],
  ] as const) {
    const rc = d.xen.grants.seedEntry(ref, DOM0_ID, pfn);
    if (rc !== 0) return `grant entry ${ref}: error ${rc}`;
  }
  return { storePfn: specialPfn(SPECIALPAGE_XENSTORE), storeEvtchn, consolePfn: specialPfn(SPECIALPAGE_CONSOLE), consoleEvtchn };
}
