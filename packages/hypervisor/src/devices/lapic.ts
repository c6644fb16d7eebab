/**
 * A local APIC in x2APIC mode, emulated by the hypervisor for one vCPU (Intel SDM Vol. 3A,
 * "Advanced Programmable Interrupt Controller (APIC)", section "Extended XAPIC (x2APIC)").
 * The guest reaches it with RDMSR/WRMSR on MSRs 0x800-0x8FF; the exit handler calls
 * `readMsr`/`writeMsr` and injects #GP(0) when they refuse. The hypervisor delivers external
 * interrupts and IPIs with `acceptInterrupt`, asks `pendingVector` before each VM entry, and
 * calls `acknowledge` when it injects the vector.
 *
 * x2APIC access rules followed (SDM "x2APIC Register Address Space" and "Reserved Bit
 * Checking"): RDMSR/WRMSR of an MSR in the range that is not an x2APIC register is #GP; WRMSR
 * of a read-only register is #GP; RDMSR of a write-only register (EOI, SELF IPI) is #GP; a
 * non-zero write to a reserved bit is #GP (reserved bits read as zero); a non-zero write to EOI
 * or ESR is #GP. x2APIC MSRs are only accessible while IA32_APIC_BASE has EN and EXTD set.
 *
 * Modelled more simply than hardware (each is a deliberate choice):
 * - x2APIC mode only: there is no xAPIC MMIO page. The APIC starts enabled in x2APIC mode (as if
 *   firmware had switched it); IA32_APIC_BASE follows the SDM's mode transitions, and a guest
 *   that leaves x2APIC mode loses access to the registers (#GP) and has its state reset.
 * - The timer counts at `busHz` (default 1 GHz: one tick per simulated ns, like Xen's vlapic
 *   APIC_BUS_CYCLE_NS = 1). One-shot and periodic modes only: TSC-deadline mode is reported
 *   unsupported (CPUID.01H:ECX.TSC_Deadline = 0), so LVT timer mode 10b is a reserved-bit #GP.
 *   A new divide configuration takes effect at the next write of the initial count (hardware
 *   applies it mid-count). A periodic timer that expired several times before `update()`
 *   counts each expiry in `stats.timerFires` but sets its IRR bit once (IRR is one bit).
 * - Every ICR write goes to the injected `sendIpi` router, shorthands included (the router
 *   delivers to this APIC too for "self" and "all including self"); without a router, only
 *   IPIs that target this APIC are delivered, locally. Logical destination mode (ICR bit 11)
 *   is accepted but the destination is passed on as written: routing is the router's business.
 *   The ICR's reserved delivery modes 011b and 111b are treated as reserved bits (#GP); LVT
 *   delivery-mode fields are stored but not acted on.
 * - An illegal vector (0-15) sent with fixed or lowest-priority delivery (ICR or SELF IPI) sets
 *   ESR "send illegal vector" and is not delivered; an illegal vector arriving through
 *   `acceptInterrupt` (including from an LVT entry) sets ESR "received illegal vector" and is
 *   dropped. Either error raises the LVT error interrupt if it is unmasked.
 * - Edge-triggered only: TMR always reads zero, level-triggered remote IRR is not modelled,
 *   EOI is never broadcast. No LVT CMCI (0x82F reads as reserved). Thermal, performance and
 *   LINT0/LINT1 LVT entries are plain registers: nothing drives them.
 * - While software-disabled (SVR bit 8 clear), fixed interrupts are not accepted, all LVT
 *   mask bits are set and cannot be cleared (SDM "Local APIC State After It Has Been
 *   Software Disabled"), and `pendingVector` returns -1.
 *
 * `readMsr` returns one reused result object (no allocation per access): read it before the
 * next call.
 */

