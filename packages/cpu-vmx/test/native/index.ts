/**
 * The host-CPU oracle for the interpreter's differential test: a seeded generator of
 * instruction sequences, a native harness that runs them on this CPU, and a comparison.
 */
export {
  ARITH_FLAGS,
  COMPARED_FLAGS,
  CF,
  PF,
  AF,
  ZF,
  SF,
  DF,
  OF,
  GPR_NAMES,
  INIT_RSP,
  MAX_CODE,
  SCRATCH_BASE,
  SCRATCH_SIZE,
  describeCase,
  flagsDefinedBefore,
  generateCase,
  generateCases,
  makeCase,
  type GprName,
  type ManualCase,
  hostFeatures,
  type CaseInit,
  type GenerateOptions,
  type HostFeatures,
  type TestCase,
} from "./generate";
export {
  buildHarness,
  isNativeHost,
  runNative,
  type ExecResult,
  type HarnessBuild,
  type NativeHarness,
  type Outcome,
  type RunNativeOptions,
} from "./run-native";
export { compareResults } from "./compare";
