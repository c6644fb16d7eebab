/**
 * A 16550A UART (National Semiconductor PC16550D data sheet; the PC's COM1 at 0x3F8, IRQ 4):
 * the device model's console. A small device with injected collaborators, in the shape of
 * vm-superio's serial device: bytes the guest transmits go to `sink`, bytes from the host are
 * queued with `enqueueInput`, and the interrupt line is a callback.
 *
 * The receiver is the chip's: a 16-byte receive FIFO with FIFOs enabled (FCR bit 0), the one-byte
 * RBR of the 16450 mode without; a byte that arrives with it full is an overrun (LSR.OE, "Overrun
 * Error"): in FIFO mode the byte is lost (it stays in the shift register, which the next byte
 * overwrites), in 16450 mode it overwrites the unread RBR; OE is cleared by reading LSR, and raises
 * the receiver line status interrupt when IER.ELSI is set. In loopback mode (MCR bit 4) the
 * transmitter's output is the receiver's input: each byte written to THR arrives in the receive
 * FIFO (and overruns it when the guest does not read RBR), none reaches the sink.
 *
 * Modelled more simply than hardware: transmission is instantaneous (THR and the transmitter are
 * empty again at once, so the 16-byte transmit FIFO is never occupied and is not modelled); no
 * time passes between received characters, so in FIFO mode the character timeout (IIR 0x0C)
 * is reported at once for data below the trigger level; host input (`enqueueInput`, a keyboard or
 * a pipe) waits in a host-side queue of at most HOST_INPUT_MAX bytes and moves into the FIFO as
 * the guest makes room, as a flow-controlled sender would (beyond that bound, bytes are dropped
 * and counted in `inputDropped`); there is no modem: MSR reports CTS/DSR/DCD set, and in loopback
 * the modem control outputs (MCR bits 3:0) as MSR bits 7:4.
 */
import type { AccessSize, BusDevice, DeviceError } from "@vtlab/arch";

/** Register offsets from the base port (DLAB = LCR bit 7 selects DLL/DLM at 0 and 1). */
export const UART_RBR_THR = 0; // RBR receiver buffer (read) / THR transmitter holding (write); DLL with DLAB
export const UART_IER = 1; // IER interrupt enable; DLM with DLAB
export const UART_IIR_FCR = 2; // IIR interrupt identification (read) / FCR FIFO control (write)
export const UART_LCR = 3; // LCR line control
export const UART_MCR = 4; // MCR modem control
export const UART_LSR = 5; // LSR line status
export const UART_MSR = 6; // MSR modem status
export const UART_SCR = 7; // SCR scratch

/** IER bits. */
export const IER_RDA = 1 << 0; // ERBFI: received data available
export const IER_THRE = 1 << 1; // ETBEI: transmitter holding register empty
export const IER_RLS = 1 << 2; // ELSI: receiver line status
export const IER_MS = 1 << 3; // EDSSI: modem status

/** IIR values (bit 0 = 1: no interrupt pending); bits 7:6 = 11 when FIFOs are enabled. */
export const IIR_NO_INTERRUPT = 0x01;
export const IIR_THRE = 0x02;
export const IIR_RDA = 0x04;
/** Receiver line status (overrun, parity, framing error or break): the highest priority. */
export const IIR_RLS = 0x06;
/** Character timeout indication (FIFO mode: data below the trigger level, not read for 4 character times). */
export const IIR_CTI = 0x0c;
export const IIR_FIFO_ENABLED = 0xc0;

/** FCR bits. */
export const FCR_FIFO_ENABLE = 1 << 0; // FCR0: enable both FIFOs (clearing it clears them)
export const FCR_CLEAR_RCVR = 1 << 1; // FCR1: clear the receive FIFO
export const FCR_CLEAR_XMIT = 1 << 2; // FCR2: clear the transmit FIFO
/** FCR bits 7:6: receive FIFO trigger level, 1, 4, 8 or 14 bytes. */
export const FCR_TRIGGER_SHIFT = 6;
const RCVR_TRIGGER_LEVELS = [1, 4, 8, 14] as const;