/** x2APIC register MSRs (SDM Table "Local APIC Register Address Map Supported by x2APIC"). */
export const X2APIC_MSR_BASE = 0x800;
export const X2APIC_MSR_LAST = 0x8ff;
export const MSR_X2APIC_APICID = 0x802; // Local APIC ID register (read-only)
export const MSR_X2APIC_VERSION = 0x803; // Local APIC Version register (read-only)
export const MSR_X2APIC_TPR = 0x808; // Task Priority Register
export const MSR_X2APIC_PPR = 0x80a; // Processor Priority Register (read-only)
export const MSR_X2APIC_EOI = 0x80b; // EOI register (write-only)
export const MSR_X2APIC_LDR = 0x80d; // Logical Destination Register (read-only in x2APIC)
export const MSR_X2APIC_SIVR = 0x80f; // Spurious Interrupt Vector Register
export const MSR_X2APIC_ISR0 = 0x810; // In-Service Register bits 31:0 ... 0x817 bits 255:224
export const MSR_X2APIC_TMR0 = 0x818; // Trigger Mode Register bits 31:0 ... 0x81F
export const MSR_X2APIC_IRR0 = 0x820; // Interrupt Request Register bits 31:0 ... 0x827
export const MSR_X2APIC_ESR = 0x828; // Error Status Register
export const MSR_X2APIC_ICR = 0x830; // Interrupt Command Register (64-bit in x2APIC)
export const MSR_X2APIC_LVT_TIMER = 0x832; // LVT Timer register
export const MSR_X2APIC_LVT_THERMAL = 0x833; // LVT Thermal Sensor register
export const MSR_X2APIC_LVT_PMI = 0x834; // LVT Performance Monitoring register
export const MSR_X2APIC_LVT_LINT0 = 0x835; // LVT LINT0 register
export const MSR_X2APIC_LVT_LINT1 = 0x836; // LVT LINT1 register
export const MSR_X2APIC_LVT_ERROR = 0x837; // LVT Error register
export const MSR_X2APIC_INIT_COUNT = 0x838; // Initial Count register (timer)
export const MSR_X2APIC_CUR_COUNT = 0x839; // Current Count register (timer, read-only)
export const MSR_X2APIC_DIV_CONF = 0x83e; // Divide Configuration register (timer)
export const MSR_X2APIC_SELF_IPI = 0x83f; // SELF IPI register (write-only)

/** IA32_APIC_BASE (SDM Vol. 4 MSR 0x1B). */
export const MSR_IA32_APIC_BASE = 0x1b;
export const APIC_BASE_BSP = 1 << 8; // BSP flag (read-only here)
export const APIC_BASE_EXTD = 1 << 10; // enable x2APIC mode
export const APIC_BASE_EN = 1 << 11; // xAPIC global enable
export const APIC_BASE_DEFAULT = 0xfee00000; // default APIC base address
/** IA32_APIC_BASE high half: physical base bits 51:32 (MAXPHYADDR = 52 assumed). */
const APIC_BASE_HI_MASK = 0x000fffff;

/** Version register: version 0x14 (integrated APIC), max LVT entry 5 (six entries), bits 23:16. */
export const APIC_VERSION = 0x14;
export const APIC_MAX_LVT = 5;
export const APIC_VERSION_VALUE = (APIC_MAX_LVT << 16) | APIC_VERSION;

/** SVR bits. */
export const APIC_SVR_VECTOR = 0xff; // spurious vector
export const APIC_SVR_ENABLE = 1 << 8; // APIC software enable/disable

/** LVT bits. */
export const APIC_LVT_VECTOR = 0xff;
export const APIC_LVT_DELIVERY_MODE = 0x700; // bits 10:8
export const APIC_LVT_DELIVERY_STATUS = 1 << 12; // read-only
export const APIC_LVT_POLARITY = 1 << 13; // LINT0/1 input pin polarity
export const APIC_LVT_REMOTE_IRR = 1 << 14; // LINT0/1, read-only
export const APIC_LVT_TRIGGER_MODE = 1 << 15; // LINT0/1
export const APIC_LVT_MASKED = 1 << 16; // mask
export const APIC_LVT_TIMER_MODE_SHIFT = 17; // bits 18:17
export const APIC_LVT_TIMER_ONESHOT = 0b00;
export const APIC_LVT_TIMER_PERIODIC = 0b01;
export const APIC_LVT_TIMER_TSC_DEADLINE = 0b10; // unsupported here

