/*
 * hostile/sched-uart: a console flood through the 16550 at COM1 (0x3F8): the transmit holding
 * register written as fast as the guest can, without looking at LSR. `mode=outsb` (default)
 * uses REP OUTSB of a 4 KiB buffer, `mode=outb` one OUT per byte. Forever; never prints PASS.
 */
#include "rt.h"

#define COM1 0x3f8

static char line[4096];

int kmain(struct hvm_start_info *si) {
    (void)si;
    int outb_mode = strcmp(cmdline(), "mode=outb") == 0;
    for (size_t i = 0; i < sizeof line; i++) line[i] = (i % 64 == 63) ? '\n' : (char)('a' + i % 26);
    printf("sched-uart: flooding COM1 with %s\n", outb_mode ? "OUT" : "REP OUTSB");
    for (;;) {
        if (outb_mode) {
            for (size_t i = 0; i < sizeof line; i++) outb(COM1, (uint8_t)line[i]);
        } else {
            uint64_t n = sizeof line;
            const char *p = line;
            __asm__ volatile("rep outsb" : "+c"(n), "+S"(p) : "d"(COM1) : "memory");
        }
    }
}