/** LSR bits. */
export const LSR_DR = 1 << 0; // data ready
export const LSR_OE = 1 << 1; // overrun error
export const LSR_THRE = 1 << 5; // transmitter holding register empty
export const LSR_TEMT = 1 << 6; // transmitter empty

/** LCR bit 7: divisor latch access. */
export const LCR_DLAB = 1 << 7;
/** MCR bit 3: OUT2 (gates the interrupt line on PCs); bit 4: loopback. */
export const MCR_OUT2 = 1 << 3;
export const MCR_LOOP = 1 << 4;
/** MSR bits reported: CTS, DSR, DCD. */
export const MSR_CTS_DSR_DCD = 0x10 | 0x20 | 0x80;

/** The receive FIFO's depth (PC16550D: 16 bytes); in 16450 mode (FIFOs off) the RBR holds one. */
export const UART_FIFO_SIZE = 16;
/**
 * Host input waiting for room in the receive FIFO (a host-side bound, not the chip's): 4096
 * bytes, the size of a Linux tty's line buffer (N_TTY_BUF_SIZE). Bytes beyond it are dropped.
 */
export const HOST_INPUT_MAX = 4096;

export const COM1_PORT = 0x3f8;
export const COM1_IRQ = 4;

export interface Uart16550Options {
  /** Where transmitted bytes go (the console). */
  readonly sink: (byte: number) => void;
  /** The interrupt line: called with the new level when it changes. */
  readonly irq?: (level: boolean) => void;
}

export interface Uart16550State {
  readonly ier: number;
  readonly lcr: number;
  readonly mcr: number;
  readonly scr: number;
  readonly divisor: number;
  readonly fifoEnabled: boolean;
  /** FCR bits 7:6 (the receive trigger level). */
  readonly trigger?: number;
  readonly thrEmptyPending: boolean;
  /** Bytes received and not read yet, oldest first: the receive FIFO's, then the host queue's. */
  readonly input: readonly number[];
  /** How many of `input` are in the receive FIFO (the rest wait in the host queue); default all that fit. */
  readonly received?: number;
  /** LSR.OE is set (an overrun not yet reported by a read of LSR). */
  readonly overrun?: boolean;
}

/** Counters: what was transmitted, and what was lost. */
export interface Uart16550Stats {
  readonly transmitted: number;
  /** Bytes lost to receiver overruns (LSR.OE), loopback bytes included. */
  readonly overruns: number;
  /** Host input bytes dropped because the host queue was full (HOST_INPUT_MAX). */
  readonly inputDropped: number;
}

export class Uart16550 implements BusDevice {
  private ier = 0;
  private lcr = 0;
  private mcr = 0;
  private scr = 0;
  private divisor = 12; // 9600 baud at 1.8432 MHz
  private fifoEnabled = false;
  private trigger = 0; // FCR bits 7:6
  /** A THRE interrupt is pending until IIR is read or THR written (PC16550D "Interrupt Identification"). */
  private thrEmptyPending = false;
  /** The receive FIFO: a ring of UART_FIFO_SIZE bytes (one is used in 16450 mode). */
  private readonly rx = new Uint8Array(UART_FIFO_SIZE);
  private rxHead = 0;
  private rxCount = 0;
  /** LSR.OE: set by an overrun, cleared by reading LSR. */
  private overrun = false;
  /** Host input waiting for room in the FIFO (at most HOST_INPUT_MAX bytes): a ring. */
  private readonly host = new Uint8Array(HOST_INPUT_MAX);
  private hostHead = 0;
  private hostCount = 0;
  private level = false;
  /** Bytes transmitted (for statistics). */
  transmitted = 0;
  /** Bytes lost to overruns (for statistics). */
  overruns = 0;
  /** Host input bytes dropped with the host queue full (for statistics). */
  inputDropped = 0;

  constructor(private readonly options: Uart16550Options) {}

  /** The receiver's capacity: the 16-byte FIFO, or the 16450's one-byte RBR with FIFOs off. */
  private get rxCapacity(): number {
    return this.fifoEnabled ? UART_FIFO_SIZE : 1;
  }

