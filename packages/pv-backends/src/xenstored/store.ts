// xenstored (cxenstored of Xen 4.17, tools/xenstore/xenstored_{core,watch,transaction,domain}.c)
// as a TypeScript class: the tree with permissions, watches, transactions and quotas, the
// operations of the wire protocol, one connection per introduced domain over its xenstore ring
// (connection.ts), and an in-process API for dom0's own code (the toolstack and the backends),
// which acts as a privileged connection of domid 0 the way dom0's libxenstore does.
//
// Modelled more simply than cxenstored (see the README):
// - nodes live in a Map, not a TDB; no live update, no XS_CONTROL, no DIRECTORY_PART
//   generation strings beyond the node's generation, no XS_SET_TARGET / XS_RESUME (ENOSYS);
// - the memory quota counts a connection's queued output and its watches (not its nodes, which
//   the entry and size quotas already bound);
// - permissions naming a domain that does not exist are not marked XS_PERM_IGNORE;
// - a watch on a node removed inside a transaction fires at commit with the permissions the
//   node had in the transaction (cxenstored looks the removed node up again and finds nothing);
// - dom0's in-process watches may repeat a path and token (each registration is its own).
import {
  latin1Decode,
  utf8Decode,
  utf8Encode,
  GNTTAB_RESERVED_XENSTORE,
  XEN_E2BIG,
  XEN_EACCES,
  XEN_EAGAIN,
  XEN_EBUSY,
  XEN_EEXIST,
  XEN_EINVAL,
  XEN_ENOENT,
  XEN_ENOMEM,
  XEN_ENOSPC,
  XEN_ENOSYS,
  XEN_EPERM,
  XENSTORE_PAYLOAD_MAX,
  XENSTORE_REL_PATH_MAX,
  XS_DIRECTORY,
  XS_ERROR,
  XS_GET_DOMAIN_PATH,
  XS_GET_PERMS,
  XS_INTRODUCE,
  XS_IS_DOMAIN_INTRODUCED,
  XS_MKDIR,
  XS_READ,
  XS_RELEASE,
  XS_RESET_WATCHES,
  XS_RM,
  XS_SET_PERMS,
  XS_TRANSACTION_END,
  XS_TRANSACTION_START,
  XS_UNWATCH,
  XS_WATCH,
  XS_WRITE,
  XS_CONTROL,
  XS_RESUME,
  XS_SET_TARGET,
  XS_DIRECTORY_PART,
  XS_TYPE_COUNT,
  xsd_errors,
} from "@vtlab/xen-public";
import type { BackendGrantMapping, BackendHost } from "../host.js";
import { basename, canonicalize, childPath, isChild, isValidNodename, parentOf, watchEventPath } from "./path.js";
import { permForDomain, permFromString, permToString, XS_PERM_OWNER, XS_PERM_READ, XS_PERM_WRITE, type XsPerm } from "./perms.js";
import { XENSTORED_DEFAULT_QUOTAS, type XenStoreQuotas } from "./quota.js";
import { EMPTY, nodeRecordSize, TxView, XsTree, type XsNode, type XsView } from "./tree.js";
import { DomainConnection } from "./connection.js";

export type { XsPerm } from "./perms.js";

/** A watch: a canonical node (or "@special"), a token, and the domain path of a relative one. */
export interface XsWatch {
  readonly node: string;
  readonly token: string;
  readonly relativeTo: string | undefined;
  readonly callback?: (path: string, token: string) => void;
}

/** What the store needs of a connection (dom0's in-process one, or a domain's ring). */
export interface XsConnection {
  readonly id: number;
  readonly privileged: boolean;
  readonly implicitPath: string;
  readonly watches: XsWatch[];
  readonly transactions: Map<number, XsTransaction>;
  nextTransactionId: number;
  /** Transactions started and not ended (conn->transaction_started). */
  transactionsStarted: number;
  /** Queue a watch event (errors cannot be reported: send_event drops what it cannot queue). */
  queueEvent(path: string, token: string, watch: XsWatch): void;
  /** Memory charged to the connection (domain_memory_add): queued output and watches. */
  memory: number;
}

export interface XsTransaction {
  readonly id: number;
  readonly view: TxView;
  /** Watch events to fire at commit: the node's name, exact match only, its last permissions. */
  readonly watches: { name: string; exact: boolean; perms: readonly XsPerm[] | undefined }[];
}