/** ESR bits. */
export const APIC_ESR_SEND_CS = 1 << 0; // send checksum error (P6/Pentium only)
export const APIC_ESR_RECV_CS = 1 << 1; // receive checksum error (P6/Pentium only)
export const APIC_ESR_SEND_ACCEPT = 1 << 2; // send accept error (P6/Pentium only)
export const APIC_ESR_RECV_ACCEPT = 1 << 3; // receive accept error (P6/Pentium only)
export const APIC_ESR_REDIRECTABLE_IPI = 1 << 4; // redirectable IPI
export const APIC_ESR_SEND_ILLEGAL_VECTOR = 1 << 5; // send illegal vector
export const APIC_ESR_RECV_ILLEGAL_VECTOR = 1 << 6; // received illegal vector
export const APIC_ESR_ILLEGAL_REGISTER = 1 << 7; // illegal register address (xAPIC)

/** ICR fields (x2APIC: destination is the whole high half). */
export const APIC_ICR_VECTOR = 0xff;
export const APIC_ICR_DELIVERY_MODE_SHIFT = 8; // bits 10:8
export const APIC_ICR_DEST_LOGICAL = 1 << 11; // destination mode: 1 = logical
export const APIC_ICR_LEVEL_ASSERT = 1 << 14; // level
export const APIC_ICR_TRIGGER_LEVEL = 1 << 15; // trigger mode
export const APIC_ICR_SHORTHAND_SHIFT = 18; // bits 19:18

/** Delivery modes (ICR bits 10:8, LVT bits 10:8). */
export const ApicDeliveryMode = {
  Fixed: 0b000,
  LowestPriority: 0b001,
  Smi: 0b010,
  Nmi: 0b100,
  Init: 0b101,
  StartUp: 0b110,
  ExtInt: 0b111,
} as const;
export type ApicDeliveryMode = (typeof ApicDeliveryMode)[keyof typeof ApicDeliveryMode];

/** Destination shorthands (ICR bits 19:18). */
export const ApicShorthand = {
  None: 0b00,
  Self: 0b01,
  AllIncludingSelf: 0b10,
  AllExcludingSelf: 0b11,
} as const;
export type ApicShorthand = (typeof ApicShorthand)[keyof typeof ApicShorthand];

/** x2APIC broadcast destination. */
export const X2APIC_BROADCAST = 0xffffffff;

/** Writable bits per register; anything else set in a write is #GP. */
const TPR_MASK = 0xff;
const SVR_MASK = APIC_SVR_VECTOR | APIC_SVR_ENABLE; // focus checking and EOI-broadcast suppression unsupported
const ICR_LO_MASK = 0xff | 0x700 | APIC_ICR_DEST_LOGICAL | APIC_ICR_LEVEL_ASSERT | APIC_ICR_TRIGGER_LEVEL | (3 << 18);
const LVT_TIMER_MASK = APIC_LVT_VECTOR | APIC_LVT_MASKED | (1 << APIC_LVT_TIMER_MODE_SHIFT); // periodic bit; TSC-deadline bit reserved
const LVT_THERMAL_PMI_MASK = APIC_LVT_VECTOR | APIC_LVT_DELIVERY_MODE | APIC_LVT_MASKED;
const LVT_LINT_MASK = LVT_THERMAL_PMI_MASK | APIC_LVT_POLARITY | APIC_LVT_TRIGGER_MODE;
const LVT_ERROR_MASK = APIC_LVT_VECTOR | APIC_LVT_MASKED;
const DIV_CONF_MASK = 0b1011;
const SELF_IPI_MASK = 0xff;

/** LVT slots, in MSR order from 0x832. */
const LVT_TIMER = 0;
const LVT_ERROR = 5;
const LVT_COUNT = 6;
const LVT_WRITE_MASKS = [
  LVT_TIMER_MASK,
  LVT_THERMAL_PMI_MASK,
  LVT_THERMAL_PMI_MASK,
  LVT_LINT_MASK,
  LVT_LINT_MASK,
  LVT_ERROR_MASK,
] as const;