  /** Queue bytes from the host side (a keyboard, a pipe): they enter the FIFO as it has room. */
  enqueueInput(bytes: Iterable<number>): void {
    for (const b of bytes) {
      if (this.hostCount >= HOST_INPUT_MAX) {
        this.inputDropped++;
        continue;
      }
      this.host[(this.hostHead + this.hostCount) % HOST_INPUT_MAX] = b & 0xff;
      this.hostCount++;
    }
    this.refill();
    this.updateIrq();
  }

  /** Move host input into the receive FIFO while it has room (the flow-controlled sender). */
  private refill(): void {
    // In loopback the serial input is disconnected from the receiver (PC16550D "MCR bit 4"): host input waits.
    if ((this.mcr & MCR_LOOP) !== 0) return;
    while (this.hostCount > 0 && this.rxCount < this.rxCapacity) {
      this.rx[(this.rxHead + this.rxCount) % UART_FIFO_SIZE] = this.host[this.hostHead]!;
      this.rxCount++;
      this.hostHead = (this.hostHead + 1) % HOST_INPUT_MAX;
      this.hostCount--;
    }
  }

  /** A character arrives at the receiver (from the loopback path): into the FIFO, or an overrun. */
  private receive(b: number): void {
    if (this.rxCount < this.rxCapacity) {
      this.rx[(this.rxHead + this.rxCount) % UART_FIFO_SIZE] = b;
      this.rxCount++;
      return;
    }
    this.overrun = true;
    this.overruns++;
    // 16450 mode: the new character overwrites the unread RBR; FIFO mode: it is lost.
    if (!this.fifoEnabled) this.rx[this.rxHead] = b;
  }

  private clearRx(): void {
    this.rxHead = 0;
    this.rxCount = 0;
  }

  read(offset: number, size: AccessSize): number {
    void size; // a wider access reads the register at the offset (the ISA bus would split it)
    const dlab = (this.lcr & LCR_DLAB) !== 0;
    switch (offset) {
      case UART_RBR_THR: {
        if (dlab) return this.divisor & 0xff;
        let b = 0;
        if (this.rxCount > 0) {
          b = this.rx[this.rxHead]!;
          this.rxHead = (this.rxHead + 1) % UART_FIFO_SIZE;
          this.rxCount--;
          this.refill();
        }
        this.updateIrq();
        return b;
      }
      case UART_IER:
        return dlab ? (this.divisor >>> 8) & 0xff : this.ier;
      case UART_IIR_FCR: {
        const iir = this.interruptId();
        if (iir === IIR_THRE) {
          this.thrEmptyPending = false; // reading IIR with THRE as the source clears it
          this.updateIrq();
        }
        return iir | (this.fifoEnabled ? IIR_FIFO_ENABLED : 0);
      }
      case UART_LCR:
        return this.lcr;
      case UART_MCR:
        return this.mcr;
      case UART_LSR: {
        const lsr = LSR_THRE | LSR_TEMT | (this.rxCount > 0 ? LSR_DR : 0) | (this.overrun ? LSR_OE : 0);
        if (this.overrun) {
          this.overrun = false; // OE is reset when the CPU reads LSR
          this.updateIrq();
        }
        return lsr;
      }
      case UART_MSR:
        return (this.mcr & MCR_LOOP) !== 0 ? ((this.mcr & 0xf) << 4) : MSR_CTS_DSR_DCD;
      case UART_SCR:
        return this.scr;
      default:
        return 0xff;
    }
  }

