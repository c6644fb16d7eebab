/**
 * What the backends need from the hypervisor: dom0's side of the event channels and the grant
 * tables, as Xen's dom0 kernel offers them to xenstored and the backend drivers (evtchn and
 * gntdev devices). This package sits below the hypervisor in the package table, so it declares
 * the seam and the hypervisor's `ControlDomain` (`hv.dom0`) implements it; backends never see a
 * guest's memory except through a grant they mapped or copied.
 */

/** A granted page dom0 has mapped: bounded reads and writes inside the 4 KiB page, until unmapped. */
export interface BackendGrantMapping {
  readonly handle: number;
  readonly domid: number;
  readonly ref: number;
  readonly readonly: boolean;
  readonly mapped: boolean;
  /** `length` bytes from `offset`, or undefined (unmapped, or past the page). */
  read(offset: number, length: number): Uint8Array | undefined;
  /** false if read-only, unmapped or past the page. */
  write(offset: number, bytes: Uint8Array): boolean;
  /** Optional: `into.length` bytes from `offset` copied into `into` (no new buffer); false where `read` fails. */
  readInto?(offset: number, into: Uint8Array): boolean;
}

/** One side of a grant copy: a guest's grant, or a buffer of the backend's. */
export type BackendCopySide = { readonly domid: number; readonly ref: number; readonly offset?: number } | { readonly bytes: Uint8Array; readonly offset?: number };

export interface BackendCopyOp {
  readonly source: BackendCopySide;
  readonly dest: BackendCopySide;
  readonly len: number;
}

/** Dom0's grant operations (GNTTABOP_map_grant_ref, unmap_grant_ref, copy with domid 0 as the mapper). */
export interface BackendGrants {
  /** A mapping, or a GNTST_* code (negative). */
  map(granterDomid: number, ref: number, options?: { readonly readonly?: boolean }): BackendGrantMapping | number;
  /** GNTST_okay or a GNTST_* code. */
  unmap(mapping: BackendGrantMapping | number): number;
  /** One GNTST_* status per op. */
  copy(ops: readonly BackendCopyOp[]): number[];
}

/** Dom0's event channels. Events arrive at `dispatch()`, which the hypervisor runs between scheduler slices. */
export interface BackendEventChannels {
  /** A port of dom0's that `remoteDomid` may bind, or -errno. */
  allocUnbound(remoteDomid: number): number;
  /** A port of dom0's bound to `remotePort` of `remoteDomid`, or -errno. */
  bindInterdomain(remoteDomid: number, remotePort: number): number;
  /** 0 or -errno. */
  send(port: number): number;
  /** 0 or -errno. */
  close(port: number): number;
  /** Run `handler` for each event on `port` at dispatch (undefined: stop). */
  onEvent(port: number, handler: ((port: number) => void) | undefined): void;
}

/** The host side of a backend: dom0's grants and event channels. */
export interface BackendHost {
  readonly grants: BackendGrants;
  readonly evtchn: BackendEventChannels;
}