export interface LocalApicOptions {
  /** This vCPU's x2APIC ID. */
  readonly apicId: number;
  /** Simulated time in ns. */
  readonly now: () => number;
  /** Timer input clock in Hz before the divider (default 1 GHz: 1 ns per tick). */
  readonly busHz?: number;
  /** Whether this is the bootstrap processor (IA32_APIC_BASE.BSP; default apicId === 0). */
  readonly bsp?: boolean;
  /** The IPI router: called for every ICR write that passes the checks. */
  readonly sendIpi?: (dest: number, vector: number, shorthand: number, deliveryMode: number) => void;
}

export interface LocalApicStats {
  /** Timer expiries (each periodic expiry counts, masked or not). */
  timerFires: number;
  /** EOI writes. */
  eoi: number;
  /** IPIs sent through the ICR or the SELF IPI register (not counting illegal-vector ones). */
  ipisSent: number;
}

export interface MsrReadOk {
  readonly ok: true;
  readonly lo: number;
  readonly hi: number;
}
export type MsrReadResult = MsrReadOk | { readonly ok: false };

const READ_GP: MsrReadResult = Object.freeze({ ok: false as const });

/** Timer divisor from the Divide Configuration register (bits 0, 1, 3: 000 = 2 ... 111 = 1). */
export function apicTimerDivisor(divConf: number): number {
  const v = (divConf & 0b11) | ((divConf >> 1) & 0b100);
  return v === 0b111 ? 1 : 2 << v;
}

function highestBit(words: Uint32Array): number {
  for (let i = 7; i >= 0; i--) {
    const w = words[i] ?? 0;
    if (w !== 0) return i * 32 + 31 - Math.clz32(w);
  }
  return -1;
}

export class LocalApic {
  readonly apicId: number;
  readonly stats: LocalApicStats = { timerFires: 0, eoi: 0, ipisSent: 0 };

  private readonly now: () => number;
  private readonly nsPerTick: number;
  private readonly sendIpiFn: LocalApicOptions["sendIpi"];
  private readonly bsp: boolean;

  private apicBaseLo = 0;
  private apicBaseHi = 0;
  private readonly irr = new Uint32Array(8);
  private readonly isr = new Uint32Array(8);
  private tpr = 0;
  private svr = 0;
  private esr = 0;
  /** Errors accumulated since the last ESR write (the write latches them into `esr`). */
  private esrPending = 0;
  private icrLo = 0;
  private icrHi = 0;
  private readonly lvt = new Uint32Array(LVT_COUNT);
  private initialCount = 0;
  private divConf = 0;
  /** Timer: running, start of the current count, length of one count in ns. */
  private timerActive = false;
  private timerStart = 0;
  private timerPeriodNs = 0;
  private timerTickNs = 1;

  private readonly result: { ok: true; lo: number; hi: number } = { ok: true, lo: 0, hi: 0 };

  constructor(opts: LocalApicOptions) {
    this.apicId = opts.apicId >>> 0;
    this.now = opts.now;
    const busHz = opts.busHz ?? 1_000_000_000;
    if (!(busHz > 0) || !Number.isFinite(busHz)) throw new RangeError(`LocalApic: bad busHz ${busHz}`);
    this.nsPerTick = 1e9 / busHz;
    this.sendIpiFn = opts.sendIpi;
    this.bsp = opts.bsp ?? this.apicId === 0;
    this.reset();
    this.apicBaseLo = APIC_BASE_DEFAULT | APIC_BASE_EN | APIC_BASE_EXTD | (this.bsp ? APIC_BASE_BSP : 0);
  }

  /** Power-up register state (SDM "Local APIC State After Power-Up or Reset"), mode bits untouched. */
  private reset(): void {
    this.irr.fill(0);
    this.isr.fill(0);
    this.tpr = 0;
    this.svr = 0xff;
    this.esr = 0;
    this.esrPending = 0;
    this.icrLo = 0;
    this.icrHi = 0;
    this.lvt.fill(APIC_LVT_MASKED);
    this.initialCount = 0;
    this.divConf = 0;
    this.timerActive = false;
  }

  private get x2apicMode(): boolean {
    const m = APIC_BASE_EN | APIC_BASE_EXTD;
    return (this.apicBaseLo & m) === m;
  }

  /** SVR bit 8. */
  get softwareEnabled(): boolean {
    return (this.svr & APIC_SVR_ENABLE) !== 0;
  }

