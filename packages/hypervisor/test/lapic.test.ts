import { describe, expect, it } from "vitest";
import fc from "fast-check";
import {
  APIC_BASE_EN,
  APIC_BASE_EXTD,
  APIC_ESR_RECV_ILLEGAL_VECTOR,
  APIC_ESR_SEND_ILLEGAL_VECTOR,
  APIC_LVT_DELIVERY_STATUS,
  APIC_LVT_MASKED,
  APIC_LVT_REMOTE_IRR,
  APIC_SVR_ENABLE,
  APIC_VERSION_VALUE,
  ApicDeliveryMode,
  ApicShorthand,
  LocalApic,
  MSR_IA32_APIC_BASE,
  MSR_X2APIC_APICID,
  MSR_X2APIC_CUR_COUNT,
  MSR_X2APIC_DIV_CONF,
  MSR_X2APIC_EOI,
  MSR_X2APIC_ESR,
  MSR_X2APIC_ICR,
  MSR_X2APIC_INIT_COUNT,
  MSR_X2APIC_IRR0,
  MSR_X2APIC_ISR0,
  MSR_X2APIC_LDR,
  MSR_X2APIC_LVT_ERROR,
  MSR_X2APIC_LVT_LINT0,
  MSR_X2APIC_LVT_LINT1,
  MSR_X2APIC_LVT_TIMER,
  MSR_X2APIC_PPR,
  MSR_X2APIC_SELF_IPI,
  MSR_X2APIC_SIVR,
  MSR_X2APIC_TPR,
  MSR_X2APIC_VERSION,
  apicTimerDivisor,
  type LocalApicOptions,
} from "@vtlab/hypervisor";

interface Ipi {
  dest: number;
  vector: number;
  shorthand: number;
  mode: number;
}

function setup(extra: Partial<LocalApicOptions> = {}) {
  const clock = { ns: 0 };
  const ipis: Ipi[] = [];
  const apic = new LocalApic({
    apicId: 0x23,
    now: () => clock.ns,
    sendIpi: (dest, vector, shorthand, mode) => ipis.push({ dest, vector, shorthand, mode }),
    ...extra,
  });
  // Software-enable with spurious vector 0xFF.
  expect(apic.writeMsr(MSR_X2APIC_SIVR, APIC_SVR_ENABLE | 0xff, 0)).toBe(true);
  return { apic, clock, ipis };
}

function read(apic: LocalApic, msr: number): number {
  const r = apic.readMsr(msr);
  if (!r.ok) throw new Error(`#GP reading ${msr.toString(16)}`);
  return r.lo;
}

function readEsr(apic: LocalApic): number {
  expect(apic.writeMsr(MSR_X2APIC_ESR, 0, 0)).toBe(true); // latch
  return read(apic, MSR_X2APIC_ESR);
}

/** Takes the pending vector the way the hypervisor would inject it. */
function take(apic: LocalApic): number {
  const v = apic.pendingVector();
  if (v >= 0) apic.acknowledge(v);
  return v;
}

