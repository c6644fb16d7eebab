/**
 * Architectural register names and bits (Intel SDM Vol. 1 ch. 3, Vol. 3A ch. 2).
 */

/** General-purpose register numbers, as encoded in ModRM/REX (SDM Vol. 2A, Table 2-2). */
export const Reg = {
  RAX: 0,
  RCX: 1,
  RDX: 2,
  RBX: 3,
  RSP: 4,
  RBP: 5,
  RSI: 6,
  RDI: 7,
  R8: 8,
  R9: 9,
  R10: 10,
  R11: 11,
  R12: 12,
  R13: 13,
  R14: 14,
  R15: 15,
} as const;
export type Reg = (typeof Reg)[keyof typeof Reg];
export const REG_NAMES = ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"] as const;

/** Segment registers in their encoding order (SDM Vol. 2A, 3.1.1.3: Sreg). */
export const Seg = { ES: 0, CS: 1, SS: 2, DS: 3, FS: 4, GS: 5 } as const;
export type Seg = (typeof Seg)[keyof typeof Seg];
export const SEG_NAMES = ["es", "cs", "ss", "ds", "fs", "gs"] as const;

/**
 * GUEST_INTERRUPTIBILITY_INFO bits (SDM Vol. 3C Table 25-3, "Format of Interruptibility State").
 * An instruction the hypervisor emulates to completion ends blocking by STI and by MOV SS, as
 * executing it would have (SDM 26.3.1.5).
 */
/** Bit 0, "Blocking by STI": the instruction after an STI that set IF. */
export const BLOCKING_BY_STI = 1 << 0;
/** Bit 1, "Blocking by MOV SS": the instruction after a MOV to SS or POP SS. */
export const BLOCKING_BY_MOV_SS = 1 << 1;
/** Bit 2, "Blocking by SMI". */
export const BLOCKING_BY_SMI = 1 << 2;
/** Bit 3, "Blocking by NMI": from NMI delivery until the next IRET. */
export const BLOCKING_BY_NMI = 1 << 3;
/** Bits 1:0: the one-instruction interrupt shadow (at most one of the two may be set). */
export const BLOCKING_BY_STI_OR_MOV_SS = BLOCKING_BY_STI | BLOCKING_BY_MOV_SS;

/** RFLAGS bits (SDM Vol. 1, 3.4.3). */
export const RFLAGS_CF = 1 << 0;
/** Bit 1 is reserved and always reads 1. */
export const RFLAGS_FIXED = 1 << 1;
export const RFLAGS_PF = 1 << 2;
export const RFLAGS_AF = 1 << 4;
export const RFLAGS_ZF = 1 << 6;
export const RFLAGS_SF = 1 << 7;
export const RFLAGS_TF = 1 << 8;
export const RFLAGS_IF = 1 << 9;
export const RFLAGS_DF = 1 << 10;
export const RFLAGS_OF = 1 << 11;
/** IOPL, bits 13:12. */
export const RFLAGS_IOPL = 3 << 12;
export const RFLAGS_NT = 1 << 14;
export const RFLAGS_RF = 1 << 16;
export const RFLAGS_VM = 1 << 17;
/** RFLAGS bits that must be 0 (SDM 3.4.3: bits 3, 5, 15 and 22-31 are reserved). */
export const RFLAGS_RESERVED_ZERO = 0xffc0_8028;
export const RFLAGS_AC = 1 << 18;
export const RFLAGS_VIF = 1 << 19;
export const RFLAGS_VIP = 1 << 20;
export const RFLAGS_ID = 1 << 21;
/** The six arithmetic status flags. */
export const RFLAGS_ARITH = RFLAGS_CF | RFLAGS_PF | RFLAGS_AF | RFLAGS_ZF | RFLAGS_SF | RFLAGS_OF;
/** Bits software can change with POPF at CPL 0 (VM and VIF/VIP excluded: no virtual-8086 mode). */
export const RFLAGS_WRITABLE =
  RFLAGS_ARITH | RFLAGS_TF | RFLAGS_IF | RFLAGS_DF | RFLAGS_IOPL | RFLAGS_NT | RFLAGS_RF | RFLAGS_AC | RFLAGS_ID;

