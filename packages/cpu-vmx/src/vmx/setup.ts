/**
 * A VMCS for a flat 64-bit guest: the controls (required bits plus the requested ones, refused
 * by name if the processor does not allow them, as Xen's adjust_vmx_controls does), valid host
 * state, and guest state for flat segments in IA-32e mode. The hypervisor's domain builder and
 * the tests start from this.
 */
import { CR0_ET, CR0_NE, CR0_PE, CR0_PG, CR0_WP, CR4_PAE, CR4_VMXE, DR7_INIT, PAT_POWER_UP } from "../regs.js";
import { ENTRY_CAPS, ENTRY_IA32E_MODE, EXIT_CAPS, EXIT_HOST_ADDR_SPACE_SIZE, PIN_CAPS, PROC2_CAPS, PROC_CAPS, adjustControls, type ControlCapability } from "./controls.js";
import type { Vmcs } from "./vmcs.js";
import { VmcsField as F } from "./vmcs-fields.js";

export interface Flat64GuestOptions {
  /** Requested pin-based, primary, secondary, exit and entry controls (required bits are added). */
  readonly pin?: number;
  readonly proc?: number;
  readonly proc2?: number;
  readonly exit?: number;
  readonly entry?: number;
  readonly exceptionBitmap?: number;
  readonly cr3: number;
  readonly rip: number;
  readonly rsp: number;
  readonly rflags?: number;
  /** GDTR, IDTR and the 64-bit TSS the guest uses (TR is loaded as a busy TSS). */
  readonly gdtBase: number;
  readonly gdtLimit: number;
  readonly idtBase: number;
  readonly idtLimit: number;
  readonly tssBase: number;
  /** Selectors: code (default 0x08), data (0x10), TSS (0x30). */
  readonly codeSelector?: number;
  readonly dataSelector?: number;
  readonly tssSelector?: number;
}

export interface Flat64GuestError {
  readonly kind: "vmcs-setup-error";
  readonly message: string;
}

function controls(caps: ControlCapability, requested: number): number | Flat64GuestError {
  const { value, refused } = adjustControls(caps, requested);
  if (refused.length > 0) return { kind: "vmcs-setup-error", message: `${caps.name}: bits ${refused.join(", ")} are not supported by this processor` };
  return value;
}

/** Fill `vmcs` for a flat 64-bit guest. Returns an error naming any requested control the processor refuses. */
export function setupFlat64Guest(vmcs: Vmcs, o: Flat64GuestOptions): Flat64GuestError | undefined {
  const fields: [number, number | Flat64GuestError][] = [
    [F.PIN_BASED_VM_EXEC_CONTROL, controls(PIN_CAPS, o.pin ?? 0)],
    [F.CPU_BASED_VM_EXEC_CONTROL, controls(PROC_CAPS, o.proc ?? 0)],
    [F.SECONDARY_VM_EXEC_CONTROL, controls(PROC2_CAPS, o.proc2 ?? 0)],
    [F.VM_EXIT_CONTROLS, controls(EXIT_CAPS, (o.exit ?? 0) | EXIT_HOST_ADDR_SPACE_SIZE)],
    [F.VM_ENTRY_CONTROLS, controls(ENTRY_CAPS, (o.entry ?? 0) | ENTRY_IA32E_MODE)],
  ];
  for (const [field, value] of fields) {
    if (typeof value !== "number") return value;
    vmcs.setField(field as F, value);
  }
  const set = (f: F, lo: number, hi = 0) => vmcs.setField(f, lo, hi);
  set(F.EXCEPTION_BITMAP, o.exceptionBitmap ?? 0);
  // Host state that passes VM entry's checks (the host is TypeScript; these are never loaded).
  set(F.HOST_CR0, CR0_PE | CR0_NE | CR0_PG);
  set(F.HOST_CR4, CR4_PAE | CR4_VMXE);
  set(F.HOST_CS_SELECTOR, 0x08);
  set(F.HOST_TR_SELECTOR, 0x30);
  set(F.HOST_RIP, 0x1000);
  // Guest state.
  const code = o.codeSelector ?? 0x08;
  const data = o.dataSelector ?? 0x10;
  set(F.GUEST_CR0, CR0_PE | CR0_NE | CR0_PG | CR0_WP | CR0_ET);
  vmcs.setNatural(F.GUEST_CR3, o.cr3);
  set(F.GUEST_CR4, CR4_PAE | CR4_VMXE);
  set(F.GUEST_CS_SELECTOR, code);
  set(F.GUEST_CS_AR_BYTES, 0xa09b); // present, DPL 0, execute/read, accessed, L = 1
  set(F.GUEST_CS_LIMIT, 0xffff_ffff);
  const dataSegs = [
    [F.GUEST_SS_SELECTOR, F.GUEST_SS_AR_BYTES, F.GUEST_SS_LIMIT],
    [F.GUEST_DS_SELECTOR, F.GUEST_DS_AR_BYTES, F.GUEST_DS_LIMIT],
    [F.GUEST_ES_SELECTOR, F.GUEST_ES_AR_BYTES, F.GUEST_ES_LIMIT],
    [F.GUEST_FS_SELECTOR, F.GUEST_FS_AR_BYTES, F.GUEST_FS_LIMIT],
    [F.GUEST_GS_SELECTOR, F.GUEST_GS_AR_BYTES, F.GUEST_GS_LIMIT],
  ] as const;
  for (const [sel, ar, lim] of dataSegs) {
    set(sel, data);
    set(ar, 0xc093); // present, DPL 0, read/write, accessed, D/B, G
    set(lim, 0xffff_ffff);
  }
  set(F.GUEST_TR_SELECTOR, o.tssSelector ?? 0x30);
  set(F.GUEST_TR_AR_BYTES, 0x8b); // present, busy 64-bit TSS
  vmcs.setNatural(F.GUEST_TR_BASE, o.tssBase);
  set(F.GUEST_TR_LIMIT, 0x67);
  set(F.GUEST_LDTR_AR_BYTES, 0x1_0000); // unusable
  vmcs.setNatural(F.GUEST_GDTR_BASE, o.gdtBase);
  set(F.GUEST_GDTR_LIMIT, o.gdtLimit);
  vmcs.setNatural(F.GUEST_IDTR_BASE, o.idtBase);
  set(F.GUEST_IDTR_LIMIT, o.idtLimit);
  vmcs.setNatural(F.GUEST_RSP, o.rsp);
  vmcs.setNatural(F.GUEST_RIP, o.rip);
  set(F.GUEST_RFLAGS, o.rflags ?? 0x2);
  // Reset values (SDM 17.2, 11.12.4): used when "load debug controls" / "load IA32_PAT" are on.
  set(F.GUEST_DR7, DR7_INIT);
  set(F.GUEST_IA32_DEBUGCTL, 0);
  set(F.GUEST_IA32_PAT, PAT_POWER_UP.lo, PAT_POWER_UP.hi);
  set(F.HOST_IA32_PAT, PAT_POWER_UP.lo, PAT_POWER_UP.hi);
  set(F.VMCS_LINK_POINTER, 0xffff_ffff, 0xffff_ffff);
  return undefined;
}
