/*
 * hostile/bounds-uartloop: puts COM1's 16550 in loopback mode (MCR bit 4), so every byte written
 * to THR arrives in its own receive FIFO, and floods it with REP OUTSB (`rounds` times `kib`
 * KiB; default 4 x 63 MiB) without ever reading RBR. On the chip the 16-byte FIFO fills and every
 * further byte is an overrun (LSR.OE) and is lost: the host must not keep what the guest never
 * reads. Then it checks what the PC16550D data sheet says is left: LSR = DR | OE | THRE | TEMT,
 * the first 16 bytes in the FIFO, OE cleared by that LSR read; in 16450 mode (FIFOs off) the last
 * byte overwrites the unread RBR. With `console=N`, it then floods the console too: N rounds of
 * the buffer to THR with loopback off (the host keeps a bounded amount of a domain's console).
 * Exits 0 when all of that holds, 1 otherwise.
 */
#include "rt.h"

#define COM1 0x3F8
#define UART_RBR 0
#define UART_THR 0
#define UART_IER 1
#define UART_FCR 2
#define UART_MCR 4
#define UART_LSR 5
#define LSR_DR   0x01
#define LSR_OE   0x02
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define MCR_LOOP 0x10
#define FCR_ENABLE_AND_CLEAR 0x07

static void rep_outsb(uint16_t port, const void *buf, uint64_t n) {
    __asm__ volatile("rep outsb" : "+S"(buf), "+c"(n) : "d"(port) : "memory");
}

int kmain(struct hvm_start_info *si) {
    (void)si;
    uint64_t rounds = cmdline_uint("rounds", 4);
    uint64_t bytes = cmdline_uint("kib", 63 * 1024) * 1024;
    uint8_t *buf = (uint8_t *)(((uint64_t)(uintptr_t)__image_end + (1u << 20)) & ~0xfffull);
    for (uint64_t i = 0; i < bytes; i++) buf[i] = (uint8_t)(i * 7 + 1);
    int ok = 1;

    outb(COM1 + UART_IER, 0x00);
    outb(COM1 + UART_FCR, FCR_ENABLE_AND_CLEAR);
    outb(COM1 + UART_MCR, MCR_LOOP);
    (void)inb(COM1 + UART_LSR); /* clear any OE */
    for (uint64_t r = 0; r < rounds; r++) rep_outsb(COM1 + UART_THR, buf, bytes);

    uint8_t lsr = inb(COM1 + UART_LSR);
    uint64_t want = bytes * rounds > 16 ? (LSR_DR | LSR_OE | LSR_THRE | LSR_TEMT) : (LSR_DR | LSR_THRE | LSR_TEMT);
    if (lsr != want) { printf("bounds-uartloop: LSR %#x after the flood, expected %#lx\n", lsr, want); ok = 0; }
    unsigned held = 0;
    while ((inb(COM1 + UART_LSR) & LSR_DR) && held < 1000) {
        uint8_t b = inb(COM1 + UART_RBR);
        if (held < bytes && b != buf[held]) { printf("bounds-uartloop: FIFO byte %u is %#x, expected %#x\n", held, b, buf[held]); ok = 0; }
        held++;
    }
    if (held != (bytes * rounds < 16 ? bytes * rounds : 16)) { printf("bounds-uartloop: FIFO held %u bytes\n", held); ok = 0; }
    lsr = inb(COM1 + UART_LSR);
    if (lsr & (LSR_DR | LSR_OE)) { printf("bounds-uartloop: LSR %#x after draining\n", lsr); ok = 0; }

    /* 16450 mode: one RBR, overwritten by the next byte. */
    outb(COM1 + UART_FCR, 0x00);
    outb(COM1 + UART_THR, 'a');
    outb(COM1 + UART_THR, 'b');
    outb(COM1 + UART_THR, 'c');
    lsr = inb(COM1 + UART_LSR);
    uint8_t rbr = inb(COM1 + UART_RBR);
    if (lsr != (LSR_DR | LSR_OE | LSR_THRE | LSR_TEMT) || rbr != 'c') { printf("bounds-uartloop: 16450 mode LSR %#x RBR %#x\n", lsr, rbr); ok = 0; }
    outb(COM1 + UART_MCR, 0x00);

    uint64_t console = cmdline_uint("console", 0);
    for (uint64_t r = 0; r < console; r++) rep_outsb(COM1 + UART_THR, buf, bytes);

    printf("bounds-uartloop: %lu x %lu bytes looped back, FIFO held %u: %s\n", rounds, bytes, held, ok ? "ok" : "WRONG");
    rt_exit(ok ? EXIT_SUCCESS_CODE : EXIT_FAILURE_CODE);
}
