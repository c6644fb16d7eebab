/**
 * HYPERVISOR_xen_version (xen/common/kernel.c do_xen_version, xen/include/public/version.h), as
 * Xen 4.17 answers an HVM domU: the version, the strings (extraversion, compile info,
 * capabilities, changeset), platform parameters (virt_start 0 for HVM), the feature submap, the
 * page size, the domain handle. XSM's default policy (xsm/dummy.h xsm_xen_version): commandline
 * reads "<denied>" and build_id is -EPERM for a domain that is not privileged. Unknown commands
 * are -ENOSYS.
 */
import {
  XENFEAT_auto_translated_physmap,
  XENFEAT_hvm_callback_vector,
  XENFEAT_hvm_safe_pvclock,
  XENFEAT_memory_op_vnode_supported,
  XENFEAT_not_direct_mapped,
  XENFEAT_writable_page_tables,
  XENVER_build_id,
  XENVER_capabilities,
  XENVER_changeset,
  XENVER_commandline,
  XENVER_compile_info,
  XENVER_extraversion,
  XENVER_get_features,
  XENVER_guest_handle,
  XENVER_pagesize,
  XENVER_platform_parameters,
  XENVER_version,
  XEN_EFAULT,
  XEN_EINVAL,
  XEN_ENOSYS,
  XEN_EPERM,
} from "@vtlab/xen-public";
import { PAGE_SIZE } from "@vtlab/arch";
import type { ExitContext } from "../exits.js";
import { copyFromGuest, copyToGuest } from "../guest-memory.js";
import type { HypercallArgs } from "./table.js";

/** The Xen version vtlab reports (the release whose public headers it follows). */
export const XEN_MAJOR_VERSION = 4;
export const XEN_MINOR_VERSION = 17;
/** XENVER_extraversion: what follows major.minor in the version string (at most 15 characters). */
export const XEN_EXTRA_VERSION = ".0-vtlab";
/** XENVER_capabilities on an x86-64 Xen with PV and HVM (xen/arch/x86/setup.c arch_get_xen_caps). */
export const XEN_CAPABILITIES = "xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64 ";
/** XENVER_compile_info fields: vtlab is no gcc build, so it says what it is. */
export const XEN_COMPILE_INFO = { compiler: "vtlab (TypeScript)", compile_by: "vtlab", compile_domain: "vtlab.invalid", compile_date: "" } as const;
/** XENVER_changeset: Xen's is the hg/git id of the tree; vtlab names itself. */
export const XEN_CHANGESET = "vtlab model of Xen 4.17";
/** Xen's xen_deny(): what a denied string query reads. */
const XEN_DENY = "<denied>";

/** Sizes of the version.h types: xen_extraversion_t, xen_compile_info_t, xen_capabilities_info_t, xen_changeset_info_t, xen_domain_handle_t, xen_commandline_t. */
const EXTRAVERSION_LEN = 16;
const COMPILE_INFO = { compiler: [0, 64], compile_by: [64, 16], compile_domain: [80, 32], compile_date: [112, 32], SIZEOF: 144 } as const;
const CAPABILITIES_LEN = 1024;
const CHANGESET_LEN = 64;
const DOMAIN_HANDLE_LEN = 16;
const COMMANDLINE_LEN = 1024;
/** struct xen_platform_parameters { xen_ulong_t virt_start; } and struct xen_feature_info { unsigned int submap_idx; uint32_t submap; }. */
const PLATFORM_PARAMETERS_LEN = 8;
const FEATURE_INFO_LEN = 8;

const buf = new Uint8Array(CAPABILITIES_LEN);

/** Write `s` as a NUL-padded C string of `len` bytes at buf[at..] (safe_strcpy: truncated to len - 1). */
function putString(at: number, len: number, s: string): void {
  buf.fill(0, at, at + len);
  const n = Math.min(s.length, len - 1);
  for (let i = 0; i < n; i++) buf[at + i] = s.charCodeAt(i) & 0x7f;
}

