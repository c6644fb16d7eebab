// cxenstored's default quotas (tools/xenstore/xenstored_core.c of Xen 4.17, the `quota_*`
// globals), and the limits of the wire protocol. Privileged connections (dom0) are exempt, as
// in xenstored (`domain_is_unprivileged`).
import { XENSTORE_REL_PATH_MAX } from "@vtlab/xen-public";

export interface XenStoreQuotas {
  /** quota_nb_entry_per_domain: nodes a domain may own. */
  readonly entriesPerDomain: number;
  /** quota_nb_watch_per_domain (checked as `count > quota`, so one more is accepted, as in Xen). */
  readonly watchesPerDomain: number;
  /** quota_max_entry_size: a node's stored record (header, perms, value, child names) must stay below it. */
  readonly maxEntrySize: number;
  /** quota_max_transaction (checked as `started > quota`, so one more is accepted, as in Xen). */
  readonly transactionsPerDomain: number;
  /** quota_nb_perms_per_node. */
  readonly permsPerNode: number;
  /** quota_trans_nodes: nodes one transaction may touch. */
  readonly nodesPerTransaction: number;
  /** quota_max_path_len: characters after /local/domain/<id>/. */
  readonly maxPathLen: number;
  /** quota_req_outstanding: replies queued and not yet on the ring before requests stop being read. */
  readonly outstandingRequests: number;
  /** quota_memory_per_domain_hard: bytes of queued output and watches past which watch events are dropped and requests no longer read. */
  readonly memoryPerDomain: number;
}

export const XENSTORED_DEFAULT_QUOTAS: XenStoreQuotas = {
  entriesPerDomain: 1000,
  watchesPerDomain: 128,
  maxEntrySize: 2048,
  transactionsPerDomain: 10,
  permsPerNode: 5,
  nodesPerTransaction: 1024,
  maxPathLen: XENSTORE_REL_PATH_MAX,
  outstandingRequests: 20,
  memoryPerDomain: 2 * 1024 * 1024 + 512 * 1024,
};