/** A reply: XS_ERROR with an xsd_errors string, or the request's type with its payload. */
export interface XsReply {
  readonly type: number;
  readonly payload: Uint8Array;
}


/** Bytes to a JS string, one char per byte (paths are checked against valid_chars afterwards). */
export function bytesToLatin1(b: Uint8Array): string {
  return latin1Decode(b);
}
export function latin1ToBytes(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i) & 0xff;
  return out;
}

/** The NUL-terminated strings at the start of `b` (an unterminated tail is not one: get_strings). */
export function splitStrings(b: Uint8Array, max = Infinity): { strings: string[]; end: number } {
  const strings: string[] = [];
  let start = 0;
  for (let i = 0; i < b.length && strings.length < max; i++) {
    if (b[i] === 0) {
      strings.push(bytesToLatin1(b.subarray(start, i)));
      start = i + 1;
    }
  }
  return { strings, end: start };
}

/** onearg: exactly one NUL, at the end. */
function oneArg(b: Uint8Array): string | undefined {
  if (b.length === 0 || b.indexOf(0) !== b.length - 1) return undefined;
  return bytesToLatin1(b.subarray(0, b.length - 1));
}

function strings0(list: readonly string[]): Uint8Array {
  let n = 0;
  for (const s of list) n += s.length + 1;
  const out = new Uint8Array(n);
  let o = 0;
  for (const s of list) {
    for (let i = 0; i < s.length; i++) out[o++] = s.charCodeAt(i) & 0xff;
    out[o++] = 0;
  }
  return out;
}

const OK = strings0(["OK"]);

/** The xsd_errors string of an errno (EINVAL if it has none, as send_error). */
export function xsdErrorString(errno: number): string {
  for (const e of xsd_errors) if (e.errnum === errno) return e.errstring;
  return "EINVAL";
}

function errorReply(errno: number): XsReply {
  return { type: XS_ERROR, payload: strings0([xsdErrorString(errno)]) };
}

/** Dom0 inside the host process: privileged, domid 0, its watches call back. */
class Dom0Connection implements XsConnection {
  readonly id = 0;
  readonly privileged = true;
  readonly implicitPath = "/local/domain/0";
  readonly watches: XsWatch[] = [];
  readonly transactions = new Map<number, XsTransaction>();
  nextTransactionId = 1;
  transactionsStarted = 0;
  memory = 0;
  constructor(private readonly store: XenStore) {}
  queueEvent(path: string, token: string, watch: XsWatch): void {
    if (watch.callback) this.store.queueCallback(watch, path, token);
  }
}

export interface XenStoreOptions {
  readonly quotas?: Partial<XenStoreQuotas>;
  /** Where xenstored's syslog lines go (bad clients, dropped events). */
  readonly log?: (line: string) => void;
}

export class XenStore {
  readonly quotas: XenStoreQuotas;
  readonly tree: XsTree;
  private readonly dom0: Dom0Connection;
  private readonly domains = new Map<number, DomainConnection>();
  private readonly callbacks: { watch: XsWatch; path: string; token: string }[] = [];
  private draining = false;
  /** Permissions of the special watch paths (@introduceDomain, @releaseDomain): dom0 only by default. */
  private readonly specialPerms = new Map<string, readonly XsPerm[]>();
  readonly log: (line: string) => void;

  constructor(options: XenStoreOptions = {}) {
    this.quotas = { ...XENSTORED_DEFAULT_QUOTAS, ...options.quotas };
    this.log = options.log ?? (() => undefined);
    // setup_structure: "/" owned by dom0, nobody else may read it.
    this.tree = new XsTree([{ domid: 0, perm: "n" }]);
    this.dom0 = new Dom0Connection(this);
  }

  // -------------------------------------------------------------------------------------------
  // Dom0's in-process API (privileged, domid 0). Relative paths are under /local/domain/0.

  /** The value of `path` (as UTF-8), or undefined (absent or invalid path). */
  read(path: string): string | undefined {
    const r = this.readBytes(path);
    return r === undefined ? undefined : utf8Decode(r);
  }

  readBytes(path: string): Uint8Array | undefined {
    const n = this.getNode(this.dom0, this.tree, canonicalize(path, this.dom0.implicitPath), XS_PERM_READ);
    return typeof n === "number" ? undefined : n.value;
  }

  /** Writes `value` (UTF-8), creating missing parents as xenstored does. 0 or an errno (bad path: EINVAL). */
  write(path: string, value: string | Uint8Array): number {
    const bytes = typeof value === "string" ? utf8Encode(value) : value;
    return this.run(() => this.doWrite(this.dom0, undefined, canonicalize(path, this.dom0.implicitPath), bytes));
  }