function copyOut(ctx: ExitContext, ptr: number, len: number): number {
  return copyToGuest(ctx, ptr, buf, len) === len ? 0 : -XEN_EFAULT;
}

/** The XENVER_get_features submap 0 of an HVM domU on Xen 4.17 (translated paging, no PIRQs, not direct-mapped). */
export const HVM_FEATURE_SUBMAP0 =
  ((1 << XENFEAT_memory_op_vnode_supported) |
    (1 << XENFEAT_writable_page_tables) |
    (1 << XENFEAT_auto_translated_physmap) |
    (1 << XENFEAT_hvm_safe_pvclock) |
    (1 << XENFEAT_hvm_callback_vector) |
    (1 << XENFEAT_not_direct_mapped)) >>>
  0;

/** HYPERVISOR_xen_version(int cmd, XEN_GUEST_HANDLE_PARAM(void) arg). */
export function do_xen_version(ctx: ExitContext, a: HypercallArgs): number {
  const cmd = a.int(0);
  const arg = a.ptr(1);
  switch (cmd) {
    case XENVER_version:
      return ((XEN_MAJOR_VERSION << 16) | XEN_MINOR_VERSION) >>> 0;
    case XENVER_extraversion:
      putString(0, EXTRAVERSION_LEN, XEN_EXTRA_VERSION);
      return copyOut(ctx, arg, EXTRAVERSION_LEN);
    case XENVER_compile_info:
      for (const k of ["compiler", "compile_by", "compile_domain", "compile_date"] as const) putString(COMPILE_INFO[k][0], COMPILE_INFO[k][1], XEN_COMPILE_INFO[k]);
      return copyOut(ctx, arg, COMPILE_INFO.SIZEOF);
    case XENVER_capabilities:
      putString(0, CAPABILITIES_LEN, XEN_CAPABILITIES);
      return copyOut(ctx, arg, CAPABILITIES_LEN);
    case XENVER_changeset:
      putString(0, CHANGESET_LEN, XEN_CHANGESET);
      return copyOut(ctx, arg, CHANGESET_LEN);
    case XENVER_platform_parameters:
      // virt_start is 0 for HVM vCPUs (only 64-bit PV guests get HYPERVISOR_VIRT_START).
      buf.fill(0, 0, PLATFORM_PARAMETERS_LEN);
      return copyOut(ctx, arg, PLATFORM_PARAMETERS_LEN);
    case XENVER_get_features: {
      if (copyFromGuest(ctx, arg, buf, FEATURE_INFO_LEN) !== FEATURE_INFO_LEN) return -XEN_EFAULT;
      const view = new DataView(buf.buffer, 0, FEATURE_INFO_LEN);
      if (view.getUint32(0, true) !== 0) return -XEN_EINVAL; // submap_idx: XENFEAT_NR_SUBMAPS is 1
      view.setUint32(4, HVM_FEATURE_SUBMAP0, true);
      return copyOut(ctx, arg, FEATURE_INFO_LEN);
    }
    case XENVER_pagesize:
      return arg !== 0 ? -XEN_EINVAL : PAGE_SIZE;
    case XENVER_guest_handle: {
      // The domain's handle (xl's UUID): vtlab derives a fixed one from the domid, deterministic run after run.
      buf.fill(0, 0, DOMAIN_HANDLE_LEN);
      const id = ctx.domain.id;
      buf[12] = (id >>> 24) & 0xff;
      buf[13] = (id >>> 16) & 0xff;
      buf[14] = (id >>> 8) & 0xff;
      buf[15] = id & 0xff;
      buf[0] = 0x76; // 'v'
      buf[1] = 0x74; // 't'
      return copyOut(ctx, arg, DOMAIN_HANDLE_LEN);
    }
    case XENVER_commandline:
      // Denied to an unprivileged domain: Xen copies xen_deny() with its NUL.
      putString(0, COMMANDLINE_LEN, XEN_DENY);
      return copyOut(ctx, arg, XEN_DENY.length + 1);
    case XENVER_build_id:
      return -XEN_EPERM;
    default:
      return -XEN_ENOSYS;
  }
}

