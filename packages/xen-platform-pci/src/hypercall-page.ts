/**
 * The hypercall page an HVM guest asks for by writing the hypercall-page MSR (CPUID
 * 0x40000002 EBX, 0x40000000): Xen fills the page with 0xcc (INT3; xen/arch/x86/domain.c,
 * init_hypercall_page) and then, for VMX, writes one 32-byte stub per hypercall number
 * (xen/arch/x86/hvm/vmx/vmx.c, vmx_init_hypercall_page):
 *
 *     b8 <imm32 i>   mov $i, %eax
 *     0f 01 c1       vmcall
 *     c3             ret
 *
 * except stub __HYPERVISOR_iret (23), which HVM guests may not use: `0f 0b` (ud2). A guest calls
 * hypercall i with `call page + i * 32`.
 *
 * The MSR value (xen/arch/x86/traps.c, guest_wrmsr_xen): bits 63:12 the guest frame of the page,
 * bits 11:0 the index of the page within the hypercall area, which must be 0 (Xen has one page):
 * anything else is #GP.
 */
import { HYPERVISOR_iret } from "@vtlab/xen-public";

/** Bytes per stub (PAGE_SIZE / 32 = 128 stubs in one page). */
export const HYPERCALL_STUB_SIZE = 32;
/** The page size the stubs fill. */
export const HYPERCALL_PAGE_SIZE = 4096;
/** The number of stubs in the page. */
export const HYPERCALL_STUBS = HYPERCALL_PAGE_SIZE / HYPERCALL_STUB_SIZE;
/** What the page holds between stubs (INT3). */
export const HYPERCALL_PAGE_FILL = 0xcc;

/** Fill `page` (at least 4096 bytes; the first 4096 are written) with Xen's VMX hypercall stubs. */
export function writeHypercallPage(page: Uint8Array): void {
  if (page.length < HYPERCALL_PAGE_SIZE) throw new RangeError(`writeHypercallPage: a page of ${page.length} bytes (needs ${HYPERCALL_PAGE_SIZE})`);
  page.fill(HYPERCALL_PAGE_FILL, 0, HYPERCALL_PAGE_SIZE);
  for (let i = 0; i < HYPERCALL_STUBS; i++) {
    const p = i * HYPERCALL_STUB_SIZE;
    if (i === HYPERVISOR_iret) {
      page[p] = 0x0f; // ud2
      page[p + 1] = 0x0b;
      continue;
    }
    page[p] = 0xb8; // mov imm32, %eax
    page[p + 1] = i & 0xff;
    page[p + 2] = (i >>> 8) & 0xff;
    page[p + 3] = (i >>> 16) & 0xff;
    page[p + 4] = (i >>> 24) & 0xff;
    page[p + 5] = 0x0f; // vmcall
    page[p + 6] = 0x01;
    page[p + 7] = 0xc1;
    page[p + 8] = 0xc3; // ret
  }
}

/** A hypercall-page MSR write decoded: the guest frame, or why Xen answers #GP. */
export type HypercallPageRequest =
  | { readonly kind: "page"; readonly gfn: number }
  | { readonly kind: "bad-index"; readonly index: number };

/**
 * Decode a write of `hi:lo` to the hypercall-page MSR: bits 63:12 the guest frame number (exact:
 * at most 52 bits), bits 11:0 the page index, which must be 0.
 */
export function decodeHypercallPageMsr(lo: number, hi: number): HypercallPageRequest {
  const index = lo & 0xfff;
  if (index !== 0) return { kind: "bad-index", index };
  return { kind: "page", gfn: (hi >>> 0) * 2 ** 20 + (lo >>> 12) };
}
