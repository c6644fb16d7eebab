#!/usr/bin/env python3
"""Writes src/constants.ts from the Xen public headers (Debian's libxen-dev, /usr/include/xen).

Names: the object-like macros of each header below whose name starts with one of its prefixes,
in the order the header defines them, plus the enums named in ENUMS and two tables (xs_wire.h's
xsd_errors, grant_table.h's GNTTABOP_error_msgs). A leading "__" is dropped
(__HYPERVISOR_memory_op -> HYPERVISOR_memory_op); a leading "_" becomes "BIT_" (_GTF_readonly is
the bit number, GTF_readonly the mask).

Values: gcc is the evaluator. The headers are preprocessed for x86_64 as Xen itself is built
(__XEN__ and __XEN_TOOLS__: the latest interface version and the hypervisor-only sub-ops such as
EVTCHNOP_reset_cont), so a macro defined only for ARM or i386, only for a legacy interface
version, or only inside a comment is left out, and one redefined under #if takes the value an
x86_64 build sees. A generated C program prints every candidate; a macro that is not an integer
constant expression is left out. Values of 2^53 and above are written as bigint
literals (exact); everything else is a number.

    python3 scripts/gen-constants.py [/usr/include/xen] > src/constants.ts

test/layout.test.ts runs this script and checks that the output equals src/constants.ts, and
compiles the headers with gcc to check every value independently.
"""
import os, re, subprocess, sys, tempfile

root = sys.argv[1] if len(sys.argv) > 1 else "/usr/include/xen"
include_dir = os.path.dirname(os.path.abspath(root))
CFLAGS = ["-D__XEN__", "-D__XEN_TOOLS__", "-I" + include_dir]

# (header, prefixes) in the order the file lists them; [] = the io/ defaults of DEFAULT_IO
GROUPS = [
    ("xen.h", ["__HYPERVISOR_", "VIRQ_", "DOMID_", "CONSOLEIO_", "MMUEXT_", "VMASST_", "NR_VIRQS",
               "NR_EVENT_CHANNELS", "XEN_PVCLOCK_", "MAX_GUEST_CMDLINE", "MMU_", "UVMF_", "SIF_"]),
    ("errno.h", []),
    ("version.h", ["XENVER_", "XEN_EXTRAVERSION_LEN", "XEN_CAPABILITIES_INFO_LEN",
                   "XEN_CHANGESET_INFO_LEN"]),
    ("features.h", ["XENFEAT_"]),
    ("sched.h", ["SCHEDOP_", "SHUTDOWN_"]),
    ("event_channel.h", ["EVTCHNOP_", "EVTCHNSTAT_", "EVTCHN_FIFO_", "EVTCHN_2L_", "BIND_PIRQ__"]),
    ("grant_table.h", ["GNTTABOP_", "GNTST_", "GTF_", "_GTF_", "GNTMAP_", "_GNTMAP_", "GNTCOPY_",
                       "_GNTCOPY_", "GNTTAB_"]),
    ("memory.h", ["XENMEM_", "XENMAPSPACE_", "XENMAPIDX_", "XENMEMF_"]),
    ("vcpu.h", ["VCPUOP_", "VCPU_SSHOTTMR_", "_VCPU_SSHOTTMR_", "RUNSTATE_", "XEN_RUNSTATE_",
                "VCPU_HVM_MODE_"]),
    ("hvm/hvm_op.h", ["HVMOP_", "HVM_EVTCHN_"]),
    ("hvm/params.h", ["HVM_PARAM_", "HVM_NR_PARAMS"]),
    ("hvm/hvm_vcpu.h", ["VCPU_HVM_MODE_"]),
    ("arch-x86/cpuid.h", ["XEN_CPUID_", "XEN_HVM_CPUID_", "_XEN_HVM_CPUID_"]),
    ("arch-x86/xen.h", ["XEN_LEGACY_MAX_VCPUS", "XEN_HAVE_PV_", "XEN_HVM_DEBUGCONS_IOPORT"]),
    ("io/ring.h", ["XEN_PAGE_SHIFT"]),
    ("io/console.h", []),
    ("io/xs_wire.h", ["XENSTORE_", "XS_"]),
    ("io/xenbus.h", []),
    ("io/blkif.h", ["BLKIF_", "VDISK_"]),
    ("io/netif.h", ["NETTXF_", "_NETTXF_", "NETRXF_", "_NETRXF_", "NETIF_RSP_", "XEN_NETIF_",
                    "_XEN_NETIF_", "XEN_NETTXF_", "XEN_NETRXF_"]),
]
DEFAULT_IO = re.compile(r"(XENCONS_|XENSTORE_|XS_|XenbusState)")
# enums emitted as constants (header -> C enum names), after the header's macros
ENUMS = {"io/xs_wire.h": ["xsd_sockmsg_type", "xs_watch_type"], "io/xenbus.h": ["xenbus_state"]}
SKIP = re.compile(r"(_H__?$|^__XEN|_INCLUDED$|^__HYPERVISOR_arch_)")
DEFINE = re.compile(r"^\s*#\s*define\s+([A-Za-z_][A-Za-z0-9_]*)(\(?)")
# a candidate's body must look like an integer expression (no strings, no braces, no ;)
INTEGER_BODY = re.compile(r"[\sA-Za-z0-9_()<>|&~+\-*/^!?:]+")
MAX_SAFE = 2**53 - 1


