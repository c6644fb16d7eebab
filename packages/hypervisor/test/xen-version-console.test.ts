/**
 * The hypercall table's own rules (CPL, unknown numbers, dom0-only families), xen_version and
 * console_io, from guest machine code on EPT and on shadow, with hostile pointers and counts.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import {
  CONSOLEIO_read,
  CONSOLEIO_write,
  HYPERVISOR_console_io,
  HYPERVISOR_domctl,
  HYPERVISOR_platform_op,
  HYPERVISOR_sysctl,
  HYPERVISOR_xen_version,
  XENFEAT_auto_translated_physmap,
  XENFEAT_hvm_callback_vector,
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
import { HC_DATA, runHypercalls } from "./hypercall-guest.js";

const cstr = (b: Uint8Array) => String.fromCharCode(...b.subarray(0, b.indexOf(0) < 0 ? b.length : b.indexOf(0)));
const MMIO_HOLE = 0xfee0_0000; // the local APIC page: not RAM
const BEYOND_RAM = 0x7f0_0000; // above the 8 MiB domain

describe.each([true, false])("hypercall table, xen_version and console_io (hap=%s)", (hap) => {
  it("answers xen_version as Xen 4.17 answers an HVM domU", () => {
    const r = runHypercalls(
      [
        { nr: HYPERVISOR_xen_version, args: [XENVER_version, 0] },
        { nr: HYPERVISOR_xen_version, args: [XENVER_extraversion, HC_DATA] },
        { nr: HYPERVISOR_xen_version, args: [XENVER_compile_info, HC_DATA + 0x100] },
        { nr: HYPERVISOR_xen_version, args: [XENVER_capabilities, HC_DATA + 0x400] },
        { nr: HYPERVISOR_xen_version, args: [XENVER_changeset, HC_DATA + 0x200] },
        { nr: HYPERVISOR_xen_version, args: [XENVER_platform_parameters, HC_DATA + 0x280] },
        { nr: HYPERVISOR_xen_version, args: [XENVER_get_features, HC_DATA + 0x290] },
        { nr: HYPERVISOR_xen_version, args: [XENVER_pagesize, 0] },
        { nr: HYPERVISOR_xen_version, args: [XENVER_pagesize, HC_DATA] },
        { nr: HYPERVISOR_xen_version, args: [XENVER_guest_handle, HC_DATA + 0x2a0] },
        { nr: HYPERVISOR_xen_version, args: [XENVER_commandline, HC_DATA + 0x2c0] },
        { nr: HYPERVISOR_xen_version, args: [XENVER_build_id, HC_DATA] },
        { nr: HYPERVISOR_xen_version, args: [99, HC_DATA] },
      ],
      { hap, data: Uint8Array.from({ length: 0x300 }, (_, i) => (i >= 0x290 && i < 0x298 ? 0 : 0xaa)) }, // submap_idx 0 at 0x290
    );
    expect(r.domain.exitCode).toBe(0);
    expect(r.results).toEqual([(4 << 16) | 17, 0, 0, 0, 0, 0, 0, 4096, -XEN_EINVAL, 0, 0, -XEN_EPERM, -XEN_ENOSYS]);
    expect(cstr(r.read(HC_DATA, 16))).toBe(".0-vtlab");
    expect(cstr(r.read(HC_DATA + 0x100, 64))).toBe("vtlab (TypeScript)");
    expect(cstr(r.read(HC_DATA + 0x400, 1024))).toContain("hvm-3.0-x86_64");
    expect(Array.from(r.read(HC_DATA + 0x280, 8))).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
    const fi = new DataView(r.read(HC_DATA + 0x290, 8).buffer);
    expect(fi.getUint32(0, true)).toBe(0);
    const submap = fi.getUint32(4, true);
    expect(submap & (1 << XENFEAT_hvm_callback_vector)).not.toBe(0);
    expect(submap & (1 << XENFEAT_auto_translated_physmap)).not.toBe(0);
    expect(cstr(r.read(HC_DATA + 0x2c0, 16))).toBe("<denied>");
    expect(r.domain.xen.stats.snapshot().hypercalls).toEqual({ xen_version: 13 });
  });

  it("answers bad pointers with -EFAULT and a bad feature submap with -EINVAL", () => {
    const features = new Uint8Array(16);
    new DataView(features.buffer).setUint32(8, 1, true); // submap_idx 1 at HC_DATA + 8
    const r = runHypercalls(
      [
        { nr: HYPERVISOR_xen_version, args: [XENVER_extraversion, MMIO_HOLE] },
        { nr: HYPERVISOR_xen_version, args: [XENVER_extraversion, BEYOND_RAM] },
        { nr: HYPERVISOR_xen_version, args: [XENVER_capabilities, 0x7ff_fe00] }, // crosses the end of RAM
        { nr: HYPERVISOR_xen_version, args: [XENVER_get_features, HC_DATA + 8] },
        { nr: HYPERVISOR_xen_version, args: [XENVER_get_features, 0xffff_fffc] },
      ],
      { hap, data: features },
    );
    expect(r.results).toEqual([-XEN_EFAULT, -XEN_EFAULT, -XEN_EFAULT, -XEN_EINVAL, -XEN_EFAULT]);
  });

  it("answers dom0-only families with -EPERM and unknown numbers with -ENOSYS, counted by number", () => {
    const r = runHypercalls(
      [{ nr: HYPERVISOR_domctl }, { nr: HYPERVISOR_sysctl }, { nr: HYPERVISOR_platform_op }, { nr: 1000 }, { nr: 1000 }, { nr: 0xffff_ffff }, { nr: 44 }],
      { hap },
    );
    expect(r.results).toEqual([-XEN_EPERM, -XEN_EPERM, -XEN_EPERM, -XEN_ENOSYS, -XEN_ENOSYS, -XEN_ENOSYS, -XEN_ENOSYS]);
    const s = r.domain.xen.stats.snapshot();
    expect(s.unknownHypercalls).toEqual({ "44": 1, "1000": 2, "4294967295": 1 });
    expect(s.hypercalls).toEqual({ domctl: 1, platform_op: 1, sysctl: 1 });
  });

  it("writes console_io to the domain's console, printable characters only, line by line", () => {
    const text = "hello\tfrom\x01 the guest\nsecond line\x7f!\n";
    let out = "";
    const r = runHypercalls(
      [
        { nr: HYPERVISOR_console_io, args: [CONSOLEIO_write, text.length, HC_DATA] },
        { nr: HYPERVISOR_console_io, args: [CONSOLEIO_read, 16, HC_DATA + 0x100] },
        { nr: HYPERVISOR_console_io, args: [7, 1, HC_DATA] },
        { nr: HYPERVISOR_console_io, args: [CONSOLEIO_write, 64, MMIO_HOLE] },
      ],
      { hap, data: Uint8Array.from(text, (c) => c.charCodeAt(0)), onConsole: (t) => (out += t) },
    );
    expect(r.results).toEqual([0, -XEN_EPERM, -XEN_ENOSYS, -XEN_EFAULT]);
    expect(out).toBe("hello\tfrom the guest\nsecond line!\n");
  });

  it("continues a long console write instead of doing it in one exit (Xen's continuation)", () => {
    const n = 0x3000; // 12 KiB: several continuations of 32 * 127 bytes
    const data = new Uint8Array(n).fill(0x41);
    for (let i = 99; i < n; i += 100) data[i] = 0x0a;
    let out = "";
    const r = runHypercalls([{ nr: HYPERVISOR_console_io, args: [CONSOLEIO_write, n, HC_DATA] }], { hap, data, onConsole: (t) => (out += t) });
    expect(r.results).toEqual([0]);
    expect(out.length).toBe(Math.floor(n / 100) * 100);
    expect(r.domain.xen.stats.continuations).toBeGreaterThanOrEqual(2);
    // One guest-visible hypercall, counted once per VMCALL the guest re-executed.
    expect(r.domain.xen.stats.snapshot().hypercalls.console_io).toBe(r.domain.xen.stats.continuations + 1);
  });

  it("never throws and never touches another domain on hostile xen_version/console_io arguments", () => {
    fc.assert(
      fc.property(fc.constantFrom(HYPERVISOR_xen_version, HYPERVISOR_console_io), fc.array(fc.integer({ min: 0, max: 0xffff_ffff }), { minLength: 3, maxLength: 3 }), (nr, [a0, a1, a2]) => {
        const r = runHypercalls([{ nr, args: [a0! % 16, a1!, a2!] }], { hap });
        const x = r.results[0]!;
        expect(r.domain.state).not.toBe("crashed");
        expect(x >= 0 || [XEN_EFAULT, XEN_EINVAL, XEN_ENOSYS, XEN_EPERM].includes(-x)).toBe(true);
      }),
      { numRuns: 25 },
    );
  });
});
