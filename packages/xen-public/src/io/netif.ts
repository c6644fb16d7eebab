// xen/io/netif.h: struct layouts (x86_64). Each object is named like the C type: SIZEOF, then the byte
// offset of each field under its C name (a nested struct: its offset; its fields are in its own
// object; members of an anonymous or inline struct/union: "outer.inner", offset from the start).
// Checked against the real header with gcc by test/layout.test.ts.

import {
  XEN_NETIF_EXTRA_TYPE_GSO,
  XEN_NETIF_EXTRA_TYPE_HASH,
  XEN_NETIF_EXTRA_TYPE_MCAST_ADD,
  XEN_NETIF_EXTRA_TYPE_MCAST_DEL,
} from "../constants.js";
import { readBytes, writeBytes } from "../internal/dataview.js";

/** `struct netif_tx_request` */
export const netif_tx_request = {
  SIZEOF: 12,
  gref: 0, // grant_ref_t
  offset: 4, // uint16_t
  flags: 6, // uint16_t: NETTXF_*
  id: 8, // uint16_t
  size: 10, // uint16_t
} as const;

/** `struct netif_extra_info` */
export const netif_extra_info = {
  SIZEOF: 8,
  type: 0, // uint8_t: XEN_NETIF_EXTRA_TYPE_*
  flags: 1, // uint8_t: XEN_NETIF_EXTRA_FLAG_*
  u: 2, // union
  "u.gso.size": 2, // uint16_t
  "u.gso.type": 4, // uint8_t: XEN_NETIF_GSO_TYPE_*
  "u.gso.pad": 5, // uint8_t
  "u.gso.features": 6, // uint16_t
  "u.mcast.addr": 2, // uint8_t[6]
  "u.hash.type": 2, // uint8_t
  "u.hash.algorithm": 3, // uint8_t
  "u.hash.value": 4, // uint8_t[4]
  "u.pad": 2, // uint16_t[3]
} as const;

/** `struct netif_tx_response` */
export const netif_tx_response = {
  SIZEOF: 4,
  id: 0, // uint16_t
  status: 2, // int16_t: NETIF_RSP_*
} as const;

/** `struct netif_rx_request` */
export const netif_rx_request = {
  SIZEOF: 8,
  id: 0, // uint16_t
  pad: 2, // uint16_t
  gref: 4, // grant_ref_t
} as const;

/** `struct netif_rx_response` */
export const netif_rx_response = {
  SIZEOF: 8,
  id: 0, // uint16_t
  offset: 2, // uint16_t
  flags: 4, // uint16_t: NETRXF_*
  status: 6, // int16_t: NETIF_RSP_* or length
} as const;

/** `union netif_tx_sring_entry` */
export const netif_tx_sring_entry = {
  SIZEOF: 12,
  req: 0, // struct netif_tx_request
  rsp: 0, // struct netif_tx_response
} as const;

/** `struct netif_tx_sring` */
export const netif_tx_sring = {
  SIZEOF: 76,
  req_prod: 0, // RING_IDX
  req_event: 4, // RING_IDX
  rsp_prod: 8, // RING_IDX
  rsp_event: 12, // RING_IDX
  pvt: 16, // union
  __pad: 20, // uint8_t[44]
  ring: 64, // union netif_tx_sring_entry[]
} as const;

/** `union netif_rx_sring_entry` */
export const netif_rx_sring_entry = {
  SIZEOF: 8,
  req: 0, // struct netif_rx_request
  rsp: 0, // struct netif_rx_response
} as const;

/** `struct netif_rx_sring` */
export const netif_rx_sring = {
  SIZEOF: 72,
  req_prod: 0, // RING_IDX
  req_event: 4, // RING_IDX
  rsp_prod: 8, // RING_IDX
  rsp_event: 12, // RING_IDX
  pvt: 16, // union
  __pad: 20, // uint8_t[44]
  ring: 64, // union netif_rx_sring_entry[]
} as const;

// ---------------------------------------------------------------------------------------------
// Codecs (see event_channel.ts for the convention).

export interface netif_tx_request_t { gref: number; offset: number; flags: number; id: number; size: number }
export function read_netif_tx_request(v: DataView, o: number): netif_tx_request_t {
  const L = netif_tx_request;
  return {
    gref: v.getUint32(o + L.gref, true),
    offset: v.getUint16(o + L.offset, true),
    flags: v.getUint16(o + L.flags, true),
    id: v.getUint16(o + L.id, true),
    size: v.getUint16(o + L.size, true),
  };
}
export function write_netif_tx_request(v: DataView, o: number, s: netif_tx_request_t): void {
  const L = netif_tx_request;
  v.setUint32(o + L.gref, s.gref, true);
  v.setUint16(o + L.offset, s.offset, true);
  v.setUint16(o + L.flags, s.flags, true);
  v.setUint16(o + L.id, s.id, true);
  v.setUint16(o + L.size, s.size, true);
}

