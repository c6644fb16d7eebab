/*
 * The reference kernel's NVMe driver: polled, one controller, one I/O queue pair.
 *
 * Written against the NVM Express Base Specification, Revision 1.4 ("NVMe 1.4" below, section
 * numbers cited at each step) and the PCI Local Bus Specification 3.0 for configuration space.
 * It runs the same on vtlab's NVMe model and on QEMU's `-device nvme` (the independent oracle
 * for images/kernel-nvme.expected).
 *
 * Simpler than Linux's drivers/nvme/host/pci.c, by design:
 *   - no interrupts: INTx is disabled in the PCI command register and the I/O CQ is created
 *     with IEN = 0; completions are found by polling the phase tag (NVMe 1.4 4.6.2);
 *   - one command outstanding at a time (queue depth is used only to wrap), one I/O queue pair;
 *   - memory page size 4 KiB (CC.MPS = 0), one PRP list page (NVME_MAX_PAGES);
 *   - waits are bounded by a fixed TSC interval (and a poll count), not by CAP.TO; a timeout
 *     fails the command, never hangs.
 * Bus addresses are guest-physical (an IOMMU translates them) plus nvme_dma_base, which is 0
 * except where the kernel is told its machine base (`dmabase=`, for `iommu = 0`).
 * Every value read from the device (completion entries, identify data) is read once, copied
 * and checked before use.
 */
#include "nvme.h"

static inline void outl_(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }
static inline uint32_t inl_(uint16_t port) { uint32_t v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline void compiler_barrier(void) { __asm__ volatile("" ::: "memory"); }
static inline uint64_t rdtsc_(void) { uint32_t lo, hi; __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi)); return ((uint64_t)hi << 32) | lo; }

/* ---------------------------------------------------------------- PCI configuration space */

#define PCI_CONFIG_ADDRESS 0xCF8   /* PCI 3.0 3.2.2.3.2: configuration mechanism #1 */
#define PCI_CONFIG_DATA    0xCFC
#define PCI_VENDOR_ID      0x00
#define PCI_COMMAND        0x04
#define PCI_COMMAND_MEMORY        0x0002   /* Memory Space Enable */
#define PCI_COMMAND_MASTER        0x0004   /* Bus Master Enable */
#define PCI_COMMAND_INTX_DISABLE  0x0400   /* Interrupt Disable */
#define PCI_CLASS_REVISION 0x08            /* class 31:24, subclass 23:16, prog-if 15:8 */
#define PCI_HEADER_TYPE    0x0E
#define PCI_BASE_ADDRESS_0 0x10
#define PCI_BASE_ADDRESS_SPACE_IO     0x1
#define PCI_BASE_ADDRESS_MEM_TYPE_MASK 0x6
#define PCI_BASE_ADDRESS_MEM_TYPE_64  0x4
#define PCI_CLASS_NVME 0x010802u           /* mass storage, non-volatile memory, NVM Express */

static uint32_t pci_cfg_read(unsigned dev, unsigned fn, unsigned reg) {
    outl_(PCI_CONFIG_ADDRESS, 0x80000000u | (dev << 11) | (fn << 8) | (reg & 0xfc));
    return inl_(PCI_CONFIG_DATA);
}

static void pci_cfg_write(unsigned dev, unsigned fn, unsigned reg, uint32_t v) {
    outl_(PCI_CONFIG_ADDRESS, 0x80000000u | (dev << 11) | (fn << 8) | (reg & 0xfc));
    outl_(PCI_CONFIG_DATA, v);
}

/* ---------------------------------------------------------------- controller registers (NVMe 1.4 3.1) */

#define NVME_REG_CAP   0x00   /* Controller Capabilities (64-bit) */
#define NVME_REG_VS    0x08   /* Version */
#define NVME_REG_INTMS 0x0C   /* Interrupt Mask Set */
#define NVME_REG_INTMC 0x10   /* Interrupt Mask Clear */
#define NVME_REG_CC    0x14   /* Controller Configuration */
#define NVME_REG_CSTS  0x1C   /* Controller Status */
#define NVME_REG_AQA   0x24   /* Admin Queue Attributes */
#define NVME_REG_ASQ   0x28   /* Admin Submission Queue Base Address (64-bit) */
#define NVME_REG_ACQ   0x30   /* Admin Completion Queue Base Address (64-bit) */
#define NVME_REG_DBS   0x1000 /* SQ0TDBL: doorbells, stride 4 << CAP.DSTRD (3.1.24, 3.1.25) */