/** CR0 bits (SDM Vol. 3A, 2.5). */
export const CR0_PE = 1 << 0;
export const CR0_MP = 1 << 1;
export const CR0_EM = 1 << 2;
export const CR0_TS = 1 << 3;
export const CR0_ET = 1 << 4;
export const CR0_NE = 1 << 5;
export const CR0_WP = 1 << 16;
export const CR0_AM = 1 << 18;
export const CR0_NW = 1 << 29;
export const CR0_CD = 1 << 30;
export const CR0_PG = 1 << 31;

/** CR4 bits (SDM Vol. 3A, 2.5). */
export const CR4_VME = 1 << 0;
export const CR4_PVI = 1 << 1;
export const CR4_TSD = 1 << 2;
export const CR4_DE = 1 << 3;
export const CR4_PSE = 1 << 4;
export const CR4_PAE = 1 << 5;
export const CR4_MCE = 1 << 6;
export const CR4_PGE = 1 << 7;
export const CR4_PCE = 1 << 8;
export const CR4_OSFXSR = 1 << 9;
export const CR4_OSXMMEXCPT = 1 << 10;
export const CR4_UMIP = 1 << 11;
export const CR4_LA57 = 1 << 12;
export const CR4_VMXE = 1 << 13;
export const CR4_SMXE = 1 << 14;
export const CR4_FSGSBASE = 1 << 16;
export const CR4_PCIDE = 1 << 17;
export const CR4_OSXSAVE = 1 << 18;
export const CR4_SMEP = 1 << 20;
export const CR4_SMAP = 1 << 21;
export const CR4_PKE = 1 << 22;
/** CR4 bits this CPU supports; setting any other bit is #GP(0). */
export const CR4_SUPPORTED =
  CR4_VME | CR4_PVI | CR4_TSD | CR4_DE | CR4_PSE | CR4_PAE | CR4_MCE | CR4_PGE | CR4_PCE | CR4_OSFXSR | CR4_OSXMMEXCPT |
  CR4_LA57 | CR4_VMXE | CR4_FSGSBASE | CR4_SMEP | CR4_SMAP;

/** MSR indices (SDM Vol. 4). */
export const MSR = {
  /** IA32_TIME_STAMP_COUNTER */
  TSC: 0x10,
  /** IA32_APIC_BASE */
  APIC_BASE: 0x1b,
  /** IA32_FEATURE_CONTROL */
  FEATURE_CONTROL: 0x3a,
  /** IA32_SYSENTER_CS / ESP / EIP */
  SYSENTER_CS: 0x174,
  SYSENTER_ESP: 0x175,
  SYSENTER_EIP: 0x176,
  /** IA32_DEBUGCTL (SDM Vol. 3B 17.4.1) */
  DEBUGCTL: 0x1d9,
  /** IA32_PAT */
  PAT: 0x277,
  /** IA32_EFER */
  EFER: 0xc000_0080,
  /** IA32_STAR: SYSCALL/SYSRET selectors (bits 47:32 and 63:48). */
  STAR: 0xc000_0081,
  /** IA32_LSTAR: SYSCALL target RIP in 64-bit mode. */
  LSTAR: 0xc000_0082,
  /** IA32_CSTAR: SYSCALL target in compatibility mode (unused by Intel CPUs). */
  CSTAR: 0xc000_0083,
  /** IA32_FMASK: RFLAGS bits cleared by SYSCALL. */
  FMASK: 0xc000_0084,
  /** IA32_FS_BASE */
  FS_BASE: 0xc000_0100,
  /** IA32_GS_BASE */
  GS_BASE: 0xc000_0101,
  /** IA32_KERNEL_GS_BASE: swapped with GS base by SWAPGS. */
  KERNEL_GS_BASE: 0xc000_0102,
  /** IA32_TSC_AUX */
  TSC_AUX: 0xc000_0103,
} as const;

