#!/usr/bin/env python3
"""Writes images/xentest.expected: the console of the xentest guest (c/xentest/xentest.c) on a
Xen-style hypervisor, computed on the host. QEMU is no Xen, so nothing here comes from a run:
the fixed lines are what the guest prints when every check passes, the numbers are Xen's ABI
(xen/include/public, the platform device's ids and BAR sizes, the order in which Xen hands out
event-channel ports) and vtlab's documented choices (the version string), and every computed
value is recomputed the way the guest computes it:

- the FNV-1a 64 of the hypercall page as Xen writes it for a VMX guest (init_hypercall_page:
  the page filled with INT3 (0xCC), then for each of the 128 32-byte stubs `mov $i, %eax;
  vmcall; ret` = b8 <i, 4 bytes LE> 0f 01 c1 c3, except __HYPERVISOR_iret (23): ud2 = 0f 0b);
- the FNV-1a 64 of the page the dom0 peer writes into the granted page (32-bit word i,
  little-endian, = (i * 2654435761) ^ 0x5eed0000 ^ ref, mod 2^32);
- the PASS checksum: fnv64_u64 of the hypercall-page hash, the pattern hash and the timer count.

    python3 scripts/xentest-expected.py [IMAGES_DIR]          write IMAGES_DIR/xentest.expected
    python3 scripts/xentest-expected.py --check [IMAGES_DIR]  compare instead; exit 1 if different
"""
import os
import struct
import sys

M64 = (1 << 64) - 1
FNV_INIT = 0xCBF29CE484222325


def fnv64(h, data):
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & M64
    return h


def fnv64_u64(h, v):
    return fnv64(h, struct.pack("<Q", v & M64))


# xen/include/public/xen.h
HYPERVISOR_iret = 23
# xen/include/public/grant_table.h: GNTTAB_NR_RESERVED_ENTRIES, the first reference a guest uses.
TEST_GREF = 8
# The timer upcalls of the default command line (`timers=5`).
TIMERS = 5
# Xen 4.17 (the version vtlab reports; packages/hypervisor/src/xen/xen_version.ts gives the
# extraversion ".0-vtlab").
XEN_VERSION = "4.17"
XEN_EXTRA_VERSION = ".0-vtlab"
# Event-channel ports: Xen's get_free_port hands out the lowest free port from 1. The guest binds,
# in order, VIRQ_TIMER, an IPI, an unbound port and the port bound to it, and the unbound port for
# dom0, after the xenstore and console ports the toolstack allocated (HVM_PARAM_STORE_EVTCHN,
# HVM_PARAM_CONSOLE_EVTCHN) before the guest starts.
# Ports 1 and 2 are the xenstore and console ports the toolstack allocates first (libxl: store, then console).
PORT_TIMER, PORT_IPI, PORT_LOOP_A, PORT_LOOP_B, PORT_PEER = 3, 4, 5, 6, 7
# 2-level event channels on x86-64: sizeof(xen_ulong_t) * sizeof(xen_ulong_t) * 64.
EVTCHN_2L_NR_CHANNELS = 8 * 8 * 64
XEN_EINVAL = 22


def hypercall_page():
    page = bytearray(b"\xcc" * 4096)
    for i in range(128):
        at = i * 32
        if i == HYPERVISOR_iret:
            page[at:at + 2] = b"\x0f\x0b"
        else:
            page[at:at + 9] = b"\xb8" + struct.pack("<I", i) + b"\x0f\x01\xc1\xc3"
    return bytes(page)


def peer_pattern(ref):
    return b"".join(struct.pack("<I", ((i * 2654435761) & 0xFFFFFFFF) ^ 0x5EED0000 ^ ref) for i in range(1024))


