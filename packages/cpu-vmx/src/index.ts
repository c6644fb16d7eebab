// @vtlab/cpu-vmx: the virtual CPU. Part 1: the x86-64 interpreter (decoder, execution, TLB,
// exceptions and interrupts). VMX non-root operation comes with a later issue.
import { Cpu } from "./cpu.js";
import { decode } from "./decode/decoder.js";

Cpu.decoder = decode;

export { Cpu, CpuCounters, ABORT, PARITY_EVEN, TASK_SWITCH_SOURCE_IDT, TASK_SWITCH_SOURCE_IRET, wrap64, toSigned64, DECODED_MAX_PAGES, DECODED_MAX_INSNS, COMPILED_MAX_BLOCKS, TLB_MAX_SETS } from "./cpu.js";
export type { RunResult, OpResult, SegmentCache, CpuHooks, CpuOptions, CodeCacheStats } from "./cpu.js";
export { FACTORY_CACHE_CHARS, FACTORY_CACHE_MAX, jitCacheBounds, jitHooks, jitStats } from "./jit/compile.js";
export { stringHooks } from "./exec/string.js";
export { decode, decodeBytes, MAX_INSTRUCTION_LENGTH } from "./decode/decoder.js";
export { ea, readReg, writeReg } from "./exec/operands.js";
export type { DecodeSource } from "./decode/decoder.js";
export { Insn } from "./decode/insn.js";
export type { Handler } from "./decode/insn.js";
export { OPCODES, F3_VARIANTS, isGroup, F_IMM8, F_MEM } from "./decode/table.js";
export type { OpSpec, GroupSpec, Entry } from "./decode/table.js";
export { SSE_OPCODES, F_REGONLY, F_SSE, isSseGroup } from "./decode/sse-table.js";
export type { SseRow, SseForm } from "./decode/sse-table.js";
export { MXCSR_IE, MXCSR_DE, MXCSR_ZE, MXCSR_OE, MXCSR_UE, MXCSR_PE, MXCSR_DAZ, MXCSR_FTZ } from "./exec/sse-fp.js";
export * from "./regs.js";
export { defaultCpuid, CPUID_1_EDX_FPU, readMsr, writeMsr, CPUID_1_EDX_CX8, CPUID_1_EDX_CLFSH, CPUID_1_EDX_FXSR, CPUID_1_EDX_SSE, CPUID_1_EDX_SSE2, CPUID_1_ECX_CX16, CPUID_1_ECX_POPCNT, CPUID_1_CLFLUSH_LINE_QWORDS } from "./exec/system.js";
export { FCW_INIT, FCW_RESET, FXSAVE_SIZE, FpuState, MXCSR_DEFAULT, MXCSR_MASK } from "./exec/fpu.js";

// ---- VMX (part 2, in progress): the VMCS and exit reasons ----
export { ExitReason, EXIT_REASON_FAILED_VMENTRY, exitReasonName } from "./vmx/exit-reasons.js";
export { VmcsField, VmcsWidth, VmcsType, vmcsWidth, vmcsType, vmcsHighAccess, vmcsFieldName } from "./vmx/vmcs-fields.js";
export { Vmcs, VmInstructionError } from "./vmx/vmcs.js";
export type { VmFailValid, LaunchState } from "./vmx/vmcs.js";
export { EptAccess, GuestReference, EPT_QUAL_LINEAR_VALID, EPT_QUAL_FINAL } from "./vmx/interfaces.js";
export type { EptViolation, EptMisconfig, SecondLevelTranslator, EventInfo, VmExit, ExitOutcome, MemoryVirtualizer } from "./vmx/interfaces.js";
export * from "./vmx/controls.js";
export { vmEntry, saveOnExit, loadGuestSegments, injectEntryEvent, ActivityState, IntrType, INTR_INFO_VALID, INTR_INFO_ERROR_CODE_VALID, VMX_CR0_FIXED0, VMX_CR4_FIXED0 } from "./vmx/nonroot.js";
export type { EntryFailureExit } from "./vmx/nonroot.js";
export { ioQualification, crQualification, CrAccessType } from "./vmx/exits.js";
export { NativeGuestOps } from "./guest-ops.js";
export type { GuestOps, GuestFault, NativeGuestEnvironment } from "./guest-ops.js";
export { setupFlat64Guest } from "./vmx/setup.js";
export type { Flat64GuestOptions, Flat64GuestError } from "./vmx/setup.js";
