// @vtlab/pv-backends: public entry (see README.md).
export type { BackendHost, BackendGrants, BackendGrantMapping, BackendCopyOp, BackendCopySide, BackendEventChannels } from "./host.js";
