// @vtlab/xen-public: the Xen public ABI as TypeScript (xen/include/public). See README.md.
export * from "./constants.js";
// Struct layouts (x86_64), one module per header, named like the C types.
export * from "./xen.js";
export * from "./arch-x86/xen.js";
export * from "./event_channel.js";
export * from "./grant_table.js";
export * from "./memory.js";
export * from "./hvm/hvm_op.js";
export * from "./sched.js";
export * from "./vcpu.js";
export * from "./version.js";
export * from "./io/console.js";
export * from "./io/xs_wire.js";
export { utf8Encode, utf8Decode, latin1Decode } from "./io/utf8.js";
export * from "./io/blkif.js";
export * from "./io/netif.js";
// The 32-bit ("compat") layouts Xen translates for hypercalls made outside 64-bit mode.
export * from "./compat/vcpu.js";
export * from "./compat/sched.js";
export * from "./compat/grant_table.js";
export * from "./compat/memory.js";
export * from "./io/ring.js";
