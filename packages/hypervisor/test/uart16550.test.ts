import { describe, expect, it } from "vitest";
import { MachineMemory, PortIoBus } from "@vtlab/arch";
import { CR0_PE, CR0_PG, CR4_PAE, Cpu, EFER_LMA, EFER_LME, Seg } from "@vtlab/cpu-vmx";
import {
  COM1_PORT,
  HOST_INPUT_MAX,
  IER_RLS,
  IIR_CTI,
  IIR_RLS,
  LSR_OE,
  LSR_TEMT,
  UART_FIFO_SIZE,
  IER_RDA,
  IER_THRE,
  IIR_NO_INTERRUPT,
  IIR_RDA,
  IIR_THRE,
  LCR_DLAB,
  LSR_DR,
  LSR_THRE,
  MCR_LOOP,
  MCR_OUT2,
  Uart16550,
  UART_IER,
  UART_IIR_FCR,
  UART_LCR,
  UART_LSR,
  UART_MCR,
  UART_MSR,
  UART_RBR_THR,
  UART_SCR,
} from "@vtlab/hypervisor";

function com1() {
  const out: number[] = [];
  const irqs: boolean[] = [];
  const uart = new Uart16550({ sink: (b) => out.push(b), irq: (level) => irqs.push(level) });
  const ports = new PortIoBus();
  expect(ports.register(COM1_PORT, 8, uart, "COM1 (16550A)")).toBeUndefined();
  const rd = (reg: number) => ports.read(COM1_PORT + reg, 1);
  const wr = (reg: number, v: number) => ports.write(COM1_PORT + reg, 1, v);
  return { uart, ports, out, irqs, rd, wr };
}