describe("LocalApic registers", () => {
  it("reads ID, version, LDR and IA32_APIC_BASE", () => {
    const { apic } = setup();
    expect(read(apic, MSR_X2APIC_APICID)).toBe(0x23);
    expect(read(apic, MSR_X2APIC_VERSION)).toBe(APIC_VERSION_VALUE);
    expect(APIC_VERSION_VALUE).toBe(0x50014);
    // cluster 2, bit 3
    expect(read(apic, MSR_X2APIC_LDR)).toBe((2 << 16) | (1 << 3));
    const base = apic.readMsr(MSR_IA32_APIC_BASE);
    expect(base.ok && base.lo).toBe((0xfee00000 | APIC_BASE_EN | APIC_BASE_EXTD) >>> 0);
  });

  it("power-up state: SVR 0xFF, LVTs masked, software-disabled until SVR bit 8", () => {
    const apic = new LocalApic({ apicId: 0, now: () => 0 });
    expect(read(apic, MSR_X2APIC_SIVR)).toBe(0xff);
    expect(read(apic, MSR_X2APIC_LVT_TIMER)).toBe(APIC_LVT_MASKED);
    apic.acceptInterrupt(0x40);
    expect(apic.pendingVector()).toBe(-1);
    expect(read(apic, MSR_IA32_APIC_BASE) & 0x100).toBe(0x100); // BSP
  });

  it("#GP: writes to read-only registers", () => {
    const { apic } = setup();
    for (const msr of [MSR_X2APIC_APICID, MSR_X2APIC_VERSION, MSR_X2APIC_PPR, MSR_X2APIC_LDR, MSR_X2APIC_ISR0, MSR_X2APIC_IRR0 + 7, MSR_X2APIC_CUR_COUNT]) {
      expect(apic.writeMsr(msr, 0, 0)).toBe(false);
    }
  });

  it("#GP: reading write-only EOI and SELF IPI, reserved MSRs", () => {
    const { apic } = setup();
    expect(apic.readMsr(MSR_X2APIC_EOI).ok).toBe(false);
    expect(apic.readMsr(MSR_X2APIC_SELF_IPI).ok).toBe(false);
    for (const msr of [0x804, 0x809, 0x80c, 0x80e, 0x82f, 0x831, 0x83a, 0x840, 0x8ff]) {
      expect(apic.readMsr(msr).ok).toBe(false);
      expect(apic.writeMsr(msr, 0, 0)).toBe(false);
    }
  });

  it("#GP: non-zero EOI, non-zero ESR, reserved bits in TPR/SVR/LVT/divide/ICR, high halves", () => {
    const { apic } = setup();
    expect(apic.writeMsr(MSR_X2APIC_EOI, 1, 0)).toBe(false);
    expect(apic.writeMsr(MSR_X2APIC_EOI, 0, 1)).toBe(false);
    expect(apic.writeMsr(MSR_X2APIC_EOI, 0, 0)).toBe(true);
    expect(apic.writeMsr(MSR_X2APIC_ESR, 4, 0)).toBe(false);
    expect(apic.writeMsr(MSR_X2APIC_TPR, 0x100, 0)).toBe(false);
    expect(apic.writeMsr(MSR_X2APIC_TPR, 0x10, 1)).toBe(false);
    expect(apic.writeMsr(MSR_X2APIC_SIVR, 0x1000 | 0x1ff, 0)).toBe(false);
    expect(apic.writeMsr(MSR_X2APIC_LVT_TIMER, 2 << 17, 0)).toBe(false); // TSC-deadline: unsupported
    expect(apic.writeMsr(MSR_X2APIC_DIV_CONF, 0b100, 0)).toBe(false);
    expect(apic.writeMsr(MSR_X2APIC_ICR, 1 << 12, 0)).toBe(false);
    expect(apic.writeMsr(MSR_X2APIC_ICR, (0b111 << 8) | 0x40, 0)).toBe(false);
    expect(apic.writeMsr(MSR_X2APIC_SELF_IPI, 0x140, 0)).toBe(false);
    expect(read(apic, MSR_X2APIC_TPR)).toBe(0);
  });

  it("LVT writes may carry the read-only bits (delivery status; remote IRR on LINT0/1), which are ignored: Linux's disconnect_bsp_APIC writes LINT0 = 0x5700", () => {
    const { apic } = setup();
    expect(apic.writeMsr(MSR_X2APIC_LVT_LINT0, 0x5700, 0)).toBe(true);
    expect(read(apic, MSR_X2APIC_LVT_LINT0)).toBe(0x0700); // ExtINT, unmasked; the read-only bits read as 0
    expect(apic.writeMsr(MSR_X2APIC_LVT_LINT1, APIC_LVT_REMOTE_IRR | APIC_LVT_DELIVERY_STATUS | 0x400, 0)).toBe(true);
    expect(read(apic, MSR_X2APIC_LVT_LINT1)).toBe(0x400); // NMI
    expect(apic.writeMsr(MSR_X2APIC_LVT_TIMER, APIC_LVT_DELIVERY_STATUS | 0x40, 0)).toBe(true);
    expect(read(apic, MSR_X2APIC_LVT_TIMER)).toBe(0x40);
    // Remote IRR exists only on LINT0/1: elsewhere bit 14 is reserved; bits above the mask are reserved everywhere.
    expect(apic.writeMsr(MSR_X2APIC_LVT_TIMER, APIC_LVT_REMOTE_IRR | 0x40, 0)).toBe(false);
    expect(apic.writeMsr(MSR_X2APIC_LVT_ERROR, APIC_LVT_REMOTE_IRR | 0xfe, 0)).toBe(false);
    expect(apic.writeMsr(MSR_X2APIC_LVT_LINT0, 1 << 17, 0)).toBe(false);
    expect(read(apic, MSR_X2APIC_LVT_LINT0)).toBe(0x0700);
  });

  it("IA32_APIC_BASE mode transitions; x2APIC registers #GP outside x2APIC mode", () => {
    const { apic } = setup();
    const base = 0xfee00000;
    expect(apic.writeMsr(MSR_IA32_APIC_BASE, base | APIC_BASE_EN, 0)).toBe(false); // x2APIC -> xAPIC
    expect(apic.writeMsr(MSR_IA32_APIC_BASE, base | APIC_BASE_EXTD, 0)).toBe(false); // EXTD without EN
    apic.writeMsr(MSR_X2APIC_TPR, 0x20, 0);
    expect(apic.writeMsr(MSR_IA32_APIC_BASE, base, 0)).toBe(true); // disable: state reset
    expect(apic.readMsr(MSR_X2APIC_TPR).ok).toBe(false);
    expect(apic.writeMsr(MSR_IA32_APIC_BASE, base | APIC_BASE_EN | APIC_BASE_EXTD, 0)).toBe(false); // disabled -> x2APIC
    expect(apic.writeMsr(MSR_IA32_APIC_BASE, base | APIC_BASE_EN, 0)).toBe(true);
    expect(apic.writeMsr(MSR_IA32_APIC_BASE, base | APIC_BASE_EN | APIC_BASE_EXTD, 0)).toBe(true);
    expect(read(apic, MSR_X2APIC_TPR)).toBe(0);
    expect(read(apic, MSR_X2APIC_SIVR)).toBe(0xff);
  });
});

