/**
 * The IO-APIC: its registers (82093AA; Xen's vIOAPIC), edge and level pins with remote IRR and
 * EOI, masking, wire-OR sources, and delivery to the local APICs; then in a domain, the UART's
 * IRQ 4 and the platform device's INTx reaching a vCPU's APIC, on EPT and on shadow.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import {
  APIC_SVR_ENABLE,
  Hypervisor,
  IOAPIC_BASE_DEFAULT,
  IOAPIC_REG_RTE0,
  IOAPIC_REG_SELECT,
  IOAPIC_REG_WINDOW,
  IOAPIC_RTE_DELIVERY_STATUS,
  IOAPIC_RTE_DEST_LOGICAL,
  IOAPIC_RTE_MASKED,
  IOAPIC_RTE_POLARITY_LOW,
  IOAPIC_RTE_REMOTE_IRR,
  IOAPIC_RTE_TRIGGER_LEVEL,
  IoApic,
  IoApicDeliveryMode,
  IoApicSource,
  LocalApic,
  XAPIC_EOI,
  XAPIC_SVR,
  XAPIC_TMR0,
} from "@vtlab/hypervisor";
import type { AccessSize } from "@vtlab/arch";
import { pvhElf, SPIN, tinyKernel } from "./tiny-kernel.js";

interface Delivery {
  dest: number;
  logical: boolean;
  vector: number;
  mode: number;
  level: boolean;
}

function ioapic() {
  const sent: Delivery[] = [];
  const a = new IoApic({ deliver: (dest, logical, vector, mode, level) => sent.push({ dest, logical, vector, mode, level }) });
  const sel = (r: number) => a.write(IOAPIC_REG_SELECT, 4, r);
  const rd = (r: number) => {
    sel(r);
    return a.read(IOAPIC_REG_WINDOW, 4);
  };
  const wr = (r: number, v: number) => {
    sel(r);
    a.write(IOAPIC_REG_WINDOW, 4, v);
  };
  const rte = (pin: number, lo: number, hi = 0) => {
    wr(IOAPIC_REG_RTE0 + 2 * pin + 1, hi);
    wr(IOAPIC_REG_RTE0 + 2 * pin, lo);
  };
  return { a, sent, sel, rd, wr, rte };
}

describe("IO-APIC registers", () => {
  it("reads version 0x11 with maximum redirection entry 23, ID and arbitration ID in bits 27:24", () => {
    const { a, rd, wr } = ioapic();
    expect(rd(0x01)).toBe(0x0017_0011);
    expect(rd(0x00)).toBe(0);
    wr(0x00, 0x0f00_0000 | 0xf0ff_ffff);
    expect(rd(0x00)).toBe(0x0f00_0000); // 4-bit ID only
    expect(rd(0x02)).toBe(0x0f00_0000);
    wr(0x01, 0xffff_ffff); // version is read-only
    wr(0x02, 0); // arbitration ID is read-only
    expect(rd(0x01)).toBe(0x0017_0011);
    expect(rd(0x02)).toBe(0x0f00_0000);
    expect(a.stats.badRegisterAccesses).toBe(0);
  });

  it("starts with every redirection entry masked", () => {
    const { rd } = ioapic();
    for (let pin = 0; pin < 24; pin++) {
      expect(rd(0x10 + 2 * pin)).toBe(IOAPIC_RTE_MASKED);
      expect(rd(0x11 + 2 * pin)).toBe(0);
    }
  });

  it("keeps IOREGSEL's 8 bits; indexes that are no register read 0 and ignore writes", () => {
    const { a, sel, rd, wr } = ioapic();
    sel(0x1234_5640);
    expect(a.read(IOAPIC_REG_SELECT, 4)).toBe(0x40);
    for (const r of [0x03, 0x0f, 0x40, 0x41, 0x80, 0xff]) {
      wr(r, 0xffff_ffff);
      expect(rd(r)).toBe(0);
    }
    expect(a.stats.badRegisterAccesses).toBe(12);
    for (let pin = 0; pin < 24; pin++) expect(rd(0x10 + 2 * pin)).toBe(IOAPIC_RTE_MASKED); // nothing else changed
  });

  it("does not let software write delivery status, remote IRR or the reserved high bits", () => {
    const { rd, rte } = ioapic();
    rte(3, 0xffff_ffff, 0xffff_ffff);
    const lo = rd(0x10 + 6);
    expect(lo & (IOAPIC_RTE_DELIVERY_STATUS | IOAPIC_RTE_REMOTE_IRR)).toBe(0);
    expect(lo).toBe(0x0001_afff); // vector, mode, dest mode, polarity, trigger, mask
    expect(rd(0x11 + 6)).toBe(0xff00_0000);
  });

  it("answers byte and word accesses with the low bytes, other window offsets 0 and the rest of the page all ones", () => {
    const { a, wr, sel } = ioapic();
    wr(0x00, 0x0500_0000);
    sel(0x01);
    expect(a.read(IOAPIC_REG_WINDOW, 1)).toBe(0x11);
    expect(a.read(IOAPIC_REG_WINDOW, 2)).toBe(0x0011);
    expect(a.read(IOAPIC_REG_SELECT, 1)).toBe(0x01);
    expect(a.read(0x04, 4)).toBe(0);
    expect(a.read(0x20, 4)).toBe(0);
    expect(a.read(0xfc, 4)).toBe(0);
    expect(a.read(0x100, 4)).toBe(0xffff_ffff);
    expect(a.read(0xffc, 2)).toBe(0xffff);
    expect(a.write(0x800, 4, 1)).toBeUndefined();
  });

  it("never throws, whatever the accesses (fast-check)", () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ offset: fc.integer({ min: 0, max: 0xfff }), size: fc.constantFrom<AccessSize>(1, 2, 4), value: fc.integer({ min: 0, max: 0xffff_ffff }), read: fc.boolean(), gsi: fc.integer({ min: -2, max: 30 }), level: fc.boolean() }), { maxLength: 80 }),
        (ops) => {
          const { a } = ioapic();
          for (const o of ops) {
            if (o.read) expect(a.read(o.offset, o.size)).toBeLessThanOrEqual(o.size === 4 ? 0xffff_ffff : o.size === 2 ? 0xffff : 0xff);
            else expect(a.write(o.offset, o.size, o.value)).toBeUndefined();
            a.setLevel(o.gsi, o.level);
            a.eoi(o.value & 0xff);
          }
        },
      ),
    );
  });
});

describe("IO-APIC pins", () => {
  it("delivers an edge-triggered pin once per rising edge, to the destination and vector of its entry", () => {
    const { a, sent, rte } = ioapic();
    rte(4, 0x41, 0x0300_0000);
    a.setLevel(4, true);
    a.setLevel(4, true);
    a.setLevel(4, false);
    a.setLevel(4, true);
    expect(sent).toEqual([
      { dest: 3, logical: false, vector: 0x41, mode: IoApicDeliveryMode.Fixed, level: false },
      { dest: 3, logical: false, vector: 0x41, mode: IoApicDeliveryMode.Fixed, level: false },
    ]);
    rte(4, 0x42 | IOAPIC_RTE_DEST_LOGICAL | (IoApicDeliveryMode.LowestPriority << 8), 0x0100_0000);
    a.setLevel(4, false);
    a.setLevel(4, true);
    expect(sent[2]).toEqual({ dest: 1, logical: true, vector: 0x42, mode: IoApicDeliveryMode.LowestPriority, level: false });
  });

  it("loses an edge that arrives while the pin is masked", () => {
    const { a, sent, rte } = ioapic();
    rte(4, 0x41 | IOAPIC_RTE_MASKED);
    a.setLevel(4, true);
    rte(4, 0x41);
    expect(sent).toHaveLength(0);
    expect(a.stats.maskedEdges).toBe(1);
  });

  it("holds a level-triggered pin in remote IRR until the EOI, and delivers again if the line is still up", () => {
    const { a, sent, rte, rd } = ioapic();
    rte(5, 0x51 | IOAPIC_RTE_TRIGGER_LEVEL | IOAPIC_RTE_POLARITY_LOW);
    a.setLevel(5, true);
    expect(sent).toHaveLength(1);
    expect(sent[0]!.level).toBe(true);
    expect(rd(0x10 + 10) & IOAPIC_RTE_REMOTE_IRR).toBe(IOAPIC_RTE_REMOTE_IRR);
    a.setLevel(5, false);
    a.setLevel(5, true); // a new rising edge, but remote IRR is set: no second delivery
    expect(sent).toHaveLength(1);
    a.eoi(0x51);
    expect(sent).toHaveLength(2); // still asserted: delivered again
    a.setLevel(5, false);
    a.eoi(0x51);
    expect(sent).toHaveLength(2);
    expect(rd(0x10 + 10) & IOAPIC_RTE_REMOTE_IRR).toBe(0);
    a.eoi(0x99); // another vector: nothing
    expect(a.stats.eois).toBe(2);
  });

  it("delivers a level that is asserted when the entry is unmasked; switching to edge clears remote IRR", () => {
    const { a, sent, rte, rd } = ioapic();
    rte(9, 0x61 | IOAPIC_RTE_TRIGGER_LEVEL | IOAPIC_RTE_MASKED);
    a.setLevel(9, true);
    expect(sent).toHaveLength(0);
    rte(9, 0x61 | IOAPIC_RTE_TRIGGER_LEVEL);
    expect(sent).toHaveLength(1);
    rte(9, 0x61);
    expect(rd(0x10 + 18) & IOAPIC_RTE_REMOTE_IRR).toBe(0);
    expect(sent).toHaveLength(1);
  });

  it("ORs the sources of a shared line", () => {
    const { a, sent, rte } = ioapic();
    rte(5, 0x51 | IOAPIC_RTE_TRIGGER_LEVEL);
    a.setLevel(5, true, IoApicSource.PlatformIntx);
    a.setLevel(5, true, IoApicSource.Default);
    a.setLevel(5, false, IoApicSource.PlatformIntx);
    expect(a.lineAsserted(5)).toBe(true);
    a.eoi(0x51);
    expect(sent).toHaveLength(2); // the other source still holds the line
    a.setLevel(5, false, IoApicSource.Default);
    expect(a.lineAsserted(5)).toBe(false);
  });

  it("counts and ignores GSIs it does not have, and the delivery modes it does not deliver", () => {
    const { a, sent, rte } = ioapic();
    for (const g of [-1, 24, 1000, 1.5, Number.NaN]) a.setLevel(g, true);
    a.setLevel(1, true, 32);
    expect(a.stats.badGsi).toBe(6);
    for (const mode of [IoApicDeliveryMode.Smi, IoApicDeliveryMode.Nmi, IoApicDeliveryMode.Init, IoApicDeliveryMode.ExtInt, 3, 6]) {
      rte(2, 0x30 | (mode << 8));
      a.setLevel(2, true);
      a.setLevel(2, false);
    }
    expect(sent).toHaveLength(0);
    expect(a.stats.ignoredDeliveries).toBe(6);
  });

  it("snapshots to plain data and restores", () => {
    const { a, rte } = ioapic();
    rte(5, 0x51 | IOAPIC_RTE_TRIGGER_LEVEL, 0x0200_0000);
    a.setLevel(5, true);
    a.write(IOAPIC_REG_SELECT, 4, 0x1b);
    const s = a.state();
    const b = IoApic.fromState(JSON.parse(JSON.stringify(s)), { deliver: () => undefined });
    expect(b.state()).toEqual(s);
    expect(b.redirectionEntry(5)[0] & IOAPIC_RTE_REMOTE_IRR).toBe(IOAPIC_RTE_REMOTE_IRR);
  });
});

describe("IO-APIC and local APIC", () => {
  it("a level interrupt sets TMR, and its EOI reaches the IO-APIC (remote IRR cleared, redelivered while asserted)", () => {
    const ioa: IoApic = new IoApic({ deliver: (_d, _l, vector, _m, level) => apic.acceptInterrupt(vector, level) });
    const apic = new LocalApic({ apicId: 0, mode: "xapic", now: () => 0, onLevelEoi: (v) => ioa.eoi(v) });
    apic.write(XAPIC_SVR, 4, APIC_SVR_ENABLE | 0xff);
    ioa.write(IOAPIC_REG_SELECT, 4, 0x10 + 10);
    ioa.write(IOAPIC_REG_WINDOW, 4, 0x51 | IOAPIC_RTE_TRIGGER_LEVEL);
    ioa.setLevel(5, true);
    expect(apic.pendingVector()).toBe(0x51);
    expect(apic.read(XAPIC_TMR0 + 0x20, 4)).toBe(1 << (0x51 - 64)); // TMR bits 95:64
    apic.acknowledge(0x51);
    expect(apic.pendingVector()).toBe(-1);
    apic.write(XAPIC_EOI, 4, 0);
    expect(apic.pendingVector()).toBe(0x51); // still asserted: delivered again
    apic.acknowledge(0x51);
    ioa.setLevel(5, false);
    apic.write(XAPIC_EOI, 4, 0);
    expect(apic.pendingVector()).toBe(-1);
    expect(ioa.redirectionEntry(5)[0] & IOAPIC_RTE_REMOTE_IRR).toBe(0);
  });

  it("an edge interrupt clears TMR, and its EOI does not reach the IO-APIC", () => {
    const eois: number[] = [];
    const apic = new LocalApic({ apicId: 0, mode: "xapic", now: () => 0, onLevelEoi: (v) => eois.push(v) });
    apic.write(XAPIC_SVR, 4, APIC_SVR_ENABLE | 0xff);
    apic.acceptInterrupt(0x51, true);
    apic.acceptInterrupt(0x51, false);
    expect(apic.read(XAPIC_TMR0 + 0x20, 4)).toBe(0);
    apic.acknowledge(0x51);
    apic.write(XAPIC_EOI, 4, 0);
    expect(eois).toEqual([]);
  });
});

const le32 = (n: number) => [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];
/** mov dword [addr], imm32 */
const movMemImm = (addr: number, imm: number) => [0xc7, 0x05, ...le32(addr), ...le32(imm)];
/** mov dx, port; mov al, v; out dx, al */
const outb = (port: number, v: number) => [0x66, 0xba, port & 0xff, port >>> 8, 0xb0, v, 0xee];
const RESULTS = 0x10_3000;