/* CAP fields (3.1.1); the high dword is CAP >> 32 */
#define CAP_MQES(lo)    ((lo) & 0xFFFF)          /* Maximum Queue Entries Supported, 0's based */
#define CAP_CQR(lo)     (((lo) >> 16) & 1)       /* Contiguous Queues Required */
#define CAP_TO(lo)      (((lo) >> 24) & 0xFF)    /* Timeout, 500 ms units */
#define CAP_DSTRD(hi)   ((hi) & 0xF)             /* Doorbell Stride: 2 ^ (2 + DSTRD) bytes */
#define CAP_CSS_NVM(hi) (((hi) >> 5) & 1)        /* CSS bit 37: NVM command set */
#define CAP_MPSMIN(hi)  (((hi) >> 16) & 0xF)     /* Memory Page Size Minimum: 2 ^ (12 + MPSMIN) */

/* CC fields (3.1.5) */
#define CC_EN          (1u << 0)   /* Enable */
#define CC_CSS_NVM     (0u << 4)   /* I/O Command Set Selected: NVM command set */
#define CC_MPS_4K      (0u << 7)   /* Memory Page Size: 2 ^ (12 + 0) */
#define CC_AMS_RR      (0u << 11)  /* Arbitration Mechanism Selected: round robin */
#define CC_IOSQES_64   (6u << 16)  /* I/O Submission Queue Entry Size: 2 ^ 6 */
#define CC_IOCQES_16   (4u << 20)  /* I/O Completion Queue Entry Size: 2 ^ 4 */

/* CSTS fields (3.1.6) */
#define CSTS_RDY (1u << 0)   /* Ready */
#define CSTS_CFS (1u << 1)   /* Controller Fatal Status */

/* Admin command opcodes (5, figure 139) */
#define NVME_ADMIN_DELETE_SQ    0x00
#define NVME_ADMIN_CREATE_SQ    0x01
#define NVME_ADMIN_DELETE_CQ    0x04
#define NVME_ADMIN_CREATE_CQ    0x05
#define NVME_ADMIN_IDENTIFY     0x06
#define NVME_ADMIN_SET_FEATURES 0x09

/* NVM command opcodes (6, figure 346) */
#define NVME_CMD_FLUSH 0x00
#define NVME_CMD_WRITE 0x01
#define NVME_CMD_READ  0x02

#define NVME_ID_CNS_NS   0x00   /* Identify CNS 00h: Identify Namespace (5.15.1, figure 244) */
#define NVME_ID_CNS_CTRL 0x01   /* Identify CNS 01h: Identify Controller */
#define NVME_FEAT_NUM_QUEUES 0x07   /* Feature Identifier 07h: Number of Queues (5.21.1.7) */

#define NVME_QUEUE_PC  (1u << 0)   /* Create I/O SQ/CQ CDW11 PC: physically contiguous */
#define NVME_CQ_IEN    (1u << 1)   /* Create I/O CQ CDW11 IEN: interrupts enabled (not used) */

#define NVME_PAGE 4096u
#define ADMIN_QUEUE_ENTRIES 16u
#define IO_QUEUE_ENTRIES    64u
#define IO_QID 1u
#define NVME_NSID 1u

/* Bounded waits, in TSC cycles (rdtsc: real time under QEMU, the simulated clock in vtlab, where
   each poll's CSTS read is an emulated MMIO round trip of ~20,000 modelled cycles): 2^32 cycles
   is 1-2 s on a GHz-class TSC, longer than a QEMU NVM Flush's fsync. A poll count caps it too in
   case the TSC does not move. Each empty CQ poll reads CSTS, so a dead controller ends it at once. */
#define NVME_WAIT_TSC   (1ull << 32)
#define NVME_WAIT_POLLS 4000000u
/* True once a wait that began at tsc0 has lasted NVME_WAIT_TSC cycles or n polls. */
static int wait_expired(uint64_t tsc0, uint32_t n) { return n >= NVME_WAIT_POLLS || rdtsc_() - tsc0 >= NVME_WAIT_TSC; }

/* Submission Queue Entry (4.2, figure 104), 64 bytes */
struct nvme_sqe {
    uint32_t cdw0;   /* OPC 7:0, FUSE 9:8, PSDT 15:14 (00b: PRPs), CID 31:16 */
    uint32_t nsid;
    uint32_t cdw2, cdw3;
    uint64_t mptr;
    uint64_t prp1, prp2;
    uint32_t cdw10, cdw11, cdw12, cdw13, cdw14, cdw15;
};

