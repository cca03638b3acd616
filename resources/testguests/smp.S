/* smp: starts every other vCPU the classic way and counts them.
 * The BSP (PVH entry: 32-bit protected mode, paging off) copies a 16-bit real-mode trampoline to
 * TRAMP (below 1 MiB, page aligned), enables its LAPIC and sends INIT, SIPI, SIPI to
 * all-excluding-self through the ICR. Each AP starts in real mode at TRAMP, takes a spinlock, reads
 * its APIC ID (CPUID leaf 1, EBX[31:24]), prints `cpu N up` on COM1, counts itself, releases the lock
 * and halts. The BSP prints its own line first, waits about a second (2^31 TSC cycles) and exits with
 * the number of CPUs that came up, itself included. */
#include "common.h"
#define T(sym)		(TRAMP + (sym) - tramp_start)	/* a trampoline symbol's address once copied */

	.code32
	.text
	.globl _start
_start:
	cli
	cld
	mov $stack_top, %esp
	mov $msg_start, %esi
	call puts
	/* the BSP reports itself */
	mov $1, %eax
	cpuid
	shr $24, %ebx
	mov $msg_cpu, %esi
	call puts
	mov %ebx, %eax
	call putdec
	mov $msg_up, %esi
	call puts

	rdtsc
	mov %eax, %edi			/* edi:ebp = start of the wait */
	mov %edx, %ebp
	/* the trampoline carries the lock and the AP counter */
	START_APS tramp_start, tramp_end

	/* wait until 2^31 TSC cycles (~0.8 s at 2.6 GHz) after the INIT */
1:	pause
	rdtsc
	sub %edi, %eax
	sbb %ebp, %edx
	jnz 2f
	test %eax, %eax
	jns 1b
2:
	/* report under the lock, so no AP's line is cut */
	call lock
	mov T(ap_count), %ebx
	inc %ebx			/* the BSP */
	mov $msg_total, %esi
	call puts
	mov %ebx, %eax
	call putdec
	mov $msg_total2, %esi
	call puts
	mov %bl, %al
	mov $EXIT_PORT, %dx
	out %al, %dx
3:	cli
	hlt
	jmp 3b

lock:	mov $1, %al
	xchg %al, T(ap_lock)
	test %al, %al
	jz 1f
	pause
	jmp lock
1:	ret

	SMP_HELPERS_32
	SERIAL_HELPERS_32
	PVH_NOTE _start

/* The AP trampoline, copied to TRAMP: real mode, CS = TRAMP >> 4, IP = 0. Addresses inside it are
 * offsets from tramp_start (DS = SS = CS). */
	.code16
	.balign 16
tramp_start:
	cli
	cld
	mov %cs, %ax
	mov %ax, %ds
	mov %ax, %ss
1:	mov $1, %al			/* spinlock: the stack below is shared */
	xchg %al, ap_lock - tramp_start
	test %al, %al
	jz 2f
	pause
	jmp 1b
2:	mov $0x1000, %sp		/* top of the trampoline's page */
	mov $1, %eax
	cpuid
	shr $24, %ebx
	mov $(ap_msg_cpu - tramp_start), %si
	call ap_puts
	mov %bx, %ax
	call ap_putdec
	mov $(ap_msg_up - tramp_start), %si
	call ap_puts
	incl ap_count - tramp_start
	movb $0, ap_lock - tramp_start
3:	cli
	hlt
	jmp 3b

ap_putc:				/* %al */
	push %dx
	push %ax
	mov $COM1_LSR, %dx
1:	in %dx, %al
	test $0x20, %al
	jz 1b
	pop %ax
	mov $COM1, %dx
	out %al, %dx
	pop %dx
	ret
ap_puts:				/* %ds:%si */
	push %ax
1:	lodsb
	test %al, %al
	jz 2f
	call ap_putc
	jmp 1b
2:	pop %ax
	ret
ap_putdec:				/* %ax, 0..65535 */
	push %cx
	push %dx
	push %bx
	mov $10, %bx
	xor %cx, %cx
1:	xor %dx, %dx
	div %bx
	push %dx
	inc %cx
	test %ax, %ax
	jnz 1b
2:	pop %ax
	add $'0', %al
	call ap_putc
	loop 2b
	pop %bx
	pop %dx
	pop %cx
	ret
ap_msg_cpu:	.asciz "cpu "
ap_msg_up:	.asciz " up\n"
	.balign 4
ap_lock:	.long 0
ap_count:	.long 0
tramp_end:

	.section .rodata
msg_start:	.asciz "smp: starting the APs with INIT-SIPI-SIPI\n"
msg_cpu:	.asciz "cpu "
msg_up:		.asciz " up\n"
msg_total:	.asciz "smp: "
msg_total2:	.asciz " cpus up\n"

	.bss
	.balign 16
	.skip 4096
stack_top:
