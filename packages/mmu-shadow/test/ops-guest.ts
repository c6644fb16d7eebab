// The operation-driven guest lives in src/workload.ts (the bench uses it too).
export { OpsGuest, KPML4, KCODE, KSTACK } from "../src/workload.js";
export type { OpResult } from "../src/workload.js";
