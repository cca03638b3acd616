/* triple-fault: loads an empty IDT (limit 0) and raises an exception: the CPU cannot deliver it, nor
 * the #GP and #DF that follow, and shuts down (KVM_EXIT_SHUTDOWN): vmctl reports a crash.
 * The exception is a #UD from ud2, not int3: kvm-pvm (this machine's KVM) cannot emulate int3 in
 * guest kernel mode and would report an emulation failure instead. */
#include "common.h"
	.code32
	.text
	.globl _start
_start:
	cli
	cld
	mov $stack_top, %esp
	mov $msg, %esi
	call puts
	lidt idt_empty
	ud2
	mov $msg_alive, %esi
	call puts
	EXIT_WITH 1

	SERIAL_HELPERS_32
	PVH_NOTE _start

	.section .rodata
	.balign 8
idt_empty:	.word 0		/* limit */
		.long 0		/* base */
msg:		.asciz "triple-fault: empty IDT, then ud2\n"
msg_alive:	.asciz "triple-fault: still running after the fault\n"

	.bss
	.balign 16
	.skip 4096
stack_top:
