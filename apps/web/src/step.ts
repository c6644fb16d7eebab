/**
 * Step mode's view of one VM exit: the exit qualification decoded for the exits whose format the
 * SDM gives and vtlab produces (Intel SDM Vol. 3C 28.2.1, Tables 28-1 to 28-7), as plain text.
 * No DOM: the worker builds the sample, the page shows it, the unit test reads it.
 */

/** Basic exit reasons (SDM Appendix C) whose qualification is decoded here. */
export const EXIT_CR_ACCESS = 28; // EXIT_REASON_CR_ACCESS (Table 28-3)
export const EXIT_IO_INSTRUCTION = 30; // EXIT_REASON_IO_INSTRUCTION (Table 28-5)
export const EXIT_EPT_VIOLATION = 48; // EXIT_REASON_EPT_VIOLATION (Table 28-7)

/** I/O qualification (Table 28-5): bits 2:0 size - 1, bit 3 direction (1 = IN), bit 4 string, bit 5 REP, bit 6 immediate operand, bits 31:16 port. */
export function decodeIo(q: number): string {
  const size = (q & 7) + 1;
  const dir = (q & 8) !== 0 ? "in" : "out";
  const str = (q & 0x10) !== 0 ? (q & 0x20) !== 0 ? " rep string" : " string" : "";
  const imm = (q & 0x40) !== 0 ? "immediate port" : "port in DX";
  return `${dir}${str}, ${size} byte${size === 1 ? "" : "s"}, port 0x${((q >>> 16) & 0xffff).toString(16).padStart(4, "0")} (${imm})`;
}

/**
 * EPT violation qualification (Table 28-7): bit 0 data read, 1 data write, 2 instruction fetch;
 * bits 3-5 the EPT entry's read/write/execute permissions; bit 7 guest-linear address valid;
 * bit 8 (with bit 7) 1 = the access was to the translated address, 0 = to a guest paging-structure entry.
 */
export function decodeEptViolation(q: number): string {
  const access = [(q & 1) !== 0 ? "read" : "", (q & 2) !== 0 ? "write" : "", (q & 4) !== 0 ? "fetch" : ""].filter((x) => x !== "").join("+") || "none";
  const perm = `${(q & 8) !== 0 ? "r" : "-"}${(q & 0x10) !== 0 ? "w" : "-"}${(q & 0x20) !== 0 ? "x" : "-"}`;
  const linear = (q & 0x80) === 0 ? "no guest-linear address" : (q & 0x100) !== 0 ? "guest-linear valid, access to the translated address" : "guest-linear valid, access to a guest paging-structure entry";
  return `access ${access}; EPT entry permits ${perm}; ${linear}`;
}

/** Control-register access qualification (Table 28-3): bits 3:0 CR, 5:4 access type, 11:8 GPR. */
export function decodeCrAccess(q: number): string {
  const cr = q & 0xf;
  const gpr = GPRS[(q >>> 8) & 0xf] ?? "?";
  switch ((q >>> 4) & 3) {
    case 0:
      return `MOV to CR${cr} from ${gpr}`;
    case 1:
      return `MOV from CR${cr} to ${gpr}`;
    case 2:
      return "CLTS";
    default:
      return `LMSW, source 0x${((q >>> 16) & 0xffff).toString(16)}`;
  }
}

const GPRS = ["RAX", "RCX", "RDX", "RBX", "RSP", "RBP", "RSI", "RDI", "R8", "R9", "R10", "R11", "R12", "R13", "R14", "R15"];

/** The qualification in words where its format is decoded here, else "" (the page shows the hex alone). */
export function decodeQualification(reason: number, q: number): string {
  switch (reason & 0xffff) {
    case EXIT_IO_INSTRUCTION:
      return decodeIo(q);
    case EXIT_EPT_VIOLATION:
      return decodeEptViolation(q);
    case EXIT_CR_ACCESS:
      return decodeCrAccess(q);
    default:
      return "";
  }
}

/** A 64-bit value held in a double (addresses below 2^53, as vtlab keeps them) as 0x-hex. */
export function hex(n: number): string {
  return `0x${n.toString(16)}`;
}
