/**
 * A local APIC, emulated by the hypervisor for one vCPU (Intel SDM Vol. 3A, "Advanced
 * Programmable Interrupt Controller (APIC)"), in xAPIC mode (IA32_APIC_BASE.EN = 1, EXTD = 0:
 * the power-up state, registers in a 4 KiB MMIO page at the APIC base) or x2APIC mode (EN = 1,
 * EXTD = 1: registers as MSRs 0x800-0x8FF, section "Extended XAPIC (x2APIC)"). In x2APIC mode
 * the exit handler calls `readMsr`/`writeMsr` and injects #GP(0) when they refuse; in xAPIC
 * mode the hypervisor's MMIO emulation calls `read`/`write` (the `BusDevice` shape) with the
 * offset in the page. The hypervisor delivers external
 * interrupts and IPIs with `acceptInterrupt`, asks `pendingVector` before each VM entry, and
 * calls `acknowledge` when it injects the vector.
 *
 * x2APIC access rules followed (SDM "x2APIC Register Address Space" and "Reserved Bit
 * Checking"): RDMSR/WRMSR of an MSR in the range that is not an x2APIC register is #GP; WRMSR
 * of a read-only register is #GP; RDMSR of a write-only register (EOI, SELF IPI) is #GP; a
 * non-zero write to a reserved bit is #GP (reserved bits read as zero); a non-zero write to EOI
 * or ESR is #GP. x2APIC MSRs are only accessible while IA32_APIC_BASE has EN and EXTD set.
 *
 * xAPIC MMIO rules followed (SDM 11.4.1 and Table 11-1: register offset = (x2APIC MSR - 0x800)
 * << 4, each register 16-byte aligned): the x2APIC MSRs #GP in xAPIC mode; the MMIO page is not
 * decoded in x2APIC mode or while the APIC is globally disabled (reads all-ones, writes
 * ignored, as an access to nothing: SDM 11.12.2 "the memory-mapped interface is not available");
 * reserved bits of a written register are ignored (no #GP in xAPIC mode); an access to a
 * reserved register sets ESR "illegal register address" (bit 7); writes to read-only
 * registers are ignored; EOI and ESR take any written value; the ID register holds the ID in
 * bits 31:24, the LDR and DFR are plain xAPIC registers, and ICR bits 63:56 (at 0x310) are the
 * destination (0xFF = broadcast).
 *
 * Modelled more simply than hardware (each is a deliberate choice):
 * - Mode at creation: `mode` "x2apic" (the default, as if firmware had switched it) or "xapic"
 *   (the SDM's power-up state; what the hypervisor gives each vCPU). IA32_APIC_BASE follows the
 *   SDM's mode transitions; leaving a mode by clearing EN resets the register state.
 * - xAPIC MMIO sizes (SDM 11.4.1 asks for aligned 32-bit accesses; smaller ones are model
 *   specific): a 32-bit access at a register's offset is the register; 8- and 16-bit accesses
 *   read bytes of it and write by read-modify-write of it (as Xen's vlapic does); bytes 4-15 of
 *   each 16-byte slot read zero and ignore writes; an access not aligned to its size reads
 *   all-ones and a write of it is refused (the hypervisor crashes the domain, as Xen does). The
 *   APIC ID is read-only, the SVR focus-check and EOI-broadcast-suppression bits are not
 *   writable, and APR (0x90) and RRD (0xC0) read zero. `read`/`write` take the offset in the
 *   APIC page wherever IA32_APIC_BASE puts it (`xapicBase`); the hypervisor routes accesses at
 *   that base to this APIC (SDM 11.4.4: software may relocate the APIC registers).
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
 *   ESR "send illegal vector" and is not delivered (when this APIC is a destination, the SELF
 *   IPI register, the "self" and "all including self" shorthands or its own physical ID, it
 *   also sets "received illegal vector", as the receiving side; other APICs named as
 *   destinations are not sent the message, so their ESRs stay clear); an illegal vector arriving through
 *   `acceptInterrupt` (including from an LVT entry) sets ESR "received illegal vector" and is
 *   dropped. Either error raises the LVT error interrupt if it is unmasked.
 * - Trigger mode: `acceptInterrupt(vector, true)` (a level-triggered IO-APIC pin) sets the TMR bit,
 *   an edge-triggered arrival clears it (as Xen's vlapic_set_irq); the EOI of a vector whose TMR
 *   bit is set is passed to `onLevelEoi` (the IO-APIC's EOI: Xen's vioapic_update_EOI), not
 *   broadcast on a bus. No LVT CMCI (0x82F reads as reserved). Thermal, performance and
 *   LINT0/LINT1 LVT entries are plain registers: nothing drives them.
 * - While software-disabled (SVR bit 8 clear), fixed interrupts are not accepted, all LVT
 *   mask bits are set and cannot be cleared (SDM "Local APIC State After It Has Been
 *   Software Disabled"), and `pendingVector` returns -1.
 *
 * `readMsr` returns one reused result object (no allocation per access): read it before the
 * next call.
 */