def gcc(args, source):
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "c.c")
        with open(src, "w") as f:
            f.write(source)
        exe = os.path.join(tmp, "c")
        out = subprocess.run(["gcc", *CFLAGS, *args, src, "-o", exe], capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit("gcc failed:\n" + out.stderr[:4000])
        if "-E" in args:
            return open(exe).read()
        return subprocess.run([exe], capture_output=True, text=True, check=True).stdout


includes = "#include <errno.h>\n#include <stdint.h>\n" + "".join(f"#include <xen/{h}>\n" for h, _ in GROUPS)
# The effective macro set of an x86_64 build.
macros = {}
for line in gcc(["-E", "-dM"], includes).splitlines():
    m = re.match(r"#define ([A-Za-z_][A-Za-z0-9_]*)(\(| |$)(.*)", line)
    if m and m.group(2) != "(":
        macros[m.group(1)] = m.group(3).strip()


def header_text(header):
    return open(os.path.join(root, header)).read()


# Candidates: (header, C name, TS name) in header order.
candidates = []
seen = set()
for header, prefixes in GROUPS:
    text = header_text(header)
    if header == "errno.h":
        for m in re.finditer(r"XEN_ERRNO\((\w+),\s*(\d+)\)", text):
            candidates.append((header, "XEN_" + m.group(1), "XEN_" + m.group(1), int(m.group(2))))
        continue
    for line in text.replace("\\\n", " ").splitlines():
        m = DEFINE.match(line)
        if not m or m.group(2) == "(":
            continue
        name = m.group(1)
        if prefixes and not any(name.startswith(p) for p in prefixes):
            continue
        if not prefixes and not DEFAULT_IO.match(name):
            continue
        if SKIP.search(name) or name in seen or name not in macros:
            continue
        body = macros[name]
        if not body or not INTEGER_BODY.fullmatch(body):
            continue
        seen.add(name)
        ts = name[2:] if name.startswith("__") else name
        if ts.startswith("_"):
            ts = "BIT" + ts
        candidates.append((header, name, ts, None))


def enum_members(header, enum_name):
    text = re.sub(r"/\*.*?\*/", "", header_text(header), flags=re.S)
    m = re.search(r"enum\s+" + enum_name + r"\s*\{(.*?)\}", text, re.S)
    if not m:
        sys.exit(f"enum {enum_name} not found in {header}")
    body = re.sub(r"^\s*#.*$", "", m.group(1), flags=re.M)  # xs_wire.h has #defines inside
    return [re.split(r"\s*=", e.strip())[0] for e in body.split(",") if e.strip()]


enum_candidates = {h: [(e, enum_members(h, e)) for e in names] for h, names in ENUMS.items()}

# gcc evaluates everything at once: "<name> <negative?> <signed> <unsigned>"
prog = [includes, "#include <stdio.h>", "int main(void) {"]
for _, name, _, fixed in candidates:
    if fixed is None:
        prog.append(f'  printf("{name} %d %lld %llu\\n", ({name}) < 0, (long long)({name}), '
                    f'(unsigned long long)({name}));')
for h, enums in enum_candidates.items():
    for _, members in enums:
        for e in members:
            prog.append(f'  printf("{e} %d %lld %llu\\n", ({e}) < 0, (long long)({e}), '
                        f'(unsigned long long)({e}));')
prog.append('  for (unsigned i = 0; i < sizeof(xsd_errors) / sizeof(xsd_errors[0]); i++)')
prog.append('    printf("xsd_errors %d %s\\n", xsd_errors[i].errnum, xsd_errors[i].errstring);')
prog.append("  return 0;\n}")


def try_compile(lines):
    """Drops candidates gcc cannot evaluate (not integer constant expressions), then runs."""
    lines = "\n".join(lines).split("\n")
    for _ in range(10):
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "c.c")
            open(src, "w").write("\n".join(lines))
            exe = os.path.join(tmp, "c")
            out = subprocess.run(["gcc", *CFLAGS, "-w", src, "-o", exe], capture_output=True, text=True)
            if out.returncode == 0:
                return subprocess.run([exe], capture_output=True, text=True, check=True).stdout
            bad = {int(n) for n in re.findall(r"c\.c:(\d+):\d+: error", out.stderr)}
            if not bad:
                sys.exit("gcc failed:\n" + out.stderr[:4000])
            if any(not lines[i - 1].startswith("  printf(") for i in bad):
                sys.exit("gcc failed outside the value lines:\n" + out.stderr[:4000])
            lines = [l for i, l in enumerate(lines, 1) if i not in bad]
    sys.exit("gcc still fails after 10 passes")