  mkdir(path: string): number {
    return this.run(() => this.doMkdir(this.dom0, undefined, canonicalize(path, this.dom0.implicitPath)));
  }

  /** Removes `path` and everything below it (0 also when it did not exist but its parent does). */
  rm(path: string): number {
    return this.run(() => this.doRm(this.dom0, undefined, canonicalize(path, this.dom0.implicitPath)));
  }

  /** Child names in creation order, or undefined. */
  directory(path: string): string[] | undefined {
    const n = this.getNode(this.dom0, this.tree, canonicalize(path, this.dom0.implicitPath), XS_PERM_READ);
    return typeof n === "number" ? undefined : [...n.children];
  }

  getPerms(path: string): XsPerm[] | undefined {
    const n = this.getNode(this.dom0, this.tree, canonicalize(path, this.dom0.implicitPath), XS_PERM_READ);
    return typeof n === "number" ? undefined : n.perms.map((p) => ({ ...p }));
  }

  /** Sets the permission list (first entry: owner and default). 0 or an errno. */
  setPerms(path: string, perms: readonly XsPerm[]): number {
    return this.run(() => this.doSetPerms(this.dom0, undefined, canonicalize(path, this.dom0.implicitPath), perms));
  }

  /**
   * Watches `path` and below: `callback(path, token)` runs once now (xenstored fires every new
   * watch once) and after every change at or below `path`, after the change completed. Returns
   * the unwatch function. An invalid path registers nothing (xenstored answers EINVAL).
   */
  watch(path: string, token: string, callback: (path: string, token: string) => void): () => void {
    const relative = !path.startsWith("/") && !path.startsWith("@");
    const node = canonicalize(path, this.dom0.implicitPath);
    // check_watch_path: a bad path is EINVAL; here nothing is registered (a no-op unwatch).
    if (node.startsWith("@") ? node.length > XENSTORE_REL_PATH_MAX : !isValidNodename(node, this.quotas.maxPathLen)) {
      this.log(`xenstored: dom0 watch on invalid path ${JSON.stringify(path)} ignored`);
      return () => undefined;
    }
    const w: XsWatch = { node, token, relativeTo: relative ? this.dom0.implicitPath : undefined, callback };
    this.dom0.watches.push(w);
    this.queueCallback(w, watchEventPath(node, w.relativeTo), token);
    this.drain();
    return () => {
      const i = this.dom0.watches.indexOf(w);
      if (i >= 0) this.dom0.watches.splice(i, 1);
    };
  }

  /** "/local/domain/<domid>" (talloc_domain_path). */
  getDomainPath(domid: number): string {
    return `/local/domain/${domid >>> 0}`;
  }

  /**
   * XS_INTRODUCE: serve domain `domid` over its mapped xenstore ring page, `port` being dom0's
   * local port bound to the guest's store port. The store owns both from now on: releaseDomain unmaps the
   * page and closes the port (as xenstored, which maps and binds them itself). Fires @introduceDomain. false if already introduced.
   */
  introduceDomain(domid: number, ring: BackendGrantMapping, port: number, host: BackendHost): boolean {
    if (this.domains.has(domid) || domid === 0) return false;
    const conn = new DomainConnection(this, domid, ring, port, host);
    this.domains.set(domid, conn);
    this.run(() => {
      this.fireWatches(this.dom0, undefined, "@introduceDomain", false, undefined, undefined);
      return 0;
    });
    conn.poll();
    return true;
  }

  /**
   * What libxl and xenstored do together for a new domain: map its xenstore page (grant ref
   * GNTTAB_RESERVED_XENSTORE), bind dom0 to its store port `remotePort` (HVM_PARAM_STORE_EVTCHN),
   * introduce it. True, or why not (nothing is left mapped or bound then).
   */
  connectDomain(host: BackendHost, domid: number, remotePort: number): true | string {
    if (this.domains.has(domid)) return `xenstored: domain ${domid} is already introduced`;
    const ring = host.grants.map(domid, GNTTAB_RESERVED_XENSTORE);
    if (typeof ring === "number") return `xenstored: map of grant ${GNTTAB_RESERVED_XENSTORE} of domain ${domid} failed (GNTST ${ring})`;
    const port = host.evtchn.bindInterdomain(domid, remotePort);
    if (port < 0) {
      host.grants.unmap(ring);
      return `xenstored: bind to port ${remotePort} of domain ${domid} failed (${port})`;
    }
    if (!this.introduceDomain(domid, ring, port, host)) {
      host.evtchn.close(port);
      host.grants.unmap(ring);
      return `xenstored: domain ${domid} cannot be introduced`;
    }
    return true;
  }

