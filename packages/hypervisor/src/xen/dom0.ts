/**
 * Dom0, the control domain, as the hypervisor's backends see it. vtlab has no dom0 guest: the
 * device model, the toolstack and (next issue) xenstored and the PV backends run in the host
 * process, as TypeScript. They still talk to guests the way dom0 does on Xen: with domid 0
 * (DOMID_SELF-free, a real domain id in every grant and event-channel check), through the same
 * event-channel and grant-table code the guests' hypercalls use, never by reaching into a
 * guest's memory directly. This class is that typed API; the event-channel and grant-table
 * families add their parts to it.
 */
import { PAGE_SIZE } from "@vtlab/arch";
import { DOMID_SELF, GNTMAP_host_map, GNTMAP_readonly, GNTST_bad_copy_arg, GNTST_okay } from "@vtlab/xen-public";
import type { BackendHost } from "@vtlab/pv-backends";
import type { Hypervisor } from "../hypervisor.js";
import { Dom0EventChannels } from "./event_channel.js";
import { copyOne, newGrantTable, type CopySide, type GrantTable } from "./grant_table.js";

/** Xen's domid of the control domain. */
export const DOM0_ID = 0;

export class ControlDomain implements BackendHost {
  readonly id = DOM0_ID;
  readonly name = "Domain-0";
  /**
   * Dom0's event channels (event_channel.ts): allocUnbound, bindInterdomain, send, close,
   * status; events are received with onEvent + dispatch() between scheduler slices, or takePending().
   */
  readonly evtchn: Dom0EventChannels;
  /**
   * Dom0's grant mappings (below): `map(granterDomid, ref, { readonly })`, `unmap`, `copy`,
   * through the same checks as a guest's GNTTABOP_map_grant_ref / _unmap_grant_ref / _copy with
   * domid 0 as the mapper.
   */
  readonly grants: Dom0Grants;
  constructor(readonly hv: Hypervisor) {
    this.evtchn = new Dom0EventChannels(hv);
    this.grants = new Dom0Grants(hv);
  }
}

/**
 * A grant dom0 maps (the host mapping a backend reads and writes a guest's page through). Reads
 * and writes stay inside the 4 KiB page (out of range: `undefined` / `false`, no partial access),
 * and stop working once the mapping is unmapped. While mapped, the frame cannot be reused even
 * if the granting domain gives it up or is destroyed (grant_table.ts).
 */
export interface Dom0GrantMapping {
  /** The maptrack handle (GNTTABOP_map_grant_ref's `handle`). */
  readonly handle: number;
  readonly domid: number;
  readonly ref: number;
  readonly readonly: boolean;
  /** Still mapped. */
  readonly mapped: boolean;
  /** `length` bytes from `offset` of the granted page, or undefined (unmapped, or past the page). */
  read(offset: number, length: number): Uint8Array | undefined;
  /** Write `bytes` at `offset` of the granted page: false if read-only, unmapped, or past the page. */
  write(offset: number, bytes: Uint8Array): boolean;
  /** `into.length` bytes from `offset` copied into `into` (no new buffer): false where `read` is undefined. */
  readInto(offset: number, into: Uint8Array): boolean;
}

/** One side of a dom0 grant copy: a guest's grant, or a host buffer of dom0's. */
/** A grant (offset within its page) or a buffer of dom0's (offset into `bytes`, which may span many pages). */
export type Dom0CopySide = { readonly domid: number; readonly ref: number; readonly offset?: number } | { readonly bytes: Uint8Array; readonly offset?: number };

/** A dom0 GNTTABOP_copy op: `len` bytes from `source` to `dest`; at least one side is a guest's grant. */
export interface Dom0CopyOp {
  readonly source: Dom0CopySide;
  readonly dest: Dom0CopySide;
  readonly len: number;
}

/** Dom0's side of the grant tables: its maptrack, and the typed map/unmap/copy the PV backends use. */
export class Dom0Grants {
  /** Dom0's grant table: the maptrack of its mappings (and, as a granter, an empty table). */
  readonly table: GrantTable;
  /** Successful maps, unmaps and copies (dom0 has no XenStats). */
  maps = 0;
  unmaps = 0;
  copies = 0;

