/**
 * The debug ports of the machines vtlab boots: Bochs/QEMU's debug console at 0xE9 (each byte
 * written is a console character; reading gives 0xE9, the "port E9 hack" signature) and QEMU's
 * isa-debug-exit at 0xF4 (a write ends the machine with that code; QEMU's own process status is
 * `(code << 1) | 1`, vtlab reports the code the guest wrote).
 */
import type { AccessSize, BusDevice } from "@vtlab/arch";

/** Port of the debug console (Bochs "port E9 hack"). */
export const DEBUGCON_PORT = 0xe9;
/** Port of isa-debug-exit (QEMU's default iobase 0xF4, iosize 4). */
export const DEBUG_EXIT_PORT = 0xf4;

export class DebugConsole implements BusDevice {
  constructor(private readonly sink: (byte: number) => void) {}
  read(): number {
    return DEBUGCON_PORT;
  }
  write(_offset: number, _size: AccessSize, value: number): undefined {
    this.sink(value & 0xff);
    return undefined;
  }
}

export class DebugExit implements BusDevice {
  constructor(private readonly onExit: (code: number) => void) {}
  read(_offset: number, size: AccessSize): number {
    return size === 4 ? 0xffff_ffff : size === 2 ? 0xffff : 0xff;
  }
  write(offset: number, size: AccessSize, value: number): undefined {
    // The device latches the value written at its base; narrower writes give their bits.
    const mask = size === 4 ? 0xffff_ffff : size === 2 ? 0xffff : 0xff;
    this.onExit(((value & mask) << (8 * offset)) >>> 0);
    return undefined;
  }
}