  /** Logical x2APIC ID: cluster (ID[19:4]) in bits 31:16, one-hot ID[3:0] in bits 15:0. */
  get ldr(): number {
    return (((this.apicId >>> 4) << 16) | (1 << (this.apicId & 0xf))) >>> 0;
  }

  /** PPR = TPR when TPR[7:4] >= ISRV[7:4], else ISRV[7:4] << 4 (SDM "Processor Priority Register"). */
  get ppr(): number {
    const isrv = highestBit(this.isr);
    const isrClass = isrv < 0 ? 0 : isrv >> 4;
    return this.tpr >> 4 >= isrClass ? this.tpr : isrClass << 4;
  }

  private ok(lo: number, hi = 0): MsrReadResult {
    this.result.lo = lo >>> 0;
    this.result.hi = hi >>> 0;
    return this.result;
  }

  readMsr(msr: number): MsrReadResult {
    if (msr === MSR_IA32_APIC_BASE) return this.ok(this.apicBaseLo, this.apicBaseHi);
    if (msr < X2APIC_MSR_BASE || msr > X2APIC_MSR_LAST || !this.x2apicMode) return READ_GP;
    switch (msr) {
      case MSR_X2APIC_APICID:
        return this.ok(this.apicId);
      case MSR_X2APIC_VERSION:
        return this.ok(APIC_VERSION_VALUE);
      case MSR_X2APIC_TPR:
        return this.ok(this.tpr);
      case MSR_X2APIC_PPR:
        return this.ok(this.ppr);
      case MSR_X2APIC_LDR:
        return this.ok(this.ldr);
      case MSR_X2APIC_SIVR:
        return this.ok(this.svr);
      case MSR_X2APIC_ESR:
        return this.ok(this.esr);
      case MSR_X2APIC_ICR:
        return this.ok(this.icrLo, this.icrHi);
      case MSR_X2APIC_INIT_COUNT:
        return this.ok(this.initialCount);
      case MSR_X2APIC_CUR_COUNT:
        return this.ok(this.currentCount());
      case MSR_X2APIC_DIV_CONF:
        return this.ok(this.divConf);
      default:
        break;
    }
    if (msr >= MSR_X2APIC_ISR0 && msr < MSR_X2APIC_ISR0 + 8) return this.ok(this.isr[msr - MSR_X2APIC_ISR0] ?? 0);
    if (msr >= MSR_X2APIC_TMR0 && msr < MSR_X2APIC_TMR0 + 8) return this.ok(0);
    if (msr >= MSR_X2APIC_IRR0 && msr < MSR_X2APIC_IRR0 + 8) return this.ok(this.irr[msr - MSR_X2APIC_IRR0] ?? 0);
    if (msr >= MSR_X2APIC_LVT_TIMER && msr <= MSR_X2APIC_LVT_ERROR) {
      return this.ok(this.lvt[msr - MSR_X2APIC_LVT_TIMER] ?? 0);
    }
    // EOI and SELF IPI are write-only; everything else in the range is reserved.
    return READ_GP;
  }

