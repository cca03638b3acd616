/* spin: every vCPU spins in guest code forever, leaving it only now and then to show progress.
 * The BSP (PVH entry) starts the APs with INIT-SIPI-SIPI (common.h's START_APS), then every CPU,
 * the BSP in 32-bit protected mode and the APs in real mode on the trampoline, loops: count down
 * 4096 in a register (no exit), then one OUT to PROGRESS_PORT, which no device claims: an I/O exit
 * the VMM drops, seen in its per-vCPU exit counts. The guest never ends on its own; the VMM's tests
 * pause, resume and stop it. */
#include "common.h"
#define PROGRESS_PORT	0x504
#define SPIN_COUNT	(1 << 12)

	.code32
	.text
	.globl _start
_start:
	cli
	cld
	mov $stack_top, %esp
	mov $msg_start, %esi
	call puts
	START_APS tramp_start, tramp_end
	mov $msg_spin, %esi
	call puts
	mov $PROGRESS_PORT, %dx
1:	mov $SPIN_COUNT, %ecx
2:	dec %ecx
	jnz 2b
	out %al, %dx
	jmp 1b

	SMP_HELPERS_32
	SERIAL_HELPERS_32
	PVH_NOTE _start

/* The AP trampoline, copied to TRAMP: real mode, position independent. */
	.code16
	.balign 16
tramp_start:
	cli
	mov $PROGRESS_PORT, %dx
1:	mov $SPIN_COUNT, %ecx
2:	dec %ecx
	jnz 2b
	out %al, %dx
	jmp 1b
tramp_end:

	.section .rodata
msg_start:	.asciz "spin: starting the APs\n"
msg_spin:	.asciz "spin: spinning\n"

	.bss
	.balign 16
	.skip 4096
stack_top:
