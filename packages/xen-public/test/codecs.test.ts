// Codec laws, for every read_<struct>/write_<struct> pair the package exports (a new pair without
// an entry here fails the first test):
//  - value first: write(v) then read gives v back, for values over each field's whole C range;
//  - bytes first: read of arbitrary (hostile) bytes, written and read again, gives the same value;
//  - a write touches only its SIZEOF bytes at the offset, never a byte outside.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import * as X from "@vtlab/xen-public";

const u8 = fc.integer({ min: 0, max: 0xff });
const i8 = fc.integer({ min: -128, max: 127 });
const u16 = fc.integer({ min: 0, max: 0xffff });
const i16 = fc.integer({ min: -0x8000, max: 0x7fff });
const u32 = fc.integer({ min: 0, max: 0xffff_ffff });
const i32 = fc.integer({ min: -0x8000_0000, max: 0x7fff_ffff });
/** A uint64_t held as a number: exact below 2^53. */
const u64 = fc.oneof(fc.maxSafeNat(), fc.integer({ min: 0, max: 0xffff_ffff }));
const cstr = (size: number) => fc.string({ maxLength: size - 1, unit: fc.integer({ min: 1, max: 255 }).map((c) => String.fromCharCode(c)) });
const bytes = (n: number) => fc.uint8Array({ minLength: n, maxLength: n });

interface Codec {
  size: number;
  read: (v: DataView, o: number) => unknown;
  write: (v: DataView, o: number, s: never) => void;
  arb: fc.Arbitrary<unknown>;
  /** What a decoded value becomes after a write (char arrays: a write always NUL-terminates). */
  canon?: (v: never) => unknown;
}
const codec = <T,>(
  size: number,
  read: (v: DataView, o: number) => T,
  write: (v: DataView, o: number, s: T) => void,
  arb: fc.Arbitrary<T>,
  canon?: (v: T) => T,
): Codec => ({ size, read, write: write as (v: DataView, o: number, s: never) => void, arb, canon: canon as ((v: never) => unknown) | undefined });
/** A char[size] holds at most size - 1 characters once written. */
const cut = (size: number) => (s: string) => s.slice(0, size - 1);

const seg = fc.record({ gref: u32, first_sect: u8, last_sect: u8 });
const hdr = fc.record({ flags: u16, domid: u16 });
const timeInfo = fc.record({ version: u32, pad0: u32, tsc_timestamp: u64, system_time: u64, tsc_to_system_mul: u32, tsc_shift: i8, flags: u8 });
const archVcpu = fc.record({ cr2_lo: u32, cr2_hi: u32, pad: u64 });

/** evtchn_status with its union as Xen fills it for `status`. */
const evtchnStatus = fc.oneof(
  fc.record({ dom: u16, port: u32, status: fc.constant(X.EVTCHNSTAT_unbound), vcpu: u32, u: fc.record({ unbound: fc.record({ dom: u16 }) }) }),
  fc.record({ dom: u16, port: u32, status: fc.constant(X.EVTCHNSTAT_interdomain), vcpu: u32, u: fc.record({ interdomain: fc.record({ dom: u16, port: u32 }) }) }),
  fc.record({ dom: u16, port: u32, status: fc.constant(X.EVTCHNSTAT_pirq), vcpu: u32, u: fc.record({ pirq: u32 }) }),
  fc.record({ dom: u16, port: u32, status: fc.constant(X.EVTCHNSTAT_virq), vcpu: u32, u: fc.record({ virq: u32 }) }),
  fc.record({ dom: u16, port: u32, status: fc.constantFrom(X.EVTCHNSTAT_closed, X.EVTCHNSTAT_ipi, 99), vcpu: u32, u: fc.constant({}) }),
) as fc.Arbitrary<X.evtchn_status_t>;

/** grant_entry_v2: the union member follows the header's type and GTF_sub_page. */
const grantV2 = hdr.chain((h): fc.Arbitrary<X.grant_entry_v2_t> => {
  const type = h.flags & X.GTF_type_mask;
  if (type === X.GTF_transitive) return fc.record({ trans_domid: u16, gref: u32 }).map((t) => ({ hdr: h, transitive: t }));
  if (type === X.GTF_permit_access && (h.flags & X.GTF_sub_page) !== 0) {
    return fc.record({ page_off: u16, length: u16, frame: u64 }).map((s) => ({ hdr: h, sub_page: s }));
  }
  return fc.record({ frame: u64 }).map((f) => ({ hdr: h, full_page: f }));
});

const copyPtr = (isGref: boolean): fc.Arbitrary<X.gnttab_copy_ptr_t> =>
  fc.record({ u: isGref ? fc.record({ ref: u32 }) : fc.record({ gmfn: u64 }), domid: u16, offset: u16 }) as fc.Arbitrary<X.gnttab_copy_ptr_t>;
const gnttabCopy = u16.chain((flags) =>
  fc.record({
    source: copyPtr((flags & X.GNTCOPY_source_gref) !== 0),
    dest: copyPtr((flags & X.GNTCOPY_dest_gref) !== 0),
    len: u16,
    flags: fc.constant(flags),
    status: i16,
  }),
);

const extraInfo = fc.oneof(
  fc.record({ type: fc.constant(X.XEN_NETIF_EXTRA_TYPE_GSO), flags: u8, gso: fc.record({ size: u16, type: u8, pad: u8, features: u16 }) }),
  fc.record({ type: fc.constantFrom(X.XEN_NETIF_EXTRA_TYPE_MCAST_ADD, X.XEN_NETIF_EXTRA_TYPE_MCAST_DEL), flags: u8, mcast: fc.record({ addr: bytes(6) }) }),
  fc.record({ type: fc.constant(X.XEN_NETIF_EXTRA_TYPE_HASH), flags: u8, hash: fc.record({ type: u8, algorithm: u8, value: bytes(4) }) }),
  fc.record({ type: fc.constantFrom(X.XEN_NETIF_EXTRA_TYPE_NONE, 5, 200), flags: u8, pad: fc.tuple(u16, u16, u16) }),
) as fc.Arbitrary<X.netif_extra_info_t>;

const blkifRequest = u8.chain((nr) =>
  fc.record({
    operation: u8, nr_segments: fc.constant(nr), handle: u16, id_lo: u32, id_hi: u32, sector_number: u64,
    seg: fc.array(seg, { minLength: Math.min(nr, 11), maxLength: Math.min(nr, 11) }),
  }),
);