describe("16550A UART through the port bus", () => {
  it("passes the probe a driver does: scratch register, loopback echo, divisor latch", () => {
    const { rd, wr, out } = com1();
    wr(UART_SCR, 0xa5);
    expect(rd(UART_SCR)).toBe(0xa5);
    wr(UART_MCR, MCR_LOOP | 0x0a); // loopback, RTS and OUT2... reflected in MSR's upper bits
    expect(rd(UART_MSR) & 0xf0).toBe(0xa0);
    wr(UART_RBR_THR, 0x55); // echoed into the receiver, not transmitted
    expect(rd(UART_LSR) & LSR_DR).toBe(LSR_DR);
    expect(rd(UART_RBR_THR)).toBe(0x55);
    expect(out).toEqual([]);
    wr(UART_MCR, 0);
    wr(UART_LCR, LCR_DLAB | 0x03);
    wr(UART_RBR_THR, 0x01); // DLL: 115200 baud
    wr(UART_IER, 0x00); // DLM
    expect([rd(UART_RBR_THR), rd(UART_IER)]).toEqual([0x01, 0x00]);
    wr(UART_LCR, 0x03);
    wr(UART_RBR_THR, 0x41);
    expect(out).toEqual([0x41]);
    expect(rd(UART_LSR) & LSR_THRE).toBe(LSR_THRE);
  });

  it("raises THRE and received-data interrupts, gated by OUT2, cleared as the data sheet says", () => {
    const { uart, rd, wr, irqs } = com1();
    wr(UART_IER, IER_THRE);
    expect(irqs).toEqual([]); // OUT2 is off: the line stays low
    wr(UART_MCR, MCR_OUT2);
    expect(irqs).toEqual([true]);
    expect(rd(UART_IIR_FCR)).toBe(IIR_THRE); // reading IIR clears the THRE source
    expect(irqs).toEqual([true, false]);
    expect(rd(UART_IIR_FCR)).toBe(IIR_NO_INTERRUPT);
    wr(UART_IER, IER_RDA);
    uart.enqueueInput([0x68, 0x69]);
    expect(irqs.at(-1)).toBe(true);
    expect(rd(UART_IIR_FCR)).toBe(IIR_RDA);
    expect([rd(UART_RBR_THR), rd(UART_RBR_THR)]).toEqual([0x68, 0x69]);
    expect(irqs.at(-1)).toBe(false);
    wr(UART_IIR_FCR, 0x07); // enable and clear FIFOs
    expect(rd(UART_IIR_FCR) & 0xc0).toBe(0xc0);
  });

  it("snapshots and restores its state", () => {
    const { uart, wr } = com1();
    wr(UART_LCR, 0x03);
    wr(UART_SCR, 0x42);
    uart.enqueueInput([1, 2, 3]);
    const copy = Uart16550.fromState(uart.state(), { sink: () => undefined });
    expect(copy.state()).toEqual(uart.state());
    // A snapshot with more input than the FIFO and the host queue hold is cut to their bounds.
    const big = Uart16550.fromState({ ...uart.state(), fifoEnabled: true, input: new Array<number>(100_000).fill(7), received: 100_000 }, { sink: () => undefined });
    expect(big.state().received).toBe(UART_FIFO_SIZE);
    expect(big.state().input.length).toBe(UART_FIFO_SIZE + HOST_INPUT_MAX);
  });

  it("loopback fills the 16-byte receive FIFO; the next byte is an overrun (LSR.OE) and is lost; reading LSR clears OE", () => {
    const { uart, rd, wr, out, irqs } = com1();
    wr(UART_IIR_FCR, 0x07); // FIFOs on and cleared (trigger level 1)
    wr(UART_IER, IER_RLS);
    wr(UART_MCR, MCR_LOOP | MCR_OUT2);
    for (let b = 0; b < 100_000; b++) wr(UART_RBR_THR, b & 0xff);
    expect(out).toEqual([]); // loopback: nothing reaches the line
    expect(uart.state().input).toEqual(Array.from({ length: UART_FIFO_SIZE }, (_, k) => k)); // the first 16 bytes, nothing more
    expect(uart.stats()).toEqual({ transmitted: 100_000, overruns: 100_000 - UART_FIFO_SIZE, inputDropped: 0 });
    expect(rd(UART_IIR_FCR) & 0x0f).toBe(IIR_RLS); // receiver line status: the highest priority
    expect(irqs.at(-1)).toBe(true);
    expect(rd(UART_LSR)).toBe(LSR_DR | LSR_OE | LSR_THRE | LSR_TEMT);
    expect(rd(UART_LSR)).toBe(LSR_DR | LSR_THRE | LSR_TEMT); // OE reset by the read
    expect(irqs.at(-1)).toBe(false);
    const got: number[] = [];
    while ((rd(UART_LSR) & LSR_DR) !== 0) got.push(rd(UART_RBR_THR));
    expect(got).toEqual(Array.from({ length: 16 }, (_, k) => k));
    wr(UART_RBR_THR, 0x5a); // room again: received
    expect(rd(UART_RBR_THR)).toBe(0x5a);
  });

  it("in 16450 mode (FIFOs off) the RBR holds one byte: the next overwrites it and sets OE", () => {
    const { rd, wr } = com1();
    wr(UART_MCR, MCR_LOOP);
    for (const b of [0x61, 0x62, 0x63]) wr(UART_RBR_THR, b);
    expect(rd(UART_LSR) & (LSR_DR | LSR_OE)).toBe(LSR_DR | LSR_OE);
    expect(rd(UART_RBR_THR)).toBe(0x63);
    expect(rd(UART_LSR) & (LSR_DR | LSR_OE)).toBe(0);
  });

  it("reports received data below the FIFO trigger level as a character timeout, at it as RDA", () => {
    const { rd, wr } = com1();
    wr(UART_IIR_FCR, 0x81); // FIFOs on, trigger level 8
    wr(UART_IER, IER_RDA);
    wr(UART_MCR, MCR_LOOP);
    for (let k = 0; k < 7; k++) wr(UART_RBR_THR, k);
    expect(rd(UART_IIR_FCR)).toBe(IIR_CTI | 0xc0);
    wr(UART_RBR_THR, 7);
    expect(rd(UART_IIR_FCR)).toBe(IIR_RDA | 0xc0);
  });

  it("host input waits for room in the FIFO (no overrun), up to HOST_INPUT_MAX bytes; the rest is dropped and counted", () => {
    const { uart, rd, wr } = com1();
    wr(UART_IIR_FCR, 0x07);
    uart.enqueueInput(Array.from({ length: HOST_INPUT_MAX + 100 }, (_, k) => k & 0xff));
    expect(uart.stats().inputDropped).toBe(100);
    expect(uart.state().received).toBe(UART_FIFO_SIZE);
    expect(uart.state().input.length).toBe(HOST_INPUT_MAX);
    const got: number[] = [];
    while ((rd(UART_LSR) & LSR_DR) !== 0) got.push(rd(UART_RBR_THR));
    expect(got).toEqual(Array.from({ length: HOST_INPUT_MAX }, (_, k) => k & 0xff));
    expect(uart.stats().overruns).toBe(0);
    // In loopback the serial input is disconnected: host input waits until loopback ends.
    wr(UART_MCR, MCR_LOOP);
    uart.enqueueInput([0x41]);
    expect(rd(UART_LSR) & LSR_DR).toBe(0);
    wr(UART_MCR, 0);
    expect(rd(UART_RBR_THR)).toBe(0x41);
  });

  it("a guest polls LSR and writes THR with real machine code", () => {
    const memory = new MachineMemory(16 * 1024 * 1024);
    const { ports, out } = com1();
    memory.write64(0x2000, 0x3003, 0);
    memory.write64(0x3000, 0x4003, 0);
    for (let k = 0; k < 8; k++) memory.write64(0x4000 + 8 * k, k * 0x20_0000 + 0x83, 0);
    // lea rsi,[rip+msg]; next: mov al,[rsi]; test al,al; jz done; mov dx,0x3fd; wait: in al,dx; test al,0x20; jz wait;
    // mov al,[rsi]; mov dx,0x3f8; out dx,al; inc rsi; jmp next; done: hlt; msg: "hi vtlab"
    const code = "488d351c0000008a0684c0741566bafd03eca82074fb8a0666baf803ee48ffc6ebe5f468692076746c616200";
    memory.writeBytes(0x10_0000, Uint8Array.from(code.match(/../g)!.map((h) => parseInt(h, 16))));
    const cpu = new Cpu({ memory, ports });
    Object.assign(cpu, { cr0: CR0_PE | CR0_PG | 0x10, cr4: CR4_PAE, cr3: 0x2000, efer: EFER_LME | EFER_LMA, rip: 0x10_0000 });
    cpu.seg[Seg.CS]!.attr = 0xa09b;
    cpu.updateMode();
    expect(cpu.run(10_000).kind).toBe("hlt");
    expect(String.fromCharCode(...out)).toBe("hi vtlab");
  });
});