values = {}
xsd_errors = []
for line in try_compile(prog).splitlines():
    if line.startswith("xsd_errors "):
        _, errnum, errstring = line.split()
        xsd_errors.append((int(errnum), errstring))
        continue
    name, neg, signed, unsigned = line.split()
    values[name] = int(signed) if neg == "1" else int(unsigned)


def literal(name, v):
    body = macros.get(name, "")
    if v > MAX_SAFE or v < -MAX_SAFE:
        return hex(v) + "n" if v >= 0 else str(v) + "n"
    if v >= 0 and re.match(r"\(?\s*(xen_mk_\w+\()?\s*0x", body):
        return hex(v)
    return str(v)


out = ["// Generated by scripts/gen-constants.py from the Xen public headers (Debian libxen-dev); do not edit.",
       "// Every value is checked against the headers compiled with gcc by test/layout.test.ts.",
       "// Values of 2^53 and above are bigint literals (exact); all others are numbers.", ""]
for header, _ in GROUPS:
    section = []
    for h, name, ts, fixed in candidates:
        if h != header:
            continue
        if fixed is not None:
            section.append(f"export const {ts} = {fixed};")
        elif name in values:
            section.append(f"export const {ts} = {literal(name, values[name])};")
    for enum_name, members in enum_candidates.get(header, []):
        section.append(f"// enum {enum_name}")
        for e in members:
            if e in values:
                section.append(f"export const {e} = {values[e]};")
    if header == "io/xs_wire.h":
        section.append("/** xsd_errors[]: the errno names xenstored answers in an XS_ERROR payload, with")
        section.append(" * their (Linux host) errno numbers as the C table has them. */")
        section.append("export const xsd_errors = [")
        for errnum, errstring in xsd_errors:
            section.append(f'  {{ errnum: {errnum}, errstring: "{errstring}" }},')
        section.append("] as const;")
    if header == "grant_table.h":
        m = re.search(r"#define GNTTABOP_error_msgs \{(.*?)\}", header_text(header), re.S)
        if not m:
            sys.exit("GNTTABOP_error_msgs not found")
        msgs = re.findall(r'"([^"]*)"', m.group(1))
        section.append("/** GNTTABOP_error_msgs: the message of GNTST_ status s is GNTTABOP_error_msgs[-s]. */")
        section.append("export const GNTTABOP_error_msgs = [")
        section.extend(f'  "{s}",' for s in msgs)
        section.append("] as const;")
    if section:
        out.append(f"// xen/{header}")
        out.extend(section)
        out.append("")
print("\n".join(out))