const CODECS: Record<string, Codec> = {
  arch_vcpu_info: codec(X.arch_vcpu_info.SIZEOF, X.read_arch_vcpu_info, X.write_arch_vcpu_info, archVcpu),
  arch_shared_info: codec(X.arch_shared_info.SIZEOF, X.read_arch_shared_info, X.write_arch_shared_info,
    fc.record({ max_pfn: u64, pfn_to_mfn_frame_list_list: u64, nmi_reason: u64, p2m_cr3: u64, p2m_vaddr_lo: u32, p2m_vaddr_hi: u32, p2m_generation: u64 })),
  vcpu_time_info: codec(X.vcpu_time_info.SIZEOF, X.read_vcpu_time_info, X.write_vcpu_time_info, timeInfo),
  vcpu_info: codec(X.vcpu_info.SIZEOF, X.read_vcpu_info, X.write_vcpu_info,
    fc.record({ evtchn_upcall_pending: u8, evtchn_upcall_mask: u8, evtchn_pending_sel_lo: u32, evtchn_pending_sel_hi: u32, arch: archVcpu, time: timeInfo })),

  evtchn_alloc_unbound: codec(X.evtchn_alloc_unbound.SIZEOF, X.read_evtchn_alloc_unbound, X.write_evtchn_alloc_unbound, fc.record({ dom: u16, remote_dom: u16, port: u32 })),
  evtchn_bind_interdomain: codec(X.evtchn_bind_interdomain.SIZEOF, X.read_evtchn_bind_interdomain, X.write_evtchn_bind_interdomain,
    fc.record({ remote_dom: u16, remote_port: u32, local_port: u32 })),
  evtchn_bind_virq: codec(X.evtchn_bind_virq.SIZEOF, X.read_evtchn_bind_virq, X.write_evtchn_bind_virq, fc.record({ virq: u32, vcpu: u32, port: u32 })),
  evtchn_bind_pirq: codec(X.evtchn_bind_pirq.SIZEOF, X.read_evtchn_bind_pirq, X.write_evtchn_bind_pirq, fc.record({ pirq: u32, flags: u32, port: u32 })),
  evtchn_bind_ipi: codec(X.evtchn_bind_ipi.SIZEOF, X.read_evtchn_bind_ipi, X.write_evtchn_bind_ipi, fc.record({ vcpu: u32, port: u32 })),
  evtchn_close: codec(X.evtchn_close.SIZEOF, X.read_evtchn_close, X.write_evtchn_close, fc.record({ port: u32 })),
  evtchn_send: codec(X.evtchn_send.SIZEOF, X.read_evtchn_send, X.write_evtchn_send, fc.record({ port: u32 })),
  evtchn_unmask: codec(X.evtchn_unmask.SIZEOF, X.read_evtchn_unmask, X.write_evtchn_unmask, fc.record({ port: u32 })),
  evtchn_status: codec(X.evtchn_status.SIZEOF, X.read_evtchn_status, X.write_evtchn_status, evtchnStatus),
  evtchn_bind_vcpu: codec(X.evtchn_bind_vcpu.SIZEOF, X.read_evtchn_bind_vcpu, X.write_evtchn_bind_vcpu, fc.record({ port: u32, vcpu: u32 })),
  evtchn_reset: codec(X.evtchn_reset.SIZEOF, X.read_evtchn_reset, X.write_evtchn_reset, fc.record({ dom: u16 })),
  evtchn_init_control: codec(X.evtchn_init_control.SIZEOF, X.read_evtchn_init_control, X.write_evtchn_init_control,
    fc.record({ control_gfn: u64, offset: u32, vcpu: u32, link_bits: u8 })),
  evtchn_expand_array: codec(X.evtchn_expand_array.SIZEOF, X.read_evtchn_expand_array, X.write_evtchn_expand_array, fc.record({ array_gfn: u64 })),
  evtchn_set_priority: codec(X.evtchn_set_priority.SIZEOF, X.read_evtchn_set_priority, X.write_evtchn_set_priority, fc.record({ port: u32, priority: u32 })),

  grant_entry_v1: codec(X.grant_entry_v1.SIZEOF, X.read_grant_entry_v1, X.write_grant_entry_v1, fc.record({ flags: u16, domid: u16, frame: u32 })),
  grant_entry_header: codec(X.grant_entry_header.SIZEOF, X.read_grant_entry_header, X.write_grant_entry_header, hdr),
  grant_entry_v2: codec(X.grant_entry_v2.SIZEOF, X.read_grant_entry_v2, X.write_grant_entry_v2, grantV2),
  gnttab_map_grant_ref: codec(X.gnttab_map_grant_ref.SIZEOF, X.read_gnttab_map_grant_ref, X.write_gnttab_map_grant_ref,
    fc.record({ host_addr: u64, flags: u32, ref: u32, dom: u16, status: i16, handle: u32, dev_bus_addr: u64 })),
  gnttab_unmap_grant_ref: codec(X.gnttab_unmap_grant_ref.SIZEOF, X.read_gnttab_unmap_grant_ref, X.write_gnttab_unmap_grant_ref,
    fc.record({ host_addr: u64, dev_bus_addr: u64, handle: u32, status: i16 })),
  gnttab_setup_table: codec(X.gnttab_setup_table.SIZEOF, X.read_gnttab_setup_table, X.write_gnttab_setup_table,
    fc.record({ dom: u16, nr_frames: u32, status: i16, frame_list: u64 })),
  gnttab_dump_table: codec(X.gnttab_dump_table.SIZEOF, X.read_gnttab_dump_table, X.write_gnttab_dump_table, fc.record({ dom: u16, status: i16 })),
  gnttab_transfer: codec(X.gnttab_transfer.SIZEOF, X.read_gnttab_transfer, X.write_gnttab_transfer, fc.record({ mfn: u64, domid: u16, ref: u32, status: i16 })),
  gnttab_copy_ptr: codec(X.gnttab_copy_ptr.SIZEOF, (v, o) => X.read_gnttab_copy_ptr(v, o, false), X.write_gnttab_copy_ptr, copyPtr(false)),
  gnttab_copy: codec(X.gnttab_copy.SIZEOF, X.read_gnttab_copy, X.write_gnttab_copy, gnttabCopy),
  gnttab_query_size: codec(X.gnttab_query_size.SIZEOF, X.read_gnttab_query_size, X.write_gnttab_query_size,
    fc.record({ dom: u16, nr_frames: u32, max_nr_frames: u32, status: i16 })),
  gnttab_unmap_and_replace: codec(X.gnttab_unmap_and_replace.SIZEOF, X.read_gnttab_unmap_and_replace, X.write_gnttab_unmap_and_replace,
    fc.record({ host_addr: u64, new_addr: u64, handle: u32, status: i16 })),
  gnttab_set_version: codec(X.gnttab_set_version.SIZEOF, X.read_gnttab_set_version, X.write_gnttab_set_version, fc.record({ version: u32 })),
  gnttab_get_status_frames: codec(X.gnttab_get_status_frames.SIZEOF, X.read_gnttab_get_status_frames, X.write_gnttab_get_status_frames,
    fc.record({ nr_frames: u32, dom: u16, status: i16, frame_list: u64 })),
  gnttab_get_version: codec(X.gnttab_get_version.SIZEOF, X.read_gnttab_get_version, X.write_gnttab_get_version, fc.record({ dom: u16, pad: u16, version: u32 })),
  gnttab_swap_grant_ref: codec(X.gnttab_swap_grant_ref.SIZEOF, X.read_gnttab_swap_grant_ref, X.write_gnttab_swap_grant_ref, fc.record({ ref_a: u32, ref_b: u32, status: i16 })),

  xen_memory_reservation: codec(X.xen_memory_reservation.SIZEOF, X.read_xen_memory_reservation, X.write_xen_memory_reservation,
    fc.record({ extent_start: u64, nr_extents: u64, extent_order: u32, mem_flags: u32, domid: u16 })),
  xen_add_to_physmap: codec(X.xen_add_to_physmap.SIZEOF, X.read_xen_add_to_physmap, X.write_xen_add_to_physmap,
    fc.record({ domid: u16, size: u16, space: u32, idx: u64, gpfn: u64 })),
  xen_add_to_physmap_batch: codec(X.xen_add_to_physmap_batch.SIZEOF, X.read_xen_add_to_physmap_batch, X.write_xen_add_to_physmap_batch,
    fc.record({ domid: u16, space: u16, size: u16, u: u16, idxs: u64, gpfns: u64, errs: u64 })),
  xen_remove_from_physmap: codec(X.xen_remove_from_physmap.SIZEOF, X.read_xen_remove_from_physmap, X.write_xen_remove_from_physmap, fc.record({ domid: u16, gpfn: u64 })),
  xen_memory_map: codec(X.xen_memory_map.SIZEOF, X.read_xen_memory_map, X.write_xen_memory_map, fc.record({ nr_entries: u32, buffer: u64 })),

  xen_hvm_param: codec(X.xen_hvm_param.SIZEOF, X.read_xen_hvm_param, X.write_xen_hvm_param,
    fc.record({ domid: u16, pad: u16, index: u32, value_lo: u32, value_hi: u32 })),
  xen_hvm_evtchn_upcall_vector: codec(X.xen_hvm_evtchn_upcall_vector.SIZEOF, X.read_xen_hvm_evtchn_upcall_vector, X.write_xen_hvm_evtchn_upcall_vector,
    fc.record({ vcpu: u32, vector: u8 })),
  xen_hvm_get_time: codec(X.xen_hvm_get_time.SIZEOF, X.read_xen_hvm_get_time, X.write_xen_hvm_get_time, fc.record({ now: u64 })),

  sched_shutdown: codec(X.sched_shutdown.SIZEOF, X.read_sched_shutdown, X.write_sched_shutdown, fc.record({ reason: u32 })),
  sched_poll: codec(X.sched_poll.SIZEOF, X.read_sched_poll, X.write_sched_poll, fc.record({ ports: u64, nr_ports: u32, timeout: u64 })),
  sched_remote_shutdown: codec(X.sched_remote_shutdown.SIZEOF, X.read_sched_remote_shutdown, X.write_sched_remote_shutdown, fc.record({ domain_id: u16, reason: u32 })),

  vcpu_runstate_info: codec(X.vcpu_runstate_info.SIZEOF, X.read_vcpu_runstate_info, X.write_vcpu_runstate_info,
    fc.record({ state: i32, state_entry_time_lo: u32, state_entry_time_hi: u32, time: fc.tuple(u64, u64, u64, u64) })),
  vcpu_register_runstate_memory_area: codec(X.vcpu_register_runstate_memory_area.SIZEOF, X.read_vcpu_register_runstate_memory_area,
    X.write_vcpu_register_runstate_memory_area, fc.record({ addr: u64 })),
  vcpu_register_time_memory_area: codec(X.vcpu_register_time_memory_area.SIZEOF, X.read_vcpu_register_time_memory_area,
    X.write_vcpu_register_time_memory_area, fc.record({ addr: u64 })),
  vcpu_set_periodic_timer: codec(X.vcpu_set_periodic_timer.SIZEOF, X.read_vcpu_set_periodic_timer, X.write_vcpu_set_periodic_timer, fc.record({ period_ns: u64 })),
  vcpu_set_singleshot_timer: codec(X.vcpu_set_singleshot_timer.SIZEOF, X.read_vcpu_set_singleshot_timer, X.write_vcpu_set_singleshot_timer,
    fc.record({ timeout_abs_ns: u64, flags: u32 })),
  vcpu_register_vcpu_info: codec(X.vcpu_register_vcpu_info.SIZEOF, X.read_vcpu_register_vcpu_info, X.write_vcpu_register_vcpu_info,
    fc.record({ mfn: u64, offset: u32, rsvd: u32 })),

  xen_extraversion: codec(X.xen_extraversion.SIZEOF, X.read_xen_extraversion, X.write_xen_extraversion, cstr(X.xen_extraversion.SIZEOF), cut(X.xen_extraversion.SIZEOF)),
  xen_capabilities_info: codec(X.xen_capabilities_info.SIZEOF, X.read_xen_capabilities_info, X.write_xen_capabilities_info, cstr(64), cut(X.xen_capabilities_info.SIZEOF)),
  xen_changeset_info: codec(X.xen_changeset_info.SIZEOF, X.read_xen_changeset_info, X.write_xen_changeset_info, cstr(X.xen_changeset_info.SIZEOF), cut(X.xen_changeset_info.SIZEOF)),
  xen_commandline: codec(X.xen_commandline.SIZEOF, X.read_xen_commandline, X.write_xen_commandline, cstr(64), cut(X.xen_commandline.SIZEOF)),
  xen_compile_info: codec(X.xen_compile_info.SIZEOF, X.read_xen_compile_info, X.write_xen_compile_info,
    fc.record({ compiler: cstr(64), compile_by: cstr(16), compile_domain: cstr(32), compile_date: cstr(32) }),
    (c) => ({ compiler: cut(64)(c.compiler), compile_by: cut(16)(c.compile_by), compile_domain: cut(32)(c.compile_domain), compile_date: cut(32)(c.compile_date) })),
  xen_platform_parameters: codec(X.xen_platform_parameters.SIZEOF, X.read_xen_platform_parameters, X.write_xen_platform_parameters,
    fc.record({ virt_start_lo: u32, virt_start_hi: u32 })),
  xen_feature_info: codec(X.xen_feature_info.SIZEOF, X.read_xen_feature_info, X.write_xen_feature_info, fc.record({ submap_idx: u32, submap: u32 })),

  xsd_sockmsg: codec(X.xsd_sockmsg.SIZEOF, X.read_xsd_sockmsg, X.write_xsd_sockmsg, fc.record({ type: u32, req_id: u32, tx_id: u32, len: u32 })),

  blkif_request_segment: codec(X.blkif_request_segment.SIZEOF, X.read_blkif_request_segment, X.write_blkif_request_segment, seg),
  blkif_request: codec(X.blkif_request.SIZEOF, X.read_blkif_request, X.write_blkif_request, blkifRequest),
  blkif_request_discard: codec(X.blkif_request_discard.SIZEOF, X.read_blkif_request_discard, X.write_blkif_request_discard,
    fc.record({ operation: u8, flag: u8, handle: u16, id_lo: u32, id_hi: u32, sector_number: u64, nr_sectors: u64 })),
  blkif_request_indirect: codec(X.blkif_request_indirect.SIZEOF, X.read_blkif_request_indirect, X.write_blkif_request_indirect,
    fc.record({ operation: u8, indirect_op: u8, nr_segments: u16, id_lo: u32, id_hi: u32, sector_number: u64, handle: u16,
      indirect_grefs: fc.array(u32, { minLength: 8, maxLength: 8 }) })),
  blkif_response: codec(X.blkif_response.SIZEOF, X.read_blkif_response, X.write_blkif_response, fc.record({ id_lo: u32, id_hi: u32, operation: u8, status: i16 })),

  netif_tx_request: codec(X.netif_tx_request.SIZEOF, X.read_netif_tx_request, X.write_netif_tx_request,
    fc.record({ gref: u32, offset: u16, flags: u16, id: u16, size: u16 })),
  netif_tx_response: codec(X.netif_tx_response.SIZEOF, X.read_netif_tx_response, X.write_netif_tx_response, fc.record({ id: u16, status: i16 })),
  netif_rx_request: codec(X.netif_rx_request.SIZEOF, X.read_netif_rx_request, X.write_netif_rx_request, fc.record({ id: u16, gref: u32 })),
  netif_rx_response: codec(X.netif_rx_response.SIZEOF, X.read_netif_rx_response, X.write_netif_rx_response,
    fc.record({ id: u16, offset: u16, flags: u16, status: i16 })),
  netif_extra_info: codec(X.netif_extra_info.SIZEOF, X.read_netif_extra_info, X.write_netif_extra_info, extraInfo),
};

