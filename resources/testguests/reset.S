/* reset: asks the i8042 to pulse the reset line (0xFE to port 0x64): the VM ends normally.
 * Should the reset be ignored, it reports status 1 instead. */
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
	mov $0xfe, %al
	out %al, $0x64
	/* not reset: spin a while (the reset may take effect a little later), then report failure */
	mov $0x1000000, %ecx
1:	pause
	loop 1b
	mov $msg_alive, %esi
	call puts
	EXIT_WITH 1

	SERIAL_HELPERS_32
	PVH_NOTE _start

	.section .rodata
msg:		.asciz "reset: writing 0xfe to port 0x64\n"
msg_alive:	.asciz "reset: still running after the reset request\n"

	.bss
	.balign 16
	.skip 4096
stack_top:
