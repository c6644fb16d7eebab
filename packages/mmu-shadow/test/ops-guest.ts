/**
 * A guest whose kernel is driven one operation at a time from TypeScript, each operation a real
 * instruction run by the interpreter in VMX non-root mode (assembled with gcc, source in
 * test/ops.S): load, store, MOV to CR3, INVLPG, each followed by HLT. A #PF the hypervisor
 * reflects is delivered through the guest IDT to a HLT, and the operation reports the error
 * code the guest's handler would see on its stack and CR2.
 *
 * Guest-physical layout: kernel identity-mapped with 4 KiB pages over 0..4 MiB (GDT, IDT,
 * page tables from 1 MiB, code at 2 MiB, stack below 3 MiB).
 */
import { PTE_P, PTE_RW, Vector } from "@vtlab/arch";
import { ExitReason, VmcsField as F, vmEntry } from "@vtlab/cpu-vmx";
import type { ShadowPagingOptions } from "../src/index.js";
import { applyOutcome, bytes, domain, guest, setGate, writeGdt, type Domain, type Guest } from "./fixture.js";

export const KCODE = 0x20_0000;
export const KSTACK = 0x2f_f000;
export const KPML4 = 0x10_0000;
const SNIPPETS = "488b07f4488937f40f22dff40f013ff4";
const OP = { load: 0, store: 4, cr3: 8, invlpg: 12 } as const;
const HANDLER = KCODE + 0x100;

export type OpResult = { kind: "ok"; value: number } | { kind: "pf"; errorCode: number; cr2: number } | { kind: "crash"; reason: string };

export class OpsGuest {
  readonly d: Domain;
  readonly g: Guest;
  private launched = false;
  exits = 0;
  private nextTable = 0x10_4000;

  constructor(options: Partial<ShadowPagingOptions> = {}, d: Domain = domain()) {
    this.d = d;
    writeGdt(d);
    const f = PTE_P | PTE_RW;
    d.write64(KPML4, 0x10_1000 | f);
    d.write64(0x10_1000, 0x10_2000 | f);
    // PD entries 0 and 1 -> two L1 tables for 0..4 MiB.
    const l1a = 0x10_3000;
    const l1b = this.table();
    d.write64(0x10_2000, l1a | f);
    d.write64(0x10_2000 + 8, l1b | f);
    for (let i = 0; i < 512; i++) {
      d.write64(l1a + i * 8, (i * 0x1000) | f);
      d.write64(l1b + i * 8, (0x20_0000 + i * 0x1000) | f);
    }
    d.memory.writeBytes(d.m(KCODE), bytes(SNIPPETS));
    d.memory.write8(d.m(HANDLER), 0xf4);
    setGate(d, Vector.PF, HANDLER);
    this.g = guest(d, KPML4, KCODE, KSTACK, options);
  }

  /** A fresh zeroed guest page-table frame (identity-mapped, so its GVA is its GPA). */
  table(): number {
    const t = this.nextTable;
    this.nextTable += 0x1000;
    if (this.nextTable > 0x1f_f000) throw new Error("out of table frames");
    this.d.memory.fill(this.d.m(t), 4096, 0);
    return t;
  }

  /** Run one snippet with RDI, RSI. */
  private op(at: number, rdi: number, rsi = 0): OpResult {
    const { cpu, vmcs, sp } = this.g;
    cpu.setRegFromNumber(7, rdi);
    cpu.setRegFromNumber(6, rsi);
    vmcs.setNatural(F.GUEST_RIP, KCODE + at);
    vmcs.setNatural(F.GUEST_RSP, KSTACK);
    for (let n = 0; n < 64; n++) {
      const e = vmEntry(cpu, vmcs, !this.launched);
      if (e !== undefined) throw new Error(`VM entry failed: ${JSON.stringify(e)}`);
      this.launched = true;
      const r = cpu.run(100);
      if (r.kind !== "vmexit") throw new Error(`expected a VM exit, got ${r.kind}`);
      this.exits++;
      if (r.exit.reason === ExitReason.Hlt) {
        const rip = vmcs.readNatural(F.GUEST_RIP);
        if (rip === HANDLER) return { kind: "pf", errorCode: this.d.read64(vmcs.readNatural(F.GUEST_RSP)), cr2: cpu.cr2 };
        return { kind: "ok", value: cpu.regAddr(0) };
      }
      const o = sp.handleExit(cpu, vmcs, r.exit);
      if (o.kind === "crash") return { kind: "crash", reason: o.reason };
      if (o.kind === "mmio") return { kind: "crash", reason: "mmio" };
      applyOutcome(this.g, o);
    }
    throw new Error("operation did not finish");
  }

  /** 8-byte load; the value is exact for values below 2^53. */
  load(gva: number): OpResult {
    return this.op(OP.load, gva);
  }

  store(gva: number, value: number): OpResult {
    return this.op(OP.store, gva, value);
  }

  loadCr3(value: number): OpResult {
    return this.op(OP.cr3, value);
  }

  invlpg(gva: number): OpResult {
    return this.op(OP.invlpg, gva);
  }
}