  write(offset: number, size: AccessSize, value: number): DeviceError | undefined {
    void size;
    const v = value & 0xff;
    const dlab = (this.lcr & LCR_DLAB) !== 0;
    switch (offset) {
      case UART_RBR_THR:
        if (dlab) {
          this.divisor = (this.divisor & 0xff00) | v;
        } else {
          this.transmitted++;
          if ((this.mcr & MCR_LOOP) !== 0) this.receive(v);
          else this.options.sink(v);
          this.thrEmptyPending = true; // transmitted at once: THR empty again
        }
        break;
      case UART_IER:
        if (dlab) this.divisor = (this.divisor & 0x00ff) | (v << 8);
        else {
          const before = this.ier;
          this.ier = v & 0x0f;
          // Enabling THRE interrupts with THR empty raises one at once.
          if ((this.ier & IER_THRE) !== 0 && (before & IER_THRE) === 0) this.thrEmptyPending = true;
        }
        break;
      case UART_IIR_FCR: {
        const enable = (v & FCR_FIFO_ENABLE) !== 0;
        // Changing FCR0 clears both FIFOs; FCR1 clears the receive FIFO (the transmit FIFO is always empty).
        if (enable !== this.fifoEnabled || (v & FCR_CLEAR_RCVR) !== 0) this.clearRx();
        this.fifoEnabled = enable;
        this.trigger = (v >>> FCR_TRIGGER_SHIFT) & 3;
        this.refill();
        break;
      }
      case UART_LCR:
        this.lcr = v;
        break;
      case UART_MCR:
        this.mcr = v & 0x1f;
        this.refill(); // leaving loopback reconnects the serial input
        break;
      case UART_SCR:
        this.scr = v;
        break;
      default:
        break; // LSR and MSR are read-only: writes are ignored, as on the chip
    }
    this.updateIrq();
    return undefined;
  }

  /** The highest-priority pending interrupt: line status, then received data, then THR empty. */
  private interruptId(): number {
    if ((this.ier & IER_RLS) !== 0 && this.overrun) return IIR_RLS;
    if ((this.ier & IER_RDA) !== 0 && this.rxCount > 0) {
      if (!this.fifoEnabled || this.rxCount >= RCVR_TRIGGER_LEVELS[this.trigger]!) return IIR_RDA;
      return IIR_CTI; // below the trigger level: the character timeout (no time passes here, see above)
    }
    if ((this.ier & IER_THRE) !== 0 && this.thrEmptyPending) return IIR_THRE;
    return IIR_NO_INTERRUPT;
  }

  /** The interrupt line follows IIR and OUT2, as the PC wires it. */
  private updateIrq(): void {
    const level = this.interruptId() !== IIR_NO_INTERRUPT && (this.mcr & MCR_OUT2) !== 0;
    if (level !== this.level) {
      this.level = level;
      this.options.irq?.(level);
    }
  }

  stats(): Uart16550Stats {
    return { transmitted: this.transmitted, overruns: this.overruns, inputDropped: this.inputDropped };
  }

  state(): Uart16550State {
    const input: number[] = [];
    for (let k = 0; k < this.rxCount; k++) input.push(this.rx[(this.rxHead + k) % UART_FIFO_SIZE]!);
    for (let k = 0; k < this.hostCount; k++) input.push(this.host[(this.hostHead + k) % HOST_INPUT_MAX]!);
    return {
      ier: this.ier,
      lcr: this.lcr,
      mcr: this.mcr,
      scr: this.scr,
      divisor: this.divisor,
      fifoEnabled: this.fifoEnabled,
      trigger: this.trigger,
      thrEmptyPending: this.thrEmptyPending,
      input,
      received: this.rxCount,
      overrun: this.overrun,
    };
  }

  /** Restore a snapshot (a hostile one included: values are masked, queues cut to their bounds). */
  static fromState(s: Uart16550State, options: Uart16550Options): Uart16550 {
    const u = new Uart16550(options);
    u.ier = s.ier & 0x0f;
    u.lcr = s.lcr & 0xff;
    u.mcr = s.mcr & 0x1f;
    u.scr = s.scr & 0xff;
    u.divisor = s.divisor & 0xffff;
    u.fifoEnabled = s.fifoEnabled;
    u.trigger = (s.trigger ?? 0) & 3;
    u.thrEmptyPending = s.thrEmptyPending;
    u.overrun = s.overrun === true;
    const received = Math.max(0, Math.min(s.received ?? s.input.length, s.input.length, u.rxCapacity));
    for (let k = 0; k < received; k++) u.rx[k] = s.input[k]! & 0xff;
    u.rxCount = received;
    const rest = s.input.slice(received, received + HOST_INPUT_MAX);
    for (let k = 0; k < rest.length; k++) u.host[k] = rest[k]! & 0xff;
    u.hostCount = rest.length;
    return u;
  }
}