  /** XS_RELEASE: drop the domain's connection (watches, transactions, queued output). Fires @releaseDomain. */
  releaseDomain(domid: number): boolean {
    const conn = this.domains.get(domid);
    if (!conn) return false;
    conn.close();
    this.domains.delete(domid);
    this.run(() => {
      this.fireWatches(this.dom0, undefined, "@releaseDomain", false, undefined, undefined);
      return 0;
    });
    return true;
  }

  isDomainIntroduced(domid: number): boolean {
    return domid === 0 || this.domains.has(domid);
  }

  /** The connection of an introduced domain (its counters; tests and the demo). */
  connection(domid: number): DomainConnection | undefined {
    return this.domains.get(domid);
  }

  /** Services every domain's ring (what xenstored's poll loop does); the hypervisor runs it between slices. */
  poll(): void {
    for (const c of this.domains.values()) c.poll();
  }

  // -------------------------------------------------------------------------------------------
  // Watch callbacks of dom0: delivered after the operation that caused them, in order.

  /** @internal */
  queueCallback(watch: XsWatch, path: string, token: string): void {
    // Bounded like a connection's queue: a callback storm past the memory quota is dropped.
    if (this.callbacks.length >= 65536) {
      this.log(`xenstored: dropping watch event ${path} for dom0 (queue full)`);
      return;
    }
    this.callbacks.push({ watch, path, token });
  }

  private drain(): void {
    if (this.draining) return;
    this.draining = true;
    try {
      for (let e = this.callbacks.shift(); e !== undefined; e = this.callbacks.shift()) {
        if (this.dom0.watches.includes(e.watch)) e.watch.callback?.(e.path, e.token);
      }
    } finally {
      this.draining = false;
    }
    this.flush();
  }

  private run(f: () => number): number {
    const r = f();
    this.drain();
    return r;
  }

  private readonly dirty = new Set<DomainConnection>();
  private flushing = false;

  /** @internal A connection got output outside its own poll: written out after the current operation. */
  markOutput(c: DomainConnection): void {
    this.dirty.add(c);
  }

  private flush(): void {
    if (this.flushing) return;
    this.flushing = true;
    try {
      for (const c of this.dirty) {
        this.dirty.delete(c);
        c.flushOutput();
      }
    } finally {
      this.flushing = false;
    }
  }

  // -------------------------------------------------------------------------------------------
  // The wire protocol: one request of a connection, answered with one reply (process_message).

  private readonly afterReply: (() => void)[] = [];

  /** @internal One request of `conn`: `reply` gets the answer, then events the request queues after it (a new watch's first event). */
  handleMessage(conn: XsConnection, type: number, txId: number, payload: Uint8Array, reply: (r: XsReply) => void): void {
    this.afterReply.length = 0;
    const r = this.process(conn, type, txId, payload);
    reply(r);
    for (const f of this.afterReply.splice(0)) f();
    this.drain();
  }

  private process(conn: XsConnection, type: number, txId: number, payload: Uint8Array): XsReply {
    if (type >= XS_TYPE_COUNT || !KNOWN.has(type)) return errorReply(XEN_ENOSYS);
    if (PRIV.has(type) && !conn.privileged) return errorReply(XEN_EACCES);
    let tx: XsTransaction | undefined;
    if (!NOTID.has(type) && txId !== 0) {
      tx = conn.transactions.get(txId);
      if (!tx) return errorReply(XEN_ENOENT);
    }
    const r = this.dispatch(conn, tx, type, payload);
    if (typeof r === "number") return errorReply(r);
    return { type, payload: r };
  }