describe("LocalApic priorities", () => {
  it("PPR is TPR or the in-service class, whichever is higher", () => {
    const { apic } = setup();
    apic.writeMsr(MSR_X2APIC_TPR, 0x35, 0);
    expect(read(apic, MSR_X2APIC_PPR)).toBe(0x35);
    apic.acceptInterrupt(0x61);
    expect(take(apic)).toBe(0x61);
    expect(read(apic, MSR_X2APIC_ISR0 + 3)).toBe(1 << 1);
    expect(read(apic, MSR_X2APIC_PPR)).toBe(0x60);
    apic.writeMsr(MSR_X2APIC_TPR, 0x7f, 0);
    expect(read(apic, MSR_X2APIC_PPR)).toBe(0x7f);
    apic.writeMsr(MSR_X2APIC_TPR, 0x65, 0); // same class as ISR: TPR wins (>=)
    expect(read(apic, MSR_X2APIC_PPR)).toBe(0x65);
  });

  it("TPR blocks vectors whose class is not above it", () => {
    const { apic } = setup();
    apic.writeMsr(MSR_X2APIC_TPR, 0x50, 0);
    apic.acceptInterrupt(0x5f);
    expect(apic.pendingVector()).toBe(-1);
    apic.acceptInterrupt(0x60);
    expect(apic.pendingVector()).toBe(0x60);
    apic.writeMsr(MSR_X2APIC_TPR, 0x40, 0);
    expect(take(apic)).toBe(0x60);
    // 0x5f is above TPR but the in-service 0x60 class blocks it until EOI
    expect(apic.pendingVector()).toBe(-1);
    apic.writeMsr(MSR_X2APIC_EOI, 0, 0);
    expect(apic.pendingVector()).toBe(0x5f);
  });

  it("delivers by priority and nests: a higher class preempts, EOI clears the highest ISR bit", () => {
    const { apic } = setup();
    apic.acceptInterrupt(0x31);
    apic.acceptInterrupt(0x92);
    apic.acceptInterrupt(0x45);
    expect(read(apic, MSR_X2APIC_IRR0 + 1)).toBe(1 << 17);
    expect(read(apic, MSR_X2APIC_IRR0 + 2)).toBe(1 << 5);
    expect(take(apic)).toBe(0x92);
    expect(apic.pendingVector()).toBe(-1); // 0x45 is below the in-service 0x92
    apic.acceptInterrupt(0xa0);
    expect(take(apic)).toBe(0xa0); // nested
    apic.writeMsr(MSR_X2APIC_EOI, 0, 0); // ends 0xa0
    expect(read(apic, MSR_X2APIC_ISR0 + 5)).toBe(0);
    expect(read(apic, MSR_X2APIC_ISR0 + 4)).toBe(1 << 18);
    apic.writeMsr(MSR_X2APIC_EOI, 0, 0); // ends 0x92
    expect(take(apic)).toBe(0x45);
    apic.writeMsr(MSR_X2APIC_EOI, 0, 0);
    expect(take(apic)).toBe(0x31);
    apic.writeMsr(MSR_X2APIC_EOI, 0, 0);
    expect(apic.pendingVector()).toBe(-1);
    expect(apic.stats.eoi).toBe(4);
  });

  it("onSoftwareEnable runs on each 0 -> 1 edge of SVR bit 8, never on other SVR writes", () => {
    let enables = 0;
    const { apic } = setup({ onSoftwareEnable: () => enables++ });
    expect(enables).toBe(1); // setup's enable
    apic.writeMsr(MSR_X2APIC_SIVR, APIC_SVR_ENABLE | 0xfe, 0);
    expect(enables).toBe(1);
    apic.writeMsr(MSR_X2APIC_SIVR, 0xff, 0);
    apic.writeMsr(MSR_X2APIC_SIVR, 0xff, 0);
    expect(enables).toBe(1);
    apic.writeMsr(MSR_X2APIC_SIVR, APIC_SVR_ENABLE | 0xff, 0);
    expect(enables).toBe(2);
  });

  it("software disable: no pending vector, LVT masks forced", () => {
    const { apic } = setup();
    apic.acceptInterrupt(0x80);
    apic.writeMsr(MSR_X2APIC_LVT_TIMER, 0x40, 0);
    apic.writeMsr(MSR_X2APIC_SIVR, 0xff, 0);
    expect(apic.pendingVector()).toBe(-1);
    expect(read(apic, MSR_X2APIC_LVT_TIMER)).toBe(0x40 | APIC_LVT_MASKED);
    apic.writeMsr(MSR_X2APIC_LVT_TIMER, 0x40, 0);
    expect(read(apic, MSR_X2APIC_LVT_TIMER)).toBe(0x40 | APIC_LVT_MASKED);
    apic.writeMsr(MSR_X2APIC_SIVR, APIC_SVR_ENABLE | 0xff, 0);
    expect(apic.pendingVector()).toBe(0x80); // held in IRR
  });
});

