// xen/io/netif.h: struct layouts (x86_64). Each object is named like the C type: SIZEOF, then the byte
// offset of each field under its C name (a nested struct: its offset; its fields are in its own
// object; members of an anonymous or inline struct/union: "outer.inner", offset from the start).
// Checked against the real header with gcc by test/layout.test.ts.

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