/* Completion Queue Entry (4.6, figure 124), 16 bytes */
struct nvme_cqe {
    uint32_t dw0;    /* command specific */
    uint32_t dw1;    /* reserved */
    uint32_t dw2;    /* SQHD 15:0, SQID 31:16 */
    uint32_t dw3;    /* CID 15:0, P 16, Status Field 31:17 */
};

_Static_assert(sizeof(struct nvme_sqe) == 64, "SQE is 64 bytes");
_Static_assert(sizeof(struct nvme_cqe) == 16, "CQE is 16 bytes");

struct nvme_queue {
    volatile struct nvme_sqe *sq;
    volatile struct nvme_cqe *cq;
    unsigned qid, entries, sq_tail, cq_head, phase;
};

/* The kernel's own pages (identity mapped: virtual = guest-physical = the DMA address). */
static struct nvme_sqe admin_sq[ADMIN_QUEUE_ENTRIES] __attribute__((aligned(4096)));
static struct nvme_cqe admin_cq[NVME_PAGE / sizeof(struct nvme_cqe)] __attribute__((aligned(4096)));
static struct nvme_sqe io_sq[IO_QUEUE_ENTRIES] __attribute__((aligned(4096)));
static struct nvme_cqe io_cq[NVME_PAGE / sizeof(struct nvme_cqe)] __attribute__((aligned(4096)));
static uint8_t identify_buf[NVME_PAGE] __attribute__((aligned(4096)));
static uint64_t prp_list[NVME_PAGE / 8] __attribute__((aligned(4096)));

static struct nvme_queue adminq, ioq;
uint64_t nvme_dma_base;

/* The bus address of a kernel page (identity mapped, so its guest-physical address) */
static uint64_t dma_addr(const volatile void *p) { return (uint64_t)(uintptr_t)p + nvme_dma_base; }
static volatile uint8_t *regs;
static uint16_t next_cid;
struct nvme_info nvme;

static uint32_t reg_read(unsigned off) { return *(volatile uint32_t *)(regs + off); }
static void reg_write(unsigned off, uint32_t v) { *(volatile uint32_t *)(regs + off) = v; }
/* 64-bit registers as two dword writes, low then high (3.1: 32-bit accesses are allowed) */
static void reg_write64(unsigned off, uint64_t v) {
    reg_write(off, (uint32_t)v);
    reg_write(off + 4, (uint32_t)(v >> 32));
}

static unsigned sq_doorbell(unsigned qid) { return NVME_REG_DBS + (2 * qid) * (4u << nvme.dstrd); }
static unsigned cq_doorbell(unsigned qid) { return NVME_REG_DBS + (2 * qid + 1) * (4u << nvme.dstrd); }

static const char *sc_generic_name(unsigned sc) {
    switch (sc) {   /* Generic Command Status (4.6.1.2.1, figure 126) */
    case 0x00: return "Successful Completion";
    case 0x01: return "Invalid Command Opcode";
    case 0x02: return "Invalid Field in Command";
    case 0x03: return "Command ID Conflict";
    case 0x04: return "Data Transfer Error";
    case 0x05: return "Commands Aborted due to Power Loss Notification";
    case 0x06: return "Internal Error";
    case 0x07: return "Command Abort Requested";
    case 0x08: return "Command Aborted due to SQ Deletion";
    case 0x0B: return "Invalid Namespace or Format";
    case 0x0D: return "Invalid PRP Offset";
    case 0x80: return "LBA Out of Range";
    case 0x81: return "Capacity Exceeded";
    case 0x82: return "Namespace Not Ready";
    default: return 0;
    }
}

const char *nvme_status_str(int status, char *buf, size_t size) {
    switch (status) {
    case NVME_ERR_TIMEOUT: return "timeout (no completion)";
    case NVME_ERR_FATAL: return "controller fatal status or not ready";
    case NVME_ERR_BADCQE: return "completion for another command";
    case NVME_ERR_ARG: return "request beyond the driver's limits";
    default: break;
    }
    /* Status Field (4.6.1): SC 7:0, SCT 10:8, CRD 12:11, M 13, DNR 14 (phase tag removed) */
    unsigned sc = (unsigned)status & 0xFF, sct = ((unsigned)status >> 8) & 7;
    const char *name = sct == 0 ? sc_generic_name(sc) : 0;
    snprintf(buf, size, "SCT %xh SC %02xh (%s)%s", sct, sc,
             name ? name : sct == 1 ? "Command Specific" : sct == 2 ? "Media and Data Integrity" : "other",
             ((unsigned)status >> 14) & 1 ? " DNR" : "");
    return buf;
}