const exported = Object.keys(X).filter((k) => k.startsWith("read_") && typeof (X as Record<string, unknown>)[k] === "function");
const SLACK = 24;

describe("codecs", () => {
  it("every exported read_/write_ pair has an entry here, and SIZEOF is the layout's", () => {
    const names = exported.map((k) => k.slice("read_".length)).sort();
    expect(names).toEqual(Object.keys(CODECS).sort());
    for (const n of names) {
      expect(typeof (X as Record<string, unknown>)[`write_${n}`], n).toBe("function");
      const layout = (X as Record<string, unknown>)[n] as { SIZEOF: number };
      expect(CODECS[n]?.size, n).toBe(layout.SIZEOF);
    }
  });

  for (const [name, c] of Object.entries(CODECS)) {
    it(`${name}: write then read is the identity; a write stays inside its SIZEOF bytes`, () => {
      fc.assert(
        fc.property(c.arb, fc.integer({ min: 0, max: SLACK }), (value, at) => {
          const buf = new Uint8Array(c.size + 2 * SLACK).fill(0xee);
          const v = new DataView(buf.buffer);
          c.write(v, at, value as never);
          expect(c.read(v, at)).toEqual(value);
          for (let i = 0; i < buf.length; i++) if (i < at || i >= at + c.size) expect(buf[i], `${name} byte ${i - at}`).toBe(0xee);
        }),
        { numRuns: 150 },
      );
    });
    it(`${name}: hostile bytes decode to a value that round-trips`, () => {
      fc.assert(
        fc.property(bytes(c.size), (raw) => {
          const first = c.read(new DataView(raw.buffer), 0);
          const out = new DataView(new ArrayBuffer(c.size));
          c.write(out, 0, first as never);
          expect(c.read(out, 0)).toEqual(c.canon ? c.canon(first as never) : first);
        }),
        { numRuns: 150 },
      );
    });
  }

  it("little-endian, at the layout offsets (spot checks)", () => {
    const v = new DataView(new ArrayBuffer(64));
    X.write_evtchn_alloc_unbound(v, 0, { dom: 0x7ff0, remote_dom: 1, port: 0x01020304 });
    expect([...new Uint8Array(v.buffer, 0, 8)]).toEqual([0xf0, 0x7f, 1, 0, 4, 3, 2, 1]);
    X.write_xen_hvm_param(v, 0, { domid: 0x7ff0, pad: 0, index: X.HVM_PARAM_CALLBACK_IRQ, value_lo: 0xf3, value_hi: X.HVM_PARAM_CALLBACK_TYPE_VECTOR << 24 });
    expect(v.getUint8(X.xen_hvm_param.value + 7)).toBe(2); // the type in bits 63:56
    X.write_gnttab_map_grant_ref(v, 0, { host_addr: 2 ** 40 + 5, flags: 0, ref: 0, dom: 0, status: X.GNTST_bad_gntref, handle: 0, dev_bus_addr: 0 });
    expect(v.getUint32(X.gnttab_map_grant_ref.host_addr + 4, true)).toBe(0x100);
    expect(v.getInt16(X.gnttab_map_grant_ref.status, true)).toBe(-3);
  });
  it("64-bit numbers: exact below 2^53, monotone above (still >= 2^53), halves where all bits matter", () => {
    const v = new DataView(new ArrayBuffer(16));
    v.setUint32(0, 0xffff_ffff, true);
    v.setUint32(4, 0xffff_ffff, true);
    expect(X.read_evtchn_expand_array(v, 0).array_gfn).toBeGreaterThanOrEqual(2 ** 53);
    X.write_evtchn_expand_array(v, 0, { array_gfn: Number.MAX_SAFE_INTEGER });
    expect(X.read_evtchn_expand_array(v, 0).array_gfn).toBe(Number.MAX_SAFE_INTEGER);
    expect(() => X.write_evtchn_expand_array(v, 0, { array_gfn: -1 })).toThrow(RangeError);
    expect(() => X.write_evtchn_expand_array(v, 0, { array_gfn: 1.5 })).toThrow(RangeError);
    X.write_blkif_response(v, 0, { id_lo: 0xdeadbeef, id_hi: 0xffff_ffff, operation: 0, status: X.BLKIF_RSP_ERROR });
    expect(X.read_blkif_response(v, 0)).toEqual({ id_lo: 0xdeadbeef, id_hi: 0xffff_ffff, operation: 0, status: -1 });
  });
  it("a hostile nr_segments is kept but never reads past the request", () => {
    const v = new DataView(new ArrayBuffer(X.blkif_request.SIZEOF));
    v.setUint8(X.blkif_request.nr_segments, 255);
    const r = X.read_blkif_request(v, 0);
    expect(r.nr_segments).toBe(255);
    expect(r.seg.length).toBe(X.BLKIF_MAX_SEGMENTS_PER_REQUEST);
    expect(() => X.write_blkif_request(v, 0, { ...r, seg: [...r.seg, ...r.seg] })).toThrow(RangeError);
  });
  it("char arrays: NUL-terminated, truncated to SIZEOF - 1, zero-filled", () => {
    const v = new DataView(new ArrayBuffer(X.xen_extraversion.SIZEOF));
    new Uint8Array(v.buffer).fill(0x41);
    expect(X.read_xen_extraversion(v, 0)).toBe("A".repeat(16)); // no NUL: all 16 bytes
    X.write_xen_extraversion(v, 0, "-vtlab-with-a-long-tail");
    expect(X.read_xen_extraversion(v, 0)).toBe("-vtlab-with-a-l");
    X.write_xen_extraversion(v, 0, ".0");
    expect([...new Uint8Array(v.buffer)].slice(2).every((b) => b === 0)).toBe(true);
  });
  it("shared_info helpers", () => {
    expect(X.shared_info_vcpu_info(1)).toBe(64);
    expect(X.shared_info_evtchn_pending_byte(4095)).toBe(X.shared_info.evtchn_pending + 511);
    expect(X.shared_info_evtchn_mask_byte(8)).toBe(X.shared_info.evtchn_mask + 1);
  });
});
