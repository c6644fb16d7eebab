/**
 * x86 exception and interrupt vectors (Intel SDM Vol. 3A, 6.3.1, Table 6-1).
 */
export const Vector = {
  /** #DE: divide error. */
  DE: 0,
  /** #DB: debug. */
  DB: 1,
  /** NMI: non-maskable interrupt. */
  NMI: 2,
  /** #BP: breakpoint (INT3). */
  BP: 3,
  /** #OF: overflow (INTO). */
  OF: 4,
  /** #BR: BOUND range exceeded. */
  BR: 5,
  /** #UD: invalid opcode. */
  UD: 6,
  /** #NM: device not available. */
  NM: 7,
  /** #DF: double fault (error code 0). */
  DF: 8,
  /** #TS: invalid TSS (error code). */
  TS: 10,
  /** #NP: segment not present (error code). */
  NP: 11,
  /** #SS: stack-segment fault (error code). */
  SS: 12,
  /** #GP: general protection (error code). */
  GP: 13,
  /** #PF: page fault (error code, CR2). */
  PF: 14,
  /** #MF: x87 floating-point error. */
  MF: 16,
  /** #AC: alignment check (error code). */
  AC: 17,
  /** #MC: machine check. */
  MC: 18,
  /** #XM: SIMD floating-point exception. */
  XM: 19,
  /** #VE: virtualization exception. */
  VE: 20,
  /** #CP: control-protection exception (error code). */
  CP: 21,
} as const;
export type Vector = (typeof Vector)[keyof typeof Vector];

/** Exceptions that push an error code (SDM Table 6-1, "Error Code" column). */
export const VECTORS_WITH_ERROR_CODE: ReadonlySet<number> = new Set([
  Vector.DF,
  Vector.TS,
  Vector.NP,
  Vector.SS,
  Vector.GP,
  Vector.PF,
  Vector.AC,
  Vector.CP,
]);

/**
 * Exception classes for double-fault detection (SDM Vol. 3A, 6.15, Table 6-4 and 6-5):
 * benign, contributory, page fault.
 */
export const ExceptionClass = { Benign: 0, Contributory: 1, PageFault: 2 } as const;
export type ExceptionClass = (typeof ExceptionClass)[keyof typeof ExceptionClass];

export function exceptionClass(vector: number): ExceptionClass {
  switch (vector) {
    case Vector.DE:
    case Vector.TS:
    case Vector.NP:
    case Vector.SS:
    case Vector.GP:
      return ExceptionClass.Contributory;
    case Vector.PF:
      return ExceptionClass.PageFault;
    default:
      return ExceptionClass.Benign;
  }
}

/**
 * SDM Table 6-5: whether a second exception raised while delivering the first becomes #DF.
 */
export function isDoubleFault(first: number, second: number): boolean {
  const a = exceptionClass(first);
  const b = exceptionClass(second);
  if (a === ExceptionClass.Contributory) return b === ExceptionClass.Contributory;
  if (a === ExceptionClass.PageFault) return b !== ExceptionClass.Benign;
  return false;
}
