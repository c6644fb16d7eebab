import { describe, expect, it } from "vitest";
import { MachineMemory, PortIoBus } from "@vtlab/arch";
import { CR0_PE, CR0_PG, CR4_PAE, Cpu, EFER_LMA, EFER_LME, Seg } from "@vtlab/cpu-vmx";
import {
  COM1_PORT,
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
