/**
 * A 16550A UART (National Semiconductor PC16550D data sheet; the PC's COM1 at 0x3F8, IRQ 4):
 * the device model's console. A small device with injected collaborators, in the shape of
 * vm-superio's serial device: bytes the guest transmits go to `sink`, bytes from the host are
 * queued with `enqueueInput`, and the interrupt line is a callback.
 *
 * Modelled more simply than hardware: transmission is instantaneous (THR is always empty again by
 * the next read of LSR), the FIFO is a host-side queue without the 16-byte limit on receive, and
 * there is no modem: MSR reports CTS/DSR/DCD set and loopback (MCR bit 4) echoes transmitted
 * bytes into the receive queue.
 */
import type { AccessSize, BusDevice, DeviceError } from "@vtlab/arch";

/** Register offsets from the base port (DLAB = LCR bit 7 selects DLL/DLM at 0 and 1). */
export const UART_RBR_THR = 0; // receiver buffer (read) / transmitter holding (write); DLL with DLAB
export const UART_IER = 1; // interrupt enable; DLM with DLAB
export const UART_IIR_FCR = 2; // interrupt identification (read) / FIFO control (write)
export const UART_LCR = 3; // line control
export const UART_MCR = 4; // modem control
export const UART_LSR = 5; // line status
export const UART_MSR = 6; // modem status
export const UART_SCR = 7; // scratch

/** IER bits. */
export const IER_RDA = 1 << 0; // received data available
export const IER_THRE = 1 << 1; // transmitter holding register empty
export const IER_RLS = 1 << 2; // receiver line status
export const IER_MS = 1 << 3; // modem status

/** IIR values (bit 0 = 1: no interrupt pending); bits 7:6 = 11 when FIFOs are enabled. */
export const IIR_NO_INTERRUPT = 0x01;
export const IIR_THRE = 0x02;
export const IIR_RDA = 0x04;
export const IIR_FIFO_ENABLED = 0xc0;

/** LSR bits. */
export const LSR_DR = 1 << 0; // data ready
export const LSR_THRE = 1 << 5; // transmitter holding register empty
export const LSR_TEMT = 1 << 6; // transmitter empty

/** LCR bit 7: divisor latch access. */
export const LCR_DLAB = 1 << 7;
/** MCR bit 3: OUT2 (gates the interrupt line on PCs); bit 4: loopback. */
export const MCR_OUT2 = 1 << 3;
export const MCR_LOOP = 1 << 4;
/** MSR bits reported: CTS, DSR, DCD. */
export const MSR_CTS_DSR_DCD = 0x10 | 0x20 | 0x80;

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
  readonly thrEmptyPending: boolean;
  readonly input: readonly number[];
}

export class Uart16550 implements BusDevice {
  private ier = 0;
  private lcr = 0;
  private mcr = 0;
  private scr = 0;
  private divisor = 12; // 9600 baud at 1.8432 MHz
  private fifoEnabled = false;
  /** A THRE interrupt is pending until IIR is read or THR written (PC16550D "Interrupt Identification"). */
  private thrEmptyPending = false;
  private readonly input: number[] = [];
  private level = false;
  /** Bytes transmitted (for statistics). */
  transmitted = 0;

  constructor(private readonly options: Uart16550Options) {}

  /** Queue bytes from the host side (a keyboard, a pipe). */
  enqueueInput(bytes: Iterable<number>): void {
    for (const b of bytes) this.input.push(b & 0xff);
    this.updateIrq();
  }

  read(offset: number, size: AccessSize): number {
    void size; // a wider access reads the register at the offset (the ISA bus would split it)
    const dlab = (this.lcr & LCR_DLAB) !== 0;
    switch (offset) {
      case UART_RBR_THR: {
        if (dlab) return this.divisor & 0xff;
        const b = this.input.shift() ?? 0;
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
      case UART_LSR:
        return LSR_THRE | LSR_TEMT | (this.input.length > 0 ? LSR_DR : 0);
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
          if ((this.mcr & MCR_LOOP) !== 0) this.input.push(v);
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
      case UART_IIR_FCR:
        this.fifoEnabled = (v & 1) !== 0;
        if ((v & 2) !== 0) this.input.length = 0; // clear the receive FIFO
        break;
      case UART_LCR:
        this.lcr = v;
        break;
      case UART_MCR:
        this.mcr = v & 0x1f;
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

  /** The highest-priority pending interrupt (received data above THR empty). */
  private interruptId(): number {
    if ((this.ier & IER_RDA) !== 0 && this.input.length > 0) return IIR_RDA;
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

  state(): Uart16550State {
    return { ier: this.ier, lcr: this.lcr, mcr: this.mcr, scr: this.scr, divisor: this.divisor, fifoEnabled: this.fifoEnabled, thrEmptyPending: this.thrEmptyPending, input: [...this.input] };
  }

  static fromState(s: Uart16550State, options: Uart16550Options): Uart16550 {
    const u = new Uart16550(options);
    u.ier = s.ier;
    u.lcr = s.lcr;
    u.mcr = s.mcr;
    u.scr = s.scr;
    u.divisor = s.divisor;
    u.fifoEnabled = s.fifoEnabled;
    u.thrEmptyPending = s.thrEmptyPending;
    u.input.push(...s.input);
    return u;
  }
}
