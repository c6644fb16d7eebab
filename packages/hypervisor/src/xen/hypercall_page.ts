/**
 * Xen's MSRs 0x40000000-0x400002FF for an HVM domain without Viridian (xen/arch/x86/msr.c ->
 * xen/arch/x86/traps.c, guest_rdmsr_xen / guest_wrmsr_xen): only 0x40000000, the hypercall-page
 * MSR that CPUID leaf 0x40000002 EBX names, exists.
 *
 * - RDMSR 0x40000000 reads 0 ("Write hypercall page MSR. Read as zero.").
 * - WRMSR 0x40000000: bits 63:12 a guest frame, bits 11:0 the page index. An index other than 0
 *   is #GP (there is one hypercall page). A frame that is not a writable RAM page of the domain
 *   (get_page_from_gfn / get_page_type(PGT_writable_page) failing: nothing mapped, MMIO, a grant
 *   mapping of another domain's frame, beyond the domain's memory) is #GP. Otherwise the page is
 *   filled with Xen's VMX stubs (@vtlab/xen-platform-pci's `writeHypercallPage`) and the write
 *   succeeds; the guest may write the MSR again, for the same or another frame.
 * - Any other MSR of the range is #GP.
 *
 * The page is written in machine memory through the p2m (Domain.machineAddress: p2m RAM only),
 * on EPT and on shadow alike, as Xen writes it through a hypervisor mapping of the frame. Modelled
 * more simply: under shadow paging, if the guest uses that frame as one of its page tables, the
 * shadows of it are not resynced (the guest can only confuse its own translation, and every
 * shadow entry still comes from its own p2m). The frames of the shadow domain's paging-off
 * identity table (hypervisor frames in the p2m above RAM) are refused with #GP. Every vCPU of the
 * domain forgets the instructions it decoded (the page may hold code it ran before).
 */
import { PAGE_SIZE } from "@vtlab/arch";
import { HYPERCALL_PAGE_SIZE, XEN_HYPERCALL_PAGE_MSR, decodeHypercallPageMsr, writeHypercallPage } from "@vtlab/xen-platform-pci";
import type { ExitContext } from "../exits.js";
import type { Domain } from "../hypervisor.js";

/** The MSRs Xen's guest_{rd,wr}msr_xen answer (without Viridian: 0x40000000-0x400002ff). */
export const XEN_MSR_FIRST = 0x4000_0000;
export const XEN_MSR_LAST = 0x4000_02ff;

/** The stubs, computed once (the page is the same for every domain). */
const stubs = new Uint8Array(HYPERCALL_PAGE_SIZE);
writeHypercallPage(stubs);

/** Per-domain record of hypercall-page installs (for statistics and tests). */
export interface HypercallPageRecord {
  /** Successful WRMSRs. */
  installs: number;
  /** The guest frame of the last install (undefined until one). */
  gfn: number | undefined;
  /** WRMSRs refused with #GP. */
  refused: number;
}

const records = new WeakMap<Domain, HypercallPageRecord>();

/** What the domain did with the hypercall-page MSR. */
export function hypercallPageRecord(d: Domain): HypercallPageRecord {
  let r = records.get(d);
  if (r === undefined) {
    r = { installs: 0, gfn: undefined, refused: 0 };
    records.set(d, r);
  }
  return r;
}

export function isXenMsr(msr: number): boolean {
  const m = msr >>> 0;
  return m >= XEN_MSR_FIRST && m <= XEN_MSR_LAST;
}

/** RDMSR of a Xen MSR: the value as [lo, hi], or undefined for #GP. */
export function rdmsrXen(_ctx: ExitContext, msr: number): readonly [number, number] | undefined {
  return msr >>> 0 === XEN_HYPERCALL_PAGE_MSR ? [0, 0] : undefined;
}

/** WRMSR of a Xen MSR with `hi:lo`: true if done, false for #GP. */
export function wrmsrXen(ctx: ExitContext, msr: number, lo: number, hi: number): boolean {
  const d = ctx.domain;
  const record = hypercallPageRecord(d);
  if (msr >>> 0 !== XEN_HYPERCALL_PAGE_MSR) {
    record.refused++;
    return false;
  }
  const req = decodeHypercallPageMsr(lo, hi);
  const hpa = req.kind === "page" ? pageHpa(d, req.gfn) : undefined;
  if (req.kind !== "page" || hpa === undefined) {
    record.refused++;
    return false;
  }
  ctx.hv.memory.writeBytes(hpa, stubs);
  ctx.hv.machineFrameWritten(Math.floor(hpa / PAGE_SIZE));
  record.installs++;
  record.gfn = req.gfn;
  return true;
}

/** The machine address of guest frame `gfn` if it is a RAM page of the domain the guest may have written, else undefined. */
function pageHpa(d: Domain, gfn: number): number | undefined {
  if (!Number.isSafeInteger(gfn) || gfn >= 2 ** 40) return undefined; // beyond a 52-bit physical address
  return d.machineAddress(gfn * PAGE_SIZE);
}
