/*
 * hostile/sched-strio: string-I/O exits of 4096 elements each, forever: REP OUTSB (default) or,
 * with `dir=in`, REP INSB, of a 4 KiB buffer at port 0x80 (the POST port; nothing the guest
 * reads back). Each instruction is one I/O exit that moves 4096 elements through the device
 * model: the host must charge the elements, not one exit. Never prints PASS.
 */
#include "rt.h"

#define PORT 0x80

static uint8_t buf[4096];

int kmain(struct hvm_start_info *si) {
    (void)si;
    int in = strcmp(cmdline(), "dir=in") == 0;
    printf("sched-strio: REP %s of 4096 bytes at port 0x80, forever\n", in ? "INSB" : "OUTSB");
    for (;;) {
        uint64_t n = sizeof buf;
        uint8_t *p = buf;
        if (in) __asm__ volatile("rep insb" : "+c"(n), "+D"(p) : "d"(PORT) : "memory");
        else __asm__ volatile("rep outsb" : "+c"(n), "+S"(p) : "d"(PORT) : "memory");
    }
}