describe("LocalApic timer", () => {
  it("divide configuration encoding (bits 0, 1, 3)", () => {
    const expected: [number, number][] = [
      [0b0000, 2], [0b0001, 4], [0b0010, 8], [0b0011, 16],
      [0b1000, 32], [0b1001, 64], [0b1010, 128], [0b1011, 1],
    ];
    for (const [dcr, div] of expected) expect(apicTimerDivisor(dcr)).toBe(div);
  });

  it("one-shot fires exactly once at initial count x divisor ticks, for every divide value", () => {
    for (const dcr of [0b0000, 0b0001, 0b0010, 0b0011, 0b1000, 0b1001, 0b1010, 0b1011]) {
      const { apic, clock } = setup({ busHz: 100_000_000 }); // 10 ns per tick
      clock.ns = 1000;
      apic.writeMsr(MSR_X2APIC_LVT_TIMER, 0x50, 0);
      apic.writeMsr(MSR_X2APIC_DIV_CONF, dcr, 0);
      apic.writeMsr(MSR_X2APIC_INIT_COUNT, 100, 0);
      const due = 1000 + 100 * apicTimerDivisor(dcr) * 10;
      expect(apic.nextTimerDeadline()).toBe(due);
      clock.ns = due - 1;
      apic.update();
      expect(apic.pendingVector()).toBe(-1);
      expect(apic.stats.timerFires).toBe(0);
      clock.ns = due;
      apic.update();
      expect(apic.stats.timerFires).toBe(1);
      expect(take(apic)).toBe(0x50);
      expect(apic.nextTimerDeadline()).toBe(Infinity);
      expect(read(apic, MSR_X2APIC_CUR_COUNT)).toBe(0);
      clock.ns = due * 10;
      apic.update();
      expect(apic.stats.timerFires).toBe(1);
      expect(apic.pendingVector()).toBe(-1);
    }
  });

  it("current count decreases with simulated time", () => {
    const { apic, clock } = setup();
    apic.writeMsr(MSR_X2APIC_LVT_TIMER, 0x50, 0);
    apic.writeMsr(MSR_X2APIC_DIV_CONF, 0b0001, 0); // divide by 4: 4 ns per count at 1 GHz
    apic.writeMsr(MSR_X2APIC_INIT_COUNT, 1000, 0);
    expect(read(apic, MSR_X2APIC_CUR_COUNT)).toBe(1000);
    expect(read(apic, MSR_X2APIC_INIT_COUNT)).toBe(1000);
    clock.ns = 400;
    expect(read(apic, MSR_X2APIC_CUR_COUNT)).toBe(900);
    clock.ns = 3999;
    expect(read(apic, MSR_X2APIC_CUR_COUNT)).toBe(1);
    clock.ns = 4000;
    expect(read(apic, MSR_X2APIC_CUR_COUNT)).toBe(0);
  });

  it("periodic mode reloads and keeps the schedule", () => {
    const { apic, clock } = setup();
    apic.writeMsr(MSR_X2APIC_LVT_TIMER, (1 << 17) | 0x60, 0);
    apic.writeMsr(MSR_X2APIC_DIV_CONF, 0b1011, 0); // divide by 1
    apic.writeMsr(MSR_X2APIC_INIT_COUNT, 500, 0);
    for (let k = 1; k <= 3; k++) {
      clock.ns = k * 500 + 7;
      apic.update();
      expect(apic.stats.timerFires).toBe(k);
      expect(take(apic)).toBe(0x60);
      apic.writeMsr(MSR_X2APIC_EOI, 0, 0);
      expect(apic.nextTimerDeadline()).toBe((k + 1) * 500);
      expect(read(apic, MSR_X2APIC_CUR_COUNT)).toBe(493);
    }
    clock.ns = 10 * 500; // several periods at once: counted, one IRR bit
    apic.update();
    expect(apic.stats.timerFires).toBe(10);
    expect(take(apic)).toBe(0x60);
    expect(apic.pendingVector()).toBe(-1);
    apic.writeMsr(MSR_X2APIC_INIT_COUNT, 0, 0); // stop
    expect(apic.nextTimerDeadline()).toBe(Infinity);
  });

  it("a masked timer expires without raising its vector", () => {
    const { apic, clock } = setup();
    apic.writeMsr(MSR_X2APIC_LVT_TIMER, APIC_LVT_MASKED | 0x50, 0);
    apic.writeMsr(MSR_X2APIC_INIT_COUNT, 10, 0);
    clock.ns = 1000;
    apic.update();
    expect(apic.stats.timerFires).toBe(1);
    expect(apic.pendingVector()).toBe(-1);
    expect(read(apic, MSR_X2APIC_IRR0 + 2)).toBe(0);
  });
});