  private dispatch(conn: XsConnection, tx: XsTransaction | undefined, type: number, payload: Uint8Array): Uint8Array | number {
    const view: XsView = tx ? tx.view : this.tree;
    const ack = (e: number): Uint8Array | number => (e === 0 ? OK : e);
    switch (type) {
      case XS_READ:
      case XS_DIRECTORY:
      case XS_GET_PERMS: {
        const name = oneArg(payload);
        if (name === undefined) return XEN_EINVAL;
        const n = this.getNode(conn, view, canonicalize(name, conn.implicitPath), XS_PERM_READ);
        if (typeof n === "number") return n;
        if (type === XS_READ) return n.value;
        if (type === XS_DIRECTORY) return strings0(n.children);
        return strings0(n.perms.map(permToString));
      }
      case XS_DIRECTORY_PART: {
        const { strings } = splitStrings(payload, 2);
        const [name, offStr] = strings;
        if (name === undefined || offStr === undefined) return XEN_EINVAL;
        const n = this.getNode(conn, view, canonicalize(name, conn.implicitPath), XS_PERM_READ);
        if (typeof n === "number") return n;
        return directoryPart(n, parseInt(offStr, 10) || 0);
      }
      case XS_WRITE: {
        const { strings, end } = splitStrings(payload, 1);
        const name = strings[0];
        if (name === undefined) return XEN_EINVAL;
        return ack(this.doWrite(conn, tx, canonicalize(name, conn.implicitPath), payload.slice(end)));
      }
      case XS_MKDIR: {
        const name = oneArg(payload);
        if (name === undefined) return XEN_EINVAL;
        return ack(this.doMkdir(conn, tx, canonicalize(name, conn.implicitPath)));
      }
      case XS_RM: {
        const name = oneArg(payload);
        if (name === undefined) return XEN_EINVAL;
        return ack(this.doRm(conn, tx, canonicalize(name, conn.implicitPath)));
      }
      case XS_SET_PERMS: {
        const { strings } = splitStrings(payload);
        if (strings.length < 2) return XEN_EINVAL;
        const [name, ...permStrs] = strings as [string, ...string[]];
        if (!conn.privileged && permStrs.length > this.quotas.permsPerNode) return XEN_ENOSPC;
        const perms: XsPerm[] = [];
        for (const s of permStrs) {
          const p = permFromString(s);
          if (!p) return XEN_EINVAL;
          perms.push(p);
        }
        return ack(this.doSetPerms(conn, tx, canonicalize(name, conn.implicitPath), perms));
      }
      case XS_WATCH: {
        const { strings } = splitStrings(payload, 2);
        const [path, token] = strings;
        if (path === undefined || token === undefined) return XEN_EINVAL;
        return ack(this.doWatch(conn, path, token));
      }
      case XS_UNWATCH: {
        const { strings } = splitStrings(payload, 2);
        const [path, token] = strings;
        if (path === undefined || token === undefined) return XEN_EINVAL;
        const node = canonicalize(path, conn.implicitPath);
        const i = conn.watches.findIndex((w) => w.node === node && w.token === token);
        if (i < 0) return XEN_ENOENT;
        const [w] = conn.watches.splice(i, 1);
        if (w) conn.memory -= w.node.length + w.token.length;
        return OK;
      }
      case XS_TRANSACTION_START: {
        if (tx) return XEN_EBUSY;
        // do_transaction_start checks `started > quota`: one more than the quota is accepted, as in Xen.
        if (!conn.privileged && conn.transactionsStarted > this.quotas.transactionsPerDomain) return XEN_ENOSPC;
        let id = conn.nextTransactionId;
        for (let guard = 0; id === 0 || conn.transactions.has(id); guard++) {
          id = (id + 1) >>> 0;
          if (guard > conn.transactions.size + 1) return XEN_ENOSPC;
        }
        conn.nextTransactionId = (id + 1) >>> 0;
        conn.transactions.set(id, { id, view: new TxView(this.tree, this.quotas.nodesPerTransaction), watches: [] });
        conn.transactionsStarted++;
        return strings0([String(id)]);
      }
      case XS_TRANSACTION_END: {
        const arg = oneArg(payload);
        if (arg !== "T" && arg !== "F") return XEN_EINVAL;
        if (!tx) return XEN_ENOENT;
        conn.transactions.delete(tx.id);
        conn.transactionsStarted--;
        if (arg === "F") return OK;
        return ack(this.commit(conn, tx));
      }
      case XS_GET_DOMAIN_PATH: {
        const arg = oneArg(payload);
        if (arg === undefined) return XEN_EINVAL;
        return strings0([this.getDomainPath(atoi(arg))]);
      }
      case XS_RESET_WATCHES: {
        for (const w of conn.watches) conn.memory -= w.node.length + w.token.length;
        conn.watches.length = 0;
        conn.transactions.clear();
        conn.transactionsStarted = 0;
        return OK;
      }
      case XS_IS_DOMAIN_INTRODUCED: {
        const arg = oneArg(payload);
        if (arg === undefined) return XEN_EINVAL;
        return strings0([this.isDomainIntroduced(atoi(arg)) ? "T" : "F"]);
      }
      default:
        // XS_INTRODUCE / XS_RELEASE over the wire (dom0 introduces through the API), XS_CONTROL, ...
        return XEN_ENOSYS;
    }
  }

