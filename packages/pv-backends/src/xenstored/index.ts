export { XenStore, type XenStoreOptions, type XsReply, type XsWatch } from "./store.js";
export type { XsPerm } from "./perms.js";
export { XENSTORED_DEFAULT_QUOTAS, type XenStoreQuotas } from "./quota.js";
export { DomainConnection, type XsConnectionStats } from "./connection.js";
export { isValidNodename } from "./path.js";
