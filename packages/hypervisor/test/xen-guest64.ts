/**
 * Test fixture for the grant-table and memory_op tests: a 64-bit guest built from a short script
 * (hypercalls with the 64-bit ABI, 32-bit loads and stores at absolute guest addresses), booted
 * directly in 64-bit mode on the builder's identity map of the first 4 GiB (so guest-linear =
 * guest-physical below 4 GiB, translated through the guest's own page tables and then EPT or
 * shadow paging). Each hypercall's RAX and each load's value is stored in the results area;
 * the script ends with `out 0xf4, eax` (isa-debug-exit) with EAX = 0.
 */
import type { Domain, Hypervisor } from "@vtlab/hypervisor";
import { pvhElf } from "./tiny-kernel.js";

/** The image's load address (code). */
export const G_BASE = 0x10_0000;
/** 8-byte result slots, one per hypercall or load. */
export const G_RESULTS = G_BASE + 0x4000;
/** Data the test preloads (op structs, extent lists). */
export const G_DATA = G_BASE + 0x5000;
/** Size of the image in memory: code 16 KiB, results 4 KiB, data 12 KiB. */
const G_SIZE = 0x8000;

export type Step =
  | { readonly op: "hypercall"; readonly nr: number; readonly args?: readonly number[] }
  /** Load 32 bits from `at` into a result slot. */
  | { readonly op: "load32"; readonly at: number }
  /** Store the 32-bit `value` at `at`. */
  | { readonly op: "store32"; readonly at: number; readonly value: number }
  /** Copy 32 bits from `from` to `to` (e.g. a handle the map op wrote into the unmap op). */
  | { readonly op: "copy32"; readonly from: number; readonly to: number };

const imm64 = (n: number): number[] => {
  const lo = n >>> 0;
  const hi = Math.floor(n / 2 ** 32) >>> 0;
  return [lo & 0xff, (lo >>> 8) & 0xff, (lo >>> 16) & 0xff, lo >>> 24, hi & 0xff, (hi >>> 8) & 0xff, (hi >>> 16) & 0xff, hi >>> 24];
};
const imm32 = (n: number): number[] => imm64(n >>> 0).slice(0, 4);

/** movabs r64, imm64 (REX.W B8+r; REX.B for r8-r15). */
function movabs(reg: number, value: number): number[] {
  return [0x48 | (reg >= 8 ? 1 : 0), 0xb8 + (reg & 7), ...imm64(value < 0 ? value + 2 ** 64 : value)];
}

/** 64-bit argument registers: RDI, RSI, RDX, R10, R8. */
const ARG_REGS = [7, 6, 2, 10, 8] as const;

/** The machine code for `steps`; returns the bytes and how many result slots it uses. */
export function assemble(steps: readonly Step[]): { code: number[]; slots: number } {
  const code: number[] = [];
  let slot = 0;
  const storeRax = () => code.push(0x48, 0xa3, ...imm64(G_RESULTS + 8 * slot++)); // mov [moffs64], rax
  for (const s of steps) {
    switch (s.op) {
      case "hypercall":
        code.push(...movabs(0, s.nr));
        (s.args ?? []).forEach((a, i) => code.push(...movabs(ARG_REGS[i]!, a)));
        code.push(0x0f, 0x01, 0xc1); // vmcall
        storeRax();
        break;
      case "load32":
        code.push(0x31, 0xc0); // xor eax, eax (so the slot's high half is 0)
        code.push(0xa1, ...imm64(s.at)); // mov eax, [moffs64]
        storeRax();
        break;
      case "store32":
        code.push(0xb8, ...imm32(s.value)); // mov eax, imm32
        code.push(0xa3, ...imm64(s.at)); // mov [moffs64], eax
        break;
      case "copy32":
        code.push(0xa1, ...imm64(s.from));
        code.push(0xa3, ...imm64(s.to));
        break;
    }
  }
  code.push(0x31, 0xc0, 0xe7, 0xf4); // xor eax, eax; out 0xf4, eax
  code.push(0xf4, 0xeb, 0xfd); // hlt; jmp $-3
  return { code, slots: slot };
}

/** A direct-64 ELF (no PVH note, no Multiboot header) of the script with `data` at G_DATA. */
export function guestImage(steps: readonly Step[], data: Uint8Array = new Uint8Array(0)): Uint8Array {
  const { code } = assemble(steps);
  if (code.length > G_RESULTS - G_BASE) throw new Error("guestImage: script too long");
  const img = new Uint8Array(G_SIZE);
  img.set(code, 0);
  img.set(data.subarray(0, G_SIZE - (G_DATA - G_BASE)), G_DATA - G_BASE);
  const elf = pvhElf(img, { offset: 0x200, memSize: G_SIZE, flags: 7 });
  elf.fill(0, 0x180, 0x194); // no XEN_ELFNOTE_PHYS32_ENTRY note: direct 64-bit boot
  return elf;
}

export interface GuestRun {
  readonly domain: Domain;
  /** Each result slot (hypercall RAX or loaded value) as a signed number (exact below 2^53). */
  readonly results: number[];
}

/** Create a domain running the script (not run yet). */
export function createGuest(hv: Hypervisor, name: string, hap: boolean, steps: readonly Step[], data?: Uint8Array, memoryMiB = 16): Domain {
  return hv.createDomain({ name, memoryMiB, hap, kernel: guestImage(steps, data) });
}

/** Read `length` bytes of guest-physical memory through the domain's p2m. */
export function readGuest(hv: Hypervisor, d: Domain, gpa: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) {
    const hpa = d.ramHpa(gpa + i);
    out[i] = hpa === undefined ? 0xff : (hv.memory.read8(hpa) as number);
  }
  return out;
}

/** The result slots of a script run in domain `d`. */
export function results(hv: Hypervisor, d: Domain, steps: readonly Step[]): number[] {
  const { slots } = assemble(steps);
  const bytes = readGuest(hv, d, G_RESULTS, 8 * slots);
  const v = new DataView(bytes.buffer);
  return Array.from({ length: slots }, (_, i) => v.getUint32(8 * i, true) + v.getInt32(8 * i + 4, true) * 2 ** 32);
}

/** Little-endian struct building for the data area. */
export class DataBuilder {
  readonly bytes = new Uint8Array(G_SIZE - (G_DATA - G_BASE));
  private readonly v = new DataView(this.bytes.buffer);
  /** Guest-physical address of data offset `off`. */
  gpa(off: number): number {
    return G_DATA + off;
  }
  u16(off: number, x: number): this {
    this.v.setUint16(off, x, true);
    return this;
  }
  u32(off: number, x: number): this {
    this.v.setUint32(off, x >>> 0, true);
    return this;
  }
  u64(off: number, x: number): this {
    this.v.setUint32(off, x >>> 0, true);
    this.v.setUint32(off + 4, Math.floor(x / 2 ** 32) >>> 0, true);
    return this;
  }
}