export interface netif_tx_response_t { id: number; status: number }
export function read_netif_tx_response(v: DataView, o: number): netif_tx_response_t {
  return { id: v.getUint16(o + netif_tx_response.id, true), status: v.getInt16(o + netif_tx_response.status, true) };
}
export function write_netif_tx_response(v: DataView, o: number, s: netif_tx_response_t): void {
  v.setUint16(o + netif_tx_response.id, s.id, true);
  v.setInt16(o + netif_tx_response.status, s.status, true);
}

export interface netif_rx_request_t { id: number; gref: number }
export function read_netif_rx_request(v: DataView, o: number): netif_rx_request_t {
  return { id: v.getUint16(o + netif_rx_request.id, true), gref: v.getUint32(o + netif_rx_request.gref, true) };
}
export function write_netif_rx_request(v: DataView, o: number, s: netif_rx_request_t): void {
  v.setUint16(o + netif_rx_request.id, s.id, true);
  v.setUint16(o + netif_rx_request.pad, 0, true);
  v.setUint32(o + netif_rx_request.gref, s.gref, true);
}

/** `status`: NETIF_RSP_* when negative, else the received length. */
export interface netif_rx_response_t { id: number; offset: number; flags: number; status: number }
export function read_netif_rx_response(v: DataView, o: number): netif_rx_response_t {
  const L = netif_rx_response;
  return {
    id: v.getUint16(o + L.id, true),
    offset: v.getUint16(o + L.offset, true),
    flags: v.getUint16(o + L.flags, true),
    status: v.getInt16(o + L.status, true),
  };
}
export function write_netif_rx_response(v: DataView, o: number, s: netif_rx_response_t): void {
  const L = netif_rx_response;
  v.setUint16(o + L.id, s.id, true);
  v.setUint16(o + L.offset, s.offset, true);
  v.setUint16(o + L.flags, s.flags, true);
  v.setInt16(o + L.status, s.status, true);
}

/**
 * `netif_extra_info`, its union decoded by `type`: XEN_NETIF_EXTRA_TYPE_GSO -> gso,
 * MCAST_ADD/MCAST_DEL -> mcast, HASH -> hash, anything else -> pad (the three raw uint16_t).
 * Byte arrays are private copies.
 */
export type netif_extra_info_t = { type: number; flags: number } & (
  | { gso: { size: number; type: number; pad: number; features: number } }
  | { mcast: { addr: Uint8Array } }
  | { hash: { type: number; algorithm: number; value: Uint8Array } }
  | { pad: [number, number, number] }
);
export function read_netif_extra_info(v: DataView, o: number): netif_extra_info_t {
  const L = netif_extra_info;
  const type = v.getUint8(o + L.type);
  const flags = v.getUint8(o + L.flags);
  if (type === XEN_NETIF_EXTRA_TYPE_GSO) {
    return {
      type, flags,
      gso: {
        size: v.getUint16(o + L["u.gso.size"], true),
        type: v.getUint8(o + L["u.gso.type"]),
        pad: v.getUint8(o + L["u.gso.pad"]),
        features: v.getUint16(o + L["u.gso.features"], true),
      },
    };
  }
  if (type === XEN_NETIF_EXTRA_TYPE_MCAST_ADD || type === XEN_NETIF_EXTRA_TYPE_MCAST_DEL) {
    return { type, flags, mcast: { addr: readBytes(v, o + L["u.mcast.addr"], 6) } };
  }
  if (type === XEN_NETIF_EXTRA_TYPE_HASH) {
    return {
      type, flags,
      hash: { type: v.getUint8(o + L["u.hash.type"]), algorithm: v.getUint8(o + L["u.hash.algorithm"]), value: readBytes(v, o + L["u.hash.value"], 4) },
    };
  }
  return { type, flags, pad: [v.getUint16(o + L["u.pad"], true), v.getUint16(o + L["u.pad"] + 2, true), v.getUint16(o + L["u.pad"] + 4, true)] };
}
/** Writes all 8 bytes: the member present, the rest of the union zero. */
export function write_netif_extra_info(v: DataView, o: number, s: netif_extra_info_t): void {
  const L = netif_extra_info;
  v.setUint8(o + L.type, s.type);
  v.setUint8(o + L.flags, s.flags);
  for (let i = L.u; i < L.SIZEOF; i++) v.setUint8(o + i, 0);
  if ("gso" in s) {
    v.setUint16(o + L["u.gso.size"], s.gso.size, true);
    v.setUint8(o + L["u.gso.type"], s.gso.type);
    v.setUint8(o + L["u.gso.pad"], s.gso.pad);
    v.setUint16(o + L["u.gso.features"], s.gso.features, true);
  } else if ("mcast" in s) writeBytes(v, o + L["u.mcast.addr"], 6, s.mcast.addr);
  else if ("hash" in s) {
    v.setUint8(o + L["u.hash.type"], s.hash.type);
    v.setUint8(o + L["u.hash.algorithm"], s.hash.algorithm);
    writeBytes(v, o + L["u.hash.value"], 4, s.hash.value);
  } else for (let i = 0; i < 3; i++) v.setUint16(o + L["u.pad"] + 2 * i, s.pad[i] ?? 0, true);
}