/* Submits one command on q and polls for its completion. Returns the status field (>= 0) or
   NVME_ERR_*. dw0 receives the completion's command-specific dword when not NULL. */
static int submit_wait(struct nvme_queue *q, struct nvme_sqe *cmd, uint32_t *dw0) {
    uint16_t cid = next_cid++;
    cmd->cdw0 = (cmd->cdw0 & 0xFF) | ((uint32_t)cid << 16);   /* FUSE 0, PSDT 00b: PRPs */
    volatile struct nvme_sqe *slot = &q->sq[q->sq_tail];
    slot->cdw0 = cmd->cdw0; slot->nsid = cmd->nsid; slot->cdw2 = 0; slot->cdw3 = 0;
    slot->mptr = 0; slot->prp1 = cmd->prp1; slot->prp2 = cmd->prp2;
    slot->cdw10 = cmd->cdw10; slot->cdw11 = cmd->cdw11; slot->cdw12 = cmd->cdw12;
    slot->cdw13 = cmd->cdw13; slot->cdw14 = cmd->cdw14; slot->cdw15 = cmd->cdw15;
    q->sq_tail = (q->sq_tail + 1) % q->entries;
    compiler_barrier();   /* x86 stores are ordered: the entry is visible before the doorbell */
    reg_write(sq_doorbell(q->qid), q->sq_tail);   /* SQyTDBL (3.1.24) */
    uint64_t tsc0 = rdtsc_();
    for (uint32_t n = 0;; n++) {
        volatile struct nvme_cqe *e = &q->cq[q->cq_head];
        uint32_t dw3 = e->dw3;   /* read once: the phase tag and status live in this dword */
        if (((dw3 >> 16) & 1) == q->phase) {
            compiler_barrier();
            uint32_t d0 = e->dw0, d2 = e->dw2;
            if (++q->cq_head == q->entries) {   /* the phase tag inverts on each wrap (4.6.2) */
                q->cq_head = 0;
                q->phase ^= 1;
            }
            reg_write(cq_doorbell(q->qid), q->cq_head);   /* CQyHDBL (3.1.25) */
            nvme.commands++;
            if ((dw3 & 0xFFFF) != cid || (d2 >> 16) != q->qid)
                return NVME_ERR_BADCQE;
            if (dw0)
                *dw0 = d0;
            return (int)(dw3 >> 17);
        }
        nvme.polls++;
        uint32_t csts = reg_read(NVME_REG_CSTS);
        if (csts == 0xFFFFFFFFu || (csts & CSTS_CFS) || !(csts & CSTS_RDY))
            return NVME_ERR_FATAL;
        if (wait_expired(tsc0, n))
            return NVME_ERR_TIMEOUT;
    }
}

static int admin(struct nvme_sqe *cmd, uint32_t *dw0, const char *what) {
    int st = submit_wait(&adminq, cmd, dw0);
    if (st != 0) {
        char b[96];
        printf("nvme: %s failed: %s\n", what, nvme_status_str(st, b, sizeof b));
    }
    return st;
}

/* Waits until CSTS.RDY == want (3.1.6; CAP.TO bounds it on hardware, NVME_WAIT_TSC here). */
static int wait_ready(unsigned want) {
    uint64_t tsc0 = rdtsc_();
    for (uint32_t n = 0; !wait_expired(tsc0, n); n++) {
        uint32_t csts = reg_read(NVME_REG_CSTS);
        if (csts == 0xFFFFFFFFu) {
            printf("nvme: CSTS reads all ones (no controller behind BAR0)\n");
            return -1;
        }
        if (want && (csts & CSTS_CFS)) {
            printf("nvme: controller fatal status while enabling\n");
            return -1;
        }
        if ((csts & CSTS_RDY) == want)
            return 0;
    }
    printf("nvme: timeout waiting for CSTS.RDY = %u\n", want);
    return -1;
}