import { allOnes, deviceError, type AccessSize, type BusDevice, type DeviceError } from "@vtlab/arch";

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
/** IA32_APIC_BASE bits 31:12: APIC base (low half). */
const APIC_BASE_ADDR_MASK = 0xfffff000;

/** xAPIC MMIO page size and register offsets (SDM Vol. 3A Table 11-1, "Local APIC Register Address Map"). */
export const XAPIC_MMIO_SIZE = 0x1000;
export const XAPIC_ID = 0x020; // Local APIC ID register (bits 31:24)
export const XAPIC_VERSION = 0x030; // Local APIC Version register
export const XAPIC_TPR = 0x080; // Task Priority Register
export const XAPIC_APR = 0x090; // Arbitration Priority Register (read-only)
export const XAPIC_PPR = 0x0a0; // Processor Priority Register (read-only)
export const XAPIC_EOI = 0x0b0; // EOI register (write-only)
export const XAPIC_RRD = 0x0c0; // Remote Read Register (read-only)
export const XAPIC_LDR = 0x0d0; // Logical Destination Register (bits 31:24)
export const XAPIC_DFR = 0x0e0; // Destination Format Register (bits 31:28; 27:0 read as ones)
export const XAPIC_SVR = 0x0f0; // Spurious Interrupt Vector Register
export const XAPIC_ISR0 = 0x100; // In-Service Register, 0x100-0x170
export const XAPIC_TMR0 = 0x180; // Trigger Mode Register, 0x180-0x1F0
export const XAPIC_IRR0 = 0x200; // Interrupt Request Register, 0x200-0x270
export const XAPIC_ESR = 0x280; // Error Status Register
export const XAPIC_ICR_LO = 0x300; // Interrupt Command Register bits 31:0 (a write sends the IPI)
export const XAPIC_ICR_HI = 0x310; // Interrupt Command Register bits 63:32 (destination in 63:56)
export const XAPIC_LVT_TIMER = 0x320; // LVT Timer register
export const XAPIC_LVT_ERROR = 0x370; // LVT Error register
export const XAPIC_INIT_COUNT = 0x380; // Initial Count register (timer)
export const XAPIC_CUR_COUNT = 0x390; // Current Count register (timer, read-only)
export const XAPIC_DIV_CONF = 0x3e0; // Divide Configuration register (timer)
/** xAPIC physical-destination broadcast (ICR bits 63:56 = 0xFF). */
export const XAPIC_BROADCAST = 0xff;
/** xAPIC LDR: logical APIC ID bits 31:24; DFR: model bits 31:28. */
const XAPIC_LDR_MASK = 0xff000000;
const XAPIC_DFR_RESERVED_ONES = 0x0fffffff;
/** DFR model (bits 31:28): 1111b flat, 0000b cluster (SDM 11.6.2.2). */
const XAPIC_DFR_MODEL_FLAT = 0xf;
/** xAPIC ICR high half: destination bits 63:56. */
const XAPIC_ICR_HI_MASK = 0xff000000;
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

/** Writable bits per register; anything else set in a write is #GP (x2APIC) or ignored (xAPIC). */
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
  /** The IPI router: called for every ICR write that passes the checks (an xAPIC broadcast 0xFF arrives as 0xFFFFFFFF). */
  readonly sendIpi?: (dest: number, vector: number, shorthand: number, deliveryMode: number, logical: boolean) => void;
  /** The mode at creation: "x2apic" (default; as if firmware had switched it) or "xapic" (the SDM's power-up state). */
  readonly mode?: "xapic" | "x2apic";
  /** The EOI of a level-triggered vector (its TMR bit set): the IO-APIC clears remote IRR (devices/ioapic.ts). */
  readonly onLevelEoi?: (vector: number) => void;
  /**
   * SVR bit 8 went from clear to set (software enable). Xen's vlapic_reg_write (APIC_SPIV) then
   * re-raises the vCPU's event-channel upcall vector if an upcall is pending: one raised while
   * the APIC was disabled was dropped, and evtchn_upcall_pending, already set, would raise no other.
   */
  readonly onSoftwareEnable?: () => void;
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

