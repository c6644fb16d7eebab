/* Event-channel upcall guest (test/event-channel.test.ts): binds an IPI channel on vCPU 0,
   chooses the callback named by the mode word the test writes at 0x130010, enables interrupts
   and sends itself an event; the callback handler at vector 0xf3 counts upcalls at 0x130000.
   Modes: 0 HVMOP_set_evtchn_upcall_vector (a local-APIC vector: the handler EOIs and returns);
   1 HVM_PARAM_CALLBACK_IRQ type vector (injected while evtchn_upcall_pending stays set: this
   guest has no shared_info mapping to clear it, so the handler halts with interrupts off);
   2 no callback (the event stays pending; the guest halts). Results: 0x130020 set-callback,
   0x130024 bind_ipi, 0x130028 send, 0x13002c the port. The domain powers off at the end. */
        .include "../mmio-guests/prologue.S"
        .set    OP, 0x131000                    /* the hypercall argument structs */
        .set    VECTOR, 0xf3
main:
        movl    $0x1ff, 0xf0(%rbx)              /* SVR: software enable */
        lea     upcall_isr(%rip), %rax          /* IDT[0xf3]: 64-bit interrupt gate */
        mov     $0x115000 + VECTOR * 16, %rdi
        mov     %ax, (%rdi)
        movw    $0x18, 2(%rdi)
        movw    $0x8e00, 4(%rdi)
        shr     $16, %rax
        mov     %ax, 6(%rdi)
        cmpl    $1, 0x130010
        je      param
        cmpl    $2, 0x130010
        je      bind
        movl    $0, OP                          /* xen_hvm_evtchn_upcall_vector: vcpu 0 */
        movl    $VECTOR, OP + 4                 /* vector */
        mov     $34, %eax                       /* __HYPERVISOR_hvm_op */
        mov     $23, %edi                       /* HVMOP_set_evtchn_upcall_vector */
        mov     $OP, %esi
        vmcall
        mov     %eax, 0x130020
        jmp     bind
param:  movl    $0x7ff0, OP                     /* xen_hvm_param: domid DOMID_SELF, pad */
        movl    $0, OP + 4                      /* index HVM_PARAM_CALLBACK_IRQ */
        movl    $VECTOR, OP + 8                 /* value: vector 0xf3 ... */
        movl    $0x02000000, OP + 12            /* ... type HVM_PARAM_CALLBACK_TYPE_VECTOR (bits 63:56) */
        mov     $34, %eax
        xor     %edi, %edi                      /* HVMOP_set_param */
        mov     $OP, %esi
        vmcall
        mov     %eax, 0x130020
bind:   movl    $0, OP + 0x40                   /* evtchn_bind_ipi: vcpu 0 */
        mov     $32, %eax                       /* __HYPERVISOR_event_channel_op */
        mov     $7, %edi                        /* EVTCHNOP_bind_ipi */
        mov     $OP + 0x40, %esi
        vmcall
        mov     %eax, 0x130024
        mov     OP + 0x44, %eax                 /* port (OUT) */
        mov     %eax, 0x13002c
        mov     %eax, OP + 0x80                 /* evtchn_send: port */
        sti
        mov     $32, %eax
        mov     $4, %edi                        /* EVTCHNOP_send */
        mov     $OP + 0x80, %esi
        vmcall
        mov     %eax, 0x130028
        cmpl    $2, 0x130010
        je      done
1:      pause
        cmpl    $0, 0x130000
        je      1b
        jmp     done
upcall_isr:
        incl    0x130000                        /* upcalls taken */
        cmpl    $1, 0x130010
        je      done                            /* vector callback: it would fire again at once */
        movl    $0, 0xb0(%rbx)                  /* EOI (xAPIC MMIO) */
        iretq
