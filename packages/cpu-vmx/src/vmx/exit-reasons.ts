/**
 * Basic exit reasons (Intel SDM Vol. 3C, Appendix C, Table C-1). Bit 31 of the exit-reason field
 * is set when VM entry failed.
 */
export const ExitReason = {
  /** EXIT_REASON_EXCEPTION_NMI */
  ExceptionOrNmi: 0,
  /** EXIT_REASON_EXTERNAL_INTERRUPT */
  ExternalInterrupt: 1,
  /** EXIT_REASON_TRIPLE_FAULT */
  TripleFault: 2,
  /** EXIT_REASON_INIT_SIGNAL */
  InitSignal: 3,
  /** EXIT_REASON_SIPI_SIGNAL */
  StartupIpi: 4,
  /** EXIT_REASON_INTERRUPT_WINDOW */
  InterruptWindow: 7,
  /** EXIT_REASON_NMI_WINDOW */
  NmiWindow: 8,
  /** EXIT_REASON_TASK_SWITCH */
  TaskSwitch: 9,
  /** EXIT_REASON_CPUID */
  Cpuid: 10,
  /** EXIT_REASON_HLT */
  Hlt: 12,
  /** EXIT_REASON_INVD */
  Invd: 13,
  /** EXIT_REASON_INVLPG */
  Invlpg: 14,
  /** EXIT_REASON_RDPMC */
  Rdpmc: 15,
  /** EXIT_REASON_RDTSC */
  Rdtsc: 16,
  /** EXIT_REASON_VMCALL */
  Vmcall: 18,
  /** EXIT_REASON_CR_ACCESS */
  CrAccess: 28,
  /** EXIT_REASON_DR_ACCESS */
  DrAccess: 29,
  /** EXIT_REASON_IO_INSTRUCTION */
  IoInstruction: 30,
  /** EXIT_REASON_MSR_READ */
  MsrRead: 31,
  /** EXIT_REASON_MSR_WRITE */
  MsrWrite: 32,
  /** EXIT_REASON_INVALID_STATE: VM-entry failure due to invalid guest state */
  InvalidGuestState: 33,
  /** EXIT_REASON_MSR_LOADING: VM-entry failure due to MSR loading */
  MsrLoading: 34,
  /** EXIT_REASON_MWAIT_INSTRUCTION */
  Mwait: 36,
  /** EXIT_REASON_MONITOR_TRAP_FLAG */
  MonitorTrapFlag: 37,
  /** EXIT_REASON_MONITOR_INSTRUCTION */
  Monitor: 39,
  /** EXIT_REASON_PAUSE_INSTRUCTION */
  Pause: 40,
  /** EXIT_REASON_MCE_DURING_VMENTRY */
  MachineCheckDuringEntry: 41,
  /** EXIT_REASON_TPR_BELOW_THRESHOLD */
  TprBelowThreshold: 43,
  /** EXIT_REASON_APIC_ACCESS */
  ApicAccess: 44,
  /** EXIT_REASON_GDTR_IDTR: access to GDTR or IDTR (descriptor-table exiting) */
  GdtrIdtrAccess: 46,
  /** EXIT_REASON_LDTR_TR: access to LDTR or TR (descriptor-table exiting) */
  LdtrTrAccess: 47,
  /** EXIT_REASON_EPT_VIOLATION */
  EptViolation: 48,
  /** EXIT_REASON_EPT_MISCONFIG */
  EptMisconfig: 49,
  /** EXIT_REASON_INVEPT */
  Invept: 50,
  /** EXIT_REASON_RDTSCP */
  Rdtscp: 51,
  /** EXIT_REASON_PREEMPTION_TIMER: VMX-preemption timer expired */
  PreemptionTimer: 52,
  /** EXIT_REASON_INVVPID */
  Invvpid: 53,
  /** EXIT_REASON_WBINVD */
  Wbinvd: 54,
  /** EXIT_REASON_XSETBV */
  Xsetbv: 55,
} as const;
export type ExitReason = (typeof ExitReason)[keyof typeof ExitReason];

/** Bit 31 of the exit-reason field: VM-entry failure (SDM Vol. 3C 28.2.1). */
export const EXIT_REASON_FAILED_VMENTRY = 0x8000_0000;

const NAMES = new Map<number, string>(Object.entries(ExitReason).map(([k, v]) => [v, k]));

/** The SDM name of a basic exit reason, for tables and traces ("Cpuid", "EptViolation"). */
export function exitReasonName(reason: number): string {
  const basic = reason & 0xffff;
  const name = NAMES.get(basic) ?? `reason ${basic}`;
  return (reason & EXIT_REASON_FAILED_VMENTRY) !== 0 ? `${name} (VM-entry failure)` : name;
}