describe("LocalApic IPIs and errors", () => {
  it("ICR writes go to sendIpi with destination, vector, shorthand and mode", () => {
    const { apic, ipis } = setup();
    expect(apic.writeMsr(MSR_X2APIC_ICR, 0x41, 7)).toBe(true);
    expect(apic.writeMsr(MSR_X2APIC_ICR, (ApicShorthand.Self << 18) | 0x42, 0)).toBe(true);
    expect(apic.writeMsr(MSR_X2APIC_ICR, (ApicShorthand.AllIncludingSelf << 18) | 0x43, 0)).toBe(true);
    expect(apic.writeMsr(MSR_X2APIC_ICR, (ApicShorthand.AllExcludingSelf << 18) | (ApicDeliveryMode.Init << 8), 0)).toBe(true);
    expect(apic.writeMsr(MSR_X2APIC_ICR, (ApicDeliveryMode.StartUp << 8) | 0x08, 1)).toBe(true); // SIPI page 8
    expect(ipis).toEqual([
      { dest: 7, vector: 0x41, shorthand: 0, mode: 0 },
      { dest: 0, vector: 0x42, shorthand: 1, mode: 0 },
      { dest: 0, vector: 0x43, shorthand: 2, mode: 0 },
      { dest: 0, vector: 0, shorthand: 3, mode: 5 },
      { dest: 1, vector: 0x08, shorthand: 0, mode: 6 },
    ]);
    expect(apic.stats.ipisSent).toBe(5);
    const icr = apic.readMsr(MSR_X2APIC_ICR);
    expect(icr.ok && [icr.lo, icr.hi]).toEqual([(ApicDeliveryMode.StartUp << 8) | 0x08, 1]);
  });

  it("without a router, self-directed fixed IPIs are delivered locally; SELF IPI always is", () => {
    const apic = new LocalApic({ apicId: 3, now: () => 0 });
    apic.writeMsr(MSR_X2APIC_SIVR, APIC_SVR_ENABLE, 0);
    apic.writeMsr(MSR_X2APIC_ICR, (ApicShorthand.Self << 18) | 0x70, 0);
    apic.writeMsr(MSR_X2APIC_ICR, 0x71, 4); // someone else: dropped
    apic.writeMsr(MSR_X2APIC_ICR, 0x72, 3);
    apic.writeMsr(MSR_X2APIC_SELF_IPI, 0x73, 0);
    expect([take(apic), take(apic), take(apic), take(apic)]).toEqual([0x73, -1, -1, -1]);
    apic.writeMsr(MSR_X2APIC_EOI, 0, 0);
    expect(take(apic)).toBe(0x72);
    apic.writeMsr(MSR_X2APIC_EOI, 0, 0);
    expect(take(apic)).toBe(0x70);
    expect(apic.stats.ipisSent).toBe(4);
  });

  it("illegal vectors set ESR send/receive bits, are not delivered, and raise the LVT error", () => {
    const { apic, ipis } = setup();
    apic.writeMsr(MSR_X2APIC_LVT_ERROR, 0xfe, 0);
    expect(apic.writeMsr(MSR_X2APIC_ICR, 0x0f, 2)).toBe(true);
    expect(ipis).toEqual([]);
    expect(readEsr(apic)).toBe(APIC_ESR_SEND_ILLEGAL_VECTOR);
    expect(readEsr(apic)).toBe(0); // the latch cleared
    // To itself (SELF IPI, the self shorthand, its own ID): sent and received, ESR 0x60 (SDM 11.5.3).
    expect(apic.writeMsr(MSR_X2APIC_SELF_IPI, 3, 0)).toBe(true);
    expect(readEsr(apic)).toBe(APIC_ESR_SEND_ILLEGAL_VECTOR | APIC_ESR_RECV_ILLEGAL_VECTOR);
    expect(readEsr(apic)).toBe(0);
    expect(apic.writeMsr(MSR_X2APIC_ICR, 0x05 | (ApicShorthand.Self << 18), 0)).toBe(true);
    expect(readEsr(apic)).toBe(0x60);
    expect(apic.writeMsr(MSR_X2APIC_ICR, 0x05, 0x23)).toBe(true);
    expect(readEsr(apic)).toBe(0x60);
    expect(apic.writeMsr(MSR_X2APIC_ICR, 0x05 | (ApicShorthand.AllExcludingSelf << 18), 0)).toBe(true);
    expect(readEsr(apic)).toBe(APIC_ESR_SEND_ILLEGAL_VECTOR);
    expect(ipis).toEqual([]);
    apic.acceptInterrupt(2);
    expect(readEsr(apic)).toBe(APIC_ESR_RECV_ILLEGAL_VECTOR);
    expect(take(apic)).toBe(0xfe); // LVT error vector
    expect(read(apic, MSR_X2APIC_IRR0)).toBe(0);
    // NMI, INIT and SIPI carry no interrupt vector: no error
    expect(apic.writeMsr(MSR_X2APIC_ICR, ApicDeliveryMode.Nmi << 8, 2)).toBe(true);
    expect(ipis).toHaveLength(1);
    expect(apic.stats.ipisSent).toBe(1);
  });
});