/** IA32_EFER bits. */
/** EFER.SCE: SYSCALL enable. */
export const EFER_SCE = 1 << 0;
/** EFER.LME: IA-32e mode enable. */
export const EFER_LME = 1 << 8;
/** EFER.LMA: IA-32e mode active (read-only, set by the CPU). */
export const EFER_LMA = 1 << 10;
/** EFER.NXE: execute-disable enable. */
export const EFER_NXE = 1 << 11;
export const EFER_WRITABLE = EFER_SCE | EFER_LME | EFER_NXE;

/** Segment descriptor attribute bits as we keep them: the descriptor's bits 55:40 shifted down by 40 (SDM Vol. 3A, 3.4.5). */
/** Type field bit 0: accessed. */
export const SEG_ATTR_ACCESSED = 1 << 0;
/** Type bit 1: writable (data) / readable (code). */
export const SEG_ATTR_RW = 1 << 1;
/** Type bit 3: code segment. */
export const SEG_ATTR_CODE = 1 << 3;
/** S: code/data (1) or system (0). */
export const SEG_ATTR_S = 1 << 4;
/** DPL, bits 6:5. */
export const SEG_ATTR_DPL_SHIFT = 5;
/** P: present. */
export const SEG_ATTR_P = 1 << 7;
/** L: 64-bit code segment. */
export const SEG_ATTR_L = 1 << 13;
/** D/B: default operation size 32 (code) / big (stack). */
export const SEG_ATTR_DB = 1 << 14;
/** G: granularity. */
export const SEG_ATTR_G = 1 << 15;

/** IA32_DEBUGCTL bits this processor accepts: LBR (bit 0) and BTF (bit 1), stored but not acted on (SDM Vol. 3B 17.4.1). Others are #GP. */
export const DEBUGCTL_LBR = 1 << 0;
export const DEBUGCTL_BTF = 1 << 1;
export const DEBUGCTL_WRITABLE = DEBUGCTL_LBR | DEBUGCTL_BTF;

/** IA32_PAT at power-up: WB, WT, UC-, UC in PA0-PA3 and again in PA4-PA7 (SDM Vol. 3A 11.12.4). */
export const PAT_POWER_UP = { lo: 0x0007_0406, hi: 0x0007_0406 } as const;

/** A PAT value WRMSR accepts: every byte is a memory type 0 (UC), 1 (WC), 4 (WT), 5 (WP), 6 (WB) or 7 (UC-) (SDM Vol. 3A 11.12.2). */
export function patValid(lo: number, hi: number): boolean {
  for (let k = 0; k < 4; k++) {
    const a = (lo >>> (8 * k)) & 0xff;
    const b = (hi >>> (8 * k)) & 0xff;
    if (a > 7 || a === 2 || a === 3 || b > 7 || b === 2 || b === 3) return false;
  }
  return true;
}

/** DR6 and DR7 at power-up and reset (SDM Vol. 3B 17.2.3, 17.2.4): DR6's reserved bits read 1, DR7 bit 10 reads 1. */
export const DR6_INIT = 0xffff_0ff0;
export const DR7_INIT = 0x0000_0400;
/** DR6 bits software can change: B0-B3 (3:0), BD (13), BS (14), BT (15); the rest are fixed (RTM is not supported, so bit 16 is 1). */
export const DR6_WRITABLE = 0x0000_e00f;
/** DR7 bits software can change: L0-G3 and LE/GE (9:0), GD (13), R/W and LEN (31:16); bit 10 is 1, bits 11, 12, 14, 15 are 0. */
export const DR7_WRITABLE = 0xffff_23ff;
