// @vtlab/xen-public: the Xen public ABI as TypeScript (xen/include/public). See README.md.
export * from "./constants.js";
