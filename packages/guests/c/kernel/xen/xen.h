/*
 * The reference kernel's Xen PV drivers: what kernel.c and the drivers share.
 *
 * Written against Xen's public headers (/usr/include/xen, Debian libxen-dev) with Linux's
 * drivers/xen (platform-pci.c, enlighten_hvm.c, grant-table.c, xenbus/, xen-blkfront.c,
 * xen-netfront.c) as the model of behaviour. What is simpler than Linux is said where it is.
 */
#ifndef VTLAB_KERNEL_XEN_H
#define VTLAB_KERNEL_XEN_H

#include "rt.h"

#define __XEN_INTERFACE_VERSION__ 0x00040e00
/* io/ring.h takes the barriers from its user (a guest kernel's own mb/rmb/wmb). */
#define xen_mb() __sync_synchronize()
#define xen_rmb() __asm__ volatile("" ::: "memory")
#define xen_wmb() __asm__ volatile("" ::: "memory")
#include <xen/xen.h>
#include <xen/event_channel.h>
#include <xen/grant_table.h>
#include <xen/hvm/hvm_op.h>
#include <xen/hvm/params.h>
#include <xen/memory.h>
#include <xen/sched.h>
#include <xen/errno.h>
#include <xen/arch-x86/cpuid.h>
#include <xen/io/xs_wire.h>
#include <xen/io/xenbus.h>

#define XEN_PAGE 4096u

/* Counters of the PV path, printed by `verbose=1` (the hypervisor counts the exits). */
struct xen_counters {
    uint64_t hypercalls, notifies, polls, grants, xs_requests, watch_events, upcalls;
};
extern struct xen_counters xen_count;
extern domid_t xen_domid;

/* Platform device, CPUID, hypercall page, shared_info, the callback vector, grant frame 0,
 * xenstore ring. map_mmio maps [pa, pa + size) of the platform device's BAR1 into the kernel's
 * tables; set_gate installs an interrupt gate (NULL, or xenpoll=1: no callback vector).
 * Returns 0, or a negative value with the reason printed. */
int xen_init(void (*map_mmio)(uint64_t pa, uint64_t size), void (*set_gate)(unsigned vector, void (*entry)(void)));

/* The unplug protocol's masks (docs/misc/hvm-emulated-unplug) and the unplug itself. */
#define XEN_UNPLUG_ALL_IDE_DISKS 1
#define XEN_UNPLUG_ALL_NICS 2
int xen_unplug(uint16_t mask);

/* Event channels: drivers wait with SCHEDOP_poll, events arrive by upcall (see xen.c). */
void xen_bind_port(evtchn_port_t port);
long xen_alloc_unbound(domid_t remote, evtchn_port_t *port);
void xen_notify(evtchn_port_t port);
/* Takes (clears) a pending event on port; 1 if there was one. */
int xen_take_event(evtchn_port_t port);
/* Blocks in SCHEDOP_poll until port is pending or timeout_ns of system time passed. */
void xen_poll(evtchn_port_t port, uint64_t timeout_ns);
uint64_t xen_now_ns(void);

/* Grants (v1 table, frame 0 in BAR1): a reference for pfn, or -1 when the table is full. */
int gnt_grant(domid_t dom, uint64_t pfn, int readonly);
/* Ends foreign access; 0, or -1 while the backend still has it mapped. */
int gnt_end(grant_ref_t ref);

/* xenstore (paths relative to /local/domain/<domid>/ where they do not start with '/').
 * Results are >= 0 on success or -XEN_E* as xenstored answered (xsd_errors). */
int xs_read(const char *path, char *buf, size_t size);
int xs_read_uint(const char *path, uint64_t *v);
int xs_write(const char *path, const char *value);
int xs_printf(const char *dir, const char *node, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int xs_watch(const char *path, const char *token);
int xs_transaction_start(void);
int xs_transaction_end(int commit);
int xs_unwatch(const char *path, const char *token);

/* xenbus: the state of <path>/state, waiting (with a watch) until `pred` holds. */
int xenbus_read_state(const char *dir);
int xenbus_switch_state(const char *dir, int state);
int xenbus_wait_state(const char *dir, int min_state, int max_state, uint64_t timeout_ns);
const char *xenbus_state_name(int state);

/* blkfront (xen/blkfront.c). */
struct blkfront_info {
    uint64_t sectors;
    unsigned sector_size, flush;
    domid_t backend_id;
    uint64_t requests, segments, responses, batches;
};
int blkfront_init(const char *vdev_dir, struct blkfront_info *info);
/* count sectors at sector from/to buf (page aligned, count * 512 a whole number of pages,
 * at most BLKFRONT_MAX_BATCH_PAGES pages). 0 or a negative value. */
int blkfront_rw(int write, uint64_t sector, uint32_t count, void *buf);
int blkfront_flush(void);
int blkfront_close(void);
#define BLKFRONT_MAX_BATCH_PAGES 64

/* netfront (xen/netfront.c). */
struct netfront_info {
    uint8_t mac[6];
    domid_t backend_id;
    uint64_t tx_packets, rx_packets, rx_bytes, tx_bytes, rx_errors;
};
int netfront_init(const char *vif_dir, struct netfront_info *info);
int netfront_send(const void *frame, size_t len);
/* Copies the next received frame to buf; its length, 0 when none is waiting, -1 once the
 * backend published more responses than the ring holds (the device is then unusable). */
int netfront_recv(void *buf, size_t size);
/* Blocks until a frame arrives or timeout_ns passed. */
void netfront_wait(uint64_t timeout_ns);

#endif