  // -------------------------------------------------------------------------------------------
  // The operations (xenstored_core.c), on the tree or a transaction's view.

  /** get_node: the node if `conn` has `perm` on it; else ENOENT / EACCES as errno_from_parents tells. */
  private getNode(conn: XsConnection, view: XsView, name: string, perm: number): XsNode | number {
    if (!isValidNodename(name, this.quotas.maxPathLen)) return XEN_EINVAL;
    const n = view.get(name);
    let errno: number;
    if (n) {
      if ((permForDomain(conn.id, conn.privileged, n.perms) & perm) === perm) return n;
      errno = XEN_EACCES;
    } else errno = XEN_ENOENT;
    // errno_from_parents: say ENOENT only to who may `perm` the nearest existing ancestor.
    let p = name;
    let parent: XsNode | undefined;
    do {
      p = parentOf(p);
      parent = view.get(p);
    } while (!parent && p !== "/");
    const parentPerm = parent ? permForDomain(conn.id, conn.privileged, parent.perms) : 0;
    return parentPerm & perm ? errno : XEN_EACCES;
  }

  private checkSize(conn: XsConnection, n: Pick<XsNode, "perms" | "value" | "children">): boolean {
    return conn.privileged || nodeRecordSize(n) < this.quotas.maxEntrySize;
  }

  /** create_node: the missing ancestors and the node, inheriting the parent's perms (owner: an unprivileged creator). */
  private createNode(conn: XsConnection, view: XsView, name: string, value: Uint8Array): XsNode | number {
    const names: string[] = [];
    let p = name;
    let parent: XsNode | undefined;
    for (;;) {
      names.push(p);
      const pp = parentOf(p);
      parent = view.get(pp);
      if (parent) break;
      if (pp === "/") return XEN_ENOENT; // no root: cannot happen
      p = pp;
    }
    const writes: XsNode[] = [];
    let entries = view.entries(conn.id);
    let node: XsNode | undefined;
    for (let i = names.length - 1; i >= 0; i--) {
      const child = names[i] as string;
      if (!conn.privileged && entries >= this.quotas.entriesPerDomain) return XEN_ENOSPC;
      const updatedParent: XsNode = { ...parent, children: [...parent.children, basename(child)] };
      if (!this.checkSize(conn, updatedParent)) return XEN_ENOSPC;
      writes.push(updatedParent);
      const perms: XsPerm[] = parent.perms.map((x, j): XsPerm => (j === 0 && !conn.privileged ? { domid: conn.id, perm: x.perm } : x));
      node = { name: child, value: i === 0 ? value : EMPTY, children: [], perms, generation: 0 };
      if (!this.checkSize(conn, node)) return XEN_ENOSPC;
      if (!conn.privileged) entries++;
      parent = node;
    }
    if (!node) return XEN_EINVAL;
    writes.push(node);
    // Later writes of the same parent supersede earlier ones (each new node updates its parent once).
    for (const w of writes) {
      const e = view.put(w);
      if (e) return e;
    }
    return node;
  }

  private doWrite(conn: XsConnection, tx: XsTransaction | undefined, name: string, value: Uint8Array): number {
    const view: XsView = tx ? tx.view : this.tree;
    const n = this.getNode(conn, view, name, XS_PERM_WRITE);
    let node: XsNode;
    if (typeof n === "number") {
      if (n !== XEN_ENOENT) return n;
      const c = this.createNode(conn, view, name, value);
      if (typeof c === "number") return c;
      node = c;
    } else {
      node = { ...n, value };
      if (!this.checkSize(conn, node)) return XEN_ENOSPC;
      const e = view.put(node);
      if (e) return e;
    }
    this.fireWatches(conn, tx, name, false, node.perms, undefined);
    return 0;
  }