  constructor(private readonly hv: Hypervisor) {
    this.table = newGrantTable(hv, 0, undefined);
  }

  /**
   * Map grant `ref` of domain `granterDomid` for dom0: a mapping, or the GNTST_ error (a negative
   * number) a guest would get for the same GNTTABOP_map_grant_ref with dom0 as the mapper.
   */
  map(granterDomid: number, ref: number, options: { readonly readonly?: boolean } = {}): Dom0GrantMapping | number {
    const ro = options.readonly === true;
    const r = this.table.map(GNTMAP_host_map | (ro ? GNTMAP_readonly : 0), granterDomid, ref, 0, 0);
    if (r.status !== GNTST_okay) return r.status;
    this.maps++;
    const table = this.table;
    const hv = this.hv;
    const handle = r.handle;
    const live = () => {
      const m = table.mappingOf(handle);
      return m !== undefined && m.domid === granterDomid && m.ref === ref ? m : undefined;
    };
    const inPage = (offset: number, length: number) => Number.isInteger(offset) && Number.isInteger(length) && offset >= 0 && length >= 0 && offset + length <= PAGE_SIZE;
    return {
      handle,
      domid: granterDomid,
      ref,
      readonly: ro,
      get mapped() {
        return live() !== undefined;
      },
      read(offset: number, length: number): Uint8Array | undefined {
        const m = live();
        if (m === undefined || !inPage(offset, length)) return undefined;
        const out = new Uint8Array(length);
        hv.memory.readBytes(m.mfn * PAGE_SIZE + offset, out);
        return out;
      },
      write(offset: number, bytes: Uint8Array): boolean {
        const m = live();
        if (m === undefined || m.readonly || !inPage(offset, bytes.length)) return false;
        hv.memory.writeBytes(m.mfn * PAGE_SIZE + offset, bytes);
        return true;
      },
      readInto(offset: number, into: Uint8Array): boolean {
        const m = live();
        if (m === undefined || !inPage(offset, into.length)) return false;
        hv.memory.readBytes(m.mfn * PAGE_SIZE + offset, into);
        return true;
      },
    };
  }

  /** Unmap a mapping (or its handle): GNTST_okay, or GNTST_bad_handle for one not mapped (again). */
  unmap(mapping: Dom0GrantMapping | number): number {
    const handle = typeof mapping === "number" ? mapping : mapping.handle;
    if (typeof mapping !== "number" && !mapping.mapped) return this.table.unmap(-1, 0, 1);
    const status = this.table.unmap(handle, 0, 1);
    if (status === GNTST_okay) this.unmaps++;
    return status;
  }

  /** GNTTABOP_copy for dom0: one GNTST_ status per op. */
  copy(ops: readonly Dom0CopyOp[]): number[] {
    return ops.map((op) => {
      // A backend's buffer side: `offset` is an offset into its bytes (any length), not into a page.
      const at = (s: Dom0CopySide): Uint8Array | undefined => ("bytes" in s ? ((s.offset ?? 0) === 0 ? s.bytes : s.bytes.subarray(s.offset)) : undefined);
      const localSource = at(op.source), localDest = at(op.dest);
      const local = localSource !== undefined ? { side: "source" as const, bytes: localSource } : localDest !== undefined ? { side: "dest" as const, bytes: localDest } : undefined;
      if ("bytes" in op.source && "bytes" in op.dest) return GNTST_bad_copy_arg;
      for (const s of [op.source, op.dest]) if ("bytes" in s && (!Number.isInteger(s.offset ?? 0) || (s.offset ?? 0) < 0 || (s.offset ?? 0) > s.bytes.length)) return GNTST_bad_copy_arg;
      const side = (s: Dom0CopySide): CopySide => ("bytes" in s ? { isGref: false, ref: 0, gmfn: 0, domid: DOMID_SELF, offset: 0 } : { isGref: true, ref: s.ref, gmfn: 0, domid: s.domid, offset: s.offset ?? 0 });
      if (!Number.isInteger(op.len) || op.len < 0 || op.len > 0xffff) return GNTST_bad_copy_arg;
      const status = copyOne(this.table, undefined, side(op.source), side(op.dest), op.len, local);
      if (status === GNTST_okay) this.copies++;
      return status;
    });
  }
}