def expected():
    page_fnv = fnv64(FNV_INIT, hypercall_page())
    pattern_fnv = fnv64(FNV_INIT, peer_pattern(TEST_GREF))
    total = fnv64_u64(fnv64_u64(fnv64_u64(FNV_INIT, page_fnv), pattern_fnv), TIMERS)
    lines = [
        "xentest: PV-on-HVM self-test",
        # Xen platform device (QEMU's xen_platform.c, vtlab's device model at 00:03.0): class
        # PCI_CLASS_OTHERS << 8 | 0x80, revision 1, subsystem ids = the device ids, INTA.
        "pci: 5853:0001 at 00:03.0 class ff80 rev 1 subsystem 5853:0001 pin INTA",
        "pci: BAR0 io 0x100 bytes, BAR1 mem prefetchable 0x1000000 bytes",
        # The unplug protocol: XEN_IOPORT_MAGIC_VAL, protocol version 1.
        "platform: unplug magic 0x49d2 protocol 1",
        # CPUID: the signature leaf's EAX is the highest leaf, base + XEN_CPUID_MAX_NUM_LEAVES.
        "cpuid: XenVMMXenVMM at 0x40000000, highest leaf 0x40000005",
        f"cpuid: Xen {XEN_VERSION}, 1 hypercall page(s) through MSR 0x40000000",
        "cpuid: HVM leaf: vcpu id 0, domid present",
        f"hypercall page: 128 stubs as Xen writes them for VMX (fnv64 {page_fnv:016x})",
        f"xen_version: {XEN_VERSION}{XEN_EXTRA_VERSION}",
        f"xen_version: features auto_translated_physmap hvm_callback_vector hvm_safe_pvclock; submap 1 -> {-XEN_EINVAL}",
        f"shared_info: XENMAPSPACE_shared_info over a RAM page; {EVTCHN_2L_NR_CHANNELS} ports masked; wallclock version even",
        "callback: HVM_PARAM_CALLBACK_IRQ type vector 0xf3, read back equal",
        f"evtchn: VIRQ_TIMER bound to port {PORT_TIMER} (EVTCHNOP_status: virq 0, vcpu 0)",
        f"timer: {TIMERS} upcalls from VCPUOP_set_singleshot_timer, none before its deadline, at least {TIMERS} ms of system time",
        "timer: a deadline in the past fires at once; VCPUOP_stop_singleshot_timer ok",
        "pvclock: version protocol, moves with the simulated clock, agrees with RDTSC through mul/shift; 1 ms of the TSC leaf's kHz = 1000000 ns",
        f"evtchn: IPI port {PORT_IPI}: EVTCHNOP_bind_ipi + send, 1 event",
        f"evtchn: loopback ports {PORT_LOOP_A} <-> {PORT_LOOP_B} (alloc_unbound + bind_interdomain, DOMID_SELF): bound port starts pending; one event each way",
        "evtchn: a masked port holds its event pending; EVTCHNOP_unmask delivers it",
        f"evtchn: send on free port 1000 -> {-XEN_EINVAL}, on port {EVTCHN_2L_NR_CHANNELS} -> {-XEN_EINVAL}",
        "grant: GNTTABOP_query_size ok; table frame 0 through XENMAPSPACE_grant_table at the start of BAR1",
        # The handshake line the dom0 peer (packages/hypervisor/src/xen/selftest_peer.ts) parses.
        f"xen-selftest: grant {TEST_GREF} evtchn {PORT_PEER}",
        f"grant: dom0 mapped entry {TEST_GREF}, wrote the pattern (0 words wrong, fnv64 {pattern_fnv:016x}), unmapped; GTF_reading|GTF_writing clear",
        "grant: foreign access ended",
        "evtchn: 5 ports closed (EVTCHNOP_close), status closed",
        f"PASS xentest {total:016x}",
    ]
    return "".join(line + "\n" for line in lines)


def main():
    args = sys.argv[1:]
    check = "--check" in args
    args = [a for a in args if a != "--check"]
    images = args[0] if args else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "images")
    path = os.path.join(images, "xentest.expected")
    want = expected()
    if check:
        with open(path, encoding="ascii") as f:
            got = f.read()
        if got != want:
            sys.stdout.write(f"{path} differs from the host computation:\n{want}")
            return 1
        return 0
    with open(path, "w", encoding="ascii") as f:
        f.write(want)
    sys.stdout.write(f"xentest: {want.splitlines()[-1]}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