static int find_controller(void) {
    for (unsigned dev = 0; dev < 32; dev++) {
        unsigned fns = 1;
        for (unsigned fn = 0; fn < fns; fn++) {
            uint32_t id = pci_cfg_read(dev, fn, PCI_VENDOR_ID);
            if ((id & 0xFFFF) == 0xFFFF)
                continue;
            if (fn == 0 && (pci_cfg_read(dev, 0, PCI_HEADER_TYPE & ~3u) >> 16) & 0x80)
                fns = 8;   /* multi-function device (header type bit 7) */
            if (pci_cfg_read(dev, fn, PCI_CLASS_REVISION) >> 8 == PCI_CLASS_NVME) {
                nvme.dev = dev;
                nvme.fn = fn;
                return 0;
            }
        }
    }
    printf("nvme: no PCI function of class 01:08:02 on bus 0\n");
    return -1;
}

/* Sizes BAR0 (PCI 3.0 6.2.5.1: write all ones with decode off, read the mask, restore). */
static int size_bar0(void) {
    unsigned d = nvme.dev, f = nvme.fn;
    uint32_t cmd = pci_cfg_read(d, f, PCI_COMMAND) & 0xFFFF;
    pci_cfg_write(d, f, PCI_COMMAND, cmd & ~(uint32_t)(PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER));
    uint32_t lo = pci_cfg_read(d, f, PCI_BASE_ADDRESS_0), hi = 0, mlo, mhi = 0xFFFFFFFFu;
    int is64 = (lo & PCI_BASE_ADDRESS_MEM_TYPE_MASK) == PCI_BASE_ADDRESS_MEM_TYPE_64;
    pci_cfg_write(d, f, PCI_BASE_ADDRESS_0, 0xFFFFFFFFu);
    mlo = pci_cfg_read(d, f, PCI_BASE_ADDRESS_0);
    pci_cfg_write(d, f, PCI_BASE_ADDRESS_0, lo);
    if (is64) {
        hi = pci_cfg_read(d, f, PCI_BASE_ADDRESS_0 + 4);
        pci_cfg_write(d, f, PCI_BASE_ADDRESS_0 + 4, 0xFFFFFFFFu);
        mhi = pci_cfg_read(d, f, PCI_BASE_ADDRESS_0 + 4);
        pci_cfg_write(d, f, PCI_BASE_ADDRESS_0 + 4, hi);
    }
    if ((lo & PCI_BASE_ADDRESS_SPACE_IO) || (mlo & ~0xFu) == 0) {
        printf("nvme: BAR0 is not a memory BAR\n");
        return -1;
    }
    uint64_t mask = ((uint64_t)mhi << 32) | (mlo & ~0xFull);
    nvme.bar0_size = ~mask + 1;
    nvme.bar0 = ((uint64_t)hi << 32) | (lo & ~0xFull);
    if (nvme.bar0 == 0 || nvme.bar0_size < 0x2000 || nvme.bar0 & (nvme.bar0_size - 1)) {
        printf("nvme: BAR0 unassigned or malformed\n");
        return -1;
    }
    /* decode on, bus mastering on (the device DMAs), INTx off (the driver polls) */
    pci_cfg_write(d, f, PCI_COMMAND, cmd | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_INTX_DISABLE);
    return 0;
}

