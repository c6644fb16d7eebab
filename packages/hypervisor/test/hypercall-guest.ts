/**
 * Test fixture: a PVH guest that makes a list of hypercalls with the 32-bit ABI (EAX = number,
 * EBX, ECX, EDX, ESI, EDI) in flat 32-bit protected mode with paging off (so guest-linear =
 * guest-physical), stores each EAX result at RESULTS + 4 * i, and exits with code 0 through
 * isa-debug-exit. Data can be preloaded at DATA (a page of the image) for the calls to use.
 */
import { Hypervisor, type Domain } from "@vtlab/hypervisor";
import { pvhElf } from "./tiny-kernel.js";

/** Load address of the image (code first). */
export const HC_BASE = 0x10_0000;
/** Where results go: one 32-bit EAX per call. */
export const HC_RESULTS = HC_BASE + 0x3000;
/** A page of data the caller preloads (buffers the hypercalls read or write). */
export const HC_DATA = HC_BASE + 0x4000;
/** Size of the image's memory (code 12 KiB, results 4 KiB, data 16 KiB). */
const MEM_SIZE = 0x8000;

export interface Hcall {
  readonly nr: number;
  /** EBX, ECX, EDX, ESI, EDI. */
  readonly args?: readonly number[];
}

const le32 = (n: number) => [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];

/** The guest image: the calls, then `out 0xf4, eax` with EAX = 0; `data` is placed at HC_DATA. */
export function hypercallGuest(calls: readonly Hcall[], data: Uint8Array = new Uint8Array(0)): Uint8Array {
  const code: number[] = [];
  const argOps = [0xbb, 0xb9, 0xba, 0xbe, 0xbf]; // mov ebx/ecx/edx/esi/edi, imm32
  calls.forEach((c, i) => {
    code.push(0xb8, ...le32(c.nr)); // mov eax, nr
    (c.args ?? []).forEach((a, k) => code.push(argOps[k]!, ...le32(a >>> 0)));
    code.push(0x0f, 0x01, 0xc1); // vmcall
    code.push(0xa3, ...le32(HC_RESULTS + 4 * i)); // mov [results + 4i], eax
  });
  code.push(0x31, 0xc0, 0xe7, 0xf4); // xor eax, eax; out 0xf4, eax
  code.push(0xf4, 0xeb, 0xfd); // hlt; jmp $-3 (not reached)
  if (code.length > HC_RESULTS - HC_BASE) throw new Error("hypercallGuest: too many calls for the code area");
  const img = new Uint8Array(MEM_SIZE);
  img.set(code, 0);
  img.set(data.subarray(0, Math.min(data.length, MEM_SIZE - (HC_DATA - HC_BASE))), HC_DATA - HC_BASE);
  return pvhElf(img, { offset: 0x200, memSize: MEM_SIZE, flags: 7 });
}

export interface HcallRun {
  readonly hv: Hypervisor;
  readonly domain: Domain;
  /** Each call's EAX as a signed 32-bit number (negative Xen errnos stay negative). */
  readonly results: number[];
  /** Bytes of guest-physical memory of the domain (after the run). */
  read(gpa: number, length: number): Uint8Array;
}

/** Boot the guest on a fresh host (EPT when hap, else shadow) and run it to its exit. */
export function runHypercalls(calls: readonly Hcall[], options: { hap: boolean; data?: Uint8Array; memoryMiB?: number; onConsole?: (t: string) => void; magicPages?: boolean }): HcallRun {
  const hv = new Hypervisor({ memoryMiB: 64 });
  const domain = hv.createDomain({ name: "hc", memoryMiB: options.memoryMiB ?? 8, hap: options.hap, kernel: hypercallGuest(calls, options.data), magicPages: options.magicPages ?? false, ...(options.onConsole ? { onConsole: options.onConsole } : {}) });
  hv.run({ maxInstructions: 5_000_000 });
  const read = (gpa: number, length: number) => {
    const out = new Uint8Array(length);
    for (let i = 0; i < length; i++) out[i] = hv.memory.read8(domain.ramHpa(gpa + i)!) as number;
    return out;
  };
  const res = new DataView(read(HC_RESULTS, 4 * calls.length).buffer);
  const results = calls.map((_, i) => res.getInt32(4 * i, true));
  return { hv, domain, results, read };
}