  /** Returns false when the guest must get #GP(0); the register is then unchanged. */
  writeMsr(msr: number, lo: number, hi: number): boolean {
    lo = lo >>> 0;
    hi = hi >>> 0;
    if (msr === MSR_IA32_APIC_BASE) return this.writeApicBase(lo, hi);
    if (msr < X2APIC_MSR_BASE || msr > X2APIC_MSR_LAST || !this.x2apicMode) return false;
    // Only the ICR is 64 bits wide; the high half of every other register is reserved.
    if (hi !== 0 && msr !== MSR_X2APIC_ICR) return false;
    switch (msr) {
      case MSR_X2APIC_TPR:
        if ((lo & ~TPR_MASK) !== 0) return false;
        this.tpr = lo;
        return true;
      case MSR_X2APIC_EOI:
        if (lo !== 0) return false;
        this.eoi();
        return true;
      case MSR_X2APIC_SIVR:
        if ((lo & ~SVR_MASK) !== 0) return false;
        this.svr = lo;
        if (!this.softwareEnabled) {
          for (let i = 0; i < LVT_COUNT; i++) this.lvt[i] = (this.lvt[i] ?? 0) | APIC_LVT_MASKED;
        }
        return true;
      case MSR_X2APIC_ESR:
        if (lo !== 0) return false;
        this.esr = this.esrPending;
        this.esrPending = 0;
        return true;
      case MSR_X2APIC_ICR:
        return this.writeIcr(lo, hi);
      case MSR_X2APIC_INIT_COUNT:
        this.initialCount = lo;
        this.loadTimer(this.now());
        return true;
      case MSR_X2APIC_DIV_CONF:
        if ((lo & ~DIV_CONF_MASK) !== 0) return false;
        this.divConf = lo;
        return true;
      case MSR_X2APIC_SELF_IPI:
        if ((lo & ~SELF_IPI_MASK) !== 0) return false;
        if (lo < 16) {
          this.raiseError(APIC_ESR_SEND_ILLEGAL_VECTOR);
        } else {
          this.stats.ipisSent++;
          this.acceptInterrupt(lo);
        }
        return true;
      default:
        break;
    }
    if (msr >= MSR_X2APIC_LVT_TIMER && msr <= MSR_X2APIC_LVT_ERROR) {
      const slot = msr - MSR_X2APIC_LVT_TIMER;
      const mask = LVT_WRITE_MASKS[slot] ?? 0;
      if ((lo & ~mask) !== 0) return false;
      this.lvt[slot] = this.softwareEnabled ? lo : lo | APIC_LVT_MASKED;
      return true;
    }
    // Read-only (ID, version, PPR, LDR, ISR, TMR, IRR, current count) or reserved.
    return false;
  }

  private writeApicBase(lo: number, hi: number): boolean {
    // Bits 7:0 and 9 are reserved; BSP (bit 8) is read-only here and ignored on write.
    if ((lo & 0x2ff) !== 0 || (hi & ~APIC_BASE_HI_MASK) !== 0) return false;
    const en = (lo & APIC_BASE_EN) !== 0;
    const extd = (lo & APIC_BASE_EXTD) !== 0;
    const wasEn = (this.apicBaseLo & APIC_BASE_EN) !== 0;
    const wasExtd = (this.apicBaseLo & APIC_BASE_EXTD) !== 0;
    // SDM "x2APIC State Transitions": EXTD without EN is invalid; x2APIC -> xAPIC is invalid;
    // disabled -> x2APIC must go through xAPIC first.
    if (extd && !en) return false;
    if (wasExtd && wasEn && en && !extd) return false;
    if (!wasEn && en && extd) return false;
    if (wasEn && !en) this.reset();
    this.apicBaseLo = (lo & ~APIC_BASE_BSP) | (this.bsp ? APIC_BASE_BSP : 0);
    this.apicBaseHi = hi;
    return true;
  }

  private writeIcr(lo: number, hi: number): boolean {
    if ((lo & ~ICR_LO_MASK) !== 0) return false;
    const mode = (lo >>> APIC_ICR_DELIVERY_MODE_SHIFT) & 7;
    if (mode === 0b011 || mode === 0b111) return false;
    this.icrLo = lo;
    this.icrHi = hi;
    const vector = lo & APIC_ICR_VECTOR;
    const shorthand = (lo >>> APIC_ICR_SHORTHAND_SHIFT) & 3;
    if ((mode === ApicDeliveryMode.Fixed || mode === ApicDeliveryMode.LowestPriority) && vector < 16) {
      this.raiseError(APIC_ESR_SEND_ILLEGAL_VECTOR);
      return true;
    }
    this.stats.ipisSent++;
    const send = this.sendIpiFn;
    if (send !== undefined) {
      send(hi, vector, shorthand, mode);
    } else if (
      mode === ApicDeliveryMode.Fixed &&
      (shorthand === ApicShorthand.Self ||
        shorthand === ApicShorthand.AllIncludingSelf ||
        (shorthand === ApicShorthand.None && (hi === this.apicId || hi === X2APIC_BROADCAST)))
    ) {
      this.acceptInterrupt(vector);
    }
    return true;
  }