/** A PVH guest: enable its local APIC, route GSI 4 (edge) and GSI 5 (level) to vCPU 0, read the version, start the UART's THRE interrupt, exit 0. */
function ioapicGuest(): Uint8Array {
  const code = [
    ...movMemImm(0xfee0_00f0, 0x1ff), // local APIC SVR: software enable, spurious vector 0xff
    ...movMemImm(IOAPIC_BASE_DEFAULT, 0x01), // IOREGSEL = IOAPICVER
    0xa1, ...le32(IOAPIC_BASE_DEFAULT + 0x10), // mov eax, [IOWIN]
    0xa3, ...le32(RESULTS), // mov [results], eax
    ...movMemImm(IOAPIC_BASE_DEFAULT, 0x19), // RTE 4 high: destination 0
    ...movMemImm(IOAPIC_BASE_DEFAULT + 0x10, 0),
    ...movMemImm(IOAPIC_BASE_DEFAULT, 0x18), // RTE 4 low: vector 0x41, fixed, edge, unmasked
    ...movMemImm(IOAPIC_BASE_DEFAULT + 0x10, 0x41),
    ...movMemImm(IOAPIC_BASE_DEFAULT, 0x1a), // RTE 5 low: vector 0x51, level, unmasked
    ...movMemImm(IOAPIC_BASE_DEFAULT + 0x10, 0x51 | IOAPIC_RTE_TRIGGER_LEVEL),
    ...outb(0x3f9, 0x02), // UART IER = THRE
    ...outb(0x3fc, 0x08), // UART MCR = OUT2 (the PC gate on the interrupt line)
    0x31, 0xc0, 0xe7, 0xf4, // xor eax, eax; out 0xf4, eax
    0xf4, 0xeb, 0xfd,
  ];
  const img = new Uint8Array(0x4000);
  img.set(code, 0);
  return pvhElf(img, { offset: 0x200, memSize: img.length, flags: 7 });
}