describe("LocalApic properties", () => {
  it("pendingVector always equals an oracle over IRR, ISR and TPR", () => {
    type Op = { k: "accept"; v: number } | { k: "take" } | { k: "eoi" } | { k: "tpr"; v: number };
    const op: fc.Arbitrary<Op> = fc.oneof(
      fc.integer({ min: 16, max: 255 }).map((v) => ({ k: "accept" as const, v })),
      fc.constant({ k: "take" as const }),
      fc.constant({ k: "eoi" as const }),
      fc.integer({ min: 0, max: 255 }).map((v) => ({ k: "tpr" as const, v })),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 80 }), (ops) => {
        const { apic } = setup();
        const irr = new Set<number>();
        const isr = new Set<number>();
        let tpr = 0;
        const max = (s: Set<number>) => (s.size === 0 ? -1 : Math.max(...s));
        const oracle = () => {
          const v = max(irr);
          const isrClass = max(isr) < 0 ? 0 : max(isr) >> 4;
          const pprClass = Math.max(tpr >> 4, isrClass);
          return v >= 0 && v >> 4 > pprClass ? v : -1;
        };
        for (const o of ops) {
          if (o.k === "accept") {
            apic.acceptInterrupt(o.v);
            irr.add(o.v);
          } else if (o.k === "take") {
            const want = oracle();
            expect(take(apic)).toBe(want);
            if (want >= 0) {
              irr.delete(want);
              isr.add(want);
            }
          } else if (o.k === "eoi") {
            apic.writeMsr(MSR_X2APIC_EOI, 0, 0);
            isr.delete(max(isr));
          } else {
            apic.writeMsr(MSR_X2APIC_TPR, o.v, 0);
            tpr = o.v;
          }
          expect(apic.pendingVector()).toBe(oracle());
        }
      }),
      { numRuns: 300 },
    );
  });

  it("hostile writes and reads of any x2APIC MSR never throw", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.tuple(
            fc.oneof(fc.integer({ min: 0x800, max: 0x8ff }), fc.constant(MSR_IA32_APIC_BASE)),
            fc.nat({ max: 0xffffffff }),
            fc.nat({ max: 0xffffffff }),
            fc.nat({ max: 1_000_000 }),
          ),
          { maxLength: 60 },
        ),
        fc.boolean(),
        (writes, withRouter) => {
          const clock = { ns: 0 };
          const apic = new LocalApic({
            apicId: 1,
            now: () => clock.ns,
            ...(withRouter ? { sendIpi: () => undefined } : {}),
          });
          for (const [msr, lo, hi, dt] of writes) {
            clock.ns += dt;
            apic.writeMsr(msr, lo, hi);
            apic.readMsr(msr);
            apic.update();
            const r = apic.readMsr(MSR_X2APIC_CUR_COUNT);
            if (r.ok) expect(Number.isInteger(r.lo) && r.lo >= 0 && r.lo <= 0xffffffff).toBe(true);
            const v = take(apic);
            expect(v === -1 || (v >= 16 && v <= 255)).toBe(true);
            expect(apic.nextTimerDeadline() >= clock.ns).toBe(true);
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});
