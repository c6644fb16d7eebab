/*
 * The reference kernel's NVMe driver (nvme.c): one controller, polled, one I/O queue pair.
 *
 * Written against the NVM Express Base Specification, Revision 1.4 (section numbers in nvme.c)
 * and the PCI Local Bus Specification 3.0 (configuration space, BAR sizing). Simpler than a
 * real driver, by design: no interrupts (completions are polled by phase tag), one command
 * outstanding at a time, one namespace (NSID 1), 4 KiB memory pages (CC.MPS = 0).
 */
#ifndef VTLAB_KERNEL_NVME_H
#define VTLAB_KERNEL_NVME_H

#include "rt.h"

/* What nvme_init found (printed by the workloads; what differs between QEMU and vtlab stays
   behind verbose=1). */
struct nvme_info {
    unsigned dev, fn;          /* PCI bus 0 device and function */
    uint64_t bar0;             /* BAR0: 64-bit memory BAR */
    uint64_t bar0_size;
    uint32_t vs;               /* VS: major << 16 | minor << 8 | tertiary */
    unsigned mqes;             /* CAP.MQES + 1: the largest queue the controller allows */
    unsigned dstrd;            /* CAP.DSTRD */
    uint32_t max_transfer;     /* MDTS in bytes (0: no limit) */
    uint32_t nn;               /* Identify Controller NN: namespaces */
    uint64_t nsze;             /* Identify Namespace NSZE of NSID 1, in LBAs */
    uint32_t lba_size;         /* 2^LBADS of the format FLBAS selects */
    unsigned nsqa, ncqa;       /* Set Features Number of Queues: I/O SQs and CQs allocated */
    uint64_t commands, polls;  /* commands completed, CQ polls that found nothing */
};

extern struct nvme_info nvme;

/* Added to every address the driver gives the device for its own pages and buffers (not to
   nvme_rw_prp's). 0 where the device's bus addresses are guest-physical (an IOMMU translates
   them, or no virtualization: QEMU); with Xen's iommu = 0 they are machine addresses, and a
   guest whose RAM is one machine-contiguous run (vtlab's domains) sets its machine base here. */
extern uint64_t nvme_dma_base;

/* The largest transfer one nvme_rw call moves (the PRP list is one page: 512 entries). */
#define NVME_MAX_PAGES 512u

/* Driver errors (negative; a completion's status is >= 0). */
#define NVME_ERR_TIMEOUT   (-1)   /* no completion within the bounded wait */
#define NVME_ERR_FATAL     (-2)   /* CSTS.CFS set, RDY clear, or CSTS reads all ones */
#define NVME_ERR_BADCQE    (-3)   /* a completion for another command or queue */
#define NVME_ERR_ARG       (-4)   /* the request does not fit the driver's limits */

/* Finds the controller (PCI class 01:08:02 on bus 0), sizes and maps BAR0 with map_mmio,
   resets and enables it, identifies it and namespace 1, creates I/O queue pair 1.
   Returns 0, or a negative value with the reason printed. */
int nvme_init(void (*map_mmio)(uint64_t pa, uint64_t size));

/* NVM Read (write = 0) or Write (write = 1) of nlb LBAs from slba to/from the physically
   contiguous buffer at guest-physical buf_pa (dword-aligned; PRP1 carries the page offset).
   Returns the completion's status field (0 = success, see nvme_status_str) or NVME_ERR_*. */
int nvme_rw(int write, uint64_t slba, uint32_t nlb, uint64_t buf_pa);

/* The same command with PRP1 and PRP2 given as they are (the hostile workload's tool). */
int nvme_rw_prp(int write, uint64_t slba, uint32_t nlb, uint64_t prp1, uint64_t prp2);

/* NVM Flush of namespace 1. */
int nvme_flush(void);

/* "SCT 0h SC 04h (Data Transfer Error)" and the like, or the driver error's name. */
const char *nvme_status_str(int status, char *buf, size_t size);

#endif