describe.each([true, false])("IO-APIC in a domain (hap=%s)", (hap) => {
  it("is at 0xFEC00000: the guest programs it and the UART's IRQ 4 reaches vCPU 0's APIC", () => {
    const hv = new Hypervisor({ memoryMiB: 64 });
    const d = hv.createDomain({ name: "io", memoryMiB: 8, hap, kernel: ioapicGuest() });
    hv.run({ maxInstructions: 1_000_000 });
    expect(d.exitCode).toBe(0);
    expect(hv.memory.read32(d.ramHpa(RESULTS)!)).toBe(0x0017_0011);
    expect(d.ioapic.redirectionEntry(4)).toEqual([0x41, 0]);
    expect(d.ioapic.stats.delivered).toBe(1);
    const apic = d.vcpus[0]!.apic!;
    expect(apic.pendingVector()).toBe(0x41); // IF is 0 in the guest: it stays pending
    // The platform device's INTx drives GSI 5, level-triggered as the guest set it.
    d.platform!.setIntx(true);
    expect(d.ioapic.stats.delivered).toBe(2);
    expect(apic.read(XAPIC_TMR0 + 0x20, 4)).toBe(1 << (0x51 - 64));
  });

  it("keeps every pin masked in a guest that never programs it", () => {
    const hv = new Hypervisor({ memoryMiB: 64 });
    const d = hv.createDomain({ name: "quiet", memoryMiB: 8, hap, kernel: tinyKernel(SPIN) });
    d.platform!.setIntx(true);
    d.ioapic.setLevel(4, true);
    expect(d.ioapic.stats.delivered).toBe(0);
    expect(d.vcpus[0]!.apic!.pendingVector()).toBe(-1);
  });
});