  private raiseError(bit: number): void {
    this.esrPending |= bit;
    const lvtError = this.lvt[LVT_ERROR] ?? APIC_LVT_MASKED;
    const vector = lvtError & APIC_LVT_VECTOR;
    if ((lvtError & APIC_LVT_MASKED) === 0 && vector >= 16 && this.softwareEnabled) this.setIrr(vector);
  }

  private setIrr(vector: number): void {
    this.irr[vector >>> 5] = (this.irr[vector >>> 5] ?? 0) | (1 << (vector & 31));
  }

  /** EOI: clears the highest-priority in-service bit. */
  private eoi(): void {
    this.stats.eoi++;
    const v = highestBit(this.isr);
    if (v >= 0) this.isr[v >>> 5] = (this.isr[v >>> 5] ?? 0) & ~(1 << (v & 31));
  }

  /** A fixed interrupt arrives (external interrupt, IPI or LVT): sets its IRR bit. */
  acceptInterrupt(vector: number): void {
    if (!Number.isInteger(vector) || vector < 0 || vector > 255) return;
    if (!this.softwareEnabled) return;
    if (vector < 16) {
      this.raiseError(APIC_ESR_RECV_ILLEGAL_VECTOR);
      return;
    }
    this.setIrr(vector);
  }

  /** The vector the hypervisor should inject next, or -1. */
  pendingVector(): number {
    if (!this.softwareEnabled || (this.apicBaseLo & APIC_BASE_EN) === 0) return -1;
    const v = highestBit(this.irr);
    if (v < 0) return -1;
    return (v & 0xf0) > (this.ppr & 0xf0) ? v : -1;
  }

  /** The CPU takes `vector`: IRR -> ISR. */
  acknowledge(vector: number): void {
    if (!Number.isInteger(vector) || vector < 0 || vector > 255) return;
    const i = vector >>> 5;
    const bit = 1 << (vector & 31);
    this.irr[i] = (this.irr[i] ?? 0) & ~bit;
    this.isr[i] = (this.isr[i] ?? 0) | bit;
  }

  /** Simulated ns of the next timer expiry, or Infinity. */
  nextTimerDeadline(): number {
    return this.timerActive ? this.timerStart + this.timerPeriodNs : Infinity;
  }

  /** Advances the timer to now(): fires expiries and sets the LVT timer's IRR bit unless masked. */
  update(): void {
    if (!this.timerActive) return;
    const now = this.now();
    const deadline = this.timerStart + this.timerPeriodNs;
    if (now < deadline) return;
    const lvt = this.lvt[LVT_TIMER] ?? APIC_LVT_MASKED;
    const periodic = ((lvt >>> APIC_LVT_TIMER_MODE_SHIFT) & 3) === APIC_LVT_TIMER_PERIODIC;
    if (periodic) {
      const n = Math.floor((now - this.timerStart) / this.timerPeriodNs);
      this.stats.timerFires += n;
      this.timerStart += n * this.timerPeriodNs;
    } else {
      this.stats.timerFires++;
      this.timerActive = false;
    }
    if ((lvt & APIC_LVT_MASKED) === 0) this.acceptInterrupt(lvt & APIC_LVT_VECTOR);
  }

  private loadTimer(now: number): void {
    if (this.initialCount === 0) {
      this.timerActive = false;
      return;
    }
    this.timerTickNs = apicTimerDivisor(this.divConf) * this.nsPerTick;
    this.timerPeriodNs = this.initialCount * this.timerTickNs;
    this.timerStart = now;
    this.timerActive = true;
  }

  /** Current Count computed from now(); 0 once a one-shot count has run out. */
  private currentCount(): number {
    if (!this.timerActive) return 0;
    const now = this.now();
    let elapsed = now - this.timerStart;
    if (elapsed < 0) elapsed = 0;
    if (elapsed >= this.timerPeriodNs) {
      const lvt = this.lvt[LVT_TIMER] ?? 0;
      if (((lvt >>> APIC_LVT_TIMER_MODE_SHIFT) & 3) !== APIC_LVT_TIMER_PERIODIC) return 0;
      elapsed %= this.timerPeriodNs;
    }
    const ticks = Math.floor(elapsed / this.timerTickNs);
    return this.initialCount - ticks;
  }
}