export class LocalApic implements BusDevice {
  readonly apicId: number;
  readonly stats: LocalApicStats = { timerFires: 0, eoi: 0, ipisSent: 0 };

  private readonly now: () => number;
  private readonly nsPerTick: number;
  private readonly sendIpiFn: LocalApicOptions["sendIpi"];
  private readonly onLevelEoi: LocalApicOptions["onLevelEoi"];
  private readonly onSoftwareEnable: LocalApicOptions["onSoftwareEnable"];
  private readonly bsp: boolean;

  private apicBaseLo = 0;
  private apicBaseHi = 0;
  private readonly irr = new Uint32Array(8);
  private readonly isr = new Uint32Array(8);
  /** Trigger Mode Register: set for vectors accepted as level-triggered. */
  private readonly tmr = new Uint32Array(8);
  private tpr = 0;
  private svr = 0;
  private esr = 0;
  /** Errors accumulated since the last ESR write (the write latches them into `esr`). */
  private esrPending = 0;
  private icrLo = 0;
  private icrHi = 0;
  /** xAPIC-only registers: LDR (bits 31:24) and DFR. */
  private xapicLdr = 0;
  private dfr = 0xffffffff;
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
    this.onLevelEoi = opts.onLevelEoi;
    this.onSoftwareEnable = opts.onSoftwareEnable;
    this.bsp = opts.bsp ?? this.apicId === 0;
    this.reset();
    const extd = (opts.mode ?? "x2apic") === "x2apic" ? APIC_BASE_EXTD : 0;
    this.apicBaseLo = (APIC_BASE_DEFAULT | APIC_BASE_EN | extd | (this.bsp ? APIC_BASE_BSP : 0)) >>> 0;
  }

  /** Power-up register state (SDM "Local APIC State After Power-Up or Reset"), mode bits untouched. */
  private reset(): void {
    this.irr.fill(0);
    this.isr.fill(0);
    this.tmr.fill(0);
    this.tpr = 0;
    this.svr = 0xff;
    this.esr = 0;
    this.esrPending = 0;
    this.icrLo = 0;
    this.icrHi = 0;
    this.xapicLdr = 0;
    this.dfr = 0xffffffff;
    this.lvt.fill(APIC_LVT_MASKED);
    this.initialCount = 0;
    this.divConf = 0;
    this.timerActive = false;
  }

  private get x2apicMode(): boolean {
    const m = APIC_BASE_EN | APIC_BASE_EXTD;
    return (this.apicBaseLo & m) === m;
  }

  /** "xapic" (EN, not EXTD), "x2apic" (EN and EXTD) or "disabled" (EN clear). */
  get mode(): "xapic" | "x2apic" | "disabled" {
    if ((this.apicBaseLo & APIC_BASE_EN) === 0) return "disabled";
    return (this.apicBaseLo & APIC_BASE_EXTD) !== 0 ? "x2apic" : "xapic";
  }

  /** Whether the MMIO page answers: xAPIC mode (at `xapicBase`). */
  private get xapicDecodes(): boolean {
    return this.mode === "xapic";
  }

  /** The guest-physical address of the xAPIC page: IA32_APIC_BASE bits 51:12 (SDM 11.4.4). */
  get xapicBase(): number {
    return this.apicBaseHi * 0x1_0000_0000 + ((this.apicBaseLo & APIC_BASE_ADDR_MASK) >>> 0);
  }
  /** SVR bit 8. */
  get softwareEnabled(): boolean {
    return (this.svr & APIC_SVR_ENABLE) !== 0;
  }

  /** Logical x2APIC ID: cluster (ID[19:4]) in bits 31:16, one-hot ID[3:0] in bits 15:0. */
  get ldr(): number {
    return (((this.apicId >>> 4) << 16) | (1 << (this.apicId & 0xf))) >>> 0;
  }

  /**
   * Does a logical destination (ICR destination mode 1) name this APIC? (SDM 11.6.2.2, 11.12.10.2)
   * x2APIC: the cluster (bits 31:16) equals this LDR's and the bitmaps (15:0) intersect. xAPIC:
   * the 8-bit destination against LDR[31:24], flat model (DFR[31:28] = 1111b: bitmaps intersect)
   * or cluster model (0000b: cluster in bits 7:4 equal, bitmaps in 3:0 intersect). All-ones is a
   * broadcast.
   */
  matchesLogical(dest: number): boolean {
    if (dest === X2APIC_BROADCAST) return true;
    if (this.mode === "x2apic") {
      const ldr = this.ldr;
      return dest >>> 16 === ldr >>> 16 && (dest & ldr & 0xffff) !== 0;
    }
    const ldr8 = this.xapicLdr >>> 24;
    const d8 = dest & 0xff;
    if (this.dfr >>> 28 === XAPIC_DFR_MODEL_FLAT) return (d8 & ldr8) !== 0;
    return d8 >>> 4 === ldr8 >>> 4 && (d8 & ldr8 & 0xf) !== 0;
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
    if (msr >= MSR_X2APIC_TMR0 && msr < MSR_X2APIC_TMR0 + 8) return this.ok(this.tmr[msr - MSR_X2APIC_TMR0] ?? 0);
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
        this.writeSvr(lo);
        return true;
      case MSR_X2APIC_ESR:
        if (lo !== 0) return false;
        this.latchEsr();
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
          // Sent to itself: the APIC both sends and receives the illegal vector (SDM 11.5.3).
          this.raiseError(APIC_ESR_SEND_ILLEGAL_VECTOR | APIC_ESR_RECV_ILLEGAL_VECTOR);
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
      // Read-only bits are not reserved: a write may carry them and they are ignored (Linux's
      // disconnect_bsp_APIC writes LINT0 with delivery status and remote IRR set; Xen's
      // guest_wrmsr_x2apic accepts them in LVT_MASK/LINT_MASK).
      const readOnly = APIC_LVT_DELIVERY_STATUS | (mask === LVT_LINT_MASK ? APIC_LVT_REMOTE_IRR : 0);
      if ((lo & ~(mask | readOnly)) !== 0) return false;
      const value = lo & mask;
      this.lvt[slot] = this.softwareEnabled ? value : value | APIC_LVT_MASKED;
      return true;
    }
    // Read-only (ID, version, PPR, LDR, ISR, TMR, IRR, current count) or reserved.
    return false;
  }

  private writeSvr(value: number): void {
    const was = this.softwareEnabled;
    this.svr = value;
    if (!this.softwareEnabled) {
      for (let i = 0; i < LVT_COUNT; i++) this.lvt[i] = (this.lvt[i] ?? 0) | APIC_LVT_MASKED;
    } else if (!was) this.onSoftwareEnable?.();
  }

  /** A write to ESR latches the errors seen since the last one. */
  private latchEsr(): void {
    this.esr = this.esrPending;
    this.esrPending = 0;
  }

  // ---- xAPIC MMIO (SDM 11.4.1, Table 11-1) ----

  /** An xAPIC MMIO read at `offset` in the APIC page. */
  read(offset: number, size: AccessSize): number {
    if (!this.xapicDecodes) return allOnes(size);
    if (!Number.isInteger(offset) || offset < 0 || offset + size > XAPIC_MMIO_SIZE || offset % size !== 0) return allOnes(size);
    const within = offset & 0xf;
    if (within >= 4) return 0; // bytes 4-15 of a 16-byte register slot are reserved
    const value = this.xapicRead(offset - within);
    if (size === 4) return value;
    return (value >>> (within * 8)) & (size === 2 ? 0xffff : 0xff);
  }

  /** An xAPIC MMIO write; refused (the domain is crashed) only for an access not aligned to its size. */
  write(offset: number, size: AccessSize, value: number): DeviceError | undefined {
    if (!this.xapicDecodes) return undefined;
    if (!Number.isInteger(offset) || offset < 0 || offset + size > XAPIC_MMIO_SIZE || offset % size !== 0) {
      return deviceError("local APIC", offset, size, value, `unaligned ${size}-byte xAPIC access at offset 0x${offset.toString(16)}`);
    }
    const within = offset & 0xf;
    if (within >= 4) return undefined;
    const reg = offset - within;
    let v = value >>> 0;
    if (size !== 4) {
      // A narrow write merges into the register (Xen's vlapic_mmio_write does the same).
      const shift = within * 8;
      const mask = ((size === 2 ? 0xffff : 0xff) << shift) >>> 0;
      v = ((this.xapicRead(reg, false) & ~mask) | ((v << shift) & mask)) >>> 0;
    }
    this.xapicWrite(reg, v);
    return undefined;
  }

  /** The 32-bit register at a 16-byte aligned offset (reserved: 0 and ESR bit 7 when `report`). */
  private xapicRead(reg: number, report = true): number {
    switch (reg) {
      case XAPIC_ID:
        return ((this.apicId & 0xff) << 24) >>> 0;
      case XAPIC_VERSION:
        return APIC_VERSION_VALUE;
      case XAPIC_TPR:
        return this.tpr;
      case XAPIC_APR:
      case XAPIC_RRD:
      case XAPIC_EOI:
        return 0;
      case XAPIC_PPR:
        return this.ppr;
      case XAPIC_LDR:
        return this.xapicLdr;
      case XAPIC_DFR:
        return this.dfr;
      case XAPIC_SVR:
        return this.svr;
      case XAPIC_ESR:
        return this.esr;
      case XAPIC_ICR_LO:
        return this.icrLo; // delivery status (bit 12) always idle
      case XAPIC_ICR_HI:
        return this.icrHi;
      case XAPIC_INIT_COUNT:
        return this.initialCount;
      case XAPIC_CUR_COUNT:
        return this.currentCount();
      case XAPIC_DIV_CONF:
        return this.divConf;
      default:
        break;
    }
    const i = (reg - XAPIC_ISR0) >>> 4;
    if (reg >= XAPIC_ISR0 && reg < XAPIC_TMR0) return this.isr[i] ?? 0;
    if (reg >= XAPIC_TMR0 && reg < XAPIC_IRR0) return this.tmr[(reg - XAPIC_TMR0) >>> 4] ?? 0;
    if (reg >= XAPIC_IRR0 && reg < XAPIC_IRR0 + 0x80) return this.irr[(reg - XAPIC_IRR0) >>> 4] ?? 0;
    if (reg >= XAPIC_LVT_TIMER && reg <= XAPIC_LVT_ERROR) return this.lvt[(reg - XAPIC_LVT_TIMER) >>> 4] ?? 0;
    if (report) this.raiseError(APIC_ESR_ILLEGAL_REGISTER);
    return 0;
  }

  private xapicWrite(reg: number, v: number): void {
    switch (reg) {
      case XAPIC_TPR:
        this.tpr = v & TPR_MASK;
        return;
      case XAPIC_EOI:
        this.eoi();
        return;
      case XAPIC_LDR:
        this.xapicLdr = (v & XAPIC_LDR_MASK) >>> 0;
        return;
      case XAPIC_DFR:
        this.dfr = (v | XAPIC_DFR_RESERVED_ONES) >>> 0;
        return;
      case XAPIC_SVR:
        this.writeSvr(v & SVR_MASK);
        return;
      case XAPIC_ESR:
        this.latchEsr();
        return;
      case XAPIC_ICR_LO: {
        const lo = v & ICR_LO_MASK;
        const mode = (lo >>> APIC_ICR_DELIVERY_MODE_SHIFT) & 7;
        if (mode === 0b011 || mode === 0b111) return; // reserved delivery modes: not sent
        this.icrLo = lo;
        const dest = this.icrHi >>> 24;
        this.sendIcr(lo, dest === XAPIC_BROADCAST ? X2APIC_BROADCAST : dest);
        return;
      }
      case XAPIC_ICR_HI:
        this.icrHi = (v & XAPIC_ICR_HI_MASK) >>> 0;
        return;
      case XAPIC_INIT_COUNT:
        this.initialCount = v >>> 0;
        this.loadTimer(this.now());
        return;
      case XAPIC_DIV_CONF:
        this.divConf = v & DIV_CONF_MASK;
        return;
      case XAPIC_ID:
      case XAPIC_VERSION:
      case XAPIC_APR:
      case XAPIC_PPR:
      case XAPIC_RRD:
      case XAPIC_CUR_COUNT:
        return; // read-only
      default:
        break;
    }
    if (reg >= XAPIC_ISR0 && reg < XAPIC_IRR0 + 0x80) return; // ISR, TMR, IRR: read-only
    if (reg >= XAPIC_LVT_TIMER && reg <= XAPIC_LVT_ERROR) {
      const slot = (reg - XAPIC_LVT_TIMER) >>> 4;
      const lo = v & (LVT_WRITE_MASKS[slot] ?? 0);
      this.lvt[slot] = this.softwareEnabled ? lo : lo | APIC_LVT_MASKED;
      return;
    }
    this.raiseError(APIC_ESR_ILLEGAL_REGISTER);
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
    this.sendIcr(lo, hi);
    return true;
  }

  /** Send what the ICR's low half says to `dest` (an x2APIC ID, or 0xFFFFFFFF for broadcast). */
  private sendIcr(lo: number, dest: number): void {
    const mode = (lo >>> APIC_ICR_DELIVERY_MODE_SHIFT) & 7;
    const vector = lo & APIC_ICR_VECTOR;
    const shorthand = (lo >>> APIC_ICR_SHORTHAND_SHIFT) & 3;
    if ((mode === ApicDeliveryMode.Fixed || mode === ApicDeliveryMode.LowestPriority) && vector < 16) {
      // SDM 11.5.3: the sender sets "send illegal vector"; a receiver sets "receive illegal
      // vector". An IPI that includes this APIC among its destinations sets both here. Other
      // destinations are not sent the message (see the file comment).
      const toSelf =
        shorthand === ApicShorthand.Self ||
        shorthand === ApicShorthand.AllIncludingSelf ||
        (shorthand === ApicShorthand.None && (lo & APIC_ICR_DEST_LOGICAL) === 0 && (dest === this.apicId || dest === X2APIC_BROADCAST));
      this.raiseError(APIC_ESR_SEND_ILLEGAL_VECTOR | (toSelf ? APIC_ESR_RECV_ILLEGAL_VECTOR : 0));
      return;
    }
    this.stats.ipisSent++;
    const send = this.sendIpiFn;
    if (send !== undefined) {
      send(dest, vector, shorthand, mode, (lo & APIC_ICR_DEST_LOGICAL) !== 0);
    } else if (
      mode === ApicDeliveryMode.Fixed &&
      (shorthand === ApicShorthand.Self ||
        shorthand === ApicShorthand.AllIncludingSelf ||
        (shorthand === ApicShorthand.None && (dest === this.apicId || dest === X2APIC_BROADCAST)))
    ) {
      this.acceptInterrupt(vector);
    }
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
    if (v < 0) return;
    const bit = 1 << (v & 31);
    this.isr[v >>> 5] = (this.isr[v >>> 5] ?? 0) & ~bit;
    if (((this.tmr[v >>> 5] ?? 0) & bit) !== 0) this.onLevelEoi?.(v);
  }

  /**
   * A fixed interrupt arrives (external interrupt, IPI or LVT): sets its IRR bit, and its TMR bit
   * for a level-triggered interrupt (an IO-APIC pin in level mode), clearing it for an edge.
   */
  acceptInterrupt(vector: number, level = false): void {
    if (!Number.isInteger(vector) || vector < 0 || vector > 255) return;
    if (!this.softwareEnabled) return;
    if (vector < 16) {
      this.raiseError(APIC_ESR_RECV_ILLEGAL_VECTOR);
      return;
    }
    const i = vector >>> 5;
    const bit = 1 << (vector & 31);
    this.tmr[i] = level ? (this.tmr[i] ?? 0) | bit : (this.tmr[i] ?? 0) & ~bit;
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

  /**
   * Whether the timer's next expiry could give the CPU an interrupt to take: the timer is armed,
   * the APIC enabled, the LVT timer entry unmasked, and its vector's priority class above the
   * PPR's (SDM Vol. 3A 10.8.3.1; pendingVector's rule). A halted vCPU whose timer cannot (masked,
   * or TPR 0xF0) stays halted however often it fires, so the idle host does not wait for it.
   */
  timerCanWake(): boolean {
    if (!this.timerActive || !this.softwareEnabled || (this.apicBaseLo & APIC_BASE_EN) === 0) return false;
    const lvt = this.lvt[LVT_TIMER] ?? APIC_LVT_MASKED;
    if ((lvt & APIC_LVT_MASKED) !== 0) return false;
    return (lvt & APIC_LVT_VECTOR & 0xf0) > (this.ppr & 0xf0);
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