  private doMkdir(conn: XsConnection, tx: XsTransaction | undefined, name: string): number {
    const view: XsView = tx ? tx.view : this.tree;
    const n = this.getNode(conn, view, name, XS_PERM_WRITE);
    if (typeof n !== "number") return 0;
    if (n !== XEN_ENOENT) return n;
    const c = this.createNode(conn, view, name, EMPTY);
    if (typeof c === "number") return c;
    this.fireWatches(conn, tx, name, false, c.perms, undefined);
    return 0;
  }

  private doRm(conn: XsConnection, tx: XsTransaction | undefined, name: string): number {
    const view: XsView = tx ? tx.view : this.tree;
    const n = this.getNode(conn, view, name, XS_PERM_WRITE);
    if (typeof n === "number") {
      // Didn't exist already? Fine, if the parent exists.
      if (n === XEN_ENOENT && view.get(parentOf(name))) return 0;
      return n;
    }
    if (name === "/") return XEN_EINVAL;
    const parent = view.get(parentOf(name));
    if (!parent) return XEN_EINVAL;
    // Children first (walk_node_tree's exit callback), each firing watches while its perms are known.
    const order: XsNode[] = [];
    const stack: { node: XsNode; next: number }[] = [{ node: n, next: 0 }];
    while (stack.length > 0) {
      const top = stack[stack.length - 1] as { node: XsNode; next: number };
      const childName = top.node.children[top.next];
      if (childName === undefined) {
        order.push(top.node);
        stack.pop();
        continue;
      }
      top.next++;
      const c = view.get(childPath(top.node.name, childName));
      if (c) stack.push({ node: c, next: 0 });
    }
    for (const d of order) {
      const e = view.del(d.name);
      if (e) return e;
      this.fireWatches(conn, tx, d.name, d.name !== name, d.perms, undefined);
    }
    const base = basename(name);
    return view.put({ ...parent, children: parent.children.filter((c) => c !== base) });
  }

  private doSetPerms(conn: XsConnection, tx: XsTransaction | undefined, name: string, perms: readonly XsPerm[]): number {
    if (perms.length === 0) return XEN_EINVAL;
    if (name.startsWith("@")) {
      if (name !== "@introduceDomain" && name !== "@releaseDomain") return XEN_EINVAL;
      const cur = this.specialPerms.get(name) ?? [{ domid: 0, perm: "n" }];
      if ((permForDomain(conn.id, conn.privileged, cur) & (XS_PERM_WRITE | XS_PERM_OWNER)) !== (XS_PERM_WRITE | XS_PERM_OWNER)) return XEN_EACCES;
      this.specialPerms.set(name, perms.map((p) => ({ ...p })));
      return 0;
    }
    const view: XsView = tx ? tx.view : this.tree;
    const n = this.getNode(conn, view, name, XS_PERM_WRITE | XS_PERM_OWNER);
    if (typeof n === "number") return n;
    if (!conn.privileged && perms[0]?.domid !== n.perms[0]?.domid) return XEN_EPERM;
    const node: XsNode = { ...n, perms: perms.map((p) => ({ ...p })) };
    if (!this.checkSize(conn, node)) return XEN_ENOSPC;
    // A new generation even for the same list, as write_node does.
    const e = view.put(node);
    if (e) return e;
    this.fireWatches(conn, tx, name, false, node.perms, n.perms);
    return 0;
  }

  private doWatch(conn: XsConnection, path: string, token: string): number {
    let node: string;
    const relative = !path.startsWith("/") && !path.startsWith("@");
    if (path.startsWith("@")) {
      if (path.length > XENSTORE_REL_PATH_MAX) return XEN_EINVAL;
      node = path;
    } else {
      node = canonicalize(path, conn.implicitPath);
      if (!isValidNodename(node, this.quotas.maxPathLen)) return XEN_EINVAL;
    }
    if (conn.watches.some((w) => w.node === node && w.token === token)) return XEN_EEXIST;
    // do_watch checks `count > quota`: one more than the quota is accepted, as in Xen.
    if (!conn.privileged && conn.watches.length > this.quotas.watchesPerDomain) return XEN_E2BIG;
    const w: XsWatch = { node, token, relativeTo: relative ? conn.implicitPath : undefined };
    conn.watches.push(w);
    conn.memory += node.length + token.length;
    // Fire once up front, after the ack (do_watch's send_event follows send_ack).
    this.afterReply.push(() => conn.queueEvent(watchEventPath(node, w.relativeTo), token, w));
    return 0;
  }

