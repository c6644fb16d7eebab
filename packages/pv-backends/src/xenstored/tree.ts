// The node tree of xenstored (what cxenstored keeps in its TDB): nodes by full path with their
// value, child names in creation order, permissions and generation; per-domain entry counts for
// quota_nb_entry_per_domain. A transaction is a `TxView` over it: reads record the generation
// they saw, writes stay in an overlay until TRANSACTION_END commits them (xenstored_transaction.c:
// a node whose generation moved since the transaction first accessed it makes the commit EAGAIN).
import type { XsPerm } from "./perms.js";

/** A node, immutable once stored (a change stores a new object). */
export interface XsNode {
  readonly name: string;
  readonly value: Uint8Array;
  readonly children: readonly string[];
  readonly perms: readonly XsPerm[];
  /** Global generation of its last change (NO_GENERATION: not stored yet). */
  readonly generation: number;
}

export const NO_GENERATION = -1;
export const EMPTY = new Uint8Array(0);

/**
 * The size of a node's TDB record (write_node_raw's dsize): struct xs_tdb_record_hdr (u64
 * generation, u32 num_perms, datalen, childlen: 24 bytes with alignment), 8 bytes per
 * struct xs_permissions, the value and the NUL-terminated child names.
 */
export function nodeRecordSize(n: Pick<XsNode, "perms" | "value" | "children">): number {
  let childlen = 0;
  for (const c of n.children) childlen += c.length + 1;
  return 24 + 8 * n.perms.length + n.value.length + childlen;
}

/** What the operations read and write: the store itself, or a transaction over it. */
export interface XsView {
  get(path: string): XsNode | undefined;
  /** 0, or an errno (a transaction touching too many nodes: ENOSPC). */
  put(node: XsNode): number;
  del(path: string): number;
  /** Nodes owned by `domid` as this view sees them. */
  entries(domid: number): number;
}

export class XsTree implements XsView {
  private readonly nodes = new Map<string, XsNode>();
  private readonly owned = new Map<number, number>();
  private generation = 0;

  constructor(rootPerms: readonly XsPerm[]) {
    this.nodes.set("/", { name: "/", value: EMPTY, children: [], perms: rootPerms, generation: 0 });
  }

  get size(): number {
    return this.nodes.size;
  }

  get(path: string): XsNode | undefined {
    return this.nodes.get(path);
  }

  put(node: XsNode): number {
    const old = this.nodes.get(node.name);
    if (old) this.count(old, -1);
    const stored: XsNode = { ...node, generation: ++this.generation };
    this.nodes.set(node.name, stored);
    this.count(stored, +1);
    return 0;
  }

  del(path: string): number {
    const old = this.nodes.get(path);
    if (old && path !== "/") {
      this.count(old, -1);
      this.nodes.delete(path);
    }
    return 0;
  }

  entries(domid: number): number {
    return this.owned.get(domid) ?? 0;
  }

  /** Every stored path (for dumps and tests). */
  paths(): IterableIterator<string> {
    return this.nodes.keys();
  }

  private count(n: XsNode, d: number): void {
    if (n.name === "/") return;
    const owner = n.perms[0]?.domid ?? 0;
    const c = (this.owned.get(owner) ?? 0) + d;
    if (c === 0) this.owned.delete(owner);
    else this.owned.set(owner, c);
  }
}

/** A transaction's view: an overlay of its changes over the tree, and the generations it saw. */
export class TxView implements XsView {
  /** Changed nodes (undefined: deleted in the transaction). */
  readonly overlay = new Map<string, XsNode | undefined>();
  /** The tree generation of each node when the transaction first accessed it. */
  readonly accessed = new Map<string, number>();
  private readonly ownedDelta = new Map<number, number>();
  /** A node was created (the commit checks the entry quota, as transaction_fix_domains). */
  createdNodes = false;
  /** A change failed half-way (quota_trans_nodes): the commit answers ENOMEM (fail_transaction). */
  failed = false;

  constructor(
    readonly base: XsTree,
    private readonly maxNodes: number,
  ) {}

  private record(path: string): boolean {
    if (this.accessed.has(path)) return true;
    if (this.accessed.size >= this.maxNodes) return false;
    this.accessed.set(path, this.base.get(path)?.generation ?? NO_GENERATION);
    return true;
  }

  get(path: string): XsNode | undefined {
    if (this.overlay.has(path)) return this.overlay.get(path);
    const n = this.base.get(path);
    // Reads are recorded while the quota allows (a read past it is still answered).
    this.record(path);
    return n;
  }

  put(node: XsNode): number {
    if (!this.record(node.name)) {
      this.failed = true;
      return 28; // ENOSPC: quota_trans_nodes
    }
    const old = this.get(node.name);
    if (old) this.count(old, -1);
    else this.createdNodes = true;
    this.overlay.set(node.name, { ...node, generation: NO_GENERATION });
    this.count(node, +1);
    return 0;
  }

  del(path: string): number {
    if (!this.record(path)) {
      this.failed = true;
      return 28;
    }
    const old = this.get(path);
    if (old) this.count(old, -1);
    this.overlay.set(path, undefined);
    return 0;
  }

  entries(domid: number): number {
    return this.base.entries(domid) + (this.ownedDelta.get(domid) ?? 0);
  }

  /** True when no node it accessed has changed in the tree since (else the commit is EAGAIN). */
  unchanged(): boolean {
    for (const [path, gen] of this.accessed) if ((this.base.get(path)?.generation ?? NO_GENERATION) !== gen) return false;
    return true;
  }

  /** Applies the overlay to the tree. */
  commit(): void {
    for (const [path, n] of this.overlay) {
      if (n === undefined) this.base.del(path);
      else this.base.put(n);
    }
  }

  private count(n: XsNode, d: number): void {
    const owner = n.perms[0]?.domid ?? 0;
    this.ownedDelta.set(owner, (this.ownedDelta.get(owner) ?? 0) + d);
  }
}
