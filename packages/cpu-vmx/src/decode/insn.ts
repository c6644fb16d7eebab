import type { Cpu } from "../cpu.js";
import type { BlockFn } from "../blocks.js";

/** An instruction handler: executes one decoded instruction (RIP already points past it). */
export type Handler = (cpu: Cpu, i: Insn) => void;

/**
 * One decoded instruction. Every field is a plain number or boolean so the objects share one
 * hidden class and handlers stay monomorphic. Decoded once per instruction address and kept in
 * the CPU's decoded-instruction cache until the code page is written or the mode changes.
 */
export class Insn {
  exec: Handler;
  /** Length in bytes (1..15). */
  len = 0;
  /** Opcode: one-byte map 0x00-0xff, 0F map 0x100-0x1ff, 0F38 map 0x200-, 0F3A map 0x300-. */
  opcode = 0;
  /** Operand size in bytes: 1, 2, 4 or 8. */
  opSize = 4;
  /** Address size in bytes: 2, 4 or 8 (2: 16-bit addressing, SDM Vol. 2A Table 2-1). */
  addrSize = 8;
  /** A REX prefix was present (selects SPL/BPL/SIL/DIL over AH/CH/DH/BH). */
  rex = false;
  /** The ModRM byte as encoded (0 when there is none): the x87's FOP keeps it (SDM 8.1.9). */
  modrm = 0;
  /** ModRM.reg extended by REX.R (or the group's sub-opcode for group instructions). */
  reg = 0;
  /** ModRM.rm extended by REX.B, or the register encoded in the opcode. */
  rm = 0;
  /** The r/m operand is memory. */
  isMem = false;
  /** Memory operand: base and index registers (-1 = none), scale, displacement, RIP-relative. */
  base = -1;
  index = -1;
  scale = 1;
  disp = 0;
  ripRel = false;
  /** Effective segment of the memory operand (Seg number). */
  seg = 3;
  /** A segment-override prefix was present. */
  segOverride = false;
  /** Immediate (sign-extended to 64 bits where the form says so): low and high halves. */
  imm = 0;
  immHi = 0;
  /** Second immediate (ENTER's nesting level, far pointer selector). */
  imm2 = 0;
  /** 0 = none, 1 = REP/REPE (F3), 2 = REPNE (F2). */
  rep = 0;
  lock = false;
  /** Condition code for Jcc, SETcc, CMOVcc; ALU or shift sub-operation for groups. */
  cc = 0;
  /** The mnemonic from the decode table (for disassembly, counters and tests). */
  mnemonic = "";
  /** Times this instruction started an interpreted step (until its block is compiled). */
  hits = 0;
  /** The compiled block that starts here, if any (see blocks.ts). */
  block: BlockFn | undefined = undefined;
  /**
   * Instructions the run loop's bound must leave room for before it enters that block: its
   * length, or for a region (src/jit/) the longest path of forward edges from its entry.
   */
  blockLen = 0;

  constructor(exec: Handler) {
    this.exec = exec;
  }
}