static int identify(void) {
    /* Identify Controller (5.15.2.1, figure 247) */
    memset(identify_buf, 0, sizeof identify_buf);
    struct nvme_sqe c = { .cdw0 = NVME_ADMIN_IDENTIFY, .prp1 = dma_addr(identify_buf),
                          .cdw10 = NVME_ID_CNS_CTRL };
    if (admin(&c, 0, "Identify Controller") != 0)
        return -1;
    uint8_t mdts = identify_buf[77];               /* MDTS: 2 ^ n units of CAP.MPSMIN */
    uint8_t sqes = identify_buf[512], cqes = identify_buf[513];
    uint32_t nn;
    memcpy(&nn, identify_buf + 516, 4);            /* NN: Number of Namespaces */
    nvme.max_transfer = mdts == 0 ? 0 : mdts >= 20 ? 0 : (uint32_t)NVME_PAGE << mdts;
    nvme.nn = nn;
    if ((sqes & 0xF) > 6 || (sqes >> 4) < 6 || (cqes & 0xF) > 4 || (cqes >> 4) < 4) {
        printf("nvme: the controller does not take 64-byte SQ and 16-byte CQ entries\n");
        return -1;
    }
    if (nn < NVME_NSID) {
        printf("nvme: the controller has no namespace 1\n");
        return -1;
    }
    /* Identify Namespace, NSID 1 (5.15.2.2, figure 245) */
    memset(identify_buf, 0, sizeof identify_buf);
    c = (struct nvme_sqe){ .cdw0 = NVME_ADMIN_IDENTIFY, .nsid = NVME_NSID,
                           .prp1 = dma_addr(identify_buf), .cdw10 = NVME_ID_CNS_NS };
    if (admin(&c, 0, "Identify Namespace") != 0)
        return -1;
    uint64_t nsze;
    memcpy(&nsze, identify_buf + 0, 8);            /* NSZE: Namespace Size, in LBAs */
    uint8_t nlbaf = identify_buf[25], flbas = identify_buf[26] & 0xF;   /* NLBAF is 0's based */
    if (flbas > nlbaf || flbas > 15) {
        printf("nvme: FLBAS selects format %u of %u\n", flbas, nlbaf + 1u);
        return -1;
    }
    uint32_t lbaf;
    memcpy(&lbaf, identify_buf + 128 + 4 * flbas, 4);   /* LBA Format: MS 15:0, LBADS 23:16 */
    unsigned lbads = (lbaf >> 16) & 0xFF;
    if (lbads != 9 || (lbaf & 0xFFFF) != 0) {
        printf("nvme: namespace 1 has LBADS %u metadata %u (512-byte LBAs without metadata only)\n", lbads,
               lbaf & 0xFFFF);
        return -1;
    }
    if (nsze == 0 || nsze > (1ull << 40)) {
        printf("nvme: namespace 1 size %llu LBAs\n", (unsigned long long)nsze);
        return -1;
    }
    nvme.nsze = nsze;
    nvme.lba_size = 1u << lbads;
    return 0;
}

static int create_io_queues(void) {
    /* Set Features, Number of Queues (5.21.1.7): NSQR 15:0, NCQR 31:16, both 0's based */
    uint32_t dw0 = 0;
    struct nvme_sqe c = { .cdw0 = NVME_ADMIN_SET_FEATURES, .cdw10 = NVME_FEAT_NUM_QUEUES, .cdw11 = 0 };
    if (admin(&c, &dw0, "Set Features (Number of Queues)") != 0)
        return -1;
    nvme.nsqa = (dw0 & 0xFFFF) + 1u;
    nvme.ncqa = (dw0 >> 16) + 1u;
    unsigned entries = IO_QUEUE_ENTRIES < nvme.mqes ? IO_QUEUE_ENTRIES : nvme.mqes;
    /* Create I/O Completion Queue (5.3): QID 15:0, QSIZE 31:16 (0's based); PC, IEN = 0 */
    c = (struct nvme_sqe){ .cdw0 = NVME_ADMIN_CREATE_CQ, .prp1 = dma_addr(io_cq),
                           .cdw10 = IO_QID | (entries - 1) << 16, .cdw11 = NVME_QUEUE_PC };
    if (admin(&c, 0, "Create I/O Completion Queue") != 0)
        return -1;
    /* Create I/O Submission Queue (5.4): QID, QSIZE; PC, QPRIO 0, CQID 31:16 */
    c = (struct nvme_sqe){ .cdw0 = NVME_ADMIN_CREATE_SQ, .prp1 = dma_addr(io_sq),
                           .cdw10 = IO_QID | (entries - 1) << 16, .cdw11 = NVME_QUEUE_PC | IO_QID << 16 };
    if (admin(&c, 0, "Create I/O Submission Queue") != 0)
        return -1;
    ioq = (struct nvme_queue){ io_sq, io_cq, IO_QID, entries, 0, 0, 1 };
    return 0;
}