  private commit(conn: XsConnection, tx: XsTransaction): number {
    if (tx.view.failed) return XEN_ENOMEM;
    if (!tx.view.unchanged()) return XEN_EAGAIN;
    if (!conn.privileged && tx.view.createdNodes && tx.view.entries(conn.id) > this.quotas.entriesPerDomain) return XEN_ENOSPC;
    tx.view.commit();
    for (const w of tx.watches) this.fireWatches(conn, undefined, w.name, w.exact, this.tree.get(w.name)?.perms ?? w.perms, undefined);
    return 0;
  }

  /** fire_watches: an event for each watch at or above `name` of each connection that may read it (or its parent). */
  private fireWatches(conn: XsConnection, tx: XsTransaction | undefined, name: string, exact: boolean, perms: readonly XsPerm[] | undefined, oldPerms: readonly XsPerm[] | undefined): void {
    if (tx) {
      tx.watches.push({ name, exact, perms });
      return;
    }
    const special = name.startsWith("@");
    for (const c of this.connections()) {
      if (special) {
        const sp = this.specialPerms.get(name) ?? [{ domid: 0, perm: "n" }];
        if (!(permForDomain(c.id, c.privileged, sp) & XS_PERM_READ)) continue;
      } else if (!this.watchPermitted(c, name, perms, oldPerms)) continue;
      for (const w of c.watches) {
        if (exact ? name === w.node : isChild(name, w.node)) c.queueEvent(watchEventPath(name, w.relativeTo), w.token, w);
      }
    }
  }

  /** watch_permitted: the node (with old or new permissions) or its parent is readable by the watcher. */
  private watchPermitted(c: XsConnection, name: string, perms: readonly XsPerm[] | undefined, oldPerms: readonly XsPerm[] | undefined): boolean {
    if (c.privileged) return true;
    if (oldPerms && permForDomain(c.id, false, oldPerms) & XS_PERM_READ) return true;
    const p = perms ?? this.tree.get(name)?.perms;
    if (!p) return false;
    if (permForDomain(c.id, false, p) & XS_PERM_READ) return true;
    const parent = this.tree.get(parentOf(name));
    return parent !== undefined && (permForDomain(c.id, false, parent.perms) & XS_PERM_READ) !== 0;
  }

  private *connections(): IterableIterator<XsConnection> {
    yield this.dom0;
    for (const c of this.domains.values()) if (!c.ignored) yield c;
  }
}

/** atoi: leading decimal digits after optional space and sign, 0 if none. */
function atoi(s: string): number {
  const m = /^\s*([+-]?\d+)/.exec(s);
  return m ? (parseInt(m[1] as string, 10) | 0) : 0;
}

/** send_directory_part: "<generation>\0" then as many child names as fit, a final "" when the list ends. */
function directoryPart(n: XsNode, off: number): Uint8Array {
  const children = strings0(n.children);
  const gen = `${n.generation}`;
  if (off >= children.length) return strings0([gen, ""]);
  const maxlen = XENSTORE_PAYLOAD_MAX - (gen.length + 1) - 1;
  let len = 0;
  let end = false;
  while (off + len < children.length) {
    const nul = children.indexOf(0, off + len);
    const l = nul - (off + len);
    if (len + l >= maxlen) break;
    len += l + 1;
    if (off + len === children.length) {
      end = true;
      break;
    }
  }
  const out = new Uint8Array(gen.length + 1 + len + (end ? 1 : 0));
  out.set(latin1ToBytes(gen), 0);
  out.set(children.subarray(off, off + len), gen.length + 1);
  return out;
}

const KNOWN = new Set([XS_DIRECTORY, XS_READ, XS_GET_PERMS, XS_WATCH, XS_UNWATCH, XS_TRANSACTION_START, XS_TRANSACTION_END, XS_INTRODUCE, XS_RELEASE, XS_GET_DOMAIN_PATH, XS_WRITE, XS_MKDIR, XS_RM, XS_SET_PERMS, XS_IS_DOMAIN_INTRODUCED, XS_RESUME, XS_SET_TARGET, XS_RESET_WATCHES, XS_DIRECTORY_PART, XS_CONTROL]);
const PRIV = new Set([XS_CONTROL, XS_INTRODUCE, XS_RELEASE, XS_IS_DOMAIN_INTRODUCED, XS_RESUME, XS_SET_TARGET]);
const NOTID = new Set([XS_WATCH, XS_UNWATCH, XS_INTRODUCE, XS_RELEASE, XS_IS_DOMAIN_INTRODUCED, XS_RESUME, XS_SET_TARGET, XS_CONTROL]);