int nvme_init(void (*map_mmio)(uint64_t pa, uint64_t size)) {
    memset(&nvme, 0, sizeof nvme);
    if (find_controller() != 0 || size_bar0() != 0)
        return -1;
    map_mmio(nvme.bar0, nvme.bar0_size);
    regs = (volatile uint8_t *)(uintptr_t)nvme.bar0;
    uint32_t cap_lo = reg_read(NVME_REG_CAP), cap_hi = reg_read(NVME_REG_CAP + 4);
    nvme.vs = reg_read(NVME_REG_VS);
    nvme.mqes = CAP_MQES(cap_lo) + 1u;
    nvme.dstrd = CAP_DSTRD(cap_hi);
    if (cap_lo == 0xFFFFFFFFu || !CAP_CSS_NVM(cap_hi) || CAP_MPSMIN(cap_hi) != 0 || nvme.mqes < 2) {
        printf("nvme: CAP 0x%08x%08x: no NVM command set, 4 KiB pages or queues\n", cap_hi, cap_lo);
        return -1;
    }
    if (nvme.bar0_size < NVME_REG_DBS + 4u * (4u << nvme.dstrd)) {
        printf("nvme: BAR0 too small for the doorbells of queue 1\n");
        return -1;
    }
    /* Reset (7.6.1): CC.EN = 0, wait CSTS.RDY = 0 */
    uint32_t cc = reg_read(NVME_REG_CC);
    if (cc & CC_EN)
        reg_write(NVME_REG_CC, cc & ~CC_EN);
    if (wait_ready(0) != 0)
        return -1;
    /* Admin queues in the kernel's own pages (3.1.8-3.1.10): AQA sizes 0's based */
    memset(admin_sq, 0, sizeof admin_sq);
    memset(admin_cq, 0, sizeof admin_cq);
    memset(io_sq, 0, sizeof io_sq);
    memset(io_cq, 0, sizeof io_cq);
    reg_write(NVME_REG_AQA, (ADMIN_QUEUE_ENTRIES - 1) << 16 | (ADMIN_QUEUE_ENTRIES - 1));
    reg_write64(NVME_REG_ASQ, dma_addr(admin_sq));
    reg_write64(NVME_REG_ACQ, dma_addr(admin_cq));
    reg_write(NVME_REG_INTMS, 0xFFFFFFFFu);   /* every vector masked: polled (3.1.3) */
    adminq = (struct nvme_queue){ admin_sq, admin_cq, 0, ADMIN_QUEUE_ENTRIES, 0, 0, 1 };
    next_cid = 0;
    reg_write(NVME_REG_CC, CC_CSS_NVM | CC_MPS_4K | CC_AMS_RR | CC_IOSQES_64 | CC_IOCQES_16 | CC_EN);
    if (wait_ready(CSTS_RDY) != 0)
        return -1;
    if (identify() != 0 || create_io_queues() != 0)
        return -1;
    return 0;
}

int nvme_rw_prp(int write, uint64_t slba, uint32_t nlb, uint64_t prp1, uint64_t prp2) {
    if (nlb == 0 || nlb > 65536)
        return NVME_ERR_ARG;
    /* Read (6.9) / Write (6.15): SLBA in CDW10-11, NLB 0's based in CDW12 15:0 */
    struct nvme_sqe c = { .cdw0 = write ? NVME_CMD_WRITE : NVME_CMD_READ, .nsid = NVME_NSID,
                          .prp1 = prp1, .prp2 = prp2, .cdw10 = (uint32_t)slba,
                          .cdw11 = (uint32_t)(slba >> 32), .cdw12 = nlb - 1 };
    return submit_wait(&ioq, &c, 0);
}

int nvme_rw(int write, uint64_t slba, uint32_t nlb, uint64_t buf_pa) {
    uint64_t len = (uint64_t)nlb * nvme.lba_size;
    if (nlb == 0 || (buf_pa & 3) || (nvme.max_transfer && len > nvme.max_transfer))
        return NVME_ERR_ARG;
    /* PRP entries (4.3): PRP1 the first page with its offset; then whole pages. Two pages:
       PRP2 is the second; more: PRP2 points to a PRP list of the rest (one page here). */
    uint64_t first = (buf_pa & ~(uint64_t)(NVME_PAGE - 1)) + nvme_dma_base;
    uint64_t pages = ((buf_pa & (NVME_PAGE - 1)) + len + NVME_PAGE - 1) / NVME_PAGE;
    uint64_t prp2 = 0;
    if (pages > NVME_MAX_PAGES + 1)
        return NVME_ERR_ARG;
    if (pages == 2) {
        prp2 = first + NVME_PAGE;
    } else if (pages > 2) {
        for (uint64_t i = 1; i < pages; i++)
            prp_list[i - 1] = first + i * NVME_PAGE;
        prp2 = dma_addr(prp_list);
    }
    return nvme_rw_prp(write, slba, nlb, buf_pa + nvme_dma_base, prp2);
}

int nvme_flush(void) {
    struct nvme_sqe c = { .cdw0 = NVME_CMD_FLUSH, .nsid = NVME_NSID };   /* Flush (6.8) */
    return submit_wait(&ioq, &c, 0);
}
